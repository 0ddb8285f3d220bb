"""DICOM TLS (PS3.15 B.1, the secure transport connection profiles): SSL contexts from the
`node.tls` and `destinations[].tls` settings.

Both are built once at start while the configuration is validated (so a missing file, a key
that does not match its certificate or an unreadable CA bundle refuses to start, naming the
key), and again in the process that uses them (an SSLContext does not cross a process
boundary). Only the standard library's ssl module: pynetdicom takes the contexts as they are.
"""

from __future__ import annotations

import os
import ssl

from gantry_node.node.config import ClientTls, ServerTls

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsSettingsError(ValueError):
    """A TLS setting that cannot be used; the message names the key."""


def _readable(path: str, key: str) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise TlsSettingsError(f"{key}: no readable file {path}")


def _load_chain(ctx: ssl.SSLContext, certificate: str, key: str, where: str) -> None:
    _readable(certificate, f"{where}.certificate")
    _readable(key, f"{where}.key")
    try:
        ctx.load_cert_chain(certificate, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSettingsError(f"{where}.certificate/key: cannot load the certificate and key "
                               f"(PEM, and the key must match the certificate): {_short(exc)}") from None


def _load_cas(ctx: ssl.SSLContext, ca_bundle: str, where: str) -> None:
    _readable(ca_bundle, f"{where}.ca_bundle")
    try:
        ctx.load_verify_locations(cafile=ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSettingsError(f"{where}.ca_bundle: cannot load the CA certificates: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__


def server_context(tls: ServerTls, where: str = "node.tls") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = VERSIONS[tls.min_version]
    _load_chain(ctx, tls.certificate, tls.key, where)
    if tls.ca_bundle:
        _load_cas(ctx, tls.ca_bundle, where)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else (
        ssl.CERT_OPTIONAL if tls.ca_bundle else ssl.CERT_NONE)
    return ctx


def client_context(tls: ClientTls, where: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = VERSIONS[tls.min_version]
    ctx.check_hostname = tls.verify_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.ca_bundle:
        _load_cas(ctx, tls.ca_bundle, where)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.certificate and tls.key:
        _load_chain(ctx, tls.certificate, tls.key, where)
    return ctx
