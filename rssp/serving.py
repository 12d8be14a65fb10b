"""One server process: serve the app until SIGTERM, then stop without dropping accepted requests.

The stop, in order (#18):

1. ``/readyz`` answers 503 ``stopping`` and every response says ``Connection: close``;
2. ``[server] shutdown_delay_seconds`` pass while the port stays open (a load balancer that
   probes ``/readyz`` takes the host out meanwhile);
3. the connections the kernel already completed but nobody accepted yet are accepted, and in
   the same step the listening socket closes (closing it with connections queued would reset
   them: a client would see its request dropped);
4. a short linger lets the just-accepted connections deliver their requests; requests in flight
   (their bodies still arriving included) get ``[server] shutdown_timeout_seconds`` to finish,
   then the connections close (aiohttp's own shutdown stops reading at once, which would cut a
   request whose body is still on its way);
5. the app's clean-up runs: job claims go back, the HSM session logs out, the database closes;
   the process exits 0.

A worker of ``rssp serve --workers N`` also stops when its supervising process dies, however it
dies (:func:`rssp.worker_fork.die_with_parent`): no worker keeps serving orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.synchronize
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from aiohttp import web

from rssp import logs, worker_fork
from rssp.config import Config, load_config
from rssp.config_seal import require_sealed
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.store import open_store

log = logging.getLogger("rssp.server")

_LINGER_SECONDS = 0.5  # step 4: long enough for a request already sent to be read, short enough not to matter


async def sealed_config(directory: Path | str) -> Config:
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


def run_worker(directory: str, host: str, port: int, reuse_port: bool, parent_pid: int | None = None,
               checked: Config | None = None, ready: multiprocessing.synchronize.Event | None = None) -> None:
    """The body of one server process (a worker the supervisor started, or the only process with ``--workers 1``).

    A supervised worker checks the configuration's seal itself (``checked`` is the parent's check,
    for the single-process case): a worker started later never serves an unsealed edit. It sets
    ``ready`` once it listens: the supervisor tells a worker that failed to start from one that
    crashed while serving by it (:mod:`rssp.server`).
    """
    if parent_pid is not None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked in the fork server (rssp.worker_preload)
        worker_fork.die_with_parent(worker_fork.parent_of_this_worker(parent_pid))
    try:
        config = checked or asyncio.run(sealed_config(directory))
    except OperatorError as exc:  # the configuration changed since the parent checked it
        print(f"rssp: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        sys.exit(os.EX_CONFIG)  # the supervisor stops the server: a respawn would refuse the same way
    logs.configure(logs.log_format(config.raw))
    config = replace(config, server=replace(config.server, host=host, port=port))
    from rssp.server import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(config, reuse_port, ready))
    finally:
        loop.set_exception_handler(_closing_at_exit)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    if parent_pid is not None:  # a supervised worker: nothing runs after this function
        exit_now(0)


def exit_now(code: int) -> NoReturn:
    """End a server process whose work is done, without tearing its interpreter down.

    Why: freeing every object the imports made (pyHanko, cryptography, SQLAlchemy, aiohttp) is
    0.2 to 0.35 s of CPU per process, measured with strace on a stopping worker; it delayed every
    stop and rolling restart by that much and did nothing useful: the event loop, the HSM session,
    the database and the thread pools are closed by then, and the log is flushed here.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _closing_at_exit(_loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """An async generator left open when the worker stops (a store transaction cut short, e.g. while
    its database was down) cannot always roll back over a broken connection: the database discards
    the transaction when the connection closes, so this is one warning line, not an error."""
    exc = context.get("exception")
    log.warning("at exit: %s (%s)", context.get("message", "async generator not closed"),
                type(exc).__name__ if exc is not None else "no exception")


async def _serve(config: Config, reuse_port: bool, ready: multiprocessing.synchronize.Event | None) -> None:
    from rssp.api.access import TRAFFIC
    from rssp.app import create_app
    from rssp.server import tls_context

    app = create_app(config)
    server = config.server
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           keepalive_timeout=server.keepalive_timeout_seconds, lingering_time=server.lingering_seconds,
                           shutdown_timeout=server.shutdown_timeout_seconds)
    await runner.setup()
    ssl_context = tls_context(server)
    site = web.TCPSite(runner, server.host, server.port, reuse_port=reuse_port, ssl_context=ssl_context)
    await site.start()
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    traffic = app[TRAFFIC]
    traffic.stopping = True
    log.info("stopping: readiness off, port open for %ss more", server.shutdown_delay_seconds)
    await asyncio.sleep(server.shutdown_delay_seconds)
    await _close_listener(runner, site, ssl_context)
    await asyncio.sleep(_LINGER_SECONDS)
    if not await traffic.wait_idle(server.shutdown_timeout_seconds):  # bodies still arriving are read whole
        log.warning("stopping with %d request(s) still in flight after %ss", traffic.inflight,
                    server.shutdown_timeout_seconds)
    await runner.cleanup()
    log.info("stopped")


async def _close_listener(runner: web.AppRunner, site: web.TCPSite, ssl_context: object) -> None:
    """Accept what the kernel queued, close the listening socket in the same step, then serve those."""
    listener = getattr(site, "_server", None)  # the asyncio Server behind the site
    queued = _accept_queued(listener.sockets if listener is not None else ())
    await site.stop()  # closes the listening socket before any other task runs
    loop = asyncio.get_running_loop()
    for conn in queued:
        try:
            await loop.connect_accepted_socket(runner.server, conn, ssl=ssl_context)  # type: ignore[arg-type]
        except OSError:
            conn.close()
    if queued:
        log.info("accepted %d queued connection(s) while closing the port", len(queued))


def _accept_queued(sockets: object) -> list[socket.socket]:
    out: list[socket.socket] = []
    for listening in sockets:  # type: ignore[attr-defined]
        dup = socket.socket(fileno=os.dup(listening.fileno()))  # the same socket: closing the copy keeps it
        try:
            dup.setblocking(False)
            while True:
                try:
                    conn, _addr = dup.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                out.append(conn)
        finally:
            dup.close()
    return out
