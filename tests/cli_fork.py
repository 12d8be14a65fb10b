"""TEST-ONLY: operator commands run in a fork of an interpreter that has already imported the CLI.

The suite runs ``rssp`` about 800 times through :meth:`deployment.Deployment.rssp` (users,
credentials, clients, audit and configuration checks). Measured on the 2-core CI machine, a
command took 0.74 s, and a profile of ``rssp user add`` showed 0.46 s of its 0.64 s spent
importing modules and 0.04 s doing the work: starting the interpreter was half of the suite's
CPU time spent in operator commands. So each worker of the suite keeps one server process that
has imported the CLI (this module, run as a script) and forks it per command.

Each command still runs in a process of its own, as ``python -m rssp.cli`` would: its own
environment, working directory, stdin (empty), stdout, stderr and exit status, and an
``argparse`` error or an uncaught exception ends it the same way. What it shares is only what
the imports made. The README's commands and ``test_cli`` still start ``rssp`` as a fresh process,
so the real start-up stays tested; set ``RSSP_TEST_CLI_FORK=0`` to run every command that way.

``rssp serve`` (:meth:`deployment.Deployment.start`, about 70 times a run) is started the same way
in the background (:class:`Background`): the server runs in a session of its own with its output
appended to its log, and a process of the fork server waits for it and reports its exit status.
Measured: a one-worker start 1.43 s -> 0.57 s (the app is imported already), two workers
(their fork server still imports the app once) 2.4 s -> 1.2 s.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

# What the fork server imports before its first fork: the CLI and the modules its commands
# import when they run (rssp/cli.py imports those lazily, to keep a real start short), and for
# ``rssp serve`` the server and the app (a one-worker server runs the app in its own process).
PRELOAD = ("rssp.cli", "rssp.server", "rssp.serving", "rssp.app", "rssp.instance", "rssp.users",
           "rssp.credentials.enroll", "rssp.ca", "rssp.ca.admin", "rssp.ca.registry", "rssp.oauth.clients",
           "rssp.audit_query", "rssp.audit_verify", "rssp.config_seal", "rssp.config_edit", "rssp.credentials.admin",
           "rssp.credentials.suspension", "rssp.factors.settings")
_FRAME = 8  # bytes of the length prefix of each message


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(len(data).to_bytes(_FRAME, "big") + data)


def _receive(conn: socket.socket) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = conn.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("the fork server closed the connection")
            chunks += chunk
        return bytes(chunks)

    return json.loads(exactly(int.from_bytes(exactly(_FRAME), "big")))


# -- the server (a process of its own) --------------------------------------------------------

def _serve(path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the commands
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a command's own subprocesses are waited for
            _command(conn)
        conn.close()


def _command(conn: socket.socket) -> None:
    """In the forked child: run one command as ``python -m rssp.cli`` would, then exit; or, for a
    command started in the background (a ``log`` given), start it and report how it ends."""
    try:
        request = _receive(conn)
        if request.get("log"):
            _background(conn, request)
            return
        _send(conn, {"pid": os.getpid()})
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 - held until os._exit
        code = _main(request, out.fileno(), err.fileno())
        out.seek(0)
        err.seek(0)
        _send(conn, {"returncode": code, "stdout": out.read().decode(errors="replace"),
                     "stderr": err.read().decode(errors="replace")})
    finally:
        os._exit(0)


def _background(conn: socket.socket, request: dict[str, Any]) -> None:
    """``Popen(..., stdout=log, stderr=STDOUT, start_new_session=True)``: the command runs in a child of
    this process, in a session of its own; this process reports its pid, waits for it, reports its status."""
    pid = os.fork()
    if pid == 0:
        conn.close()
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os._exit(_main(request, log, log))
    _send(conn, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})


def _main(request: dict[str, Any], out: int, err: int) -> int:
    """``rssp.cli.main`` with the request's environment, directory and arguments, stdout and stderr on
    ``out`` and ``err``, stdin empty; its exit status as the interpreter would give it."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((stdin, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
    cli = importlib.import_module("rssp.cli")
    sys.argv = [str(cli.__file__), *request["args"]]
    try:
        code = cli.main(request["args"])
    except SystemExit as exc:  # argparse's usage errors, as the interpreter would report them
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - the interpreter would print it and exit 1
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


# -- the client (the test process) -------------------------------------------------------------

class _Server:
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="rssp-cli-fork-")
        self.path = str(Path(self.directory) / "socket")
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the CLI fork server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        Path(self.path).unlink(missing_ok=True)
        os.rmdir(self.directory)


_server: _Server | None = None
_lock = threading.Lock()


def enabled() -> bool:
    return os.environ.get("RSSP_TEST_CLI_FORK", "1") != "0"


def _path() -> str:
    global _server
    with _lock:
        if _server is None:
            _server = _Server()
        return _server.path


def run(args: list[str], env: dict[str, str], *, check: bool, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run([*RSSP, *args], capture_output=True, text=True)``, forked from the server."""
    path = _path()
    command = [sys.executable, "-m", "rssp.cli", *args]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        _send(conn, {"args": list(args), "env": env, "cwd": os.getcwd()})
        pid = _receive(conn)["pid"]
        try:
            done = _receive(conn)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(command, timeout) from None
    result = subprocess.CompletedProcess(command, done["returncode"], done["stdout"], done["stderr"])
    if check:
        result.check_returncode()
    return result


class Background:
    """What the suite uses of a ``subprocess.Popen`` of a long-running command (``rssp serve``): its
    ``pid`` (a session leader: ``os.killpg(pid, ...)`` reaches its processes), ``poll`` and ``wait``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = [sys.executable, "-m", "rssp.cli", *args]
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(_path())
        _send(self._conn, {"args": list(args), "env": env, "cwd": os.getcwd(), "log": str(log)})
        self.pid: int = _receive(self._conn)["pid"]
        threading.Thread(target=self._watch, name=f"cli-fork-{self.pid}", daemon=True).start()

    def _watch(self) -> None:
        try:
            self.returncode = _receive(self._conn)["returncode"]
        except (OSError, ConnectionError, ValueError):  # the fork server went away: the command is unknown
            self.returncode = -signal.SIGKILL
        finally:
            self._conn.close()
            self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode


if __name__ == "__main__":
    _serve(sys.argv[1])
