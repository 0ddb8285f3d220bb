"""What the research PACS answers decides what happens: warning statuses (B000, B006, B007)
count as delivered and are logged; a failure status is retried with backoff and, after
max_attempts, the instance is forward_failed, shown to operators, and can be released.
The destination here is a pynetdicom SCP in the test process, answering on loopback."""

from __future__ import annotations

import json

from pynetdicom import AE, AllStoragePresentationContexts, evt

from tests.conftest import free_port
from tests.support.node import dicom_destination, node_config, running_node, storescu, wait_for, write_study


def research_scp(statuses: list[int], received: list[str]):
    """A storage SCP answering each C-STORE with the next status of `statuses` (the last repeats)."""

    def handle(event):
        received.append(str(event.request.AffectedSOPInstanceUID))
        return statuses[min(len(received), len(statuses)) - 1]

    ae = AE("RESEARCH")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)])
    return server, port


def _events(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]


def test_warning_statuses_count_as_delivered(tmp_path, run_cli):
    write_study(tmp_path / "in", 3)
    received: list[str] = []
    server, research_port = research_scp([0xB000, 0xB006, 0xB007], received)
    try:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[dicom_destination("research", research_port)])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            wait_for(lambda: json.loads(run_cli("status", "--json", "--config", config).stdout)
                     ["states"]["forwarded"] == 3, timeout=60, what="3 forwarded")
    finally:
        server.shutdown()
    warnings = sorted(e["status"] for e in _events(tmp_path) if e["event"] == "delivery_warning")
    assert warnings == ["0xB000", "0xB006", "0xB007"]
    assert len(received) == 3


def test_failure_status_retried_then_forward_failed_then_released(tmp_path, run_cli):
    write_study(tmp_path / "in", 1)
    received: list[str] = []
    server, research_port = research_scp([0xA700, 0xA700, 0x0000], received)
    try:
        port = free_port()
        config = node_config(tmp_path, port, destinations=[
            dicom_destination("research", research_port, max_attempts=2, backoff_initial=0.1, backoff_max=0.2)])
        with running_node(config, port):
            assert storescu(port, tmp_path / "in").returncode == 0
            def held():
                result = run_cli("quarantine", "list", "--config", config)
                return "forward_failed" in result.stdout and result

            listed = wait_for(held, timeout=60, what="forward_failed after 2 attempts")
            assert "failure status 0xA700" in listed.stdout
            status = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)
            assert status["states"]["forward_failed"] == 1
            assert status["destinations"][0]["last_error"] == "failure status 0xA700"
            instance_id = listed.stdout.splitlines()[1].split()[0]
            run_cli("quarantine", "release", instance_id, "--config", config, check=True)
            wait_for(lambda: json.loads(run_cli("status", "--json", "--config", config).stdout)
                     ["states"]["forwarded"] == 1, timeout=60, what="delivered after release")
    finally:
        server.shutdown()
    assert len(received) == 3 and len(set(received)) == 1, "the same clean UID every attempt"
    retries = [e for e in _events(tmp_path) if e["event"] == "delivery_retry"]
    assert len(retries) == 1 and retries[0]["attempts"] == 1
