"""`gantry-node quarantine list | show ID [--reveal] | release|purge (ID... | --stage S | --state S | --all)
[--dry-run]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.cli.serve_cmd import add_config_option, config_from_args
from gantry_node.cli.status_cmd import open_existing_store
from gantry_node.node.store import StoreError

HELD = ("quarantined", "forward_failed")
REVEAL_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate",
                   "StudyDescription", "InstitutionName", "StudyInstanceUID", "SOPInstanceUID")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quarantine", help="list, inspect, release or purge held instances")
    add_config_option(p)
    qs = p.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    ls = qs.add_parser("list", help="instances held as quarantined or forward_failed, with their reasons")
    ls.set_defaults(func=run_list)
    show = qs.add_parser("show", help="one held instance: state, reason, deliveries (no PHI unless --reveal)")
    show.add_argument("id", type=int)
    show.add_argument("--reveal", action="store_true",
                      help="also print identifying values from the raw file (PHI: for authorised operators)")
    show.set_defaults(func=run_show)
    release = qs.add_parser("release", help="quarantined: run the pipeline again; forward_failed: retry delivery",
                            description="Release held instances: the IDs given, or every held one that matches "
                            "--stage/--state, or --all.")
    purge = qs.add_parser("purge", help="delete held instances' raw files; they are never forwarded",
                          description="Purge held instances (raw and clean files deleted, never forwarded): "
                          "the IDs given, or every held one that matches --stage/--state, or --all.")
    for parser in (release, purge):
        parser.add_argument("ids", type=int, nargs="*", metavar="ID", help="instance ids (from `quarantine list`)")
        parser.add_argument("--stage", help="every held instance quarantined at this stage (read, deid, pixels, "
                            "verify, forward, ...)")
        parser.add_argument("--state", choices=HELD, help="every instance held in this state")
        parser.add_argument("--all", action="store_true", help="every held instance")
        parser.add_argument("--dry-run", "-n", action="store_true", help="print what would be done, change nothing")
    release.set_defaults(func=run_release)
    purge.set_defaults(func=run_purge)
    for parser in (ls, show, release, purge):
        add_config_option(parser)


def _store(args):
    return config_from_args(args), open_existing_store(config_from_args(args))


def run_list(args: argparse.Namespace) -> int:
    _, store = _store(args)
    try:
        rows = store.list_state(*HELD)
    finally:
        store.close()
    if not rows:
        print("nothing held")
        return 0
    print(f"{'id':>6}  {'state':<15} {'since':<20} {'stage':<10} reason")
    for r in rows:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.updated_at))
        print(f"{r.id:>6}  {r.state:<15} {since:<20} {r.stage or '-':<10} {r.reason or '-'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    _, store = _store(args)
    try:
        row = store.get(args.id)
        deliveries = store.deliveries_of(args.id) if row else []
    finally:
        store.close()
    if row is None:
        raise CommandError(f"no instance {args.id}")
    print(f"instance:      {row.id}")
    print(f"state:         {row.state}")
    print(f"stage:         {row.stage or '-'}")
    print(f"reason:        {row.reason or '-'}")
    print(f"received:      {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(row.received_at))} from {row.calling_ae}")
    print(f"sop class:     {row.sop_class}")
    print(f"clean uid:     {row.clean_uid or '-'}")
    print(f"raw file:      {'purged' if row.raw_purged else 'held'}")
    for d in deliveries:
        error = d["last_error"] or ""
        print(f"delivery:      {d['destination']}: {d['state']} after {d['attempts']} attempt(s); {error}")
    if args.reveal:
        _reveal(row)
    return 0


def _reveal(row) -> None:
    import pydicom

    if row.raw_purged or not Path(row.raw_path).is_file():
        print("identifying values: raw file no longer held")
        return
    try:
        ds = pydicom.dcmread(row.raw_path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001
        print(f"identifying values: cannot read raw file ({type(exc).__name__})")
        return
    print("identifying values (PHI):")
    for kw in REVEAL_KEYWORDS:
        print(f"  {kw}: {ds.get(kw, '-')}")


def _targets(args: argparse.Namespace, store) -> list:
    """The held instances a release/purge applies to: the IDs given, or a filter."""
    filtered = args.all or args.stage or args.state
    if args.ids and filtered:
        raise CommandError("give instance IDs or a filter (--stage, --state, --all), not both")
    if not args.ids and not filtered:
        raise CommandError("give one or more instance IDs, or a filter: --stage STAGE, --state STATE or --all")
    if args.ids:
        rows = []
        for instance_id in dict.fromkeys(args.ids):
            row = store.get(instance_id)
            if row is None:
                raise CommandError(f"no instance {instance_id}")
            rows.append(row)
        return rows
    return [r for r in store.list_state(*((args.state,) if args.state else HELD), limit=-1)
            if args.stage is None or r.stage == args.stage]


def run_release(args: argparse.Namespace) -> int:
    from gantry_node.node.audit_log import Audit

    _, store = _store(args)
    audit = None
    failed = 0
    try:
        rows = _targets(args, store)
        if not rows:
            print("nothing matches")
            return 0
        if not args.dry_run:
            audit = Audit(store, None, stdout=False)
        for row in rows:
            if args.dry_run:
                ok = row.state in HELD and not (row.state == "quarantined" and row.raw_purged)
                what = "would release" if ok else f"cannot release ({row.state})"
                print(f"instance {row.id}: {what}, {row.state} at {row.stage or '-'}")
                failed += not ok
                continue
            try:
                state = store.release(row.id)
            except StoreError as exc:
                print(f"instance {row.id}: not released: {exc}", file=sys.stderr)
                failed += 1
                continue
            audit.event("released", instance=row.id, state=state)
            what = "the pipeline runs again" if state == "received" else "delivery is retried"
            print(f"instance {row.id} released: {what}")
    finally:
        if audit is not None:
            audit.close()
        store.close()
    if not args.dry_run and len(rows) > failed:
        print(f"{len(rows) - failed} released (a running node picks them up)")
    return 1 if failed else 0


def run_purge(args: argparse.Namespace) -> int:
    from gantry_node.node.audit_log import Audit

    _, store = _store(args)
    audit = None
    failed = 0
    try:
        rows = _targets(args, store)
        if not rows:
            print("nothing matches")
            return 0
        if not args.dry_run:
            audit = Audit(store, None, stdout=False)
        for row in rows:
            if row.state not in HELD:
                print(f"instance {row.id}: not purged: it is {row.state}; only held instances can be purged",
                      file=sys.stderr)
                failed += 1
                continue
            if args.dry_run:
                print(f"instance {row.id}: would purge, {row.state} at {row.stage or '-'}")
                continue
            Path(row.raw_path).unlink(missing_ok=True)
            for path in store.clean_paths(row.id):
                Path(path).unlink(missing_ok=True)
            store.mark_raw_purged([row.id], state="purged")
            audit.event("purged", instance=row.id, reason="operator purge")
            print(f"instance {row.id} purged: raw file deleted, it will not be forwarded")
    finally:
        if audit is not None:
            audit.close()
        store.close()
    return 1 if failed else 0
