"""Request metrics for Prometheus: call counts by method and status, latency histograms."""

from __future__ import annotations

from typing import Any

# Latency buckets in seconds: fine-grained below a millisecond, where online reads live.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.calls = Counter("featurestore_rpc_calls", "RPCs handled, by method and status code",
                             ["method", "code"], registry=self.registry)
        self.latency = Histogram("featurestore_rpc_seconds", "RPC latency in seconds, by method",
                                 ["method"], buckets=BUCKETS, registry=self.registry)
        self.up = Gauge("featurestore_online_store_up", "1 when the online store answers", registry=self.registry)
        self.up.set(1)
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        # The labelled children, looked up once: labels() takes a lock and builds a key on every call.
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[(method, code)] = self.calls.labels(method, code)
        counter.inc()
        if code == "OK":
            histogram = self._histograms.get(method)
            if histogram is None:
                histogram = self._histograms[method] = self.latency.labels(method)
            histogram.observe(seconds)

    def serve_http(self, host: str, port: int) -> Any:
        """Expose /metrics on ``host:port`` (a background thread); returns the HTTP server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
