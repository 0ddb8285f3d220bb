"""`gantry-node audit-trail verify [--head HASH]`: re-check the audit table's hash chain.

(`gantry-node audit` is the offline PHI dry run; this is the node's audit trail.)"""

from __future__ import annotations

import argparse
import time

from gantry_node.cli.serve_cmd import add_config_option, config_from_args
from gantry_node.cli.status_cmd import open_existing_store

BROKEN = 1  # exit status when the chain is broken or the given head is not in it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit-trail", help="check the node's tamper-evident audit trail")
    add_config_option(p)
    acts = p.add_subparsers(dest="audit_trail_command", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="re-check every row's hash chain; names the first broken row (exit 1)",
                        description="Walk the audit table in id order and recompute each row's SHA-256 chain "
                        "hash (the README gives the encoding). Exit 0 when intact, 1 at the first broken row.")
    add_config_option(v)
    v.add_argument("--head", metavar="HASH",
                   help="a head hash noted earlier (from `status`): also fail unless it is still in the chain")
    v.set_defaults(func=run_verify)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t is not None else "-"


def run_verify(args: argparse.Namespace) -> int:
    store = open_existing_store(config_from_args(args))
    try:
        check = store.audit_verify(head=args.head)
    finally:
        store.close()
    if check.broken_id is not None:
        print(f"audit trail broken at row {check.broken_id} ({_when(check.broken_at)}): {check.problem}; "
              f"{check.rows} row(s) before it are intact")
        return BROKEN
    if check.head_found is False:
        print(f"audit trail: head {args.head} is not in the chain (rows removed from the end?); "
              f"{check.rows} row(s) intact up to row {check.head_id}")
        return BROKEN
    print(f"audit trail intact: {check.rows} row(s); head row {check.head_id} ({_when(check.head_at)}) "
          f"{check.head_hash}")
    return 0
