#!/usr/bin/env python3
"""Benchmark: CPU cost per instance of the node's worker, against pydicom in the same run.

Builds N bench CT instances (512x512 16-bit, scripts/bench_node.py make_corpus), then, in this
one process, alternating for --repeat rounds:

- baseline: pydicom dcmread + dcmwrite to a BytesIO (no change; the floor of any pydicom tool)
- worker: gantry_node.node.worker.process_file (strict read, de-identify, seal (off), pixels, encode,
  verify, write to a fresh outbox), with the engine the node builds from its default config

Prints the median ms/instance of each and the ratio worker / baseline.

    python scripts/bench_worker.py [-n 500] [--repeat 5] [--src DIR]

--src runs another tree's gantry_node (e.g. --src /work/main for a before/after comparison).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="bench CT instances (default 500)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each measurement (default 5)")
    parser.add_argument("--src", type=Path, default=REPO, help="the tree whose gantry_node is measured")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src.resolve()))
    sys.path.insert(0, str(REPO / "scripts"))

    import pydicom
    import yaml
    from bench_node import make_corpus

    import gantry_node
    from gantry_node.node import worker
    from gantry_node.node.config import build_engines, load_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    try:
        make_corpus(tmp / "corpus", args.n, 512)
        files = sorted(str(p) for p in (tmp / "corpus").iterdir())
        (tmp / "secret").write_text("bench-worker-secret-0123456789abcdef\n")
        config = tmp / "node.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(tmp / "data"), "secret_file": str(tmp / "secret"), "logging": {"stdout": False},
            "destinations": [{"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": 104}]}))
        worker._ENGINES.update(build_engines(load_config(config)))

        def baseline() -> None:
            for path in files:
                buffer = BytesIO()
                pydicom.dcmwrite(buffer, pydicom.dcmread(path), enforce_file_format=True)

        def process(outbox: Path) -> None:
            for i, path in enumerate(files):
                outcome = worker.process_file(i, path, str(outbox), ("research",))
                if not outcome.clean:
                    raise SystemExit(f"instance {i} was quarantined: {outcome.reason}")

        for path in files[:20]:  # lazy imports, caches
            worker.process_file(0, path, str(tmp / "warm"), ("research",))
        wall: dict[str, list[float]] = {"baseline": [], "worker": []}
        cpu: dict[str, list[float]] = {"baseline": [], "worker": []}

        def timed(name: str, fn, *fn_args) -> None:
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(*fn_args)
            wall[name].append((time.perf_counter() - start) * 1000 / len(files))
            cpu[name].append((time.process_time() - start_cpu) * 1000 / len(files))

        for round_ in range(args.repeat):
            timed("baseline", baseline)
            outbox = tmp / f"outbox-{round_}"
            timed("worker", process, outbox)
            shutil.rmtree(outbox)
        print(f"gantry_node from {Path(gantry_node.__file__).parent}; {len(files)} CT instances 512x512x16, "
              f"median of {args.repeat} rounds (wall clock; CPU time of this process)")
        for name, label in (("baseline", "pydicom dcmread+dcmwrite (BytesIO)"), ("worker", "worker process_file")):
            print(f"  {label:36s} {statistics.median(wall[name]):6.2f} ms/instance   CPU "
                  f"{statistics.median(cpu[name]):6.2f}   (rounds: {', '.join(f'{t:.2f}' for t in wall[name])})")
        ratio = statistics.median(wall["worker"]) / statistics.median(wall["baseline"])
        ratio_cpu = statistics.median(cpu["worker"]) / statistics.median(cpu["baseline"])
        print(f"  ratio worker / baseline:             {ratio:6.2f}               CPU {ratio_cpu:6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
