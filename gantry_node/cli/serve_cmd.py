"""`gantry-node serve [--config node.yaml]`: run the node until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.config import ConfigError, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, metavar="FILE",
                        help="the node's YAML configuration (default: embedded defaults, data in ./gantry-data)")


def config_from_args(args: argparse.Namespace):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the DICOM node (C-STORE SCP, de-identifying workers, forwarders)",
                       description="Receive instances over DICOM, de-identify them and forward the verified-clean "
                       "ones. Without --config it listens on 0.0.0.0:11112 as GANTRY, keeps its state in "
                       "./gantry-data and delivers to ./gantry-data/export.")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gantry_node.audit import quiet_library_warnings
    from gantry_node.node import Node

    quiet_library_warnings()
    config = config_from_args(args)
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
    try:
        node.start()
    except OSError as exc:
        node.stop()
        where = f"{config.node.bind}:{config.node.port}"
        raise CommandError(f"node.port: cannot listen on {where}: {exc.strerror}") from None
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
