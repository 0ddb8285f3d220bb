"""`gantry-node audit PATH`: what the policy would change in each file, and kept text that
looks identifying (a dry run; nothing is written)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.cli.deid_cmd import print_problems
from gantry_node.cli.policy_args import add_policy_and_secret, policy_and_keys
from gantry_node.engine.deid import findings_dataframe, findings_table, scan
from gantry_node.engine.library_warnings import instance_problems
from gantry_node.io.part10 import BadInput, read_instance
from gantry_node.offline.folder import iter_files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="show what the policy would change (dry run)",
        description="For each DICOM file under PATH, list every attribute the policy would change "
        "(path, tag, VR, reason, action) and kept free text that holds the patient's identity or "
        "looks like PHI. Values are not shown unless --reveal is given. Invalid values are listed "
        "on stderr by file and tag, never with the value (not even with --reveal). Nothing is written.",
    )
    p.add_argument("path", type=Path, metavar="PATH", help="a file or a folder")
    add_policy_and_secret(p)
    p.add_argument("--reveal", action="store_true", help="also show the values (PHI!) on the terminal")
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write all findings to a CSV file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policy, keys = policy_and_keys(args)
    if not args.path.exists():
        raise CommandError(f"{args.path} does not exist")
    frames = []
    for path in iter_files(args.path):
        with instance_problems(path) as problems:
            try:
                findings = scan(read_instance(path), policy, keys)
            except BadInput as exc:
                findings = None
                print(f"== {path}: skipped: {exc.problem}\n")
        print_problems([f"{path}: {p}" for p in problems])
        if findings is None:
            continue
        print(f"== {path}: {len(findings)} findings")
        print(findings_table(findings, reveal=args.reveal) + "\n")
        if args.csv:
            df = findings_dataframe(findings, reveal=args.reveal)
            df.insert(0, "file", str(path))
            frames.append(df)
    if args.csv and frames:
        import pandas as pd

        pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0
