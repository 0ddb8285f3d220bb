"""`gantry-node tail [--json]`: follow the audit trail (the store's append-only table)."""

from __future__ import annotations

import argparse
import json
import time

from gantry_node.cli.serve_cmd import add_config_option, config_from_args
from gantry_node.cli.status_cmd import open_existing_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="follow the audit trail (Ctrl-C to stop)")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print each event as one JSON line")
    p.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="start with the last N events (20)")
    p.add_argument("--no-follow", action="store_true", help="print and exit instead of following")
    p.set_defaults(func=run)


def format_event(row: dict, as_json: bool) -> str:
    fields = json.loads(row["fields"] or "{}")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["at"]))
    if as_json:
        return json.dumps({"id": row["id"], "timestamp": when, "event": row["event"], **fields}, sort_keys=True)
    detail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return f"{when} {row['event']:<22} {detail}"


def run(args: argparse.Namespace) -> int:
    store = open_existing_store(config_from_args(args))
    try:
        after = store.audit_last_id(back=max(0, args.lines)) if args.lines else store.audit_last_id()
        while True:
            rows = store.audit_since(after)
            for row in rows:
                print(format_event(row, args.json), flush=True)
                after = row["id"]
            if args.no_follow:
                return 0
            if not rows:
                time.sleep(0.5)
    finally:
        store.close()
