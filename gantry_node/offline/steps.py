"""The per-instance work of scan_for_phi and apply_remediation, as plain functions of one item
so that a pool of processes can run them (forked: the children inherit the engine set in
`CONTEXT` before the pool starts; nothing else is shared). Each returns data for the session
to record; only the session writes the database."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pydicom

from gantry_node.engine.deid import scan
from gantry_node.engine.deid.scan import Finding
from gantry_node.engine.encoding import encode_dataset
from gantry_node.engine.pipeline import Quarantine, Work, stage_deidentify, stage_seal
from gantry_node.io.durable import write_atomic
from gantry_node.io.part10 import BadInput, read_instance
from gantry_node.offline.findings import PhiFinding
from gantry_node.offline.importer import PARALLEL_THRESHOLD, header_row, parallel_iter

CONTEXT: dict[str, Any] = {}


def run(fn: Callable, items: list, context: dict[str, Any], progress: Callable | None,
        workers: int | None = None) -> list:
    return list(run_iter(fn, items, context, progress, workers))


def run_iter(fn: Callable, items: list, context: dict[str, Any], progress: Callable | None,
             workers: int | None = None) -> Iterator:
    """run's results one at a time, in order, so the caller can store each and drop it."""
    CONTEXT.clear()
    CONTEXT.update(context)
    try:
        if len(items) < PARALLEL_THRESHOLD or (workers is not None and workers <= 1):
            results: Iterable = map(fn, items)
            yield from (progress(results, len(items)) if progress else results)
        else:
            yield from parallel_iter(fn, items, progress, workers, chunksize=16)
    finally:
        CONTEXT.clear()


def scan_one(item: tuple[int, str]) -> list[PhiFinding]:
    instance_id, source = item
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings may quote values
            ds = pydicom.dcmread(source, stop_before_pixels=True)
        found = scan(ds, CONTEXT["policy"], CONTEXT["keys"])
    except Exception as exc:  # noqa: BLE001 -- a file that changed since import
        found = [Finding("", "", "", "", f"cannot scan: {type(exc).__name__}", "held back")]
    return [PhiFinding.of(f, instance_id) for f in found]


def remediate_one(item: tuple[int, str, str]) -> tuple[int, dict[str, Any], Counter]:
    """De-identify and seal one instance (the node's first two stages) into `target`."""
    instance_id, source, target = item
    engine = CONTEXT["engine"]
    values: dict[str, Any] = {"pixel_state": None, "pixel_rule": None, "pixel_reason": None, "pixel_output": None,
                              "pixel_config_fp": None, "verify_state": None, "verify_reason": None,
                              "policy_fp": CONTEXT["policy_fp"]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            work = Work(read_instance(source))
        stage_deidentify(work, engine)
        stage_seal(work, engine)
        encoded = encode_dataset(work.dataset)
    except BadInput as exc:
        values.update(meta_state="held", meta_reason=f"unreadable instance: {exc.problem}", output=None)
        return instance_id, values, Counter()
    except Quarantine as q:
        values.update(meta_state="held", meta_reason=q.reason, output=None)
        return instance_id, values, Counter()
    except Exception as exc:  # noqa: BLE001 -- fail closed; the message may quote data
        values.update(meta_state="held", meta_reason=f"cannot de-identify: {type(exc).__name__}", output=None)
        return instance_id, values, Counter()
    write_atomic(encoded, Path(target), 0o600, durable=False)
    ds = work.dataset
    changes = Counter(c.action for c in work.changes)
    values.update(
        meta_state="remediated", meta_reason=None, output=str(Path(target).relative_to(CONTEXT["folder"])),
        output_sha256=hashlib.sha256(encoded).hexdigest(), output_size=len(encoded),
        clean_sop_uid=str(ds.SOPInstanceUID), clean_study_uid=str(ds.get("StudyInstanceUID", "")),
        clean_series_uid=str(ds.get("SeriesInstanceUID", "")), clean_patient_id=str(ds.get("PatientID", "") or ""),
        clean_attrs=header_row(ds)["attrs"], sealed=int(bool(work.notes.get("sealed"))),
        changes=json.dumps(changes, sort_keys=True))
    return instance_id, values, changes
