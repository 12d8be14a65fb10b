"""The configuration seal (JT2A 3.2.2.3): rssp.toml and the files it names, MACed by the HSM.

What is sealed: the exact bytes of ``rssp.toml`` and of every file inside the instance
directory that it names by a relative path (a named directory: every file under it), e.g.
trust anchors, TLS certificate and key, ``softhsm2.conf``, CMP secrets, the HSM PIN file.
Files outside the instance (the PKCS#11 library, system certificate stores) belong to the
operating system and are not sealed.

How: each file gets HMAC-SHA-256 over ``domain || path || 0 || content`` with the token key
``rssp-config-mac`` (non-extractable: whoever edits the files cannot recompute a MAC), and
the *seal* is the HMAC over all of them. ``rssp.toml.mac`` beside the file keeps the per-file
MACs (so a check names the file that changed) and the seal; the database keeps every seal
(``config_seals``), and only the newest one is in force, so restoring an older file together
with its older ``.mac`` is detected too.

Who: ``rssp init``, ``rssp config set|seal`` and ``rssp ca add``, each under an authenticated
operator and audited (``config.seal``). ``rssp serve`` (and each of its workers) and
``rssp config verify`` check the seal and refuse a configuration that does not match it.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from rssp.audit import record
from rssp.config import CONFIG_NAME
from rssp.errors import OperatorError
from rssp.hsm import Hsm, KeyNotFound
from rssp.store import Store
from rssp.store.schema import config_seals

CONFIG_MAC_LABEL = "rssp-config-mac"
SEAL_NAME = CONFIG_NAME + ".mac"
_FILE_DOMAIN = b"rssp-config-seal/1 file\0"
_SEAL_DOMAIN = b"rssp-config-seal/1 seal\0"
_LOCK_NAME = f".{CONFIG_NAME}.lock"
# What the instance changes at run time is never sealed, whatever a setting happens to be called.
_RUNTIME = {"tokens", "rssp.db", "rssp.db-wal", "rssp.db-shm", "rssp.db-writer.lock", "audit-key", SEAL_NAME,
            _LOCK_NAME}


class ConfigNotSealed(OperatorError):
    """The configuration on disk is not the one an operator sealed; ``problems`` says how."""

    def __init__(self, directory: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"the configuration of {directory} is not as sealed: " + "; ".join(problems) +
                         f". Review it: 'rssp config seal {directory}' (an operator) accepts the files as they are, "
                         f"or restore the sealed ones; 'rssp config verify {directory}' checks again")


@contextmanager
def config_lock(directory: Path) -> Iterator[None]:
    """Serialize the commands that rewrite and re-seal rssp.toml (read, change, write, seal)."""
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _named_paths(value: Any) -> Iterator[str]:
    """Every string in the TOML tables, at any depth (keys are not paths)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _named_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_paths(item)


def _inside(directory: Path, value: str) -> Path | None:
    """The existing file or directory ``value`` names inside the instance, relatively; else None."""
    if not value or "\n" in value or "://" in value or len(value) > 1024 or Path(value).is_absolute():
        return None
    try:
        path = (directory / value).resolve()
    except (OSError, RuntimeError):
        return None
    if path == directory or directory not in path.parents or not path.exists():
        return None
    return None if path.relative_to(directory).parts[0] in _RUNTIME else path


def sealed_files(directory: Path, content: bytes) -> dict[str, bytes]:
    """``rssp.toml`` (``content``) and every file it names inside the instance, by relative path."""
    files = {CONFIG_NAME: content}
    try:
        raw = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return files  # rssp.toml itself then fails its MAC, or is refused by the loader
    for value in _named_paths(raw):
        path = _inside(directory, value)
        if path is None:
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for item in found:
            files.setdefault(str(item.relative_to(directory)), item.read_bytes())
    return files


async def _file_macs(hsm: Hsm, files: dict[str, bytes]) -> dict[str, str]:
    names = sorted(files)
    macs = await hsm.mac_many(CONFIG_MAC_LABEL, [_FILE_DOMAIN + name.encode() + b"\0" + files[name] for name in names])
    return {name: mac.hex() for name, mac in zip(names, macs, strict=True)}


