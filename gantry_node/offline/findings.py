"""PhiFinding and Findings: what scan_for_phi and audit return.

A finding's value is held in memory only: never in repr, logs, the session database or a
DataFrame unless the caller asks for it (`to_dataframe(reveal=True)`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gantry_node.engine.deid import Finding

COLUMNS = ["instance_id", "entity_type", "field_name", "tag", "path", "reason", "action"]

_PATIENT = ("Patient", "OtherPatient", "Issuer", "Ethnic", "MilitaryRank", "BranchOfService", "Medical",
            "Allergies", "PregnancyStatus", "Occupation", "AdditionalPatientHistory", "CountryOfResidence",
            "RegionOfResidence", "ResponsiblePerson", "ResponsibleOrganization")
_STUDY = ("Study", "Accession", "Referring", "Admitting", "Admission", "RequestingPhysician", "NameOfPhysicians",
          "PhysiciansOfRecord", "RequestedProcedure", "Requesting", "Reason", "Visit", "CurrentPatientLocation")
_SERIES = ("Series", "Performing", "Operators", "PerformedProcedure", "PerformedStation", "Protocol",
           "RequestAttributes", "ScheduledProcedure", "FrameOfReference", "Acquisition")
_EQUIPMENT = ("Institution", "Station", "DeviceSerial", "Device", "Manufacturer", "Software", "DateOfLast",
              "TimeOfLast", "Detector", "Gantry", "PlateID", "Cassette")


def entity_type(keyword: str, tag: str) -> str:
    """Which object of the cohort the attribute describes: Patient, Study, Series, Equipment,
    Pixels or Instance (by keyword; private and unknown elements are Instance)."""
    if keyword in ("PixelData", "BurnedInAnnotation") or tag.startswith("(60"):
        return "Pixels"
    for kind, prefixes in (("Patient", _PATIENT), ("Study", _STUDY), ("Series", _SERIES),
                           ("Equipment", _EQUIPMENT)):
        if keyword.startswith(prefixes):
            return kind
    return "Instance"


@dataclass(frozen=True)
class PhiFinding:
    entity_type: str
    field_name: str  # the keyword (or the tag for private elements)
    tag: str
    path: str
    value: Any = field(repr=False, compare=False)
    reason: str
    action: str
    instance_id: int | None = None  # the session's instance (internal id, not PHI)

    @classmethod
    def of(cls, finding: Finding, instance_id: int | None) -> PhiFinding:
        return cls(entity_type(finding.keyword, finding.tag), finding.keyword or finding.tag, finding.tag,
                   finding.path, finding.value, finding.reason, finding.action, instance_id)

    def row(self, reveal: bool = False) -> dict[str, Any]:
        d = {"instance_id": self.instance_id, "entity_type": self.entity_type, "field_name": self.field_name,
             "tag": self.tag, "path": self.path, "reason": self.reason, "action": self.action}
        if reveal:
            d["value"] = _text(self.value)
        return d


class Findings:
    """An iterable of PhiFinding; falsy when empty. repr shows counts, never values."""

    def __init__(self, items: Iterable[PhiFinding] = (), instances: int = 0, analysis: int | None = None) -> None:
        self.items = list(items)
        self.instances = instances  # how many instances were examined
        self.analysis = analysis  # the saved analysis number (save_analysis), if saved

    def __iter__(self) -> Iterator[PhiFinding]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __getitem__(self, index: int) -> PhiFinding:
        return self.items[index]

    def __repr__(self) -> str:
        by_reason = Counter(f.reason for f in self.items).most_common(3)
        top = ", ".join(f"{reason}: {n}" for reason, n in by_reason)
        return (f"Findings({len(self.items)} findings in {len({f.instance_id for f in self.items})} of "
                f"{self.instances} instances{'; ' + top if top else ''})")

    def for_instance(self, instance_id: int) -> list[PhiFinding]:
        return [f for f in self.items if f.instance_id == instance_id]

    def to_dataframe(self, reveal: bool = False):
        """One row per finding; the `value` column only with reveal=True."""
        import pandas as pd

        columns = COLUMNS + (["value"] if reveal else [])
        return pd.DataFrame([f.row(reveal) for f in self.items], columns=columns)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple) and value and not isinstance(value[0], str | int | float):
        return f"<sequence of {len(value)} items>"
    return "" if value is None else str(value)
