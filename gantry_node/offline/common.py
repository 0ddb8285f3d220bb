"""Small pieces the Session's step modules share: the step report, progress bars, header reads."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from gantry_node.offline.findings import PhiFinding


class SessionError(ValueError):
    """The session cannot do what was asked; the message names the file or step."""


@dataclass
class StepReport:
    step: str
    done: int = 0
    held_back: dict[int, str] = field(default_factory=dict)  # instance id -> reason (no PHI)
    counts: Counter = field(default_factory=Counter)
    not_addressed: list[PhiFinding] = field(default_factory=list)

    def __repr__(self) -> str:
        extra = "".join(f", {k}: {v}" for k, v in sorted(self.counts.items()))
        return f"StepReport({self.step}: {self.done} done, {len(self.held_back)} held back{extra})"


def read_header(path: str | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote values
        return pydicom.dcmread(path, stop_before_pixels=True)


def progress_bar(desc: str, enabled: bool):
    def wrap(items: Iterable, total: int) -> Iterable:
        if not enabled:
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, unit="instance", disable=None, leave=False)

    return wrap
