"""Prometheus metrics (issue 14, item 7): a real node with `node.metrics_port` set, instances
sent with dcmtk storescu, the page scraped over HTTP: the counters, queue gauges, latency
histograms and component health add up, and no data set value appears in it."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gantry_node.node.config import ConfigError, config_from_mapping
from tests.conftest import free_port
from tests.support.node import PHI_STRINGS, make_ct, node_config, running_node, storescu, wait_for, write_study


def _scrape(port: int) -> tuple[str, dict[tuple[str, tuple], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def test_metrics_page_of_a_running_node(tmp_path):
    study = write_study(tmp_path / "in", 3)
    us = make_ct(study.study_uid, study.series_uid, "1.2.826.0.1.3680043.2.1143.777", index=9)
    us.Modality = "US"  # an ultrasound from a device no pixel rule knows: quarantined at the pixel stage
    us.save_as(tmp_path / "in" / "us.dcm", enforce_file_format=True)
    port, metrics_port = free_port(), free_port()
    config = node_config(tmp_path, port, destinations=[{"name": "research", "type": "folder",
                                                        "path": str(tmp_path / "research")}],
                         node={"metrics_port": metrics_port})
    with running_node(config, port):
        sent = storescu(port, tmp_path / "in")
        assert sent.returncode == 0, sent.stderr

        def settled():
            text, s = _scrape(metrics_port)
            # each process writes its audit rows every 0.25 s: the receiver's may come after
            # the main process's rows for the same instances
            done = s.get(("gantry_forwarded_total", ())) == 3 and s.get(("gantry_received_total", ())) == 4 \
                and s.get(("gantry_quarantined_total", (("stage", "pixels"),))) == 1
            return done and (text, s)

        text, s = wait_for(settled, timeout=60, what="4 received, 3 forwarded and 1 quarantined on the page")
    assert s[("gantry_received_total", ())] == 4
    assert s[("gantry_acknowledged_total", ())] == 4
    assert s[("gantry_clean_total", ())] == 3
    assert s[("gantry_delivered_total", (("destination", "research"),))] == 3
    assert s[("gantry_forward_failed_total", (("destination", "research"),))] == 0
    assert s[("gantry_store_failed_total", ())] == 0
    assert s[("gantry_instances", (("state", "forwarded"),))] == 3
    assert s[("gantry_instances", (("state", "quarantined"),))] == 1
    assert s[("gantry_instances", (("state", "received"),))] == 0
    assert s[("gantry_deliveries", (("destination", "research"), ("state", "delivered")))] == 3
    assert s[("gantry_deliveries", (("destination", "research"), ("state", "pending")))] == 0
    assert s[("gantry_oldest_waiting_seconds", ())] == 0
    assert s[("gantry_stage_seconds_count", (("stage", "process"),))] == 4
    assert s[("gantry_stage_seconds_count", (("stage", "deliver"),))] == 3
    assert s[("gantry_stage_seconds_count", (("stage", "end_to_end"),))] == 3
    assert s[("gantry_stage_seconds_bucket", (("le", "+Inf"), ("stage", "end_to_end")))] == 3
    assert s[("gantry_component_up", (("component", "receiver"),))] == 1
    assert s[("gantry_component_up", (("component", "dispatcher"),))] == 1
    assert s[("gantry_component_up", (("component", "forward-research"),))] == 1
    for needle in [*PHI_STRINGS, "ACME", study.study_uid, *study.sop_uids, "1.2.826.0.1.3680043.2.1143.777"]:
        assert needle not in text, f"{needle!r} on the metrics page"


def test_metrics_page_is_off_by_default_and_local_unless_configured():
    node = config_from_mapping({}).node
    assert node.metrics_port is None and node.metrics_bind == "127.0.0.1"
    node = config_from_mapping({"node": {"metrics_port": 9464, "metrics_bind": "::1"}}).node
    assert (node.metrics_port, node.metrics_bind) == (9464, "::1")
    with pytest.raises(ConfigError, match="node.metrics_port: expected an integer 1-65535"):
        config_from_mapping({"node": {"metrics_port": "9464"}})
    with pytest.raises(ConfigError, match="node.metrics_port: 11112 is node.port already"):
        config_from_mapping({"node": {"metrics_port": 11112}})
    with pytest.raises(ConfigError, match="node.metrics_bind: expected an IP address"):
        config_from_mapping({"node": {"metrics_port": 9464, "metrics_bind": "localhost"}})
