#!/usr/bin/env python3
"""Benchmark: metadata de-identification throughput, file in -> file out, one process.

Writes N synthetic 512x512 16-bit CT instances (planted PHI, several patients), then runs each
tool over the same files, each writing every output file:

- gantry-node: strict read, de-identify, verify (structural + byte search), atomic write
- gantry-node (no verify): the same without the verification stage, to show its cost
- dicognito and dicom-anonymizer, when installed (`pip install -e .[bench]`)
- baseline: pydicom read + write with no change (the floor any pydicom-based tool stands on)

Prints instances/s for each (wall clock, and CPU time of this process: on a shared machine
the CPU figures are the ones to compare) and the ratios to the baseline and to gantry-node.

    python scripts/bench_deid.py [-n 1000] [--patients 10] [--keep DIR] [--src TREE]

--src measures another tree's gantry_node (e.g. the previous release) for before/after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

_REPO = Path(__file__).resolve().parent.parent
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv[:-1] else str(_REPO)
sys.path.insert(0, str(Path(_SRC).resolve()))

import gantry_node  # noqa: E402
from gantry_node.engine.deid import Keys, default_policy  # noqa: E402
from gantry_node.engine.pipeline import Engine, stage_deidentify  # noqa: E402
from gantry_node.io.durable import write_atomic  # noqa: E402
from gantry_node.offline.folder import process_file  # noqa: E402
from gantry_node.testing import make_ct_corpus  # noqa: E402


def run_tool(name: str, files: list[Path], out: Path, one: Callable[[Path, Path], None]) -> tuple[float, float]:
    """(instances per second of wall clock, instances per second of this process's CPU time)"""
    out.mkdir(parents=True, exist_ok=True)
    for path in files[:5]:  # warm caches and lazy imports
        one(path, out)
    start, start_cpu = time.perf_counter(), time.process_time()
    for path in files:
        one(path, out)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return len(files) / elapsed, len(files) / cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="keep the corpus and outputs in DIR")
    parser.add_argument("--src", type=Path, help="the tree whose gantry_node is measured (read before parsing)")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="gantry-bench-"))
    corpus = work / "corpus"
    t0 = time.perf_counter()
    files = make_ct_corpus(args.n, corpus, patients=args.patients)
    print(f"gantry_node from {Path(gantry_node.__file__).parent}")
    print(f"corpus: {len(files)} synthetic 512x512 16-bit CT in {time.perf_counter() - t0:.1f}s ({corpus})")

    engine = Engine(default_policy(), Keys(b"benchmark secret, not for production use"))
    tools: dict[str, Callable[[Path, Path], None]] = {}

    def baseline(path: Path, out: Path) -> None:
        ds = pydicom.dcmread(path)
        ds.save_as(out / path.name)

    def gantry(path: Path, out: Path) -> None:
        outcome, _ = process_file(path, engine, out)
        if outcome.status != "written":
            raise SystemExit(f"gantry-node did not write {path}: {outcome.detail}")

    def gantry_no_verify(path: Path, out: Path) -> None:
        from gantry_node.engine.pipeline import Work
        from gantry_node.io.part10 import encode_instance, read_instance

        work_item = Work(read_instance(path))
        stage_deidentify(work_item, engine)
        write_atomic(encode_instance(work_item.dataset), out / path.name, durable=False)

    tools["pydicom read+write (baseline)"] = baseline
    tools["gantry-node"] = gantry
    tools["gantry-node without verify"] = gantry_no_verify
    try:
        from dicognito.anonymizer import Anonymizer

        anonymizer = Anonymizer()

        def dicognito(path: Path, out: Path) -> None:
            ds = pydicom.dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(out / path.name)

        tools["dicognito"] = dicognito
    except ImportError:
        print("dicognito not installed: skipped")
    try:
        from dicomanonymizer import anonymize_dicom_file

        def dicom_anonymizer(path: Path, out: Path) -> None:
            anonymize_dicom_file(str(path), str(out / path.name))

        tools["dicom-anonymizer"] = dicom_anonymizer
    except ImportError:
        print("dicom-anonymizer not installed: skipped")

    rates, cpu_rates = {}, {}
    for name, fn in tools.items():
        rates[name], cpu_rates[name] = run_tool(name, files, work / "out" / name.split()[0], fn)
    base, ours = rates["pydicom read+write (baseline)"], rates["gantry-node"]
    cpu_base, cpu_ours = cpu_rates["pydicom read+write (baseline)"], cpu_rates["gantry-node"]
    print(f"\n{'tool':34} {'inst/s':>8} {'vs baseline':>12} {'vs gantry-node':>15}   {'CPU inst/s':>10} "
          f"{'vs baseline':>12}")
    for name, rate in rates.items():
        print(f"{name:34} {rate:8.1f} {rate / base:11.2f}x {rate / ours:14.2f}x   {cpu_rates[name]:10.1f} "
              f"{cpu_rates[name] / cpu_base:11.2f}x")
    print(f"\ngantry-node CPU per instance: {1000 / cpu_ours:.2f} ms; baseline {1000 / cpu_base:.2f} ms")
    print(f"\ntarget: >= 400 instances/s for gantry-node in one process: {'met' if ours >= 400 else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
