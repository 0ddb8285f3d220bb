"""Export: the de-identified files (safe or not, whole or a subset), and the cohort table as a
DataFrame or Parquet (streamed in row groups)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gantry_node.offline.importer import ATTRS

if TYPE_CHECKING:
    from gantry_node.offline.session import Session

FLOAT_ATTRS = ("SliceThickness", "SpacingBetweenSlices", "KVP", "RepetitionTime", "EchoTime",
               "MagneticFieldStrength")
INT_ATTRS = ("SeriesNumber", "InstanceNumber", "BitsAllocated", "SamplesPerPixel")
BASE_COLUMNS = ["instance_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                "Modality", "InstanceCount", "Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "Rows",
                "Columns", "NumberOfFrames", "FileSize", "TransferSyntaxUID", "Anonymized", "PixelState"]


@dataclass
class ExportReport:
    folder: Path
    written: list[Path] = field(default_factory=list)
    held_back: dict[int, str] = field(default_factory=dict)  # instance id -> reason (no PHI)
    safe: bool = True

    def summary(self) -> str:
        lines = [f"held back instance {i}: {reason}" for i, reason in sorted(self.held_back.items())]
        lines.append(f"{len(self.written)} instances written to {self.folder}, {len(self.held_back)} held back"
                     + ("" if self.safe else " (safe=False: not verified)"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ExportReport({len(self.written)} written, {len(self.held_back)} held back)"

    def __len__(self) -> int:
        return len(self.written)


# -- the cohort table ------------------------------------------------------------------------

def _row(r: dict[str, Any], counts: dict[str, int], expand: bool) -> dict[str, Any]:
    anonymized = bool(r["output"])
    pick = (lambda k: r[f"clean_{k}"]) if anonymized else (lambda k: r[k])
    out = {"instance_id": r["id"], "PatientID": pick("patient_id"), "StudyInstanceUID": pick("study_uid"),
           "SeriesInstanceUID": pick("series_uid"), "SOPInstanceUID": pick("sop_uid"), "SOPClassUID": r["sop_class"],
           "Modality": r["modality"], "InstanceCount": counts.get(r["series_uid"], 0),
           "Manufacturer": r["manufacturer"], "ManufacturerModelName": r["model"], "DeviceSerialNumber": r["serial"],
           "Rows": r["rows"], "Columns": r["columns"], "NumberOfFrames": r["frames"],
           "FileSize": r["output_size"] if anonymized else r["size"], "TransferSyntaxUID": r["transfer_syntax"],
           "Anonymized": anonymized, "PixelState": r["pixel_state"]}
    attrs = json.loads((r["clean_attrs"] if anonymized else r["attrs"]) or "{}")
    if not expand:
        out["metadata"] = json.dumps(attrs, sort_keys=True)
        return out
    for key in ATTRS:
        value = attrs.get(key)
        if key in FLOAT_ATTRS:
            out[key] = _number(value, float)
        elif key in INT_ATTRS:
            out[key] = _number(value, int)
        else:
            out[key] = None if value is None else value if isinstance(value, str) else json.dumps(value)
    return out


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return None if value in (None, "") else kind(value)
    except (TypeError, ValueError):
        return None


def _columns(expand: bool) -> list[str]:
    return BASE_COLUMNS + (list(ATTRS) if expand else ["metadata"])


def _frame(rows: Iterable[dict[str, Any]], counts: dict[str, int], expand: bool):
    import pandas as pd

    df = pd.DataFrame([_row(r, counts, expand) for r in rows if r["status"] == "ok"], columns=_columns(expand))
    for key in ("Rows", "Columns", "NumberOfFrames", "FileSize", *(INT_ATTRS if expand else ())):
        df[key] = df[key].astype("Int64")
    for key in FLOAT_ATTRS if expand else ():
        df[key] = df[key].astype("float64")
    return df


def dataframe(session: Session, expand_metadata: bool = True):
    counts = session.catalogue.series_counts()
    return _frame(session.catalogue.instances("status = 'ok'"), counts, expand_metadata)


def to_parquet(session: Session, path: Path, row_group: int = 10_000) -> Path:
    """Stream the table: one DataFrame of `row_group` rows at a time, one schema for all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gantry_node.io.durable import write_atomic

    counts = session.catalogue.series_counts()
    ints = {"instance_id", "InstanceCount", "Rows", "Columns", "NumberOfFrames", "FileSize", *INT_ATTRS}
    schema = pa.schema([(c, pa.int64() if c in ints else pa.float64() if c in FLOAT_ATTRS else
                         pa.bool_() if c == "Anonymized" else pa.string()) for c in _columns(True)])
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for chunk in session.catalogue.iter_instances(row_group):
            df = _frame(chunk, counts, True)
            if len(df):
                writer.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
    write_atomic(tmp.read_bytes(), path, 0o600)  # into place whole (a reader never sees half)
    tmp.unlink()
    return path


