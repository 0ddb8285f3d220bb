"""The inbox sits on a full filesystem: the sender gets a failure status (0xA700) for what
cannot be stored, and nothing that was acknowledged is lost.

Uses a real 2 MB tmpfs mounted on the inbox (the tests run as root); skipped if mount is
not permitted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import free_port
from tests.support.node import (
    acknowledged,
    dicom_destination,
    expected_clean_uids,
    node_config,
    read_uids,
    received_files,
    running_node,
    small_tmpfs,
    storescp,
    storescu,
    wait_for,
    write_study,
)


@pytest.fixture
def small_inbox(tmp_path):
    with small_tmpfs(tmp_path / "data" / "inbox", "2m") as folder:
        yield folder


def test_full_inbox_answers_failure_and_loses_nothing(tmp_path, small_inbox, run_cli):
    study = write_study(tmp_path / "in", 24, size=256)  # ~130 kB each: ~15 fit in 2 MB
    names = sorted(p.name for p in (tmp_path / "in").iterdir())
    by_name = dict(zip(names, study.sop_uids, strict=True))
    research_port, port = free_port(), free_port()
    # the research PACS is down at first, so nothing is purged and the inbox fills up
    config = node_config(tmp_path, port, destinations=[
        dicom_destination("research", research_port, backoff_initial=0.2, backoff_max=0.5, max_attempts=1000)])
    with running_node(config, port):
        first = storescu(port, [tmp_path / "in" / n for n in names], extra=("-v",))
        acked = acknowledged(first.stderr + first.stdout)
        assert 0 < len(acked) < len(names), "some were stored, the rest refused"
        # dcmtk names 0xA700 "Refused: OutOfResources" (and stops sending after it)
        assert "Received Store Response (Refused: OutOfResources)" in first.stderr
        assert (tmp_path / "data" / "audit.log").read_text().count('"store_failed"') >= 1
        held = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)["states"]
        assert sum(held.values()) == len(acked)
        with storescp(tmp_path / "research", port=research_port):
            wait_for(lambda: len(received_files(tmp_path / "research")) >= len(acked), timeout=60,
                     what="the acknowledged instances delivered")
            # delivered raw files are purged, so there is room again: the sender retries the rest
            retry = storescu(port, [tmp_path / "in" / n for n in names if n not in acked])
            assert retry.returncode == 0, retry.stderr
            files = wait_for(lambda: len(f := received_files(tmp_path / "research")) >= len(names) and f,
                             timeout=60, what="everything delivered")
    assert set(read_uids(files)) == expected_clean_uids(tmp_path / "data" / "secret", by_name.values())
