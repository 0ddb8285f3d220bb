"""`gantry-node keys init DIR`: an RSA key pair and self-signed certificate for trying out
reversible de-identification (PS3.15 E.1.2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.engine.seal import BROKER_REMINDER, CertificateError, init_keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="key pair for reversible de-identification (honest broker)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = ks.add_parser(
        "init",
        help="write an RSA-3072 private key (mode 0600) and a self-signed certificate into DIR",
        description="Write honest-broker-key.pem (RSA 3072, mode 0600) and honest-broker-cert.pem "
        "(self-signed, valid for --days) into DIR, for trying out reversible de-identification. "
        "The node needs only the certificate (certificates: in its config); the private key "
        "re-identifies and belongs to the honest broker. Refuses to write into the node's data "
        "directory or over existing files.",
    )
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--days", type=int, default=365, help="certificate validity in days (default 365)")
    init.add_argument("--name", default="gantry-node honest broker (test)",
                      help="certificate subject common name")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise CommandError("--days must be at least 1")
    try:
        key_path, cert_path = init_keys(args.dir, args.name, args.days)
    except CertificateError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{args.dir}: cannot write the key pair: {exc.strerror or exc}") from None
    print(f"wrote private key {key_path} (mode 0600)")
    print(f"wrote certificate {cert_path} (give this one to the node: certificates: [{cert_path}])")
    print(f"reminder: {BROKER_REMINDER}")
    return 0
