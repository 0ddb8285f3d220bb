"""Prometheus metrics on an optional local HTTP port (`node.metrics_port`), with the official
client library (prometheus_client).

The node is several processes: the receiver counts C-STOREs, the workers de-identify, the main
process records outcomes and forwards. Rather than prometheus_client's multiprocess mode (a
directory of memory-mapped files per process, which a SIGKILLed process leaves behind and
whose gauges need a merge rule each), the main process serves everything from what all
processes already write to the one SQLite index:

- counters from the audit table, which every process appends to (one hash chain, ids in
  commit order): at each scrape the rows after the last one seen are read and counted, so a
  C-STORE the receiver process answered is counted here without any shared memory;
- latency histograms from the same rows (an outcome's time minus the instance's received_at);
- queue gauges (instances per state, deliveries per destination and state, oldest waiting)
  from the index, at scrape time;
- component health from the main process's own view of its threads and the receiver process.

Counters start at zero when `serve` starts (Prometheus handles the reset). Labels are state
names, stage names, destination names and component names from the configuration and the
code: never a value read from a data set.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gantry_node.node.store import STATES, Store

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
DELIVERY_STATES = ("pending", "delivered", "failed")
_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # stage names are code's words; anything else is "other"
_CLEAN_TIMES_KEPT = 100_000


class NodeMetrics:
    """The registry and how to bring it up to date (`refresh`), one store connection."""

    def __init__(self, store: Store, destinations: list[str], components: Callable[[], dict[str, bool]],
                 clock: Callable[[], float] = time.time):
        self.store, self.components, self.clock = store, components, clock
        self.destinations = destinations
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.received = Counter("gantry_received", "C-STORE requests with a data set", registry=r)
        self.acknowledged = Counter("gantry_acknowledged", "C-STOREs answered Success (stored, or a duplicate "
                                    "already held)", registry=r)
        self.store_failed = Counter("gantry_store_failed", "C-STOREs answered with a failure status because the "
                                    "instance could not be stored or indexed", registry=r)
        self.clean = Counter("gantry_clean", "instances de-identified and verified", registry=r)
        self.quarantined = Counter("gantry_quarantined", "instances quarantined, by pipeline stage", ["stage"],
                                   registry=r)
        self.delivered = Counter("gantry_delivered", "clean copies a destination acknowledged", ["destination"],
                                 registry=r)
        self.forwarded = Counter("gantry_forwarded", "instances every destination acknowledged", registry=r)
        self.forward_failed = Counter("gantry_forward_failed", "deliveries given up after their attempts "
                                      "(instance forward_failed)", ["destination"], registry=r)
        self.instances = Gauge("gantry_instances", "instances in the index, by state", ["state"], registry=r)
        self.deliveries = Gauge("gantry_deliveries", "deliveries in the index, by destination and state",
                                ["destination", "state"], registry=r)
        self.oldest = Gauge("gantry_oldest_waiting_seconds", "age of the oldest instance received but not yet "
                            "forwarded or quarantined (0: none)", registry=r)
        self.latency = Histogram("gantry_stage_seconds", "time per stage: process = received to clean or "
                                 "quarantined, deliver = clean to a destination's acknowledgement, end_to_end = "
                                 "received to acknowledged by every destination", ["stage"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.up = Gauge("gantry_component_up", "1 while a component of the node runs, 0 once it has stopped",
                        ["component"], registry=r)
        for state in STATES:
            self.instances.labels(state)
        for d in destinations:
            self.delivered.labels(d)
            self.forward_failed.labels(d)
        for stage in ("process", "deliver", "end_to_end"):
            self.latency.labels(stage)
        self._after = store.audit_last_id()  # count what happens from now on
        self._clean_at: OrderedDict[int, float] = OrderedDict()  # instance -> when it became clean
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            while self._count_new_rows():
                pass
            counts = self.store.counts()
            for state in STATES:
                self.instances.labels(state).set(counts.get(state, 0))
            by_state = self.store.deliveries_by_state()
            for d in {*self.destinations, *(k[0] for k in by_state)}:
                for state in DELIVERY_STATES:
                    self.deliveries.labels(d, state).set(by_state.get((d, state), 0))
            oldest = self.store.oldest_waiting()
            self.oldest.set(max(0.0, self.clock() - oldest) if oldest else 0.0)
            for name, alive in self.components().items():
                self.up.labels(name).set(1 if alive else 0)

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)

    def _count_new_rows(self) -> bool:
        import json

        rows = self.store.audit_since(self._after, limit=5000)
        if not rows:
            return False
        self._after = rows[-1]["id"]
        wanted = [r["instance_id"] for r in rows
                  if r["instance_id"] is not None and r["event"] in ("deidentified", "quarantined", "forwarded")]
        received_at = self.store.received_times(sorted(set(wanted))) if wanted else {}
        for row in rows:
            event, instance, at = row["event"], row["instance_id"], row["at"]
            fields = json.loads(row["fields"] or "{}")
            if event in ("received", "duplicate"):
                self.received.inc()
                self.acknowledged.inc()
            elif event == "store_failed":
                if "peer" in fields:  # the receiver's: a C-STORE answered with a failure status
                    self.received.inc()
                self.store_failed.inc()
            elif event == "deidentified":
                self.clean.inc()
                self._observe("process", at, received_at.get(instance))
                self._clean_at[instance] = at
                if len(self._clean_at) > _CLEAN_TIMES_KEPT:
                    self._clean_at.popitem(last=False)
            elif event == "quarantined":
                self.quarantined.labels(_label(fields.get("stage"))).inc()
                self._observe("process", at, received_at.get(instance))
            elif event == "delivered":
                self.delivered.labels(_label(fields.get("destination"))).inc()
                self._observe("deliver", at, self._clean_at.get(instance))
            elif event == "forwarded":
                self.forwarded.inc()
                self._observe("end_to_end", at, received_at.get(instance))
                self._clean_at.pop(instance, None)
            elif event == "forward_failed":
                self.forward_failed.labels(_label(fields.get("destination"))).inc()
        return True

    def _observe(self, stage: str, at: float, since: float | None) -> None:
        if since is not None and at >= since:
            self.latency.labels(stage).observe(at - since)


def _label(value) -> str:
    return value if isinstance(value, str) and _LABEL.match(value) else "other"


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """The HTTP page: GET /metrics (or /) in Prometheus text format; anything else 404."""

    def __init__(self, metrics: NodeMetrics, bind: str, port: int):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 -- http.server's name
                if self.path.split("?")[0] not in ("/", "/metrics"):
                    self.send_error(404)
                    return
                try:
                    body = metrics.render()
                except Exception as exc:  # noqa: BLE001 -- a scrape must not end the server
                    self.send_error(503, f"metrics unavailable: {type(exc).__name__}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 -- scrapes are not audit events
                pass

        self.metrics = metrics
        self.server = (_V6Server if ":" in bind else ThreadingHTTPServer)((bind, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.metrics.store.close()


def start_metrics(node) -> MetricsServer | None:
    """The node's metrics page, when `node.metrics_port` is set (its own store connection).
    Started before `node.start()`, so that nothing the node does is left uncounted; OSError
    when the port cannot be bound."""
    cfg = node.config
    if cfg.node.metrics_port is None:
        return None

    def components() -> dict[str, bool]:
        out = {"receiver": node.receivers_alive()}
        out.update({c.name: c.state == "running" for c in node.supervisor.states()})
        return out

    store = Store(cfg.db_path)
    metrics = NodeMetrics(store, [d.name for d in cfg.effective_destinations()], components)
    try:
        server = MetricsServer(metrics, cfg.node.metrics_bind, cfg.node.metrics_port)
    except OSError:
        store.close()
        raise
    server.start()
    return server
