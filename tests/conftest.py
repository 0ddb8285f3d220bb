"""Shared fixtures. Area-specific helpers live in tests/support/<area>.py and are imported
explicitly by the tests that use them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gantry_node.engine.deid import Keys, default_policy

REPO = Path(__file__).resolve().parent.parent

# pynetdicom installs its own storescu/storescp/echoscu scripts next to the interpreter; the
# tests talk to dcmtk's. Keep the interpreter's bin directory last on PATH.
_python_bin = str(Path(sys.executable).parent)
os.environ["PATH"] = os.pathsep.join(
    [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != _python_bin] + [_python_bin])
SECRET = b"test-secret-0123456789abcdef-not-for-production"


@pytest.fixture
def keys() -> Keys:
    return Keys(SECRET)


@pytest.fixture
def policy():
    return default_policy()


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TCP_NODELAY"] = "1"
    return env


@pytest.fixture
def run_cli():
    """Run `gantry-node ARGS...` as a separate process from this checkout."""

    def run(*args: str, check: bool = False, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "gantry_node", *map(str, args)],
            capture_output=True, text=True, env=cli_env(), timeout=timeout, **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gantry-node {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
