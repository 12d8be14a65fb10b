"""``rssp init DIR --join SRC``: a further host of an existing deployment.

Every host of a deployment shares the PostgreSQL database, the HSM token (a network HSM's
PKCS#11 module; on one machine, the same SoftHSM2 token directory) and the instance's keys and
settings: the HSM PIN file, the audit key (``audit-key``: typed-name hashes must agree across
hosts), the CAs, TSAs and trust anchors. The joining host copies the source instance
directory (the operator's copy of host A's, or host A's itself on a shared file system),
leaving out what is per host: the SQLite files, the SoftHSM2 token directory (shared by
reference through ``softhsm2.conf``, never copied: a copy would be another token), logs, and
the bundled test PKI's keys (``devpki/keys``: the development PKI runs on the host that has
them, the first one, for all).

The configuration is copied byte for byte, with its seal (:mod:`rssp.config_seal`): the
database keeps one seal in force for the whole deployment, so every host serves the same
sealed rssp.toml, and what differs per host is given outside it (``rssp serve --host/--port``,
``RSSP_DATABASE_URL``). A configuration changed and sealed on one host is copied to the others.

It refuses a source whose database is the default SQLite file (a SQLite database belongs to
one host), then checks what it copied: the database answers and is migrated, the configuration
verifies against the seal in force, the HSM token logs in, and the local CA's key is on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rssp.audit import load_audit_key
from rssp.config import CONFIG_NAME, load_config
from rssp.config_seal import require_sealed
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.store import migrate, open_store

_PER_HOST = ("rssp.db", "rssp.db-wal", "rssp.db-shm", "rssp.db-writer.lock", "tokens", "server.log")


class JoinError(OperatorError):
    """The source cannot be joined (or the copy does not work); the message says why."""


def _skip(source: Path) -> Any:
    def skip(where: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in _PER_HOST or n.endswith(".log") or n.startswith(".")}
        return out | ({"keys"} if Path(where) == source / "devpki" else set())

    return skip


def _copy(source: Path, directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise JoinError(f"{directory} exists and is not empty; refusing to touch it")
    load_audit_key(source)  # made now if the source never needed it: every host must share one
    shutil.copytree(source, directory, ignore=_skip(source), dirs_exist_ok=True)


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
        await require_sealed(directory, store, hsm)
        local = config.cas.get("local", {})
        if local.get("key_id") and not await hsm.has_key(local["key_id"]):
            raise JoinError("the local CA's key is not on this host's HSM token: is it the same token?")
    finally:
        await hsm.close()
        await store.close()
    return {"database": config.database_url, "schemaVersion": version, "hsmToken": config.hsm.token_label}


async def join_instance(directory: Path, source: Path) -> dict[str, Any]:
    """Make ``directory`` a host of the deployment whose instance directory is ``source``."""
    directory, source = directory.resolve(), source.resolve()  # noqa: ASYNC240 - `rssp join`, one-shot: nothing else runs
    if not (source / CONFIG_NAME).is_file():
        raise JoinError(f"{source} is not an instance directory (no {CONFIG_NAME})")
    _copy(source, directory)
    try:
        checked = await _check(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return {"directory": str(directory), "joined": str(source), **checked}
