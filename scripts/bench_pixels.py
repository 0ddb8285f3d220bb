"""Benchmark burned-in pixel redaction and the OCR gate.

    python scripts/bench_pixels.py [--frames 30] [--ocr-runs 3]

Redaction frames/s (decode + blank one 512x60 header band + write back) for 512x512
MONOCHROME2 and 1024x768 RGB, native (Explicit VR Little Endian) and JPEG baseline (made with
dcmtk's dcmcjpeg; written back uncompressed) on smooth gradients with speckle noise, with a
plain decode of the same data as the baseline in the same run; and OCR milliseconds per image on real ultrasounds from
pydicom-data. Numbers depend on the machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from pydicom import uid  # noqa: E402
from pydicom.pixels import set_pixel_data  # noqa: E402

from gantry_node.engine.pixels.codec import decode  # noqa: E402
from gantry_node.engine.pixels.ocr import luminance, read_words  # noqa: E402
from gantry_node.engine.pixels.redact import redact  # noqa: E402
from gantry_node.engine.pixels.rules import Region  # noqa: E402
from tests.support.pixels import encode_as, read_testdata, roundtrip, synthetic  # noqa: E402


def image(photometric: str, rows: int, columns: int, frames: int):
    ds = synthetic(photometric, 8, frames=1, rows=8, columns=8)
    rng = np.random.default_rng(0)
    shape = (frames, rows, columns) + ((3,) if photometric == "RGB" else ())
    y, x = np.mgrid[0:rows, 0:columns]
    smooth = (np.sin(x / 37.0) + np.cos(y / 23.0)) * 50 + 100  # anatomy-like gradients
    smooth = smooth.reshape((1, rows, columns) + ((1,) if photometric == "RGB" else ()))
    arr = np.clip(smooth + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)  # plus speckle
    set_pixel_data(ds, arr, photometric, 8, generate_instance_uid=False)
    ds.NumberOfFrames = frames
    return roundtrip(ds)


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per multi-frame test image")
    parser.add_argument("--ocr-runs", type=int, default=3, help="OCR repetitions per image")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pixels-"))
    print(f"redaction, {args.frames} frames per image, best of 3 (cpu count {os.cpu_count()})")
    print(f"{'image':<28}{'syntax':<22}{'redact fr/s':>12}{'decode fr/s':>12}{'ratio':>8}")
    region = [Region(0, 0, 512, 60)]
    for photometric, rows, columns in (("MONOCHROME2", 512, 512), ("RGB", 768, 1024)):
        native = image(photometric, rows, columns, args.frames)
        for syntax in (uid.ExplicitVRLittleEndian, uid.JPEGBaseline8Bit):
            source = encode_as(native, syntax, tmp) if syntax != uid.ExplicitVRLittleEndian else native
            t_redact = best_of(3, lambda s=source: redact(copy.deepcopy(s), region))
            t_decode = best_of(3, lambda s=source: decode(copy.deepcopy(s)))
            name = f"{columns}x{rows} {photometric}"
            print(f"{name:<28}{uid.UID(syntax).name[:21]:<22}{args.frames / t_redact:>12.1f}"
                  f"{args.frames / t_decode:>12.1f}{t_redact / t_decode:>8.2f}")

    print(f"\nOCR per image (best and median of {args.ocr_runs}, one frame)")
    for name in ("US1_UNCR.dcm", "OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm", "examples_rgb_color.dcm"):
        ds = read_testdata(name)
        decoded = decode(ds)
        gray = luminance(decoded.frames[0], decoded.photometric, ds)
        times = []
        for _ in range(args.ocr_runs):
            start = time.perf_counter()
            read_words(gray)
            times.append(time.perf_counter() - start)
        print(f"{name:<28}{gray.shape[1]}x{gray.shape[0]:<10} best {min(times) * 1000:7.0f} ms"
              f"   median {statistics.median(times) * 1000:7.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
