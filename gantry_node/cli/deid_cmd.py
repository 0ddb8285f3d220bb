"""`gantry-node deid IN_DIR OUT_DIR`: de-identify a folder offline with the node's engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.cli.policy_args import add_policy_and_secret, policy_and_keys
from gantry_node.engine.pipeline import Engine
from gantry_node.offline.folder import deidentify_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deid",
        help="de-identify a folder of DICOM files offline",
        description="De-identify every DICOM file under IN_DIR into OUT_DIR (laid out as "
        "STUDY/SERIES/INSTANCE.dcm by pseudonymous UIDs). Non-DICOM and unreadable files are "
        "reported and skipped; an instance that fails verification is not written. Invalid values "
        "(a malformed UID, a text too long for its VR) are listed on stderr by file and tag, "
        "never with the value. Exit status 1 if any instance failed.",
    )
    p.add_argument("in_dir", type=Path, metavar="IN_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    add_policy_and_secret(p)
    p.add_argument("--certificate", type=Path, action="append", metavar="CERT.pem",
                   help="seal the original identity to this recipient (PS3.15 E.1.2); repeatable")
    p.add_argument("--algorithm", choices=("aes256", "aes128"), default=None,
                   help="content encryption for sealing (default aes256)")
    p.add_argument("--pixels", type=Path, metavar="FILE",
                   help="burned-in pixel rules: a node config with a pixels: section, or a rules file "
                   "(default: the shipped library; unknown devices that may carry text are held back)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_pixel_stage(path: Path | None, keys=None):
    """The pixel stage is always on (fail closed); FILE only changes its rules. `keys` key the
    device names in its reasons."""
    from gantry_node.engine.pixels.config import PixelConfigError
    from gantry_node.engine.pixels.stage import make_pixel_stage
    from gantry_node.io.pixel_files import load_pixel_config

    try:
        return make_pixel_stage(load_pixel_config(path), keys)
    except (PixelConfigError, OSError) as exc:
        raise CommandError(str(exc)) from None


def load_sealer(certificates: list[Path] | None, algorithm: str | None):
    if algorithm and not certificates:
        raise CommandError("--algorithm needs --certificate")
    if not certificates:
        return None
    from gantry_node.engine.seal.config import SealingConfigError, parse_sealing_section

    reversible = {"algorithm": algorithm} if algorithm else None
    try:
        sealing = parse_sealing_section([str(c) for c in certificates], reversible, "--certificate")
    except SealingConfigError as exc:
        raise CommandError(str(exc)) from None
    return sealing.sealer() if sealing else None


def run(args: argparse.Namespace) -> int:
    policy, keys = policy_and_keys(args)
    sealer = load_sealer(args.certificate, args.algorithm)
    pixel_stage = load_pixel_stage(args.pixels, keys)
    if not args.in_dir.exists():
        raise CommandError(f"{args.in_dir} does not exist")
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(files):
            return tqdm(files, unit="file", desc="de-identifying", disable=None)

    try:
        engine = Engine(policy, keys, sealer=sealer, pixel_stage=pixel_stage)
        report = deidentify_folder(args.in_dir, args.out_dir, engine, progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(report.summary())
    print_problems(report.problem_lines())
    return 1 if report.failed else 0


def print_problems(lines: list[str]) -> None:
    """pydicom's complaints about input values, by file and tag, on stderr; never the value."""
    for line in lines:
        print(line, file=sys.stderr)
