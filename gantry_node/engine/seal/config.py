"""The node's sealing configuration:

    certificates:            # recipient certificates (PEM), one or more; none = no sealing
      - /etc/gantry-node/honest-broker-cert.pem
    reversible:
      algorithm: aes256      # aes256 (default) or aes128: CMS content encryption

Parsing loads and checks every certificate, so a node with an unreadable, expired or non-RSA
certificate refuses to start with a message naming the key and the file.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from pydicom.dataset import Dataset

from gantry_node.engine.seal.certs import CertificateError, load_recipient
from gantry_node.engine.seal.cms import ALGORITHMS, DEFAULT_ALGORITHM, make_sealer


class SealingConfigError(ValueError):
    """A bad sealing setting; the message names the configuration key."""


@dataclass(frozen=True)
class SealingConfig:
    certificate_paths: tuple[Path, ...]
    algorithm: str = DEFAULT_ALGORITHM
    recipients: tuple[x509.Certificate, ...] = field(default=(), repr=False, compare=False)

    def sealer(self) -> Callable[[Dataset, Dataset], None]:
        """For `Engine(sealer=...)`."""
        return make_sealer(list(self.recipients), self.algorithm)


def parse_sealing_section(
    certificates: object, reversible: object, where: str = "config",
    base: str | Path | None = None, now: datetime.datetime | None = None,
) -> SealingConfig | None:
    """Validate the `certificates:` and `reversible:` values of a configuration. None when no
    certificate is configured (sealing off). Relative paths are taken from `base` if given."""
    if reversible is not None and not isinstance(reversible, dict):
        raise SealingConfigError(f"{where}: reversible: must be a mapping (algorithm: aes256|aes128)")
    reversible = reversible or {}
    unknown = sorted(set(map(str, reversible)) - {"algorithm"})
    if unknown:
        raise SealingConfigError(f"{where}: reversible: unknown key(s) {', '.join(unknown)} (known: algorithm)")
    algorithm = reversible.get("algorithm", DEFAULT_ALGORITHM)
    if not isinstance(algorithm, str) or algorithm.lower() not in ALGORITHMS:
        raise SealingConfigError(f"{where}: reversible.algorithm: {algorithm!r} is not one of "
                                 f"{', '.join(ALGORITHMS)}")
    algorithm = algorithm.lower()

    if certificates is None or certificates == []:
        if reversible:
            raise SealingConfigError(f"{where}: reversible: is set but certificates: is empty; "
                                     "sealing needs at least one recipient certificate")
        return None
    if isinstance(certificates, str | Path):
        certificates = [certificates]
    if not isinstance(certificates, list):
        raise SealingConfigError(f"{where}: certificates: must be a list of certificate file paths")
    paths, certs = [], []
    for i, entry in enumerate(certificates):
        if not isinstance(entry, str | Path) or not str(entry).strip():
            raise SealingConfigError(f"{where}: certificates[{i}]: must be a file path")
        path = Path(entry).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        try:
            certs.append(load_recipient(path, now))
        except CertificateError as exc:
            raise SealingConfigError(f"{where}: certificates[{i}]: {exc}") from None
        paths.append(path)
    return SealingConfig(tuple(paths), algorithm, tuple(certs))
