"""`gantry-node status`: counts per state, the oldest waiting instance, each destination's
last success and failure, each component of the running node (running, restarting (n),
failed, stopped) as its supervisor last wrote it, and the audit trail's head (row id and chain
hash)."""

from __future__ import annotations

import argparse
import json
import time

from gantry_node.cli import CommandError
from gantry_node.cli.serve_cmd import add_config_option, config_from_args
from gantry_node.node.store import Store
from gantry_node.node.supervise import STATUS_FILE, ComponentState, StatusFile


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show instance counts per state and each destination's health")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def open_existing_store(config) -> Store:
    if not config.db_path.exists():
        raise CommandError(f"no node state at {config.data_dir} (has `gantry-node serve` run with this config?)")
    return Store(config.db_path)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    store = open_existing_store(config)
    try:
        counts = store.counts()
        oldest = store.oldest_waiting()
        pending = store.pending_by_destination()
        seen = {d["name"]: d for d in store.destination_status()}
        head = store.audit_head()
    finally:
        store.close()
    dests = [{"name": d.name, "type": d.type, "pending": pending.get(d.name, 0),
              "last_success": _when(seen.get(d.name, {}).get("last_success_at")),
              "last_failure": _when(seen.get(d.name, {}).get("last_failure_at")),
              "last_error": seen.get(d.name, {}).get("last_error") or "-"}
             for d in config.effective_destinations()]
    node = _components(config)
    if args.json:
        print(json.dumps({"states": counts, "oldest_waiting": _when(oldest), "destinations": dests,
                          "node": node, "audit_head": head}, indent=2))
        return 0
    print("state            count")
    for state, n in counts.items():
        print(f"{state:<16} {n:>6}")
    waited = f" ({time.time() - oldest:.0f} s ago)" if oldest else ""
    print(f"oldest waiting:  {_when(oldest)}{waited}")
    print("destination      pending  last success          last failure          last error")
    for d in dests:
        print(f"{d['name']:<16} {d['pending']:>7}  {d['last_success']:<21} {d['last_failure']:<21} {d['last_error']}")
    print(f"node:            {node['state']}")
    if node["components"]:
        print("component        state                  since                 last error")
        for c in node["components"]:
            print(f"{c['name']:<16} {c['label']:<22} {_when(c['since']):<21} {c['last_error'] or '-'}")
    if head:
        print(f"audit head:      row {head['id']} ({_when(head['at'])}) {head['hash'] or '-'}")
    else:
        print("audit head:      - (no audit rows yet)")
    return 0


def _components(config) -> dict:
    """The node process and its components, from the supervisor's status file."""
    doc = StatusFile.read(config.data_dir / STATUS_FILE)
    if doc is None:
        return {"state": "not running (never started here)", "components": []}
    components = []
    for c in doc.get("components", []):
        state = ComponentState(**c)
        components.append({**c, "label": state.label() if doc["running"] else state.state})
    pid = doc.get("pid")
    return {"state": f"running (pid {pid})" if doc["running"] else "not running", "pid": pid,
            "components": components}
