"""``rssp serve``: one process, or N processes sharing the port.

python-pkcs11 on SoftHSM2 must be driven from one thread per process (DESIGN §8), so the
server scales by processes: each worker has its own HSM session and database pool and binds
the same port with SO_REUSEPORT; the kernel spreads connections across them. Migrations run
once, in the parent, before any worker starts.

The configuration must match its seal (:mod:`rssp.config_seal`, JT2A 3.2.2.3): the parent
checks it before anything starts and refuses to serve, saying why, and every worker checks
it again and serves from the bytes it checked, so a worker started later (a respawn) never
picks up an edit that was not sealed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import ssl
import sys
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from rssp import logs
from rssp.app import create_app
from rssp.config import Config, ServerConfig, load_config
from rssp.config_seal import require_sealed
from rssp.devpki import DevPki
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.store import migrate, open_store


async def _migrate(url: str) -> None:
    store = open_store(url)
    try:
        await migrate(store)
    finally:
        await store.close()


async def _sealed_config(directory: Path | str) -> Config:
    """The configuration, read once and checked against its seal; a mismatch is audited and raised."""
    config = load_config(directory)
    store = open_store(config.database_url)
    hsm = Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)
    try:
        await hsm.start()
        content = await require_sealed(config.directory, store, hsm, actor="rssp serve")
    finally:
        await hsm.close()
        await store.close()
    return load_config(config.directory, content)


def _run_worker(directory: str, host: str, port: int, reuse_port: bool, checked: Config | None = None) -> None:
    logs.configure()
    try:
        config = checked or asyncio.run(_sealed_config(directory))
    except OperatorError as exc:  # the configuration changed since the parent checked it
        print(f"rssp: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    config = replace(config, server=replace(config.server, host=host, port=port))
    app = create_app(config)
    loop = new_event_loop()
    stop_once_on_signal(loop)
    web.run_app(app, host=host, port=port, reuse_port=reuse_port, print=None, access_log=None,
                handle_signals=False, ssl_context=tls_context(config.server), loop=loop,
                keepalive_timeout=config.server.keepalive_timeout_seconds)


def stop_once_on_signal(loop: asyncio.AbstractEventLoop) -> None:
    """Stop gracefully on the first SIGTERM or SIGINT and ignore the ones that follow.

    Why: systemd (and ``kill -- -PGID``) signals every process of the service, and the
    supervisor passes the stop on to its workers as well, so a worker gets SIGTERM twice.
    aiohttp's own handler raises on every one: the second cancelled the shutdown under way,
    and with it the services' close (the audit trail's last checkpoint among them).
    """
    def stop() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: None)
        raise web.GracefulExit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


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
    asyncio.run(_migrate(config.database_url))
    config = asyncio.run(_sealed_config(config.directory))
    pki = DevPki.from_config(config.directory, config.section("devpki"))
    if pki is not None:
        pki.start()  # before the workers, so their first TSA probes find it listening
    try:
        _serve(config, host or config.server.host, port or config.server.port, workers)
    finally:
        if pki is not None:
            pki.stop()


def _serve(config: Config, host: str, port: int, workers: int) -> None:
    scheme = "https" if config.server.tls_certificate else "http"
    print(f"rssp serving {scheme}://{host}:{port}/csc/v2/ with {workers} worker(s)", flush=True)
    if workers <= 1:
        _run_worker(str(config.directory), host, port, False, config)
        return
    _supervise(config, host, port, workers)


_STOP_GRACE_SECONDS = 75.0  # aiohttp's own shutdown timeout (60 s) and some margin
_MIN_UPTIME_SECONDS = 10.0  # a worker that dies sooner is failing to start: do not respawn it
_STOPPED = (0, -signal.SIGTERM, -signal.SIGINT)  # exit codes of a worker that was stopped, not one that crashed


def _supervise(config: Config, host: str, port: int, workers: int) -> None:
    """Run ``workers`` processes; respawn one that dies while serving; stop them all on SIGTERM/SIGINT.

    A worker that does not exit within the grace period after the stop is killed, so the
    command always returns (a worker stuck in a blocked thread must not hold the port for ever).
    """
    ctx = multiprocessing.get_context("spawn")
    args = (str(config.directory), host, port, True)
    procs = {i: ctx.Process(target=_run_worker, args=args) for i in range(workers)}
    started = {i: time.monotonic() for i in procs}
    for proc in procs.values():
        proc.start()
    stopping: list[float] = []

    def stop(_signum: int, _frame: object) -> None:
        stopping.append(time.monotonic())
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while any(proc.is_alive() for proc in procs.values()) or (not stopping and not failed):
        for i, proc in list(procs.items()):
            proc.join(0.2)
            if proc.is_alive() or stopping or failed:
                continue
            if proc.exitcode in _STOPPED:  # told to stop (e.g. the group's SIGTERM reached it first)
                stop(signal.SIGTERM, None)
                continue
            if time.monotonic() - started[i] < _MIN_UPTIME_SECONDS:
                print(f"rssp: worker {proc.pid} exited with {proc.exitcode} while starting; stopping", flush=True)
                failed = True
                stop(signal.SIGTERM, None)
                continue
            print(f"rssp: worker {proc.pid} exited with {proc.exitcode}; starting another", flush=True)
            procs[i] = ctx.Process(target=_run_worker, args=args)
            started[i] = time.monotonic()
            procs[i].start()
        if stopping and time.monotonic() - stopping[0] > _STOP_GRACE_SECONDS:
            for proc in procs.values():
                if proc.is_alive():
                    proc.kill()
    clean = not failed and all(proc.exitcode in _STOPPED for proc in procs.values())
    sys.exit(0 if clean else 1)
