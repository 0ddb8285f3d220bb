"""leaked_values rules bulk scans out by shorter needles and the UIDs' common prefix; it must find
exactly what the plain search (every needle lower-cased against every lower-cased bulk value)
finds. The reference below is that plain search: every byte form of every needle (each value in
upper, lower and title case, in UTF-8 and Latin-1) against the header, then against each bulk
value."""

from __future__ import annotations

import random

from gantry_node.engine.deid import default_policy
from gantry_node.engine.deid.identity import Identity
from gantry_node.engine.deid.matching import byte_forms, python_encodings
from gantry_node.engine.deid.policy import Policy
from gantry_node.engine.deid.verify import _MIN_BULK_NEEDLE, _locate, _needle_pattern, leaked_values


def reference(encoded: bytes, bulk: list[bytes], identity: Identity, policy: Policy) -> list[tuple[str, str]]:
    needles = identity.needles()
    if "retain_uids" not in policy.options:
        needles += [("original UID", u) for u in identity.uids]
    if not needles:
        return []
    ranges = sorted(r for r in (_locate(encoded, v) for v in bulk) if r)
    header, last = [], 0
    for start, end in ranges:
        header.append(encoded[last:start])
        last = max(last, end)
    header.append(encoded[last:])
    header_text = b"\x00".join(header).lower()
    bulk_texts = None
    found = []
    for what, value in needles:
        forms = byte_forms(value, python_encodings(()))
        hit = any(f in header_text and _needle_pattern(what, value, f).search(header_text) for f in forms)
        if not hit and len(value) >= _MIN_BULK_NEEDLE and (what != "birth date" or value.isdigit()):
            if bulk_texts is None:
                bulk_texts = [encoded[s:e].lower() for s, e in ranges]
            hit = any(f in b and _needle_pattern(what, value, f).search(b) for f in forms for b in bulk_texts)
        if hit:
            found.append((what, value))
    return found


ROOT = "1.2.826.0.1.3680043.8.498."


def _identity(rng: random.Random) -> Identity:
    first = rng.choice(["Patient0", "Jo", "Smithson", "O'Brien", "Müller", "Anne-Marie", "X1"])
    last = rng.choice(["Bench", "Doe", "Johnsonville", "Li", "Żółć"])
    name = f"{last}^{first}"
    parts = tuple(sorted({p for p in (first, last) if len(p) >= 2}))
    ids = tuple(sorted({rng.choice(["BENCH000000", "12345678", "A00000001", "123", "MRN-77-1234"]),
                        rng.choice(["A00000000", "987654", "ACC998877"])}))
    study = ROOT + str(rng.randrange(10**20))
    series = rng.choice([ROOT + str(rng.randrange(10**20)), "2.16.840.1.113669." + str(rng.randrange(10**12))])
    sop = rng.choice([series + ".7", ROOT + str(rng.randrange(10**20))])
    uids = (study, series, sop, study)
    return Identity(name, parts, ids, rng.choice(["19700101", "19600229", ""]), uids, "k")


def _plant(rng: random.Random, data: bytearray, value: str) -> None:
    text = value.encode("utf-8")
    variant = rng.choice([text, text.lower(), text.upper(), text.swapcase(), text[:-1], text[1:]])
    edge = rng.choice([b"", b"7", b"x", b".", b" "])
    chunk = edge + variant + rng.choice([b"", b"9", b"Q", b".", b"^"])
    at = rng.randrange(0, max(1, len(data) - len(chunk)))
    data[at:at + len(chunk)] = chunk


def test_same_findings_as_the_plain_search():
    rng = random.Random(11)
    policies = [default_policy(), Policy(**{**vars(default_policy()), "options": frozenset({"retain_uids"})})]
    leaks = 0
    for case in range(600):
        identity = _identity(rng)
        values = [identity.name, *identity.name_parts, *identity.ids, identity.birth_date, *identity.uids]
        pixels = bytearray(rng.randbytes(4096))
        cipher = bytearray(rng.randbytes(512))
        header = bytearray(b"DICM" + rng.randbytes(64) + b"PSEUDONYM^ONLY" + rng.randbytes(64))
        for target in rng.sample([pixels, cipher, header], rng.randrange(0, 4)):
            for _ in range(rng.randrange(1, 3)):
                value = rng.choice([v for v in values if v] or ["none"])
                _plant(rng, target, value)
        if rng.random() < 0.2:  # the UIDs' common root alone, and a prefix of a name
            _plant(rng, pixels, ROOT)
            _plant(rng, pixels, identity.name[:5])
        bulk = [bytes(pixels), bytes(cipher)] if rng.random() < 0.7 else [bytes(pixels)]
        pad = b"\x00" if rng.random() < 0.3 and len(bulk[0]) % 2 else b""
        encoded = bytes(header) + b"".join(bulk[1:]) + bulk[0] + pad
        for policy in policies:
            want = reference(encoded, bulk, identity, policy)
            got = [(f.reason.removeprefix("original ").removesuffix(" occurs in the output"), f.value)
                   for f in leaked_values(encoded, bulk, identity, policy)]
            assert got == want, case
            leaks += bool(want)
    assert leaks > 200  # the corpus holds many leaks, in every place, not just clean cases


def test_large_bulk_values_are_searched_a_window_at_a_time_with_the_same_answers(monkeypatch):
    """A bulk value over the window size is never lowered whole; each needle and pattern gives
    the answer a search of the whole lowered value gives, at every place around a window edge."""
    import importlib
    import re

    verify_module = importlib.import_module("gantry_node.engine.deid.verify")

    monkeypatch.setattr(verify_module, "_BULK_CHUNK", 64)
    needle = b"doe^jane"
    pattern = re.compile(rb"(?<![a-z])" + re.escape(needle) + rb"(?![a-z])")
    for at in range(40, 140):
        for before, after in ((b" ", b" "), (b"x", b" "), (b" ", b"x")):
            value = bytearray(b"\x01" * 300)
            planted = before + b"DOE^JANE" + after
            value[at:at + len(planted)] = planted
            value = bytes(value)
            text = verify_module._BulkText(value, len(needle))
            assert text.whole is None
            text.prefetch([needle, b"absent!!"])
            assert (needle in text) is True and (b"absent!!" in text) is False
            assert text.search(pattern) is (pattern.search(value.lower()) is not None), (at, before, after)
