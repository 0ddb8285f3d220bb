"""The node's one configuration file (YAML), validated completely at start.

Every key has a default, so no file at all is a working configuration: listen on 11112 as
GANTRY, keep state in ./gantry-data, create a secret there on first start, and deliver to a
folder (./gantry-data/export) until a DICOM destination is configured. Each error names the
key it is about ("node.port: expected an integer 1-65535"). `SCHEMA_KEYS` lists every key;
a test checks each one is documented.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantry_node.engine.deid import Policy, PolicyError, default_policy, policy_from_mapping
from gantry_node.io.settings import load_keys
from gantry_node.io.yamlfile import read_yaml

DEFAULT_DATA_DIR = Path("gantry-data")
# destinations[].decompress: which compressed instances may be sent decompressed (Explicit VR
# Little Endian) to a destination that does not accept their transfer syntax (as dcmsend's
# --decompress-never / --decompress-lossless / --decompress-lossy)
DECOMPRESS = ("never", "lossless", "always")

# Every key of the file, dotted; destinations[] keys apply to each list item.
SCHEMA_KEYS = (
    "node", "node.ae_title", "node.bind", "node.port", "node.max_pdu", "node.max_associations",
    "node.allowed_calling_aets", "node.allowed_addresses", "node.network_timeout", "node.tcp_nodelay",
    "node.artim_timeout", "node.max_connections_per_address", "node.max_associations_per_calling_ae",
    "node.max_instance_size", "node.receivers",
    "node.tls", "node.tls.certificate", "node.tls.key", "node.tls.ca_bundle",
    "node.tls.require_client_certificate", "node.tls.min_version", "node.tls.port",
    # observability (issue 14): the Prometheus page
    "node.metrics_port", "node.metrics_bind",
    "destinations", "destinations[].name", "destinations[].type", "destinations[].ae_title",
    "destinations[].host", "destinations[].port", "destinations[].path", "destinations[].policy",
    "destinations[].max_attempts", "destinations[].backoff_initial", "destinations[].backoff_max",
    "destinations[].timeout", "destinations[].max_pdu", "destinations[].decompress", "destinations[].associations",
    "destinations[].tls", "destinations[].tls.ca_bundle", "destinations[].tls.certificate",
    "destinations[].tls.key", "destinations[].tls.min_version", "destinations[].tls.verify_hostname",
    "policy", "secret_file", "certificates", "reversible", "reversible.algorithm", "pixels",
    "workers", "workers.processes", "workers.batch",
    "retention", "retention.raw",
    "logging", "logging.file", "logging.stdout",
    "data_dir",
)

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, 1-16 chars


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class ServerTls:
    """node.tls: the SCP's certificate and key, and which clients it accepts."""

    certificate: str
    key: str
    ca_bundle: str | None = None  # CAs a client certificate must chain to
    require_client_certificate: bool = False
    min_version: str = "1.2"
    port: int | None = None  # None: node.port speaks TLS only; else a TLS listener beside the plain one


@dataclass(frozen=True)
class ClientTls:
    """destinations[].tls: how the SCU checks the destination, and its own certificate."""

    ca_bundle: str | None = None  # None: the system's trusted CAs
    certificate: str | None = None
    key: str | None = None
    min_version: str = "1.2"
    verify_hostname: bool = True


@dataclass(frozen=True)
class NodeSettings:
    ae_title: str = "GANTRY"
    bind: str = "0.0.0.0"  # all interfaces: what a PACS administrator expects of a DICOM node
    port: int = 11112
    max_pdu: int = 262144
    max_associations: int = 10
    allowed_calling_aets: tuple[str, ...] = ()  # empty: any calling AE title
    allowed_addresses: tuple[str, ...] = ()  # empty: any source; else addresses or networks (CIDR)
    network_timeout: float = 60.0  # also the longest one PDU may take to arrive
    tcp_nodelay: bool = True
    artim_timeout: float = 5.0  # PS3.8 ARTIM: from connect to a complete A-ASSOCIATE-RQ (and TLS handshake)
    max_connections_per_address: int | None = None  # None: no limit per source address
    max_associations_per_calling_ae: int | None = None  # None: no limit per calling AE title
    max_instance_size: int = 4 * 1024**3  # bytes of one received data set; larger ones are refused (0xA700)
    receivers: int = 1  # C-STORE SCP processes on node.port (SO_REUSEPORT), each its own pynetdicom AE
    tls: ServerTls | None = None
    # observability (issue 14): Prometheus metrics over HTTP, off unless a port is given
    metrics_port: int | None = None
    metrics_bind: str = "127.0.0.1"  # local only unless an operator says otherwise


