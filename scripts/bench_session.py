#!/usr/bin/env python3
"""Benchmark: the Session workflow over N synthetic CT instances, against dicognito and deid.

Writes N synthetic CT instances (planted PHI, several patients, ROWSxROWS 16-bit), then times
the Session's steps over them, each in its own fresh measurement:

    import_folder -> scan_for_phi -> apply_remediation -> audit -> export(safe=True)
    -> export_dataframe -> export_to_parquet

and, in the same run over the same folder, dicognito (read, anonymize, write each file; one
process) and pydicom's deid (its default recipe, `replace_identifiers` with save) for the ratio
of apply_remediation to each. Prints instances/s per step and the peak
RSS of this process and of its children (the process pool).

    python scripts/bench_session.py [-n 5000] [--rows 256] [--patients 20] [--workers N] [--keep DIR]
    python scripts/bench_session.py -n 100000 --rows 16 --table-only   # the DataFrame/Parquet path
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gantry_node.offline.session import Session  # noqa: E402
from gantry_node.testing import make_ct_corpus  # noqa: E402


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def timed(label: str, n: int, fn):
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<22} {n / elapsed:9.1f} instances/s  ({elapsed:6.1f} s; peak RSS "
          f"{peak_mb(resource.RUSAGE_SELF):6.0f} MB, children {peak_mb(resource.RUSAGE_CHILDREN):6.0f} MB)", flush=True)
    return result, n / elapsed


def dicognito_rate(files: list[Path], out: Path) -> float | None:
    try:
        from dicognito.anonymizer import Anonymizer
    except ImportError:
        print("dicognito not installed (pip install -e .[bench]): skipped")
        return None
    out.mkdir(parents=True, exist_ok=True)
    anonymizer = Anonymizer()

    def run() -> None:
        for path in files:
            ds = pydicom.dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(out / path.name)

    _, rate = timed("dicognito", len(files), run)
    return rate


def deid_rate(files: list[Path], out: Path) -> float | None:
    try:
        from deid.config import DeidRecipe
        from deid.dicom import replace_identifiers
    except ImportError:
        print("deid not installed (pip install -e .[bench]): skipped")
        return None
    out.mkdir(parents=True, exist_ok=True)
    recipe = DeidRecipe()  # its default recipe (deid.dicom)

    def run() -> None:
        replace_identifiers(dicom_files=[str(p) for p in files], deid=recipe, save=True, output_folder=str(out),
                            overwrite=True)

    _, rate = timed("deid (pydicom/deid)", len(files), run)
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--n", type=int, default=5000, dest="n")
    parser.add_argument("--rows", type=int, default=256, help="image size (rows = columns)")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--table-only", action="store_true", help="only import, DataFrame and Parquet")
    parser.add_argument("--keep", type=Path, help="keep the corpus and outputs in DIR")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="gantry-bench-session-"))
    corpus = work / "corpus"
    t0 = time.perf_counter()
    files = make_ct_corpus(args.n, corpus, patients=args.patients, rows=args.rows, columns=args.rows)
    print(f"corpus: {len(files)} synthetic {args.rows}x{args.rows} 16-bit CT with planted PHI in "
          f"{time.perf_counter() - t0:.1f}s ({corpus}); {os.cpu_count()} cores", flush=True)
    secret = work / "secret"
    secret.write_bytes(b"bench-secret-0123456789abcdef-not-for-production")
    n = len(files)
    try:
        with Session(work / "gantry.db", secret_file=secret) as s:
            timed("import_folder", n, lambda: s.import_folder(corpus, progress=False, workers=args.workers))
            rates = {}
            if not args.table_only:
                timed("scan_for_phi", n, lambda: s.scan_for_phi(progress=False, workers=args.workers))
                _, rates["anonymize"] = timed("apply_remediation", n, lambda: s.apply_remediation(
                    progress=False, workers=args.workers))
                timed("audit", n, lambda: s.audit(progress=False))
                report, _ = timed("export (safe)", n, lambda: s.export(work / "clean", progress=False))
                assert len(report.written) == n, report.summary()
            # Parquet first: its peak RSS is the streaming one (ru_maxrss never goes down)
            timed("export_to_parquet", n, lambda: s.export_to_parquet(work / "cohort.parquet"))
            timed("export_dataframe", n, lambda: s.export_dataframe())
        if not args.table_only:
            theirs = dicognito_rate(files, work / "dicognito")
            if theirs:
                print(f"apply_remediation / dicognito: {rates['anonymize'] / theirs:.2f}x "
                      "(Session: strict read, de-identify, encode, write, across processes; dicognito: one process)")
            theirs = deid_rate(files, work / "deid")
            if theirs:
                print(f"apply_remediation / deid: {rates['anonymize'] / theirs:.2f}x (deid: one process)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # the benchmark's own temporary folder
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
