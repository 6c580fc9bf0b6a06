"""Prometheus metrics of one server (`prometheus-client`, a registry of its own per app, so several apps can live
in one process): requests and errors per route and status, request latency and time to first token
histograms, queue depth and sequences decoding per model, decode/prefill batch sizes, generated tokens and
tokens/s over the last `window` seconds."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no `_created` series: they double the output and say nothing here

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, window: float = 10.0):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("bombus_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.errors = Counter("bombus_request_errors", "HTTP requests answered with an error status",
                              ["route", "status"], registry=r)
        self.latency = Histogram("bombus_request_latency_seconds", "time from request to the end of the response",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("bombus_time_to_first_token_seconds", "time from request to the first token",
                                     ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("bombus_queue_depth", "requests waiting for a generation slot", ["model"],
                                 registry=r)
        self.active = Gauge("bombus_active_sequences", "sequences decoding", ["model"], registry=r)
        self.batch_size = Histogram("bombus_batch_size", "rows per decode/prefill step (kind decode, prefill; score: "
                                    "a prompt scored for echo with logprobs), inputs per encoder batch (kind = the "
                                    "task)", ["model", "kind"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.generated = Counter("bombus_generated_tokens", "tokens generated", ["model"], registry=r)
        self.tokens_per_second = Gauge("bombus_tokens_per_second", "tokens generated per second, last seconds",
                                       ["model"], registry=r)
        self.in_flight = Gauge("bombus_requests_in_flight", "HTTP requests being answered", registry=r)
        self.window = window

    def watch_engine(self, model: str, queue_depth: Callable[[], int], active: Callable[[], int]) -> _Observer:
        """Gauges that read an engine's queue and slots, and the observer the engine reports batches to."""
        self.queue_depth.labels(model).set_function(queue_depth)
        self.active.labels(model).set_function(active)
        observer = _Observer(self, model)
        self.tokens_per_second.labels(model).set_function(observer.rate)
        return observer

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Observer:
    """What an `Engine` calls: `batch(kind, size)` and `tokens(count)`."""

    def __init__(self, metrics: Metrics, model: str):
        self.metrics, self.model = metrics, model
        self.recent: deque[tuple[float, int]] = deque()
        self.lock = threading.Lock()
        self.generated = metrics.generated.labels(model)

    def batch(self, kind: str, size: int) -> None:
        self.metrics.batch_size.labels(self.model, kind).observe(size)

    def tokens(self, count: int) -> None:
        self.generated.inc(count)
        now = time.monotonic()
        with self.lock:
            self.recent.append((now, count))
            self._trim(now)

    def rate(self) -> float:
        now = time.monotonic()
        with self.lock:
            self._trim(now)
            return sum(c for _, c in self.recent) / self.metrics.window

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.metrics.window:
            self.recent.popleft()
