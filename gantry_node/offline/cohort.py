"""The cohort as objects: Patient -> Study -> Series -> Instance, and Device.

Built from the session database on request (a snapshot: ask the session again after a step).
Identifiers are the pseudonymous ones once an instance is anonymised (`apply_remediation`), the
original ones before. An Instance reads its header and pixels from disk only when asked, from
the session's stored output once there is one, else from the source file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset


@dataclass(eq=False)
class Instance:
    id: int
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    source: Path
    stored: Path | None  # the de-identified (and redacted) file in the session folder
    rows: int | None
    columns: int | None
    frames: int | None
    size: int
    anonymized: bool
    attributes: dict[str, Any] = field(repr=False)

    @property
    def path(self) -> Path:
        """The file the session's current state of this instance is in."""
        return self.stored if self.stored is not None else self.source

    @property
    def header(self) -> Dataset:
        """The header (no pixel data), read now."""
        return pydicom.dcmread(self.path, stop_before_pixels=True)

    def dataset(self) -> Dataset:
        return pydicom.dcmread(self.path)

    @property
    def pixels(self):
        """The pixel data as a numpy array (frames, rows, columns[, samples]), decoded now."""
        from gantry_node.engine.pixels.codec import decode

        return decode(self.dataset()).frames

    def __getattr__(self, name: str) -> Any:
        attributes = self.__dict__.get("attributes") or {}
        if name in attributes:
            return attributes[name]
        raise AttributeError(name)


@dataclass(eq=False)
class Series:
    series_instance_uid: str
    modality: str
    instances: list[Instance] = field(default_factory=list, repr=False)

    @property
    def instance_count(self) -> int:
        return len(self.instances)


@dataclass(eq=False)
class Study:
    study_instance_uid: str
    study_date: str
    series: list[Series] = field(default_factory=list, repr=False)

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)


@dataclass(eq=False)
class Patient:
    patient_id: str = field(repr=False)
    studies: list[Study] = field(default_factory=list, repr=False)

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.studies)

    def __repr__(self) -> str:  # the ID may be the original one: not shown
        return f"Patient({len(self.studies)} studies, {self.instance_count} instances)"


@dataclass(frozen=True)
class Device:
    manufacturer: str
    model: str
    serial: str
    instances: int
    modalities: tuple[str, ...]
    burned_in_annotation: bool  # BurnedInAnnotation YES on any of its instances


def instance_from_row(row: dict[str, Any], folder: Path) -> Instance:
    anonymized = bool(row.get("output"))
    attrs = json.loads((row.get("clean_attrs") if anonymized else row.get("attrs")) or "{}")
    return Instance(
        id=row["id"],
        sop_instance_uid=(row["clean_sop_uid"] if anonymized else row["sop_uid"]) or "",
        sop_class_uid=row["sop_class"] or "", modality=row["modality"] or "", source=Path(row["source"]),
        stored=folder / row["output"] if anonymized else None, rows=row["rows"], columns=row["columns"],
        frames=row["frames"], size=row["size"] or 0, anonymized=anonymized, attributes=attrs)


def build_graph(rows: list[dict[str, Any]], folder: Path) -> list[Patient]:
    patients: dict[str, Patient] = {}
    studies: dict[str, Study] = {}
    series: dict[str, Series] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        inst = instance_from_row(row, folder)
        pick: Callable[[str], str] = (lambda k, r=row: r[f"clean_{k}"] or "") if inst.anonymized \
            else (lambda k, r=row: r[k] or "")
        pid, study_uid, series_uid = pick("patient_id"), pick("study_uid"), pick("series_uid")
        patient = patients.setdefault(pid, Patient(pid))
        if study_uid not in studies:
            studies[study_uid] = Study(study_uid, str(inst.attributes.get("StudyDate") or ""))
            patient.studies.append(studies[study_uid])
        if series_uid not in series:
            series[series_uid] = Series(series_uid, inst.modality)
            studies[study_uid].series.append(series[series_uid])
        series[series_uid].instances.append(inst)
    return list(patients.values())


def build_devices(rows: list[dict[str, Any]]) -> list[Device]:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        key = (row["manufacturer"] or "", row["model"] or "", row["serial"] or "")
        g = groups.setdefault(key, {"n": 0, "modalities": set(), "burned": False})
        g["n"] += 1
        if row["modality"]:
            g["modalities"].add(row["modality"])
        g["burned"] |= (row["burned_in"] or "").upper() == "YES"
    return [Device(*key, g["n"], tuple(sorted(g["modalities"])), g["burned"])
            for key, g in sorted(groups.items(), key=lambda kv: (-kv[1]["n"], kv[0]))]
