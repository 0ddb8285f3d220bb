#!/usr/bin/env python3
"""Prove that two versions of the worker give the same result for every file of a corpus.

    python scripts/check_same_output.py --before /work/main [--after .] [--bench 200] [--keep DIR]

The corpus: bench CTs (scripts/bench_node.py make_corpus), every synthetic kind of
gantry_node.testing (plain, with planted PHI, implicit VR), and every file bundled with pydicom
and pydicom-data (read from the installed packages, never downloaded). Each version runs
`gantry_node.node.worker.process_file` over the corpus in its own subprocess (PYTHONPATH = that
tree) under three node configurations: the defaults; policy options plus a site override; and
sealing to a certificate (PS3.15 E.1.2). Compared per file and configuration: the outcome
(clean or quarantined, reason, stage, change count, pydicom's warnings for the audit, clean UIDs
and paths) and the sha256 of the written bytes. Sealed output carries fresh random CMS
ciphertext each run, so there the bytes of each EncryptedContent value are zeroed (same length)
before hashing. Exit status 0 only when everything is identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONFIGS = {
    "default": {},
    "options": {
        "policy": {
            "options": {"retain_safe_private": True, "clean_descriptors": True,
                        "retain_device_identity": True, "retain_patient_characteristics": True},
            "overrides": {"InstitutionName": "keep", "StationName": "empty"},
        },
    },
    "sealed": {"certificates": ["{tmp}/broker/honest-broker-cert.pem"]},
}
SEALED_CORPORA = ("bench", "synthetic")  # sealing adds no per-file pixel work: skip the slow ones


def pydicom_files() -> list[Path]:
    """Every file bundled with pydicom and pydicom-data, from the installed packages (no download)."""
    import pydicom

    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for f in folders if f.is_dir() for p in f.rglob("*")
                  if p.is_file() and p.suffix.lower() in (".dcm", "") and not p.name.startswith("."))


def synthetic_files(folder: Path) -> list[Path]:
    from gantry_node.testing import Study

    folder.mkdir(parents=True)
    study = Study.for_patient(name="DOE^JANE^Q", patient_id="MRN12345", birth_date="19700214", sex="F") \
        .on("20240311").accession("ACC998877").described("CT CHEST W CONTRAST")
    builders = []
    cts = study.series("CT").ct_images(count=2)
    for phi in (False, True):
        kinds = [study.series("CT").ct_image(), study.series("CT").ct_image(rows=64, columns=64, bits=8),
                 study.series("MR").mr_image(), study.series("OT").sc_image(), study.series("OT").sc_image(rgb=True),
                 study.series("US").us_image(), study.series("CT").multiframe_image(),
                 study.series("SR").sr(referencing=cts), study.series("PR").presentation_state(referencing=cts)]
        builders += [b.with_all_phi() if phi else b for b in kinds]
    builders += [study.series("CT").ct_image().implicit(), study.series("MR").mr_image().implicit().with_all_phi()]
    paths = []
    for i, builder in enumerate(builders):
        paths.append(builder.save(folder / f"{i:03d}_{builder.kind}.dcm"))
    for i, ds in enumerate(cts):
        path = folder / f"ref_{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def build_corpus(tmp: Path, bench: int) -> dict[str, list[str]]:
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_node import make_corpus

    make_corpus(tmp / "bench", bench, 512)
    return {
        "bench": sorted(str(p) for p in (tmp / "bench").iterdir()),
        "synthetic": [str(p) for p in synthetic_files(tmp / "synthetic")],
        "pydicom": [str(p) for p in pydicom_files()],
    }


def write_configs(tmp: Path) -> dict[str, Path]:
    import yaml

    from gantry_node.engine.seal.certs import init_keys

    init_keys(tmp / "broker")
    (tmp / "secret").write_text("0123456789abcdef0123456789abcdef\n")
    paths = {}
    for name, extra in CONFIGS.items():
        doc = {"data_dir": str(tmp / "data" / name), "secret_file": str(tmp / "secret"),
               "destinations": [{"name": "research", "ae_title": "RESEARCH", "host": "127.0.0.1", "port": 104}],
               "logging": {"stdout": False}}
        doc.update(json.loads(json.dumps(extra).replace("{tmp}", str(tmp))))
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(doc))
    return paths


# --- one version, in its own process --------------------------------------------------------

def masked(data: bytes) -> bytes:
    """`data` with every EncryptedContent value zeroed (random ciphertext), same length."""
    from io import BytesIO

    import pydicom

    ds = pydicom.dcmread(BytesIO(data))
    for item in ds.get("EncryptedAttributesSequence", []) or []:
        content = item.get("EncryptedContent")
        if content:
            data = data.replace(bytes(content), b"\0" * len(content))
    return data


def dump(configs: dict[str, str], corpus: dict[str, list[str]], out: Path) -> dict:
    try:
        from gantry_node.node import worker
        from gantry_node.node.config import build_engines, load_config
    except ImportError:  # a tree from before the layout of issue 15 (gantry_node.worker, gantry_node.config)
        from gantry_node.config import build_engines, load_config  # type: ignore[no-redef]

        from gantry_node import worker  # type: ignore[no-redef]

    results: dict[str, dict] = {}
    for name, config_path in configs.items():
        worker._ENGINES.clear()
        worker._ENGINES.update(build_engines(load_config(Path(config_path))))
        outbox = out / name
        for kind, files in corpus.items():
            if name == "sealed" and kind not in SEALED_CORPORA:
                continue
            for i, path in enumerate(files):
                outcome = worker.process_file(i, path, str(outbox), ("research",))
                entry = {"reason": outcome.reason, "stage": outcome.stage, "changes": outcome.changes,
                         "problems": list(outcome.problems), "copies": []}
                for copy in outcome.copies:
                    data = Path(copy.clean_path).read_bytes()
                    if name == "sealed":
                        data = masked(data)
                    fields = dataclasses.asdict(copy)
                    fields["clean_path"] = str(Path(copy.clean_path).relative_to(outbox))
                    entry["copies"].append({**{k: str(v) for k, v in fields.items()},
                                            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
                results[f"{name}:{kind}:{Path(path).name}"] = entry
    return results


def run_version(tree: Path, configs: dict[str, Path], corpus_file: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    result_file = out.with_suffix(".json")
    proc = subprocess.run([sys.executable, __file__, "--dump", str(corpus_file), str(out), str(result_file),
                           json.dumps({k: str(v) for k, v in configs.items()})], env=env, cwd=str(tree))
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: the dump failed")
    return json.loads(result_file.read_text())


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--dump":
        corpus_file, out, result_file, configs = sys.argv[2:6]
        import warnings

        import gantry_node

        warnings.simplefilter("ignore")  # pydicom's value warnings about the test files
        print(f"dumping with {Path(gantry_node.__file__).parent}", file=sys.stderr)
        results = dump(json.loads(configs), json.loads(Path(corpus_file).read_text()), Path(out))
        Path(result_file).write_text(json.dumps(results, indent=1, sort_keys=True))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the tree of the reference version")
    parser.add_argument("--after", type=Path, default=REPO, help="the tree of the new version (default: this one)")
    parser.add_argument("--bench", type=int, default=200, help="bench CT instances (default 200)")
    parser.add_argument("--keep", type=Path, help="keep the corpus and outputs in this (new) folder")
    args = parser.parse_args()
    sys.path.insert(0, str(args.after))
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="same-output-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        corpus = build_corpus(tmp / "corpus", args.bench)
        corpus_file = tmp / "corpus.json"
        corpus_file.write_text(json.dumps(corpus))
        configs = write_configs(tmp)
        before = run_version(args.before.resolve(), configs, corpus_file, tmp / "before")
        after = run_version(args.after.resolve(), configs, corpus_file, tmp / "after")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    keys = sorted(set(before) | set(after))
    differ = [k for k in keys if before.get(k) != after.get(k)]
    for k in differ[:20]:
        print(f"DIFFERENT {k}:\n  before {before.get(k)}\n  after  {after.get(k)}")
    clean = sum(1 for k in keys if before.get(k, {}).get("copies"))
    per_corpus = {}
    for k in keys:
        _, kind, _ = k.split(":", 2)
        per_corpus[kind] = per_corpus.get(kind, 0) + 1
    print(f"{len(keys)} (configuration, file) results: {clean} clean, {len(keys) - clean} quarantined; "
          f"per corpus {per_corpus}; {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
