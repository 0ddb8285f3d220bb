"""The hostile-input run at a small size (scripts/fuzz_scp.py): mutated data sets over real
associations, raw PDU mutations, slow and bare connections against a real node, with a canary
sender between cases. No crash, no hang, nothing acknowledged lost, nothing stuck."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_three_hundred_hostile_cases(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "fuzz_scp.py"), "-n", "300", "--seed", "14"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    summary = [line for line in run.stdout.splitlines() if line.startswith("crashes")]
    assert summary == ["crashes 0, hangs 0, acknowledged-but-lost 0, stuck 0"], run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0
