"""PhiFinding and Findings: what scan_for_phi and audit return.

A finding's value is held in memory only: never in repr, logs, the session database or a
DataFrame unless the caller asks for it (`to_dataframe(reveal=True)`). scan_for_phi's findings
(ScanFindings) live in the session database without their values, so memory does not grow
with the cohort; a value is read again from its instance (the scan is deterministic) when a
finding is iterated or revealed, one instance at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gantry_node.engine.deid import Finding

if TYPE_CHECKING:
    from gantry_node.offline.catalogue import Catalogue

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

    def kept(self) -> list[PhiFinding]:
        """The findings the policy keeps (action keep...)."""
        return [f for f in self.items if f.action.startswith("keep")]

    def to_dataframe(self, reveal: bool = False):
        """One row per finding; the `value` column only with reveal=True."""
        import pandas as pd

        columns = COLUMNS + (["value"] if reveal else [])
        return pd.DataFrame([f.row(reveal) for f in self.items], columns=columns)


class ScanFindings(Findings):
    """scan_for_phi's findings, read from the session database (`scan_findings`, no values).
    Iterating yields each finding with its value, re-scanning one instance at a time
    (`rescan(instance_id)` returns that instance's findings in the same order)."""

    def __init__(self, catalogue: Catalogue, scan: int, instances: int,
                 rescan: Callable[[int], list[PhiFinding]]) -> None:
        super().__init__((), instances)
        self.catalogue = catalogue
        self.scan = scan
        self.rescan = rescan

    @property
    def items(self) -> list[PhiFinding]:  # type: ignore[override]  # only for code that asks for a list
        return list(self)

    @items.setter
    def items(self, value: list[PhiFinding]) -> None:
        pass  # Findings.__init__ sets it; the rows are in the database

    def rows(self, where: str = "", params: Iterable[Any] = ()) -> Iterator[PhiFinding]:
        """The findings without values (nothing re-read)."""
        for _, f in self._rows(where, params):
            yield f

    def _rows(self, where: str = "", params: Iterable[Any] = ()) -> Iterator[tuple[int, PhiFinding]]:
        for r in self.catalogue.scan_findings(self.scan, where, params):
            yield r["seq"], PhiFinding(r["entity_type"], r["field_name"], r["tag"], r["path"], None, r["reason"],
                                       r["action"], r["instance_id"])

    def _with_values(self, rows: Iterable[tuple[int, PhiFinding]]) -> Iterator[PhiFinding]:
        current, fresh = None, []
        for seq, f in rows:
            if f.instance_id != current:
                current = f.instance_id
                fresh = self.rescan(current) if current is not None else []
            same = fresh[seq] if seq < len(fresh) and (fresh[seq].tag, fresh[seq].path) == (f.tag, f.path) else None
            yield PhiFinding(f.entity_type, f.field_name, f.tag, f.path, same.value if same else None, f.reason,
                             f.action, f.instance_id)

    def __iter__(self) -> Iterator[PhiFinding]:
        return self._with_values(self._rows())

    def __len__(self) -> int:
        return self.catalogue.scan_count(self.scan)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, index: int) -> PhiFinding:
        if index < 0:
            index += len(self)
        r = next(iter(self.catalogue.db.query("select id from scan_findings where scan = ? order by id limit 1 "
                                              "offset ?", [self.scan, index])), None)
        if r is None:
            raise IndexError(index)
        return next(self._with_values(self._rows("id = ?", [r["id"]])))

    def __repr__(self) -> str:
        top = ", ".join(f"{r['reason']}: {r['n']}" for r in self.catalogue.db.query(
            "select reason, count(*) as n from scan_findings where scan = ? group by reason "
            "order by n desc, reason limit 3", [self.scan]))
        touched = self.catalogue.scan_count(self.scan, "count(distinct instance_id)")
        return (f"Findings({len(self)} findings in {touched}"
                f" of {self.instances} instances{'; ' + top if top else ''})")

    def for_instance(self, instance_id: int) -> list[PhiFinding]:
        return list(self._with_values(self._rows("instance_id = ?", [instance_id])))

    def kept(self) -> list[PhiFinding]:
        """The findings the policy keeps (action keep...), with values."""
        return list(self._with_values(self._rows("action like 'keep%'")))

    def to_dataframe(self, reveal: bool = False):
        import pandas as pd

        columns = COLUMNS + (["value"] if reveal else [])
        found = self if reveal else self.rows()
        return pd.DataFrame([f.row(reveal) for f in found], columns=columns)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple) and value and not isinstance(value[0], str | int | float):
        return f"<sequence of {len(value)} items>"
    return "" if value is None else str(value)
