"""De-identifying a folder of files: the offline front door's one loop, shared by the
`deid` command and `Session`. Each file becomes one `FileOutcome`; nothing half-written."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from gantry_node.engine.library_warnings import Problem, instance_problems
from gantry_node.engine.pipeline import Clean, Engine, Quarantine, process
from gantry_node.io.durable import write_atomic
from gantry_node.io.part10 import BadInput, clean_path, read_instance

SKIP_NAMES = {"DICOMDIR"}


@dataclass(frozen=True)
class FileOutcome:
    source: Path
    status: str  # "written", "duplicate", "not-dicom", "corrupt", "quarantined"
    detail: str = ""  # the problem, for anything not written (no PHI values)
    output: Path | None = None
    sop_instance_uid: str = ""  # the pseudonymous one, for written files
    # what pydicom warned about while reading and de-identifying it, by tag (no values)
    problems: tuple[Problem, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status in ("corrupt", "quarantined")


@dataclass
class FolderReport:
    outcomes: list[FileOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.failed]

    def problem_lines(self) -> list[str]:
        """One line per library problem: "FILE: (0008,0018) SOPInstanceUID: invalid value for
        VR UI (value withheld)". Tags and kinds only, never the value."""
        return [f"{o.source}: {p}" for o in self.outcomes for p in o.problems]

    def summary(self) -> str:
        lines = []
        for o in self.outcomes:
            if o.status == "not-dicom":
                lines.append(f"skipped (not DICOM): {o.source}")
            elif o.status == "corrupt":
                lines.append(f"FAILED (bad input): {o.detail}")
            elif o.status == "duplicate":
                lines.append(f"skipped (same instance as an earlier file, {o.detail}): {o.source}")
            elif o.status == "quarantined":
                lines.append(f"FAILED (not written, {o.detail})  [{o.source}]")
        lines.append(
            f"{len(self.outcomes)} files: {self.count('written')} de-identified and written, "
            f"{self.count('quarantined')} held back, {self.count('corrupt')} unreadable, "
            f"{self.count('not-dicom')} not DICOM, {self.count('duplicate')} duplicates"
        )
        with_problems = [o for o in self.outcomes if o.problems]
        if with_problems:
            lines.append(f"{sum(len(o.problems) for o in with_problems)} problems with values in {len(with_problems)} "
                         "files, listed by file and tag (values withheld)")
        return "\n".join(lines)


def iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in SKIP_NAMES and not path.name.startswith("."):
            yield path


def process_file(
    path: Path, engine: Engine, out_dir: Path, written: dict[Path, Path] | None = None, durable: bool = False
) -> tuple[FileOutcome, Clean | None]:
    """De-identify one file into out_dir. `written` maps outputs of this run to their sources,
    so a second file with the same SOP Instance UID is reported rather than overwriting. What
    pydicom warns about meanwhile is in the outcome's `problems`, and shown nowhere."""
    with instance_problems(path) as problems:
        outcome, clean = _process_file(path, engine, out_dir, written, durable)
    return replace(outcome, problems=tuple(problems)), clean


def _process_file(
    path: Path, engine: Engine, out_dir: Path, written: dict[Path, Path] | None, durable: bool
) -> tuple[FileOutcome, Clean | None]:
    try:
        ds = read_instance(path)
    except BadInput as exc:
        return FileOutcome(path, exc.kind, str(exc)), None
    try:
        clean = process(ds, engine)
    except Quarantine as q:
        return FileOutcome(path, "quarantined", q.reason), None
    target = clean_path(out_dir, clean.dataset)
    if written is not None:
        if target in written:
            return FileOutcome(path, "duplicate", f"first seen in {written[target]}"), None
        written[target] = path
    write_atomic(clean.encoded, target, durable=durable)
    return FileOutcome(path, "written", output=target, sop_instance_uid=str(clean.dataset.SOPInstanceUID)), clean


def deidentify_folder(
    source: Path,
    out_dir: Path,
    engine: Engine,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
) -> FolderReport:
    """De-identify every file under `source` into `out_dir` (laid out by pseudonymous UIDs)."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if out_dir.resolve() == source.resolve() or source.resolve() in out_dir.resolve().parents:
        raise ValueError(f"output {out_dir} must not be inside the input {source}")
    files = list(iter_files(source))
    report = FolderReport()
    written: dict[Path, Path] = {}
    for path in progress(files) if progress else files:
        report.outcomes.append(process_file(path, engine, out_dir, written)[0])
    os.sync()  # one flush for the batch instead of an fsync per file
    return report
