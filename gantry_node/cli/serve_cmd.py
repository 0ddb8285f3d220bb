"""`gantry-node serve [--config node.yaml]`: run the node until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.node.config import ConfigError, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, metavar="FILE",
                        help="the node's YAML configuration (default: embedded defaults, data in ./gantry-data)")


def config_from_args(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def check_secret_mode(path: Path) -> None:
    """Refuse a site secret that group or others can read or write: whoever reads it can
    recompute every pseudonym (and so link them back to the original IDs)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return  # created 0600 on first start, or reported as missing by the node
    except OSError as exc:
        raise CommandError(f"secret_file: {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise CommandError(f"secret_file: {path} is open to group or others (mode {mode:04o}); "
                           f"make it private to the node's user: chmod 600 {path}")


def _report_self_check(node) -> None:
    """Say once, at start, what the pixel stage is missing and what it will hold; audited."""
    from gantry_node.node.selfcheck import self_check

    findings = self_check(node.config)
    for f in findings:
        print(f"gantry-node: self-check: {f.message()}", file=sys.stderr, flush=True)
        node.audit.event("self_check", level="warning", reason=f.message())
    if not findings:
        node.audit.event("self_check", count=0, reason="OCR and every pixel decoder available")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the DICOM node (C-STORE SCP, de-identifying workers, forwarders)",
                       description="Receive instances over DICOM, de-identify them and forward the verified-clean "
                       "ones. Without --config it listens on 0.0.0.0:11112 as GANTRY, keeps its state in "
                       "./gantry-data and delivers to ./gantry-data/export.")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gantry_node.node.app import Node
    from gantry_node.node.audit_log import quiet_library_warnings

    quiet_library_warnings()
    # The index, its WAL, the audit log and the inbox are created 0600/0700 explicitly. For the
    # rest (outbox and export sub-folders) nothing is ever open to others, whatever umask the
    # node was started with; group read stays possible where a destination wants it (export
    # files are 0640). A stricter umask (systemd's UMask=0077) is kept. Children inherit it.
    current = os.umask(0o027)
    os.umask(current | 0o027)
    config = config_from_args(args)
    check_secret_mode(config.secret_path)
    try:
        node = Node(config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if node.secret_created:
        print(f"created a new site secret at {config.secret_path} (mode 0600); back it up: "
              "the same secret gives the same pseudonyms", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _report_self_check(node)
    from gantry_node.node.metrics import start_metrics

    try:
        metrics = start_metrics(node)
    except OSError as exc:
        node.stop()
        where = f"{config.node.metrics_bind}:{config.node.metrics_port}"
        raise CommandError(f"node.metrics_port: cannot listen on {where}: {exc.strerror}") from None
    try:
        node.start()
    except OSError as exc:
        node.stop()
        if metrics is not None:
            metrics.stop()
        where = f"{config.node.bind}:{config.node.port}"
        raise CommandError(f"node.port: cannot listen on {where}: {exc.strerror}") from None
    if metrics is not None:  # a daemon thread: it ends with the process, after the node has stopped
        print(f"gantry-node metrics on http://{config.node.metrics_bind}:{config.node.metrics_port}/metrics",
              file=sys.stderr, flush=True)
    print(f"gantry-node listening on {config.node.bind}:{config.node.port} as {config.node.ae_title}; "
          f"data in {config.data_dir}", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        if not node.healthy():
            failed = ", ".join(node.failed_components()) or "a component"
            print(f"gantry-node: {failed} failed; stopping (acknowledged instances are safe)",
                  file=sys.stderr, flush=True)
            node.stop(reason=f"{failed} failed")
            return 1
    node.stop()
    return 0