@dataclass(frozen=True)
class Destination:
    name: str
    type: str  # "dicom" or "folder"
    ae_title: str = ""
    host: str = ""
    port: int = 0
    path: Path | None = None
    policy: Policy | None = None  # None: the node's policy
    max_attempts: int = 20
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    timeout: float = 30.0
    max_pdu: int = 262144
    decompress: str = "lossless"  # when the destination refuses a compressed syntax: DECOMPRESS
    tls: ClientTls | None = None  # None: plain TCP
    associations: int = 1  # parallel associations (above 1: each in a sender process of its own)


@dataclass(frozen=True)
class Retention:
    raw: str | int = "immediately"  # "immediately", "keep", or days (int) after forwarding


@dataclass(frozen=True)
class Logging:
    file: Path | None = None  # None: data_dir/audit.log; disabled with `file: false`
    file_enabled: bool = True
    stdout: bool = True


@dataclass(frozen=True)
class Config:
    node: NodeSettings = field(default_factory=NodeSettings)
    destinations: tuple[Destination, ...] = ()
    policy: Policy = field(default_factory=default_policy)
    secret_file: Path | None = None  # None: data_dir/secret, created on first start
    certificates: tuple[str, ...] = ()  # recipient certificates for sealing (absolute paths)
    reversible: Mapping[str, Any] | None = None  # raw section (algorithm), checked with the certificates
    pixels: Mapping[str, Any] | None = None  # raw section, checked at load; parsed again per worker
    base_dir: Path | None = None  # the config file's folder: pixels rules_files are relative to it
    workers: int = 2
    batch: int = 16
    retention: Retention = field(default_factory=Retention)
    logging: Logging = field(default_factory=Logging)
    data_dir: Path = DEFAULT_DATA_DIR
    source: Path | None = None  # the file this came from

    @property
    def secret_path(self) -> Path:
        return self.secret_file or self.data_dir / "secret"

    @property
    def secret_is_default(self) -> bool:
        return self.secret_file is None

    @property
    def audit_file(self) -> Path | None:
        if not self.logging.file_enabled:
            return None
        return self.logging.file or self.data_dir / "audit.log"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gantry.db"

    @property
    def inbox(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    def effective_destinations(self) -> tuple[Destination, ...]:
        """The configured destinations, or the default export folder until one is configured."""
        if self.destinations:
            return self.destinations
        return (Destination(name="export", type="folder", path=self.data_dir / "export"),)


def load_config(path: str | Path | None) -> Config:
    """Read and validate the YAML file; None gives the embedded defaults."""
    if path is None:
        return config_from_mapping({})
    path = Path(path)
    doc = read_yaml(path, ConfigError)
    try:
        config = config_from_mapping(doc or {}, base=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Config(**{**config.__dict__, "source": path})


def config_from_mapping(doc: Any, base: Path | None = None) -> Config:
    """Validate a parsed document; relative paths are taken from `base` (the file's folder)."""
    if not isinstance(doc, Mapping):
        raise ConfigError("expected a mapping of sections at the top level")
    top = {k.split(".")[0] for k in SCHEMA_KEYS}
    _unknown(doc, top, "")

    def path_of(value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path")
        p = Path(value).expanduser()
        return p if p.is_absolute() or base is None else base / p

    data_dir = path_of(doc["data_dir"], "data_dir") if doc.get("data_dir") is not None else DEFAULT_DATA_DIR
    try:
        policy = policy_from_mapping(doc.get("policy"), "policy")
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    secret = path_of(doc["secret_file"], "secret_file") if doc.get("secret_file") is not None else None
    certificates = tuple(str(path_of(c, "certificates")) for c in _string_list(doc.get("certificates"),
                                                                                  "certificates"))
    reversible = doc.get("reversible")
    _sealing(certificates, reversible)
    pixels = doc.get("pixels")
    if pixels is not None and not isinstance(pixels, Mapping):
        raise ConfigError("pixels: expected a mapping")
    _pixels(pixels, base)
    workers = _section(doc, "workers", ("processes", "batch"))
    retention = _section(doc, "retention", ("raw",))
    logging = _section(doc, "logging", ("file", "stdout"))
    log_file = logging.get("file")
    if log_file is False:
        log_cfg = Logging(file=None, file_enabled=False, stdout=_bool(logging, "stdout", True, "logging"))
    else:
        log_cfg = Logging(file=path_of(log_file, "logging.file") if log_file is not None else None,
                          stdout=_bool(logging, "stdout", True, "logging"))
    return Config(
        node=_node(doc.get("node"), path_of),
        destinations=_destinations(doc.get("destinations"), path_of),
        policy=policy,
        secret_file=secret,
        certificates=certificates,
        reversible=reversible,
        pixels=pixels,
        base_dir=base,
        workers=_int(workers, "processes", 2, 1, 64, "workers"),
        batch=_int(workers, "batch", 16, 1, 1000, "workers"),
        retention=Retention(_retention(retention.get("raw", "immediately"))),
        logging=log_cfg,
        data_dir=data_dir,
    )


def _unknown(doc: Mapping, known, where: str) -> None:
    unknown = sorted(str(k) for k in set(doc) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; known: {sorted(known)}")


def _section(doc: Mapping, name: str, keys: tuple[str, ...]) -> Mapping:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of {list(keys)}")
    _unknown(value, keys, name)
    return value


def _int(doc: Mapping, key: str, default: int, lo: int, hi: int, where: str) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: expected an integer {lo}-{hi}, got {value!r}")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
               "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
MIN_INSTANCE_SIZE = 1024**2  # a smaller limit would refuse ordinary CT slices


def _size(doc: Mapping, key: str, default: int, where: str) -> int:
    """A size in bytes: an integer, or a string such as "4 GiB" or "512 MiB"."""
    value = doc.get(key, default)
    size = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size is None or not MIN_INSTANCE_SIZE <= size <= 1024**5:
        raise ConfigError(f"{where}.{key}: expected a size of at least 1 MiB (bytes, or e.g. \"4 GiB\"), "
                          f"got {value!r}")
    return size


def _number(doc: Mapping, key: str, default: float, where: str) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}.{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _bool(doc: Mapping, key: str, default: bool, where: str) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _ae(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(f"{key}: expected an AE title of 1-16 printable characters, got {value!r}")
    return value.strip()


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of strings")
    return tuple(value)


def _optional_int(doc: Mapping, key: str, lo: int, hi: int, where: str) -> int | None:
    return None if doc.get(key) is None else _int(doc, key, 0, lo, hi, where)


def _tls_mapping(doc: Mapping, where: str) -> Mapping:
    value = doc.get("tls")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.tls: expected a mapping")
    prefix = "node.tls." if where == "node" else "destinations[].tls."
    _unknown(value, [k.removeprefix(prefix) for k in SCHEMA_KEYS if k.startswith(prefix)], f"{where}.tls")
    version = value.get("min_version", "1.2")
    if version not in TLS_VERSIONS:
        raise ConfigError(f"{where}.tls.min_version: expected one of {', '.join(TLS_VERSIONS)}, got {version!r}")
    return value


def _server_tls(doc: Mapping, path_of) -> ServerTls | None:
    if doc.get("tls") is None:
        return None
    t = _tls_mapping(doc, "node")
    for key in ("certificate", "key"):
        if key not in t:
            raise ConfigError(f"node.tls.{key}: a TLS listener needs a certificate and its key")
    require = _bool(t, "require_client_certificate", False, "node.tls")
    if require and t.get("ca_bundle") is None:
        raise ConfigError("node.tls.ca_bundle: require_client_certificate needs the CAs to check clients against")
    tls = ServerTls(
        certificate=str(path_of(t["certificate"], "node.tls.certificate")),
        key=str(path_of(t["key"], "node.tls.key")),
        ca_bundle=str(path_of(t["ca_bundle"], "node.tls.ca_bundle")) if t.get("ca_bundle") is not None else None,
        require_client_certificate=require,
        min_version=t.get("min_version", "1.2"),
        port=_optional_int(t, "port", 1, 65535, "node.tls"),
    )
    _check_tls(lambda: _tls_module().server_context(tls))
    return tls


def _client_tls(item: Mapping, where: str, path_of) -> ClientTls | None:
    if item.get("tls") is None:
        return None
    t = _tls_mapping(item, where)
    if ("certificate" in t) != ("key" in t):
        raise ConfigError(f"{where}.tls.certificate: a client certificate needs its key (and the key its certificate)")
    tls = ClientTls(
        ca_bundle=str(path_of(t["ca_bundle"], f"{where}.tls.ca_bundle")) if t.get("ca_bundle") is not None else None,
        certificate=str(path_of(t["certificate"], f"{where}.tls.certificate")) if "certificate" in t else None,
        key=str(path_of(t["key"], f"{where}.tls.key")) if "key" in t else None,
        min_version=t.get("min_version", "1.2"),
        verify_hostname=_bool(t, "verify_hostname", True, f"{where}.tls"),
    )
    _check_tls(lambda: _tls_module().client_context(tls, f"{where}.tls"))
    return tls


def _tls_module():
    from gantry_node.node.network import tls

    return tls


def _check_tls(build) -> None:
    """Build the SSL context once now, so a bad file refuses to start (naming the key)."""
    try:
        build()
    except _tls_module().TlsSettingsError as exc:
        raise ConfigError(str(exc)) from None


def _node(doc: Any, path_of) -> NodeSettings:
    if doc is None:
        return NodeSettings()
    if not isinstance(doc, Mapping):
        raise ConfigError("node: expected a mapping")
    keys = [k.split(".", 1)[1] for k in SCHEMA_KEYS if k.startswith("node.")]
    _unknown(doc, keys, "node")
    d = NodeSettings()
    bind = doc.get("bind", d.bind)
    try:
        ipaddress.ip_address(bind)
    except (ValueError, TypeError):
        raise ConfigError(f"node.bind: expected an IP address to listen on, got {bind!r}") from None
    addresses = _string_list(doc.get("allowed_addresses"), "node.allowed_addresses")
    for a in addresses:
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            raise ConfigError(f"node.allowed_addresses: {a!r} is not an address or network") from None
    aets = tuple(_ae(a, "node.allowed_calling_aets") for a in _string_list(
        doc.get("allowed_calling_aets"), "node.allowed_calling_aets"))
    tls = _server_tls(doc, path_of)
    if tls is not None and tls.port == doc.get("port", d.port):
        raise ConfigError("node.tls.port: must differ from node.port (omit it to make node.port TLS-only)")
    return NodeSettings(
        ae_title=_ae(doc.get("ae_title", d.ae_title), "node.ae_title"),
        bind=bind,
        port=_int(doc, "port", d.port, 1, 65535, "node"),
        max_pdu=_int(doc, "max_pdu", d.max_pdu, 0, 2**32 - 1, "node"),
        max_associations=_int(doc, "max_associations", d.max_associations, 1, 1000, "node"),
        allowed_calling_aets=aets,
        allowed_addresses=addresses,
        network_timeout=_number(doc, "network_timeout", d.network_timeout, "node"),
        tcp_nodelay=_bool(doc, "tcp_nodelay", d.tcp_nodelay, "node"),
        artim_timeout=_number(doc, "artim_timeout", d.artim_timeout, "node"),
        max_connections_per_address=_optional_int(doc, "max_connections_per_address", 1, 10000, "node"),
        max_associations_per_calling_ae=_optional_int(doc, "max_associations_per_calling_ae", 1, 1000, "node"),
        max_instance_size=_size(doc, "max_instance_size", d.max_instance_size, "node"),
        receivers=_int(doc, "receivers", d.receivers, 1, 64, "node"),
        tls=tls,
        **_metrics_settings(doc, d),
    )


def _metrics_settings(doc: Mapping, d: NodeSettings) -> dict[str, Any]:
    """node.metrics_port (absent or null: no metrics page) and node.metrics_bind."""
    port = doc.get("metrics_port")
    if port is not None:
        port = _int(doc, "metrics_port", 0, 1, 65535, "node")
        if port == doc.get("port", d.port):
            raise ConfigError(f"node.metrics_port: {port} is node.port already; choose another port")
    bind = doc.get("metrics_bind", d.metrics_bind)
    try:
        ipaddress.ip_address(bind)
    except (ValueError, TypeError):
        raise ConfigError(f"node.metrics_bind: expected an IP address to listen on, got {bind!r}") from None
    return {"metrics_port": port, "metrics_bind": bind}


def _destinations(doc: Any, path_of) -> tuple[Destination, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ConfigError("destinations: expected a list of destinations")
    keys = [k.split(".", 1)[1] for k in SCHEMA_KEYS if k.startswith("destinations[].")]
    out: list[Destination] = []
    for i, item in enumerate(doc):
        where = f"destinations[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        _unknown(item, keys, where)
        name = item.get("name", f"destination{i + 1}")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            raise ConfigError(f"{where}.name: expected 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        if name in {d.name for d in out}:
            raise ConfigError(f"{where}.name: {name!r} is used twice")
        kind = item.get("type", "dicom")
        if kind not in ("dicom", "folder"):
            raise ConfigError(f"{where}.type: expected 'dicom' or 'folder', got {kind!r}")
        policy = None
        if item.get("policy") is not None:
            try:
                policy = policy_from_mapping(item["policy"], f"{where}.policy")
            except PolicyError as exc:
                raise ConfigError(str(exc)) from None
        d = Destination(name=name, type=kind)
        common = dict(
            policy=policy,
            max_attempts=_int(item, "max_attempts", d.max_attempts, 1, 10**6, where),
            backoff_initial=_number(item, "backoff_initial", d.backoff_initial, where),
            backoff_max=_number(item, "backoff_max", d.backoff_max, where),
            timeout=_number(item, "timeout", d.timeout, where),
            max_pdu=_int(item, "max_pdu", d.max_pdu, 0, 2**32 - 1, where),
            decompress=item.get("decompress", d.decompress),
            tls=_client_tls(item, where, path_of),
            associations=_int(item, "associations", d.associations, 1, 64, where),
        )
        if common["decompress"] not in DECOMPRESS:
            raise ConfigError(f"{where}.decompress: expected one of {', '.join(DECOMPRESS)}, "
                              f"got {common['decompress']!r}")
        if kind == "folder":
            if "path" not in item:
                raise ConfigError(f"{where}.path: a folder destination needs a path")
            out.append(Destination(name=name, type=kind, path=path_of(item["path"], f"{where}.path"), **common))
            continue
        for key in ("ae_title", "host", "port"):
            if key not in item:
                raise ConfigError(f"{where}.{key}: a dicom destination needs ae_title, host and port")
        host = item["host"]
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{where}.host: expected a host name or address")
        out.append(Destination(name=name, type=kind, ae_title=_ae(item["ae_title"], f"{where}.ae_title"),
                               host=host, port=_int(item, "port", 0, 1, 65535, where), **common))
    return tuple(out)


def _retention(value: Any) -> str | int:
    if value in ("immediately", "keep"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"retention.raw: expected 'immediately', 'keep' or a number of days, got {value!r}")


def _sealing(certificates: tuple[str, ...], reversible: Any):
    """Check the certificates (readable, RSA, not expired) and `reversible:` at start."""
    from gantry_node.engine.seal.config import SealingConfigError, parse_sealing_section

    try:
        return parse_sealing_section(list(certificates), reversible, "config")
    except SealingConfigError as exc:
        raise ConfigError(str(exc).removeprefix("config: ")) from None


def _pixels(section: Mapping | None, base: Path | None):
    """The pixel stage's configuration (None: its defaults), checked at start."""
    from gantry_node.engine.pixels.config import PixelConfigError
    from gantry_node.io.pixel_files import read_pixels_section

    try:
        return read_pixels_section(section, "pixels", base)
    except PixelConfigError as exc:
        raise ConfigError(str(exc)) from None


def build_engines(config: Config) -> dict[str, Any]:
    """One pipeline engine per distinct policy: key "" is the node's policy; destinations with
    their own policy get their own engine under their name."""

    keys = load_keys(config.secret_path)
    engines = {"": build_engine(config, config.policy, keys)}
    for dest in config.effective_destinations():
        if dest.policy is not None:
            engines[dest.name] = build_engine(config, dest.policy, keys)
    return engines


def build_engine(config: Config, policy: Policy | None = None, keys: Any = None):
    """THE place the node's pipeline engine is assembled from configuration: the policy, the
    secret, sealing to `certificates` (PS3.15 E.1.2; off when none are configured) and the
    pixel stage (always on: the `pixels:` section, or its defaults, decide what is redacted,
    OCR-checked or quarantined)."""
    from gantry_node.engine.pipeline import Engine
    from gantry_node.engine.pixels.stage import make_pixel_stage

    sealing = _sealing(config.certificates, config.reversible)
    keys = keys or load_keys(config.secret_path)
    return Engine(policy=policy or config.policy, keys=keys,
                  sealer=sealing.sealer() if sealing is not None else None,
                  pixel_stage=make_pixel_stage(_pixels(config.pixels, config.base_dir), keys))