# -- subsets ---------------------------------------------------------------------------------

def select(session: Session, subset: Any) -> set[int] | None:
    """The instance ids a subset names (None: all)."""
    if subset is None:
        return None
    import pandas as pd

    if isinstance(subset, str):
        subset = dataframe(session).query(subset)
    if isinstance(subset, pd.DataFrame):
        if "instance_id" in subset.columns:
            return {int(i) for i in subset["instance_id"]}
        if "SOPInstanceUID" in subset.columns:
            subset = list(subset["SOPInstanceUID"])
        else:
            raise ValueError("subset DataFrame needs an instance_id or SOPInstanceUID column (use export_dataframe)")
    uids = {str(u).strip() for u in subset}
    ids = set()
    for r in session.catalogue.instances("status = 'ok'"):
        if uids & {r["sop_uid"], r["series_uid"], r["study_uid"], r["clean_sop_uid"], r["clean_series_uid"],
                   r["clean_study_uid"]}:
            ids.add(r["id"])
    return ids


# -- files -----------------------------------------------------------------------------------

def export(session: Session, folder: Path, safe: bool, subset: Any, progress: bool) -> ExportReport:
    from gantry_node.engine.pixels.rules import RuleMatcher
    from gantry_node.io.durable import write_atomic
    from gantry_node.offline.common import progress_bar

    wanted = select(session, subset)
    rows = [r for r in session.catalogue.instances("status = 'ok'") if wanted is None or r["id"] in wanted]
    if folder.resolve() == session.folder.resolve() or session.folder.resolve() in folder.resolve().parents:
        raise ValueError(f"{folder}: not inside the session's own folder {session.folder}")
    report = ExportReport(folder, safe=safe)
    matcher = RuleMatcher(session.pixel_config.rules)
    events = []
    for r in progress_bar("exporting", progress)(rows, len(rows)):
        if safe:
            found = session.check_instance(r, matcher)
            if found:
                report.held_back[r["id"]] = _reason(found)
                events.append(("held_back", r["id"], {"reason": report.held_back[r["id"]][:200]}))
                continue
        elif not r["output"]:
            report.held_back[r["id"]] = "not de-identified (run apply_remediation)"
            continue
        data = session.final_path(r).read_bytes()
        target = folder / r["clean_study_uid"] / r["clean_series_uid"] / f"{r['clean_sop_uid']}.dcm"
        if target.exists() and target.read_bytes() != data:
            report.held_back[r["id"]] = f"{target.relative_to(folder)} exists with other content; not overwritten"
            continue
        if not target.exists():
            write_atomic(data, target, 0o644, durable=False)
        report.written.append(target)
        events.append(("exported", r["id"], {"safe": safe}))
    session.catalogue.audit_many("export", events)
    session.catalogue.audit("export", "done", written=len(report.written), held_back=len(report.held_back),
                            safe=safe)
    from gantry_node.offline.logs import log

    log(logging.INFO, "export done", written=len(report.written), held_back=len(report.held_back), safe=safe)
    return report


def _reason(found) -> str:
    first = found[0]
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    where = f"{first.path} {first.field_name}: " if first.field_name else ""
    return f"{where}{first.reason}{more}"
