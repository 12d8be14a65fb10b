"""A throwaway PostgreSQL cluster for the test suite.

    cluster = PgCluster()
    url = cluster.start()        # "postgresql+asyncpg://postgres@127.0.0.1:PORT/rssp_test"
    url2 = cluster.create_database("other")   # a fresh, empty database on the same server
    cluster.stop()               # stops the server and deletes its directory

The server comes from Debian's ``postgresql`` package (``/usr/lib/postgresql/<ver>/bin``,
highest version). initdb refuses to run as root, so as root the cluster is made and run as
the ``postgres`` system user (``runuser -u postgres --``) in a fresh temporary directory
owned by that user. Trust authentication, loopback TCP only on a free port, the Unix socket
in the temporary directory, ``fsync=off``.

If ``RSSP_TEST_PG_URL`` is set (an SQLAlchemy ``postgresql+asyncpg://`` URL), no cluster is
started: ``start()`` returns that URL and ``create_database`` creates databases there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid

__all__ = ["PgCluster", "PgClusterError", "find_pg_bindir"]

DEFAULT_DB = "rssp_test"
SUPERUSER = "postgres"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PgClusterError(RuntimeError):
    pass


def _version_key(path: str) -> tuple:
    ver = os.path.basename(os.path.dirname(path))
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.]", ver))


def find_pg_bindir() -> str:
    """The bin directory of the highest installed PostgreSQL server version."""
    candidates = [
        d for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.path.isfile(os.path.join(d, "initdb")) and os.path.isfile(os.path.join(d, "pg_ctl"))
    ]
    if not candidates:
        raise PgClusterError(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql, or run scripts/test.sh, or set RSSP_TEST_PG_URL)"
        )
    return max(candidates, key=_version_key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_coro_in_thread(coro_fn):
    """Run ``coro_fn()`` on a private event loop in a worker thread and return its result.

    Works whether or not the caller is itself inside a running event loop (async tests)."""
    box: dict = {}

    def target():
        try:
            box["result"] = asyncio.run(coro_fn())
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="pgcluster-admin")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _required(value: str | None, what: str) -> str:
    """``value``, which only a started cluster has (the attributes are None before :meth:`PgCluster.start`)."""
    if value is None:
        raise PgClusterError(f"the cluster has no {what}: it is not started (or uses RSSP_TEST_PG_URL)")
    return value


class PgCluster:
    def __init__(self, *, dbname: str = DEFAULT_DB, external_url: str | None = None):
        self.dbname = dbname
        self.external_url = external_url if external_url is not None else os.environ.get("RSSP_TEST_PG_URL") or None
        self.bindir: str | None = None
        self.tmpdir: str | None = None
        self.datadir: str | None = None
        self.logfile: str | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.url: str | None = None
        self._as_user: str | None = None
        self._started = False

    # ------------------------------------------------------------------ public API
    def start(self) -> str:
        """Start the server (or use RSSP_TEST_PG_URL) and return the SQLAlchemy async URL
        of database ``rssp_test``."""
        if self.url is not None:
            return self.url
        if self.external_url:
            url = self.external_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            self.url = url
            return url

        self.bindir = find_pg_bindir()
        self._as_user = SUPERUSER if os.geteuid() == 0 else None
        if self._as_user:
            if shutil.which("runuser") is None:
                raise PgClusterError("running as root but runuser(1) is missing")
            try:
                import pwd
                pw = pwd.getpwnam(self._as_user)
            except KeyError:
                raise PgClusterError(
                    "running as root but there is no 'postgres' user (install Debian's postgresql)"
                ) from None
        # /tmp, not $TMPDIR: the postgres user must be able to reach the directory
        self.tmpdir = tempfile.mkdtemp(prefix="rssp-pg-", dir="/tmp" if self._as_user else None)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.logfile = os.path.join(self.tmpdir, "postgres.log")
        atexit.register(self.stop)
        try:
            if self._as_user:
                os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmpdir, 0o700)
            self._initdb()
            self._start_server()
            self._started = True
            self._createdb(self.dbname)
        except BaseException:
            self.stop()
            raise
        self.url = self._url_for(self.dbname)
        return self.url

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique name if none is given) and return its URL."""
        if self.url is None:
            self.start()
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._check_ident(name)
        self._admin_sql(f'CREATE DATABASE "{name}"')
        return self._url_for(name)

    def drop_database(self, name: str) -> None:
        self._check_ident(name)
        self._admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and delete its directory (no-op for RSSP_TEST_PG_URL)."""
        try:
            if self._started and self.datadir and os.path.isdir(self.datadir):
                self._run([self._tool("pg_ctl"), "stop", "-D", self.datadir,
                           "-m", "immediate", "-w", "-t", "30"], check=False)
        finally:
            self._started = False
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None
            self.url = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)

    def pause(self) -> None:
        """Stop the server (fast shutdown: sessions are terminated), keeping its data; :meth:`resume` restarts it."""
        self._run([self._tool("pg_ctl"), "stop", "-D", self._data_dir, "-m", "fast", "-w", "-t", "60"])

    def resume(self) -> None:
        """Start the server again on the same port with the same data."""
        self._run([self._tool("pg_ctl"), "start", "-D", self._data_dir, "-l", self._log_file,
                   "-w", "-t", "60"])

    def log_tail(self, n: int = 40) -> str:
        if self.logfile is None:  # not started, or an external server
            return ""
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _tool(self, name: str) -> str:
        """Path of one of the server's programs (initdb, pg_ctl, createdb, psql)."""
        return os.path.join(_required(self.bindir, "server programs"), name)

    @property
    def _data_dir(self) -> str:
        return _required(self.datadir, "data directory")

    @property
    def _log_file(self) -> str:
        return _required(self.logfile, "log file")

    @property
    def _server_url(self) -> str:
        return _required(self.url, "URL")

    @staticmethod
    def _check_ident(name: str) -> None:
        if not _IDENT.match(name):
            raise ValueError(f"bad database name {name!r}")

    def _url_for(self, db: str) -> str:
        if self.external_url:
            from sqlalchemy.engine import make_url

            return make_url(self._server_url).set(database=db).render_as_string(hide_password=False)
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{db}"

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        if self._as_user:
            argv = ["runuser", "-u", self._as_user, "--", *argv]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=self.tmpdir or "/")
        if check and proc.returncode != 0:
            raise PgClusterError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{self.log_tail()}"
            )
        return proc

    def _initdb(self) -> None:
        self._run([self._tool("initdb"), "-D", self._data_dir, "-U", SUPERUSER,
                   "-A", "trust", "--auth-local=trust", "--auth-host=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])

    def _start_server(self) -> None:
        conf = os.path.join(self._data_dir, "postgresql.conf")
        last_err: Exception | None = None
        for _attempt in range(5):  # a free port can be taken between probe and bind
            self.port = _free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.tmpdir}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
                "log_min_messages": "warning",
            }
            extra = "".join(f"{k} = {v}\n" for k, v in settings.items())
            # written as the file's owner: postgresql.conf belongs to postgres under root
            self._run(["sh", "-c", 'printf "%s" "$1" >> "$2"', "sh",
                       "\n# rssp test cluster\n" + extra, conf])
            proc = self._run([self._tool("pg_ctl"), "start", "-D", self._data_dir,
                              "-l", self._log_file, "-w", "-t", "60"], check=False)
            if proc.returncode == 0:
                return
            last_err = PgClusterError(f"pg_ctl start failed:\n{proc.stdout}\n{self.log_tail()}")
        raise last_err  # type: ignore[misc]

    def _createdb(self, name: str) -> None:
        self._check_ident(name)
        self._run([self._tool("createdb"), "-h", self.host, "-p", str(self.port),
                   "-U", SUPERUSER, name])

    def _admin_sql(self, sql: str) -> None:
        """Run one statement on the server's maintenance database ``postgres``."""
        if not self.external_url:
            self._run([self._tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                       "-h", self.host, "-p", str(self.port), "-U", SUPERUSER,
                       "-d", "postgres", "-c", sql])
            return
        import asyncpg
        from sqlalchemy.engine import make_url

        u = make_url(self._server_url)

        async def go():
            conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username,
                                         password=u.password, database=u.database)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        _run_coro_in_thread(go)
