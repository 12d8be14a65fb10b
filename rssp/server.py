"""``rssp serve``: one process, or N processes sharing the port, and the process that watches them.

python-pkcs11 on SoftHSM2 must be driven from one thread per process (DESIGN §8), so the
server scales by processes: each worker has its own HSM session and database pool and binds
the same port with SO_REUSEPORT; the kernel spreads connections across them. Migrations run
once, in the parent, before any worker starts. The workers are forked from a fork server that
imported their code once (:mod:`rssp.worker_fork`). The parent also answers ``GET /metrics`` for
all of them (:mod:`rssp.metrics`); a worker's own life is :mod:`rssp.serving`.

The configuration must match its seal (:mod:`rssp.config_seal`, JT2A 3.2.2.3): the parent
checks it before anything starts and refuses to serve, saying why, and every worker checks
it again and serves from the bytes it checked, so a worker started later (a respawn) never
picks up an edit that was not sealed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import ssl
import sys
import time
from pathlib import Path

from rssp import metrics, worker_fork
from rssp.config import Config, ServerConfig, load_config
from rssp.devpki import DevPki
from rssp.serving import run_worker, sealed_config
from rssp.store import migrate, open_store


async def _migrate(url: str) -> None:
    store = open_store(url)
    try:
        await migrate(store)
    finally:
        await store.close()


def _reconcile(config: Config) -> None:
    """Destroy the HSM keys that crashed enrollments left without a credential (rssp.doctor)."""
    from rssp.doctor import reconcile_instance

    try:
        report = asyncio.run(reconcile_instance(config, clean=True, actor="rssp serve"))
    except Exception as exc:
        print(f"rssp: HSM reconciliation skipped ({type(exc).__name__}: {exc})", flush=True)
        return
    if report.destroyed:
        print(f"rssp: destroyed {len(report.destroyed)} orphan HSM key(s) left by interrupted enrollments", flush=True)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (a dependency on Linux), else asyncio's own loop.

    Why: a worker under signHash load is bound by the Python time its threads hold the GIL;
    uvloop's transports and its cross-thread wake-ups (every HSM and database result comes
    back through one) take a fraction of what asyncio's pure-Python selector loop spends.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# TLS 1.2 suites: ECDHE key exchange (forward secrecy) and an AEAD cipher, for an ECDSA or an RSA
# certificate (Mozilla's "intermediate" list without DHE). Named one by one so that neither the
# OpenSSL build's default list (static RSA and CBC suites on Debian) nor a new version widens it.
# TLS 1.3 suites are all ECDHE with AEAD already (OpenSSL's defaults; Python cannot set them).
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))


def tls_context(server: ServerConfig) -> ssl.SSLContext | None:
    """HTTPS with TLS 1.2 or newer when a certificate is configured (DESIGN §6); else None.

    Beside the suites: no client-initiated renegotiation (a CPU cost a client could repeat at
    will), and no stateless session tickets, whose key lives as long as the worker and would
    let whoever reads it decrypt every resumed session (resumption uses the session cache).
    """
    if not server.tls_certificate:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    context.load_cert_chain(server.tls_certificate, server.tls_key)
    return context


def serve(directory: Path, host: str | None, port: int | None, workers: int) -> None:
    """Serve until SIGTERM/SIGINT; a development instance's test PKI runs (once) alongside."""
    config = load_config(directory)
    metrics_dir = metrics.use_multiprocess_dir()  # before anything counts, and before the workers start
    if workers > 1:
        worker_fork.start()  # it imports the workers' code meanwhile
    try:
        asyncio.run(_migrate(config.database_url))
        config = asyncio.run(sealed_config(config.directory))
        if config.hsm.reconcile_on_start:
            _reconcile(config)
        pki = DevPki.from_config(config.directory, config.section("devpki"))
        if pki is not None:
            pki.start()  # before the workers, so their first TSA probes find it listening
        exposition = None
        if config.metrics.port:
            exposition = metrics.serve_metrics(config.metrics.host, config.metrics.port)
        try:
            _serve(config, host or config.server.host, port or config.server.port, workers)
        finally:
            if exposition is not None:
                metrics.stop_metrics(exposition)
            if pki is not None:
                pki.stop()
    finally:
        metrics.remove_multiprocess_dir(metrics_dir)


def _serve(config: Config, host: str, port: int, workers: int) -> None:
    scheme = "https" if config.server.tls_certificate else "http"
    print(f"rssp serving {scheme}://{host}:{port}/csc/v2/ with {workers} worker(s)", flush=True)
    if config.metrics.port:
        print(f"rssp metrics on http://{config.metrics.host}:{config.metrics.port}/metrics", flush=True)
    if workers <= 1:
        run_worker(str(config.directory), host, port, False, checked=config)
        return
    _supervise(config, host, port, workers)


_MIN_UPTIME_SECONDS = 10.0  # a worker that dies sooner after its start crashed early: back off before the next
_MAX_BACKOFF_SECONDS = 30.0
_STOPPED = (0, -signal.SIGTERM, -signal.SIGINT)  # exit codes of a worker that was stopped, not one that crashed


