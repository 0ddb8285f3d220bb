"""`gantry-node rules ...`: import CTP scripts, scaffold rules from a folder, preview regions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.engine.pixels.expr import RuleError


def register(subparsers) -> None:
    parser = subparsers.add_parser("rules", help="burned-in pixel rules: import from CTP, scaffold, preview")
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    imp = sub.add_parser("import-ctp", help="convert a CTP DicomPixelAnonymizer.script (or, with --filter, "
                                            "a BurnedInPixelsFilter.script) into gantry-node YAML rules")
    imp.add_argument("file", type=Path, help="the CTP script")
    imp.add_argument("--out", type=Path, help="write YAML here (default: standard output)")
    imp.add_argument("--filter", action="store_true",
                     help="the file is a DicomFilter script; write it as the may_carry_text heuristic")
    imp.set_defaults(func=run_import)

    scaffold = sub.add_parser("scaffold", help="one rule entry per device found in a folder, ready to fill in")
    scaffold.add_argument("dir", type=Path, help="folder of DICOM files (searched recursively)")
    scaffold.add_argument("--out", type=Path, help="write YAML here (default: standard output)")
    scaffold.add_argument("--secret-file", type=Path, metavar="FILE",
                          help="the node's site secret (or set GANTRY_SECRET_FILE): print each device's key "
                          "(d-...), as the node's quarantine reasons name it")
    scaffold.set_defaults(func=run_scaffold)

    preview = sub.add_parser("preview", help="one PNG per rule with its regions drawn over a sample image")
    preview.add_argument("config", type=Path, help="YAML config (a pixels: section or a rules: list)")
    preview.add_argument("--out", type=Path, default=Path("rules-preview"), help="output folder")
    preview.add_argument("--sample", type=Path, help="folder of DICOM files to find sample images in")
    preview.set_defaults(func=run_preview)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    from gantry_node.io.durable import write_atomic

    write_atomic(text.encode("utf-8"), out)
    print(f"wrote {out}", file=sys.stderr)


def run_import(args: argparse.Namespace) -> int:
    from gantry_node.io.pixel_files import import_ctp

    try:
        text, count = import_ctp(args.file, as_filter=args.filter)
    except OSError as exc:
        raise CommandError(f"{args.file}: cannot read: {exc.strerror}") from None
    except RuleError as exc:
        raise CommandError(f"{args.file}: {exc}") from None
    _write(text, args.out)
    print(f"converted {count} signature(s)" if not args.filter else "converted the filter expression",
          file=sys.stderr)
    return 0


def run_scaffold(args: argparse.Namespace) -> int:
    from gantry_node.io.pixel_files import scaffold_config

    if not args.dir.is_dir():
        raise CommandError(f"{args.dir}: not a folder")
    text, devices = scaffold_config(args.dir, _keys(args.secret_file))
    _write(text, args.out)
    print(f"{devices} device(s)", file=sys.stderr)
    return 0


def _keys(path: Path | None):
    import os

    from gantry_node.cli.policy_args import SECRET_ENV
    from gantry_node.engine.deid import SecretError
    from gantry_node.io.settings import load_keys

    path = path or (Path(os.environ[SECRET_ENV]) if os.environ.get(SECRET_ENV) else None)
    if path is None:
        return None
    try:
        return load_keys(path)
    except SecretError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror}") from None


def run_preview(args: argparse.Namespace) -> int:
    from gantry_node.engine.pixels.config import PixelConfigError
    from gantry_node.io.pixel_files import preview_rules

    try:
        written = preview_rules(args.config, args.out, args.sample)
    except (PixelConfigError, RuleError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{exc.filename or args.config}: {exc.strerror}") from None
    for path in written:
        print(path)
    if not written:
        print("no rule matched any sample image; nothing drawn", file=sys.stderr)
    return 0