async def _seal_of(hsm: Hsm, macs: dict[str, str]) -> str:
    manifest = json.dumps(macs, sort_keys=True, separators=(",", ":")).encode()
    return (await hsm.mac(CONFIG_MAC_LABEL, _SEAL_DOMAIN + manifest)).hex()


async def seal(directory: Path, store: Store, hsm: Hsm, *, actor: str) -> str:
    """Seal the configuration as it is now; record and audit the seal. Returns the seal.

    The database row comes first: a crash before the file is renamed into place leaves a
    configuration that does not verify (the newest seal is not the file's), never one that
    verifies without a record.
    """
    await hsm.ensure_mac_key(CONFIG_MAC_LABEL)
    files = sealed_files(directory, (directory / CONFIG_NAME).read_bytes())
    macs = await _file_macs(hsm, files)
    value = await _seal_of(hsm, macs)
    async with store.write() as conn:
        await conn.execute(config_seals.insert().values(seal=value, actor=actor, sealed_at=time.time()))
        await record(conn, actor=actor, action="config.seal", target=CONFIG_NAME, outcome="ok",
                     detail={"files": sorted(macs), "seal": value[:16]})
    tmp = directory / f".{SEAL_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"version": 1, "key": CONFIG_MAC_LABEL, "files": macs, "seal": value}, indent=2) + "\n",
                   encoding="utf-8")
    os.replace(tmp, directory / SEAL_NAME)
    return value


def _read_seal(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / SEAL_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _compare(recorded: dict[str, Any], macs: dict[str, str]) -> list[str]:
    problems = []
    for name, mac in macs.items():
        if name not in recorded:
            problems.append(f"{name} is named by rssp.toml but was not sealed")
        elif not hmac.compare_digest(str(recorded[name]), mac):
            problems.append(f"{name} was changed since the configuration was sealed")
    problems += [f"{name} was sealed but is missing or no longer named by rssp.toml" for name in recorded
                 if name not in macs]
    return problems


async def problems(directory: Path, store: Store, hsm: Hsm, content: bytes) -> list[str]:
    """What differs between the configuration (``content`` = rssp.toml's bytes) and its seal."""
    stored = _read_seal(directory)
    if stored is None:
        return [f"rssp.toml is not sealed ({SEAL_NAME} is missing)"]
    recorded = stored.get("files")
    if not isinstance(recorded, dict) or not isinstance(stored.get("seal"), str):
        return [f"{SEAL_NAME} is not a seal file"]
    try:
        found = _compare(recorded, await _file_macs(hsm, sealed_files(directory, content)))
    except KeyNotFound:
        return [f"the HSM token has no configuration MAC key ({CONFIG_MAC_LABEL})"]
    if found:
        return found
    if not hmac.compare_digest(await _seal_of(hsm, recorded), stored["seal"]):
        return [f"{SEAL_NAME} was edited (its seal does not verify)"]
    async with store.read() as conn:
        newest = (await conn.execute(select(config_seals.c.seal).order_by(config_seals.c.id.desc()).limit(1))).scalar()
    if newest is None:
        return ["the database has no record of any seal (another database than the one sealed with?)"]
    if not hmac.compare_digest(newest, stored["seal"]):
        return [f"{SEAL_NAME} is not the newest seal recorded in the database (an older configuration restored?)"]
    return []


async def require_sealed(directory: Path, store: Store, hsm: Hsm, content: bytes | None = None, *,
                         actor: str | None = None) -> bytes:
    """The bytes of rssp.toml, checked against the seal; :class:`ConfigNotSealed` if they do not match.

    With ``actor`` (who was refused: an operator's command, ``rssp serve``) a mismatch is audited.
    """
    content = (directory / CONFIG_NAME).read_bytes() if content is None else content
    found = await problems(directory, store, hsm, content)
    if found:
        if actor is not None:
            async with store.write() as conn:
                await record(conn, actor=actor, action="config.verify", target=CONFIG_NAME, outcome="failed",
                             detail={"problems": found})
        raise ConfigNotSealed(directory, found)
    return content
