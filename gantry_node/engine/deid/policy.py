"""A de-identification policy: the Basic Profile, the options in force, and site overrides.

Policies are plain data. `policy_from_mapping` takes the YAML form and rejects unknown keys and bad
values with an error that names the key, before anything is processed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom.datadict import tag_for_keyword

OPTIONS = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_longitudinal_full_dates",
    "retain_longitudinal_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
DEFAULT_OPTIONS = frozenset({"retain_longitudinal_modified_dates"})
OVERRIDE_ACTIONS = ("keep", "remove", "empty", "replace", "pseudonymize")
DEFAULT_DATE_SHIFT = (-3650, -1)
# X/Z/U* reference sequences (Referenced Image Sequence, Source Image Sequence): "keep" keeps them
# in every instance with their items de-identified and UIDs replaced (U*), so references between
# instances resolve; "remove" removes them where the IOD does not require them (Type 3).
REFERENCE_HANDLING = ("keep", "remove")

# Identifiers the Basic Profile zeroes (Z) that we replace with stable pseudonyms instead;
# Z explicitly allows a dummy value, and a stable pseudonym keeps a patient's studies linkable.
DEFAULT_PSEUDONYMIZED = ("PatientID", "AccessionNumber", "StudyID")

_TAG_TEXT = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4}|xx[0-9A-Fa-f]{2})\)?$")


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Override:
    action: str  # one of OVERRIDE_ACTIONS
    value: str | None = None  # for "replace"


@dataclass(frozen=True)
class OverrideKey:
    """An override target: a public tag, or a private element (group, creator, element byte)."""

    tag: int | None = None
    group: int | None = None
    creator: str | None = None
    element: int | None = None

    @property
    def is_private(self) -> bool:
        return self.creator is not None


def public_overrides(overrides: dict[OverrideKey, Override]) -> dict[int, Override]:
    """The overrides of public tags by tag: `result.get(tag)` is `overrides.get(OverrideKey(tag=tag))`
    without building a key per element."""
    return {key.tag: override for key, override in overrides.items() if key == OverrideKey(tag=key.tag)}


@dataclass(frozen=True)
class Policy:
    options: frozenset[str] = DEFAULT_OPTIONS
    date_shift_days: tuple[int, int] = DEFAULT_DATE_SHIFT
    overrides: Mapping[OverrideKey, Override] = field(default_factory=dict)
    pseudonymize_patient_name: bool = True
    references: str = "keep"  # one of REFERENCE_HANDLING
    # Words and phrases that identify no one (a phantom's name, "TEST"): not looked for in text.
    not_identifying: tuple[str, ...] = ()

    def with_options(self, *enable: str, disable: tuple[str, ...] = ()) -> Policy:
        opts = (set(self.options) | set(enable)) - set(disable)
        return validate(replace(self, options=frozenset(opts)))

    @property
    def date_handling(self) -> str:
        """REMOVED, UNMODIFIED or MODIFIED: the Longitudinal Temporal Information Modified value."""
        if "retain_longitudinal_full_dates" in self.options:
            return "UNMODIFIED"
        if "retain_longitudinal_modified_dates" in self.options:
            return "MODIFIED"
        return "REMOVED"


def default_policy() -> Policy:
    overrides = {OverrideKey(tag=tag_for_keyword(k)): Override("pseudonymize") for k in DEFAULT_PSEUDONYMIZED}
    return Policy(overrides=overrides)


def validate(policy: Policy) -> Policy:
    unknown = set(policy.options) - set(OPTIONS)
    if unknown:
        raise PolicyError(f"options: unknown option(s) {sorted(unknown)}; known: {list(OPTIONS)}")
    if {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"} <= policy.options:
        raise PolicyError(
            "options: retain_longitudinal_full_dates and retain_longitudinal_modified_dates "
            "are mutually exclusive"
        )
    if policy.references not in REFERENCE_HANDLING:
        raise PolicyError(f"references: expected one of {list(REFERENCE_HANDLING)}, got {policy.references!r}")
    lo, hi = policy.date_shift_days
    if not (isinstance(lo, int) and isinstance(hi, int)) or lo > hi:
        raise PolicyError(f"date_shift_days: need [min, max] integers with min <= max, got {[lo, hi]}")
    if lo <= 0 <= hi:
        raise PolicyError(f"date_shift_days: the range {[lo, hi]} includes 0 (no shift); exclude it")
    return policy


def parse_override_key(text: str) -> OverrideKey:
    """'PatientID', '(0010,0020)', '00100020', or a private element '(0019,xx23) GEMS_ACQU_01'."""
    text = str(text).strip()
    creator = None
    if " " in text and text.startswith("("):
        text, creator = text.split(" ", 1)
        creator = creator.strip()
    m = _TAG_TEXT.match(text)
    if m:
        group, elem = int(m.group(1), 16), m.group(2)
        if elem.lower().startswith("xx"):
            if group % 2 == 0 or not creator:
                raise PolicyError(
                    f"overrides: {text!r}: an 'xx' element needs an odd group and a private creator, "
                    "e.g. '(0019,xx23) GEMS_ACQU_01'"
                )
            return OverrideKey(group=group, creator=creator, element=int(elem[2:], 16))
        if creator:
            raise PolicyError(f"overrides: {text!r}: write private elements as '(gggg,xxee) CREATOR'")
        return OverrideKey(tag=(group << 16) | int(elem, 16))
    tag = tag_for_keyword(text)
    if tag is None:
        raise PolicyError(f"overrides: {text!r} is neither a DICOM keyword nor a tag like (0010,0020)")
    return OverrideKey(tag=tag)


def parse_override(key: str, spec: Any) -> Override:
    if isinstance(spec, str):
        if spec not in OVERRIDE_ACTIONS or spec == "replace":
            raise PolicyError(
                f"overrides.{key}: {spec!r} is not an action; use one of "
                f"{[a for a in OVERRIDE_ACTIONS if a != 'replace']} or {{replace: VALUE}}"
            )
        return Override(spec)
    if isinstance(spec, Mapping) and list(spec) == ["replace"]:
        value = spec["replace"]
        if not isinstance(value, str | int | float):
            raise PolicyError(f"overrides.{key}.replace: needs a text or number value")
        return Override("replace", str(value))
    raise PolicyError(f"overrides.{key}: expected an action name or {{replace: VALUE}}, got {spec!r}")


POLICY_KEYS = ("options", "date_shift_days", "overrides", "pseudonymize_patient_name", "references",
               "not_identifying")


def policy_from_mapping(doc: Mapping[str, Any] | None, where: str = "policy") -> Policy:
    """Build a policy from its YAML/dict form, on top of the defaults."""
    doc = doc or {}
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: expected a mapping of {list(POLICY_KEYS)}")
    unknown = set(doc) - set(POLICY_KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}; known: {list(POLICY_KEYS)}")
    base = default_policy()
    options = set(base.options)
    if "options" in doc:
        opts = doc["options"]
        if not isinstance(opts, Mapping):
            raise PolicyError(f"{where}.options: expected a mapping of option: true/false")
        for name, on in opts.items():
            if name not in OPTIONS:
                raise PolicyError(f"{where}.options.{name}: unknown option; known: {list(OPTIONS)}")
            if not isinstance(on, bool):
                raise PolicyError(f"{where}.options.{name}: expected true or false, got {on!r}")
            (options.add if on else options.discard)(name)
    shift = base.date_shift_days
    if "date_shift_days" in doc:
        value = doc["date_shift_days"]
        if not (isinstance(value, list | tuple) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise PolicyError(f"{where}.date_shift_days: expected [min, max] in days, got {value!r}")
        shift = (value[0], value[1])
    overrides = dict(base.overrides)
    raw = doc.get("overrides") or {}
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}.overrides: expected a mapping of tag: action")
    for key, spec in raw.items():
        try:
            overrides[parse_override_key(key)] = parse_override(key, spec)
        except PolicyError as exc:
            raise PolicyError(f"{where}.{exc}") from None
    name_flag = doc.get("pseudonymize_patient_name", base.pseudonymize_patient_name)
    if not isinstance(name_flag, bool):
        raise PolicyError(f"{where}.pseudonymize_patient_name: expected true or false")
    references = doc.get("references", base.references)
    if references not in REFERENCE_HANDLING:
        raise PolicyError(f"{where}.references: expected one of {list(REFERENCE_HANDLING)}, got {references!r}")
    words = doc.get("not_identifying", [])
    if not (isinstance(words, list | tuple) and all(isinstance(w, str) and w.strip() for w in words)):
        raise PolicyError(f"{where}.not_identifying: expected a list of words or phrases, e.g. [TEST, PHANTOM]")
    try:
        return validate(Policy(frozenset(options), shift, overrides, name_flag, references,
                               tuple(w.strip() for w in words)))
    except PolicyError as exc:
        raise PolicyError(f"{where}.{exc}") from None
