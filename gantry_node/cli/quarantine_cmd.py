"""`gantry-node quarantine list | show ID [--reveal] | release ID | purge ID`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.cli.serve_cmd import add_config_option, config_from_args
from gantry_node.cli.status_cmd import open_existing_store
from gantry_node.store import StoreError

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
    release = qs.add_parser("release", help="quarantined: run the pipeline again; forward_failed: retry delivery")
    release.add_argument("id", type=int)
    release.set_defaults(func=run_release)
    purge = qs.add_parser("purge", help="delete a held instance's raw file; it is never forwarded")
    purge.add_argument("id", type=int)
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


def run_release(args: argparse.Namespace) -> int:
    _, store = _store(args)
    try:
        state = store.release(args.id)
        from gantry_node.audit import Audit

        audit = Audit(store, None, stdout=False)
        audit.event("released", instance=args.id, state=state)
        audit.close()
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    what = "the pipeline runs again" if state == "received" else "delivery is retried"
    print(f"instance {args.id} released: {what} (a running node picks it up)")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    _, store = _store(args)
    try:
        row = store.get(args.id)
        if row is None:
            raise CommandError(f"no instance {args.id}")
        if row.state not in HELD:
            raise CommandError(f"instance {args.id} is {row.state}; only held instances can be purged")
        Path(row.raw_path).unlink(missing_ok=True)
        for path in store.clean_paths(args.id):
            Path(path).unlink(missing_ok=True)
        store.mark_raw_purged([args.id], state="purged")
        from gantry_node.audit import Audit

        audit = Audit(store, None, stdout=False)
        audit.event("purged", instance=args.id, reason="operator purge")
        audit.close()
    finally:
        store.close()
    print(f"instance {args.id} purged: raw file deleted, it will not be forwarded")
    return 0
