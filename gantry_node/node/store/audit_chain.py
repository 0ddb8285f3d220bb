"""The audit table's hash chain: each row carries SHA-256 over its own content and the hash of
the row before it, so a changed, deleted, inserted or re-ordered row breaks the chain from that
row on. An auditor re-checks it with nothing but Python's standard library:

    import hashlib, json, sqlite3
    prev = "0" * 64
    for id_, at, event, instance_id, fields, stored in sqlite3.connect("gantry.db").execute(
            "SELECT id, at, event, instance_id, fields, hash FROM audit ORDER BY id"):
        payload = json.dumps([prev, id_, at, event, instance_id, fields], separators=(",", ":"))
        prev = hashlib.sha256(payload.encode()).hexdigest()
        assert prev == stored, f"broken at row {id_}"

`at` is the row's time as a float (seconds since the epoch, as stored: JSON writes the
shortest text that reads back as the same double), `fields` the row's JSON text exactly as
stored, `instance_id` an integer or null. The first row's previous hash is 64 zeros.

The chain shows tampering inside the table; a cut-off tail leaves a valid shorter chain, which
is why `status` shows the head (id and hash) and `audit-trail verify --head HASH` checks that
a head noted earlier is still in the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

GENESIS = "0" * 64


def row_hash(prev: str, row_id: int, at: float, event: str, instance_id: int | None, fields: str) -> str:
    payload = json.dumps([prev, row_id, float(at), event, instance_id, fields], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What `verify` found: `broken_id` is None when the chain is intact."""

    rows: int
    head_id: int
    head_hash: str
    head_at: float | None
    broken_id: int | None = None
    broken_at: float | None = None
    problem: str = ""
    head_found: bool | None = None  # whether the head asked for (--head) is in the chain

    @property
    def intact(self) -> bool:
        return self.broken_id is None and self.head_found is not False


def verify(rows: Iterable[tuple[int, float, str, int | None, str, str | None]], head: str | None = None) -> ChainCheck:
    """Walk rows (id, at, event, instance_id, fields, hash) in id order; stop at the first
    whose stored hash is not the one its content and its predecessor give."""
    prev, last_id, last_at, count = GENESIS, 0, None, 0
    found = None if head is None else False
    for row_id, at, event, instance_id, fields, stored in rows:
        count += 1
        expected = row_hash(prev, row_id, at, event, instance_id, fields)
        if stored != expected:
            if stored is None:
                problem = "it has no hash"
            elif row_id > last_id + 1:
                gone = f"row {last_id + 1}" if row_id == last_id + 2 else f"rows {last_id + 1}-{row_id - 1}"
                problem = f"{gone} before it missing (deleted)"
            else:
                problem = "its hash does not match its content and the row before it (changed, inserted or moved)"
            return ChainCheck(count - 1, last_id, prev, last_at, row_id, at, problem, found)
        if head is not None and stored == head:
            found = True
        prev, last_id, last_at = stored, row_id, at
    return ChainCheck(count, last_id, prev, last_at, head_found=found)
