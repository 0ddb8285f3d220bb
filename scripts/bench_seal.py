"""Cost of sealing (PS3.15 E.1.2) in the pipeline, as a ratio against the same pipeline without it,
both measured in this run; and the cost of recovering one instance.

    python scripts/bench_seal.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gantry_node.engine.deid import Keys, default_policy  # noqa: E402
from gantry_node.engine.pipeline import Engine, process  # noqa: E402
from gantry_node.engine.seal import make_sealer, recover  # noqa: E402
from tests.support.seal import identified_instance, recipient  # noqa: E402


def interleaved(variants: dict, n: int) -> dict[str, float]:
    """Median seconds per call of each variant, run round-robin so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(n):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def main(n: int = 100) -> None:
    ds = identified_instance()
    policy, keys = default_policy(), Keys(b"bench-secret-0123456789abcdef")
    broker = recipient("bench", 3072)
    plain = Engine(policy, keys)
    one = Engine(policy, keys, sealer=make_sealer([broker.cert]))
    three = Engine(policy, keys, sealer=make_sealer([broker.cert, recipient("b2", 3072).cert,
                                                     recipient("b3", 3072).cert]))
    clean = process(ds, one).dataset
    t = interleaved({
        "base": lambda: process(ds, plain),
        "one": lambda: process(ds, one),
        "three": lambda: process(ds, three),
        "recover": lambda: recover(clean, broker.key, broker.cert),
        "recover_key_only": lambda: recover(clean, broker.key),
    }, n)
    base, sealed1, sealed3, rec, rec_keyonly = (t[k] for k in ("base", "one", "three", "recover", "recover_key_only"))
    print(f"instances: {n} x CT_small (+identity), RSA-3072 recipients, AES-256")
    print(f"pipeline without sealing: {base * 1e3:.2f} ms/instance (baseline)")
    print(f"with sealing, 1 recipient: {sealed1 * 1e3:.2f} ms/instance  ratio {sealed1 / base:.2f}")
    print(f"with sealing, 3 recipients: {sealed3 * 1e3:.2f} ms/instance  ratio {sealed3 / base:.2f}")
    print(f"recover, key + certificate: {rec * 1e3:.2f} ms/instance  ratio {rec / base:.2f}")
    print(f"recover, key only: {rec_keyonly * 1e3:.2f} ms/instance  ratio {rec_keyonly / base:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
