"""One SQLite writer at a time across the server's processes, handed over without sleeping.

Why: with ``rssp serve --workers N`` every process writes the same database file. SQLite's
own lock is not a queue: a process that finds it taken sleeps in SQLite's busy handler (1, 2,
5, 10 ms and longer, whatever the holder's transaction takes), so under signHash load the
workers spent most of their time asleep while the write lock sat free. An exclusive
``flock`` on a file beside the database is taken in front of ``BEGIN IMMEDIATE``: the
kernel wakes the next waiter the moment the holder lets go. SQLite's lock still guards the
file against every other program (the operator CLI, backups), which simply do not queue here.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url


class WriterLock:
    """An inter-process lock for one SQLite file; a no-op for in-memory databases."""

    def __init__(self, database_url: str) -> None:
        database = make_url(database_url).database
        self._path = None if not database or database == ":memory:" else Path(database + "-writer.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Block until this process is the one writer (called on the store's thread)."""
        if self._path is None:
            return
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