def stop_grace(server: ServerConfig) -> float:
    """How long workers may take to stop after SIGTERM before they are killed."""
    return server.shutdown_delay_seconds + server.shutdown_timeout_seconds + 15.0


class _Workers:
    """The worker processes, their start times, whether each serves yet, and how often each slot
    crashed lately.

    A worker sets its ``ready`` event once it listens (:func:`rssp.serving.run_worker`): a
    first-generation worker that dies before that is failing to start (a bad configuration, an
    HSM that refuses the PIN), and the server stops rather than respawn it in a loop. One that
    dies later, however soon, crashed while serving and is replaced (with backoff).
    """

    def __init__(self, config: Config, host: str, port: int, count: int) -> None:
        self.ctx = worker_fork.context()
        self.args = (str(config.directory), host, port, True, os.getpid())
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.started: dict[int, float] = {}
        self.ready: dict[int, multiprocessing.synchronize.Event] = {}
        self.first: dict[int, bool] = {}
        self.crashes: dict[int, int] = {i: 0 for i in range(count)}
        self.due: dict[int, float] = {}  # slot -> when its replacement may start (backoff)
        for i in range(count):
            self.start(i, first=True)

    def start(self, i: int, first: bool = False) -> None:
        worker_fork.start()  # running already, unless it died
        self.ready[i] = self.ctx.Event()
        self.procs[i] = self.ctx.Process(target=run_worker, args=self.args, kwargs={"ready": self.ready[i]})
        self.started[i], self.first[i] = time.monotonic(), first
        self.procs[i].start()

    def alive(self) -> list[multiprocessing.process.BaseProcess]:
        return [p for p in self.procs.values() if p.is_alive()]

    def release(self) -> None:
        """Forget the stopped workers and their events: their semaphores are unlinked now, as the
        process ends without the interpreter's clean-up (:func:`~rssp.serving.exit_now`), which
        would otherwise leave them to multiprocessing's tracker and its "leaked semaphore" warning."""
        self.procs.clear()
        self.ready.clear()
        multiprocessing.active_children()  # drops the ended processes it still holds


def _supervise(config: Config, host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes; respawn one that dies while serving (with backoff); stop them all on SIGTERM/SIGINT.

    A worker that does not exit within the grace period after the stop is killed, so the
    command always returns (a worker stuck in a blocked thread must not hold the port for ever).
    Each worker dies with this process however it dies (:func:`rssp.worker_fork.die_with_parent`).
    """
    pool = _Workers(config, host, port, workers)
    stopping: list[float] = []

    def stop(_signum: int, _frame: object) -> None:
        stopping.append(time.monotonic())
        for proc in pool.alive():
            proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    grace = stop_grace(config.server)
    while pool.alive() or pool.due or (not stopping and not failed):
        for i, proc in list(pool.procs.items()):
            proc.join(0.2 / workers)
            if proc.is_alive() or i in pool.due or stopping or failed:
                continue
            failed = _worker_exited(pool, i, proc, stop)
        _start_due(pool, stopping or failed)
        if stopping and time.monotonic() - stopping[0] > grace:
            for proc in pool.alive():
                proc.kill()
    clean = not failed and all(proc.exitcode in _STOPPED for proc in pool.procs.values())
    pool.release()
    sys.exit(0 if clean else 1)


def _worker_exited(pool: _Workers, i: int, proc: multiprocessing.process.BaseProcess, stop) -> bool:  # type: ignore[no-untyped-def]
    """Decide what a dead worker means; True if the server must stop as failed."""
    metrics.worker_gone(proc.pid or 0)
    if proc.exitcode in _STOPPED:  # told to stop (e.g. the group's SIGTERM reached it first)
        stop(signal.SIGTERM, None)
        return False
    if proc.exitcode == os.EX_CONFIG:  # the configuration no longer matches its seal: every respawn would refuse
        print(f"rssp: worker {proc.pid} refused the configuration; stopping", flush=True)
        stop(signal.SIGTERM, None)
        return True
    if pool.first[i] and not pool.ready[i].is_set():
        print(f"rssp: worker {proc.pid} exited with {proc.exitcode} while starting; stopping", flush=True)
        stop(signal.SIGTERM, None)
        return True
    uptime = time.monotonic() - pool.started[i]
    pool.crashes[i] = pool.crashes[i] + 1 if uptime < _MIN_UPTIME_SECONDS else 0
    delay = min(_MAX_BACKOFF_SECONDS, 2.0 ** pool.crashes[i] - 1)  # 0 s after a worker that served a while
    print(f"rssp: worker {proc.pid} exited with {proc.exitcode}; starting another in {delay:.0f}s", flush=True)
    pool.due[i] = time.monotonic() + delay
    return False


def _start_due(pool: _Workers, stopping: object) -> None:
    now = time.monotonic()
    for i, when in list(pool.due.items()):
        if stopping:
            del pool.due[i]
        elif now >= when:
            del pool.due[i]
            pool.start(i)
