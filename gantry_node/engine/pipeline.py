"""The processing pipeline both front doors run: the network worker and `Session`.

    deidentify -> seal identity -> redact pixels -> verify

Each stage has one signature, `stage(work, engine) -> None`; a stage that finds the instance
must not leave raises `Quarantine` with a reason an operator can read (no PHI in it). The
list of stages is built in one place, `stages_for(engine)`. No I/O happens here: the caller
reads the file and writes the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from gantry_node.engine.deid import Change, DeidError, Finding, Identity, Keys, Policy, deidentify, verify
from gantry_node.engine.encoding import Encoded, encode_parts
from gantry_node.engine.errors import SafeMessage


class Quarantine(Exception):
    """The instance must not leave. `reason` is for operators and carries no PHI values."""

    def __init__(self, reason: str, stage: str = "", findings: list[Finding] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.findings = findings or []


@dataclass
class Engine:
    """Everything the stages need, built once from configuration."""

    policy: Policy
    keys: Keys
    # Reversible sealing (PS3.15 E.1.2): a callable (dataset, originals) -> None that adds the
    # Encrypted Attributes Sequence; None when no recipient certificate is configured.
    sealer: Callable[[Dataset, Dataset], None] | None = None
    # Burned-in pixel redaction: a callable (work) -> None; None when pixels are not handled.
    pixel_stage: Callable[[Work], None] | None = None


@dataclass
class Work:
    """One instance on its way through the stages."""

    original: Dataset
    dataset: Dataset | None = None
    identity: Identity | None = field(default=None, repr=False)
    originals: Dataset | None = field(default=None, repr=False)
    changes: list[Change] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # per-stage facts for the audit (no PHI)
    encoded: Encoded | None = field(default=None, repr=False)


@dataclass
class Clean:
    dataset: Dataset
    encoded: Encoded = field(repr=False)  # the verified Part 10 bytes (in pieces): write these, not the dataset
    changes: list[Change] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    identity: Identity | None = field(default=None, repr=False)  # of the original, in memory only


def stage_deidentify(work: Work, engine: Engine) -> None:
    try:
        result = deidentify(work.original, engine.policy, engine.keys)
    except DeidError as exc:
        raise Quarantine(f"cannot de-identify: {exc}", "deidentify") from None
    work.dataset, work.identity = result.dataset, result.identity
    work.originals, work.changes = result.originals, result.changes
    work.notes["changes"] = len(result.changes)


def stage_seal(work: Work, engine: Engine) -> None:
    if engine.sealer is not None:
        engine.sealer(work.dataset, work.originals)
        work.notes["sealed"] = True


def stage_pixels(work: Work, engine: Engine) -> None:
    if engine.pixel_stage is not None:
        engine.pixel_stage(work)


def stage_verify(work: Work, engine: Engine) -> None:
    work.encoded = encode_parts(work.dataset)  # verified bytes are the bytes written (pixels not copied)
    findings = verify(work.dataset, engine.policy, work.identity, work.encoded)
    if findings:
        summary = "; ".join(sorted({f"{f.path} {f.keyword}: {f.reason}" for f in findings}))
        raise Quarantine(f"verification failed: {summary}", "verify", findings)
    work.notes["verified"] = True


Stage = Callable[[Work, Engine], None]


def stages_for(engine: Engine) -> list[Stage]:
    return [stage_deidentify, stage_seal, stage_pixels, stage_verify]


def process(original: Dataset, engine: Engine) -> Clean:
    """Run every stage over one instance. Returns the clean result or raises Quarantine; any
    other exception from a stage is turned into Quarantine too (fail closed)."""
    work = Work(original)
    for stage in stages_for(engine):
        name = stage.__name__.removeprefix("stage_")
        try:
            stage(work, engine)
        except Quarantine:
            raise
        except Exception as exc:  # noqa: BLE001 -- fail closed: nothing unverified leaves
            raise Quarantine(f"{name} failed: {type(exc).__name__}: {_safe(exc)}", name) from exc
    return Clean(work.dataset, work.encoded, work.changes, work.notes, work.identity)


def _safe(exc: Exception) -> str:
    """Exception text for operators. Our own errors name tags, never values; a foreign
    exception's message may quote a value (a name in a bad-VR error), so only its type shows."""
    if isinstance(exc, SafeMessage | Quarantine):
        return str(exc)
    return "(message withheld: may quote data)"
