"""``rssp init DIR --join SRC``: a further host of an existing deployment.

Every host of a deployment shares the PostgreSQL database, the HSM token (a network HSM's
PKCS#11 module; on one machine, the same SoftHSM2 token directory) and the instance's keys and
settings: the HSM PIN file, the audit key (``audit-key``: typed-name hashes must agree across
hosts), the CAs, TSAs and trust anchors. The joining host copies the source instance
directory (the operator's copy of host A's, or host A's itself on a shared file system),
leaving out what is per host: the SQLite files, the SoftHSM2 token directory (shared by
reference through ``softhsm2.conf``, never copied: a copy would be another token), logs, and
the bundled test PKI's process (``[devpki]``: it runs on the first host only).

It refuses a source whose database is the default SQLite file (a SQLite database belongs to
one host), then checks what it copied: the database answers and is migrated, the HSM token
logs in, and the local CA's key is on it.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from rssp.audit import AUDIT_KEY_FILE, load_audit_key
from rssp.config import CONFIG_NAME, load_config
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.store import migrate, open_store

_PER_HOST = ("rssp.db", "rssp.db-wal", "rssp.db-shm", "rssp.db-writer.lock", "tokens", "server.log")


class JoinError(OperatorError):
    """The source cannot be joined (or the copy does not work); the message says why."""


def _skip(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _PER_HOST or n.endswith(".log") or n.startswith(".")}


def _copy(source: Path, directory: Path) -> dict[str, Any]:
    if directory.exists() and any(directory.iterdir()):
        raise JoinError(f"{directory} exists and is not empty; refusing to touch it")
    raw = tomllib.loads((source / CONFIG_NAME).read_text(encoding="utf-8"))
    load_audit_key(source)  # made now if the source never needed it: every host must share one
    shutil.copytree(source, directory, ignore=_skip, dirs_exist_ok=True)
    shutil.copy2(source / AUDIT_KEY_FILE, directory / AUDIT_KEY_FILE)
    raw.pop("devpki", None)
    header = "# joined from " + str(source) + " (rssp init --join); see docs/operations.md\n"
    (directory / CONFIG_NAME).write_text(header + tomli_w.dumps(raw), encoding="utf-8")
    return raw


async def _check(directory: Path) -> dict[str, Any]:
    config = load_config(directory)
    if config.database_url.startswith("sqlite"):
        raise JoinError("the deployment's database is SQLite: hosts can share only a PostgreSQL database "
                        "([database] url or RSSP_DATABASE_URL)")
    store = open_store(config.database_url)
    hsm = Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)
    try:
        version = await migrate(store)
        await hsm.start()
        local = config.cas.get("local", {})
        if local.get("key_id") and not await hsm.has_key(local["key_id"]):
            raise JoinError("the local CA's key is not on this host's HSM token: is it the same token?")
    finally:
        await hsm.close()
        await store.close()
    return {"database": config.database_url, "schemaVersion": version, "hsmToken": config.hsm.token_label}


async def join_instance(directory: Path, source: Path) -> dict[str, Any]:
    """Make ``directory`` a host of the deployment whose instance directory is ``source``."""
    directory, source = directory.resolve(), source.resolve()
    if not (source / CONFIG_NAME).is_file():
        raise JoinError(f"{source} is not an instance directory (no {CONFIG_NAME})")
    _copy(source, directory)
    try:
        checked = await _check(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return {"directory": str(directory), "joined": str(source), **checked}
