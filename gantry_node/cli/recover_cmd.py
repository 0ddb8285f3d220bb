"""`gantry-node recover FILE_OR_DIR --key KEY.pem [--cert CERT.pem] (--show | --out DIR)`:
re-identification by the honest broker (PS3.15 E.1.2). `--show` prints the original identity to
the terminal (that is its purpose; it is never logged); `--out` writes re-identified copies,
each one complete or not at all."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.engine.seal import (
    CertificateError,
    SealError,
    identity_summary,
    load_certificate,
    load_private_key,
    recover,
)
from gantry_node.io.durable import write_atomic
from gantry_node.io.part10 import BadInput, clean_path, encode_instance, read_instance


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recover",
        help="re-identify sealed instances with the honest broker's private key",
        description="Decrypt the Encrypted Attributes Sequence of each DICOM file under FILE_OR_DIR "
        "with the honest broker's RSA private key and either print the original identity (--show: "
        "PHI on this terminal, nowhere else) or write re-identified copies under DIR as "
        "STUDY/SERIES/INSTANCE.dcm by the original UIDs (--out). Instances sealed by gdcmanon are "
        "read too. Exit status 1 if any file could not be recovered (each failure is listed).",
    )
    p.add_argument("path", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--key", type=Path, required=True, metavar="KEY.pem", help="recipient RSA private key (PEM)")
    p.add_argument("--cert", type=Path, metavar="CERT.pem",
                   help="recipient certificate, to pick its recipient entry (optional: without it "
                   "every recipient entry is tried with the key)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--show", action="store_true", help="print the original identity of each instance")
    mode.add_argument("--out", type=Path, metavar="DIR", help="write re-identified copies under DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(args.key)
        cert = load_certificate(args.cert) if args.cert else None
    except CertificateError as exc:
        raise CommandError(str(exc)) from None
    if not args.path.exists():
        raise CommandError(f"{args.path} does not exist")
    single = args.path.is_file()
    files = [args.path] if single else sorted(p for p in args.path.rglob("*") if p.is_file())
    if args.out is not None and not single and _inside(args.out, args.path):
        raise CommandError(f"--out {args.out} is inside {args.path}; choose a directory outside it")
    done, failed, skipped = 0, [], []
    for path in files:
        try:
            ds = read_instance(path)
        except BadInput as exc:
            if single:
                raise CommandError(str(exc)) from None
            (skipped if exc.kind == "not-dicom" else failed).append(f"{path}: {exc.problem}")
            continue
        try:
            result = recover(ds, key, cert)
        except SealError as exc:
            if single:
                raise CommandError(f"{path}: {exc}") from None
            failed.append(f"{path}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 -- one line per file; a foreign message may quote PHI
            problem = f"{path}: cannot re-identify ({type(exc).__name__})"
            if single:
                raise CommandError(problem) from None
            failed.append(problem)
            continue
        if args.show:
            _show(path, result.dataset)
        else:
            target = clean_path(args.out, result.dataset)
            try:
                write_atomic(encode_instance(result.dataset), target, mode=0o600)
            except OSError as exc:
                problem = f"{path}: cannot write the re-identified copy: {exc.strerror or exc}"
                if single:
                    raise CommandError(problem) from None
                failed.append(problem)
                continue
            print(f"{path} -> {target}")
        done += 1
    if not single:
        _summary(done, failed, skipped, args.out)
    return 1 if failed else 0


def _show(path: Path, ds) -> None:
    print(f"{path}:")
    for label, value in identity_summary(ds):
        print(f"  {label}: {value}")


def _summary(done: int, failed: list[str], skipped: list[str], out: Path | None) -> None:
    what = f"wrote {done} re-identified instance(s) under {out}" if out is not None else f"recovered {done} instance(s)"
    print(f"{what}; {len(failed)} failed; {len(skipped)} non-DICOM file(s) skipped", file=sys.stderr)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False
