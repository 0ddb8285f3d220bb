"""Cost of appending audit rows (the store's `audit_append`, as the audit flush calls it).

    PYTHONPATH=. python scripts/bench_audit.py [--rows 20000] [--batch 1 16]

Prints microseconds per row for each batch size, on a fresh database in a temp dir (WAL,
synchronous=NORMAL, as the node runs). Run it on two checkouts to compare."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from gantry_node.node.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    fields = {"instance": 123456, "calling_ae": "MODALITY", "peer": "10.1.2.3", "outcome": "new"}
    for batch in args.batch:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "gantry.db")
            rows = [("received", 123456, fields, time.time())] * batch
            n = max(1, args.rows // batch)
            start = time.perf_counter()
            for _ in range(n):
                store.audit_append(rows)
            elapsed = time.perf_counter() - start
            store.close()
        print(f"batch {batch:>4}: {elapsed / (n * batch) * 1e6:8.1f} us/row ({n * batch} rows)")


if __name__ == "__main__":
    main()
