"""A real rssp deployment for tests: an instance made with the CLI, served by ``rssp serve``.

Everything goes through the operator's own commands (``rssp init``, ``user add``,
``credential create``, ``serve --workers 2``), so the suite exercises what an operator runs.
The server listens on a free loopback port; the database is the instance's SQLite file or a
PostgreSQL database given by URL (``RSSP_DATABASE_URL``).

Privileged commands run as the instance's first operator: ``RSSP_OPERATOR_FILE`` in the
deployment's environment names ``DIR/operator.json``, which ``rssp init`` writes (for every
instance, production ones included, because the variable names it). A test that edits
rssp.toml by hand seals it afterwards with :meth:`Deployment.seal_config`, as an operator would
after reviewing the edit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cli_fork
from rssp.devpki import free_port  # tests import it from here too

RSSP = [sys.executable, "-m", "rssp.cli"]

# TEST-ONLY: the instances the suite makes hash passwords and PINs with argon2id at 1 MiB and one
# pass (``rssp init --set``, rssp.auth.argon2_cost). At the default cost (0.14 s of CPU a hash,
# 0.3 s for a level-3 KEK) argon2 was about a third of the suite's CPU. The default cost is what
# test_argon2_cost checks, and the login-burst tests keep it (``Deployment.test_argon2 = False``):
# there, the cost is what the service must stand up to.
TEST_ARGON2 = ("security.argon2_memory_kib=1024", "security.argon2_passes=1", "security.argon2_lanes=1",
               "security.level3_kek_memory_kib=1024", "security.level3_kek_passes=1")


@dataclass(frozen=True)
class Cred:
    """A credential the fixture created, with the secrets the test signer knows."""

    id: str
    user: str
    key: str
    level: int
    pin: str
    totp_seed: str | None = None


@dataclass
class Deployment:
    directory: Path
    database_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    creds: dict[str, Cred] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | cli_fork.Background | None = None
    port: int = 0
    log_path: Path | None = None
    manage_clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # caID -> (client_id, secret)
    test_argon2: bool = True  # ``rssp init`` here sets the test suite's argon2 cost (TEST_ARGON2)
    log_start: int = 0  # where the last start's lines begin in server.log

    def __post_init__(self) -> None:
        self.env.setdefault("RSSP_OPERATOR_FILE", str(self.operator_file))

    @property
    def operator_file(self) -> Path:
        """The first operator's file, written by ``rssp init`` (name, password, TOTP seed)."""
        return self.directory / "operator.json"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.directory}/rssp.db"

    @property
    def server(self) -> subprocess.Popen | cli_fork.Background:
        """The running ``rssp serve`` (the leader of its process group); an error when it is not started."""
        if self.proc is None:
            raise RuntimeError("rssp serve is not running: call start() first")
        return self.proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rssp(self, *args: str, check: bool = True, operator: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run the CLI as the instance's operator (``operator=False``: as nobody); ``env`` adds variables."""
        run_env = self.env if operator else {k: v for k, v in self.env.items() if not k.startswith("RSSP_OPERATOR")}
        run_env = {**run_env, **(env or {})}
        if args[:1] == ("init",) and self.test_argon2 and "--join" not in args:
            args = (*args, *(f"--set={setting}" for setting in TEST_ARGON2))
        if cli_fork.enabled():  # the same command, forked from an interpreter that has imported the CLI
            return cli_fork.run(list(args), run_env, check=check, timeout=120)
        return subprocess.run([*RSSP, *args], env=run_env, capture_output=True, text=True, check=check,
                              timeout=120)

    def seal_config(self) -> None:
        """Accept a hand-edited rssp.toml (``rssp config seal`` as the operator), so that it serves."""
        self.rssp("config", "seal", str(self.directory))

    def rssp_json(self, *args: str, **options: Any) -> Any:  # an object or a list, as the command prints
        done = self.rssp(*args, "--json", **options)
        return json.loads(done.stdout)

    def rotate_manage_secret(self, ca_id: str = "local") -> tuple[str, str]:
        """``rssp ca secret``: the CA's old management secret stops working, so the new one is kept
        here for every later test of the same process (the deployment is shared)."""
        out = self.rssp_json("ca", "secret", str(self.directory), ca_id)
        self.manage_clients[ca_id] = (out["client_id"], out["client_secret"])
        return self.manage_clients[ca_id]

    def add_user(self, name: str, password: str) -> None:
        self.rssp("user", "add", str(self.directory), name, "--password", password)
        self.passwords[name] = password

    def add_credential(self, name: str, user: str, key: str, level: int = 1, pin: str = "123456",
                       multisign: int = 1, totp: bool = False) -> Cred:
        args = ["credential", "create", str(self.directory), "--user", user, "--key", key, "--level", str(level),
                "--pin", pin, "--multisign", str(multisign)]
        if totp:
            args.append("--totp")
        out = self.rssp_json(*args)
        seed = None
        if totp:
            seed = parse_qs(urlparse(out["otpauthURI"]).query)["secret"][0]
        cred = Cred(out["credentialID"], user, key, level, pin, seed)
        self.creds[name] = cred
        return cred

    def start(self, workers: int = 2, scheme: str = "http", cafile: str | None = None, port: int | None = None) -> None:
        """``rssp serve`` on ``port`` (a restart keeps its port; a peer configured with rssp's URL before it
        starts), else on a free one."""
        self.port = port or free_port()
        self.log_path = self.directory / "server.log"
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = ["serve", str(self.directory), "--port", str(self.port), "--workers", str(workers)]
        if cli_fork.enabled():  # the supervisor forked from an interpreter that has imported it (tests/cli_fork.py)
            self.proc = cli_fork.Background(args, self.env, self.log_path)
        else:
            with open(self.log_path, "ab") as log:  # the server writes to its own copy of the descriptor
                self.proc = subprocess.Popen([*RSSP, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        self._wait_ready(scheme, cafile, workers, all_workers=True)

    def _wait_ready(self, scheme: str = "http", cafile: str | None = None, workers: int = 1,
                    all_workers: bool = False) -> None:
        """Until ``info`` answers, and (``all_workers``) every worker has answered one: a test's
        kept-alive connections, opened while the second worker still starts, would otherwise all
        stay on the first (at most 20 s more; :meth:`answered_pids`)."""
        context = ssl.create_default_context(cafile=cafile) if scheme == "https" else None
        host = "localhost" if scheme == "https" else "127.0.0.1"
        deadline, ready_at = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rssp serve exited: {self.server_log()[-3000:]}")
            try:
                req = urllib.request.Request(f"{scheme}://{host}:{self.port}/csc/v2/info", data=b"{}",
                                             method="POST", headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=2, context=context) as resp:  # a new connection each
                    if resp.status == 200:
                        ready_at = ready_at or time.monotonic()
                        if (not all_workers or workers < 2 or time.monotonic() > ready_at + 20
                                or len(self.answered_pids()) >= workers):
                            return
                        time.sleep(0.05)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rssp serve did not become ready")

    def answered_pids(self) -> set[int]:
        """The worker processes that have answered a request since the last :meth:`start` (the access
        log names each): a worker that answered is serving, so its death is a crash, not a failed start."""
        return access_log_pids(self.log_path, self.log_start) if self.log_path is not None else set()

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


def stop_process_group(proc: subprocess.Popen | cli_fork.Background | None) -> None:
    """Stop ``rssp serve`` and its workers (its own process group): SIGTERM, SIGKILL after 20 s.

    Shared with bench/signhash.py, which starts its servers the same way.
    """
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def access_log_pids(path: Path, start: int = 0) -> set[int]:
    """The processes that answered a request according to the server log ``path`` from byte ``start`` on
    (each access log line names its worker's pid). Shared with bench/worker_start.py."""
    with open(path, "rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    pids = set()
    for line in lines:
        if line.startswith("{") and '"rssp.access"' in line:
            with contextlib.suppress(ValueError, KeyError):
                pids.add(json.loads(line)["pid"])
    return pids

def workers_of(pid: int) -> list[int]:
    """The worker processes of the ``rssp serve`` process ``pid``: the children of its fork server
    (rssp.worker_fork), the child whose command line runs multiprocessing's fork server, that are
    its forks (the same command line; not a program it runs)."""
    def children(parent: str) -> list[str]:
        return subprocess.run(["pgrep", "-P", parent, "-f", "multiprocessing.forkserver"], capture_output=True,
                              text=True).stdout.split()

    return [int(worker) for server in children(str(pid)) for worker in children(server)]


def _new_deployment(directory: Path, database_url: str | None, test_argon2: bool = True) -> Deployment:
    """``rssp init`` a fresh instance; its management clients are kept (they are shown once)."""
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    if database_url:
        env["RSSP_DATABASE_URL"] = database_url
    if directory.exists():
        shutil.rmtree(directory)
    dep = Deployment(directory, database_url, env, test_argon2=test_argon2)
    summary = dep.rssp_json("init", str(directory))
    dep.manage_clients = {ca: (c["client_id"], c["client_secret"])
                          for ca, c in summary.get("manageClients", {}).items()}
    return dep


def make_deployment_minimal(directory: Path, database_url: str | None, test_argon2: bool = True) -> Deployment:
    """An instance of its own with one user, ``signer``, and one level-1 P-256 credential of the same name
    (``test_argon2=False``: at the default argon2 cost)."""
    dep = _new_deployment(directory, database_url, test_argon2)
    dep.add_user("signer", "signer-password")
    dep.add_credential("signer", "signer", "ec-p256", multisign=10)
    return dep


EUDI_POLICY = "0.4.0.194112.1.2"  # the certificatePolicy the EUDI RP client sends to credentials/create


def make_deployment(directory: Path, database_url: str | None) -> Deployment:
    """Init an instance and populate it with the users and credentials the suite uses.

    ``credentials/create`` (CSC v2.2) accepts the EUDI client's certificate policy, issued by the
    local CA (``[credentials.certificate_policies]``).
    """
    dep = _new_deployment(directory, database_url)
    dep.rssp("config", "set", str(directory), "credentials.certificate_policies", f'{{"{EUDI_POLICY}" = "local"}}')
    dep.add_user("alice", "alice-password")
    dep.add_user("bob", "bob-password")
    dep.add_credential("rsa2048", "alice", "rsa-2048", multisign=100)
    dep.add_credential("rsa3072", "alice", "rsa-3072", multisign=10)
    dep.add_credential("p256", "alice", "ec-p256", multisign=100)
    dep.add_credential("p384", "alice", "ec-p384", multisign=10)
    dep.add_credential("l2_p256", "alice", "ec-p256", level=2, totp=True, multisign=10)
    dep.add_credential("l2_rsa", "alice", "rsa-2048", level=2, totp=True, multisign=10)
    dep.add_credential("lock", "alice", "ec-p256")
    dep.add_credential("bob", "bob", "ec-p256", multisign=10)
    return dep
