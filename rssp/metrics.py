"""Prometheus metrics of the server processes (``prometheus_client``, multi-process mode).

Every worker of ``rssp serve --workers N`` counts in its own memory-mapped files under one
directory (``PROMETHEUS_MULTIPROC_DIR``, made fresh by the serving process before any worker
starts); the serving process itself answers ``GET /metrics`` on its own listener
(``[metrics] host``/``port``, loopback by default) by merging the files, so a scrape sees the
whole host whichever worker would have taken the connection.

Labels are bounded and never carry a secret or a person: CSC method names (a fixed list),
HTTP status codes, key types, levels, TSA IDs from rssp.toml, outcomes. Never a user ID,
credential ID, client address, token or path a client typed.

Metric objects are made on first use (:func:`m`), never at import: the value class of
``prometheus_client`` must be chosen (multi-process or not) before the first metric exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import start_http_server

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HSM_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The metric families (one instance per process, see :func:`m`)."""

    def __init__(self) -> None:
        self.requests = Counter("rssp_http_requests_total",
                                "HTTP requests answered, by CSC method (or route) and status", ["method", "status"])
        self.latency = Histogram("rssp_http_request_duration_seconds", "Time from request to response, by method",
                                 ["method"], buckets=_LATENCY)
        self.signatures = Counter("rssp_signatures_total", "Signature values produced, by key type and level",
                                  ["key_type", "level"])
        self.hsm_latency = Histogram("rssp_hsm_call_duration_seconds", "One hop to the HSM thread, by operation",
                                     ["operation"], buckets=_HSM_LATENCY)
        self.sad = Counter("rssp_sad_spends_total", "SAD spends, by outcome (spent, refused)", ["outcome"])
        self.lockouts = Counter("rssp_credential_lockouts_total",
                                "authorize attempts refused because the credential is locked")
        self.tsa_calls = Counter("rssp_tsa_requests_total", "Requests to upstream TSAs, by TSA and outcome",
                                 ["tsa", "outcome"])
        self.tsa_failovers = Counter("rssp_tsa_failovers_total",
                                     "Timestamp requests that left a TSA for the next one, by the TSA that failed",
                                     ["tsa"])
        self.revocation_fetches = Counter("rssp_revocation_fetches_total",
                                          "OCSP and CRL fetches over the network, by kind and outcome",
                                          ["kind", "outcome"])
        self.revocation_cache = Counter("rssp_revocation_cache_total", "Revocation data lookups, by result (hit, miss)",
                                        ["kind", "result"])
        self.jobs_queued = Gauge("rssp_async_jobs_queued", "Asynchronous jobs waiting to run (the whole database)",
                                 multiprocess_mode="livemostrecent")
        self.db_unavailable = Counter("rssp_database_unavailable_total",
                                      "Requests answered 503 because the database could not be used")


@lru_cache(maxsize=1)
def m() -> Metrics:
    """This process's metrics, made on first use."""
    return Metrics()


def use_multiprocess_dir() -> str:
    """Make a fresh directory for the workers' metric files and select multi-process mode.

    Called by ``rssp serve`` before anything counts; the workers it spawns inherit the
    environment variable and so write there too.
    """
    path = tempfile.mkdtemp(prefix="rssp-metrics-")
    os.environ[ENV] = path
    values.ValueClass = values.MultiProcessValue()
    m.cache_clear()
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_gone(pid: int) -> None:
    """Forget the live gauges of a worker that exited (its counters stay counted)."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)


def registry() -> CollectorRegistry:
    """What a scrape shows: the merged files of every process in multi-process mode, else this process."""
    if os.environ.get(ENV):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    m()
    from prometheus_client import REGISTRY

    return REGISTRY


def serve_metrics(host: str, port: int) -> Any:
    """Answer ``GET /metrics`` on ``host:port`` from a daemon thread; the server object (for shutdown)."""
    server, thread = start_http_server(port, addr=host, registry=registry())
    thread.name = "rssp-metrics"
    return server


def stop_metrics(server: Any) -> None:
    server.shutdown()
    server.server_close()
