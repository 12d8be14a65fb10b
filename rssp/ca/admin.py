"""``rssp ca add``: register a CA in rssp.toml and create its management client.

A CA entry (``[ca.ID]``) says which connector rssp uses when it requests certificates itself
(``local``: a new CA whose key is generated in the HSM; ``cmp``: an outside CA over CMP), which
anchors the certificates it issues chain to (``manages/linkCert`` checks them), and which keys
and levels its RA may enroll. Files given on the command line are copied into ``DIR/ca/ID/``
and referred to relative to the instance directory, so the instance stays movable; secret
files are written mode 0600. The management client secret is printed once and stored hashed.
rssp.toml is changed only if its seal holds, and is re-sealed (:mod:`rssp.config_seal`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rssp import plugins
from rssp.ca.registry import ALLOWED_KEYS_DEFAULT, register_manage_client
from rssp.config import Config, load_config, write_config
from rssp.config_seal import config_lock, require_sealed, seal
from rssp.errors import OperatorError

_CA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")  # tokens.user_id holds it: 40 characters


@dataclass(frozen=True)
class CAOptions:
    ca_id: str
    connector: str
    anchors: tuple[str, ...] = ()
    name: str | None = None
    key_algorithms: tuple[str, ...] | None = None
    levels: tuple[int, ...] | None = None
    url: str | None = None
    mac_secret_file: str | None = None
    reference: str | None = None
    recipient: str | None = None
    server_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    implicit_confirm: bool = False
    request_type: str = "p10cr"


def _copy(directory: Path, ca_id: str, source: str, name: str, secret: bool = False) -> str:
    """Copy ``source`` into DIR/ca/ID/name; return the path relative to DIR."""
    src = Path(source)
    if not src.is_file():
        raise OperatorError(f"{source}: no such file")
    target_dir = directory / "ca" / ca_id
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = target_dir / name
    if secret:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(src.read_bytes())
    else:
        shutil.copyfile(src, target)
    return str(target.relative_to(directory))


def _check(config: Config, opts: CAOptions) -> None:
    if not _CA_ID.match(opts.ca_id) or opts.ca_id == "default":
        raise OperatorError("a CAID is 1-40 letters, digits, '.', '_' or '-' (and not 'default')")
    if opts.ca_id in config.cas:
        raise OperatorError(f"CA {opts.ca_id!r} is already registered")
    if opts.connector == "cmp" and not opts.anchors:
        raise OperatorError("a cmp CA needs at least one --anchor (the root its certificates chain to)")
    for key in opts.key_algorithms or ():
        if key not in ALLOWED_KEYS_DEFAULT:
            raise OperatorError(f"unknown key algorithm {key!r}; one of {', '.join(ALLOWED_KEYS_DEFAULT)}")
    for level in opts.levels or ():
        if level not in (1, 2, 3):
            raise OperatorError("levels are among 1, 2 and 3")


async def _local_section(hsm: Any, opts: CAOptions) -> dict[str, Any]:
    made: tuple[Any, dict[str, Any]] = await plugins.ca_connector_class("local").create(
        hsm, name=opts.name or f"rssp CA {opts.ca_id}")
    return made[1]


def _cmp_section(directory: Path, opts: CAOptions) -> dict[str, Any]:
    if not opts.url or not opts.url.startswith(("http://", "https://")):
        raise OperatorError("a cmp CA needs --url http(s)://...")
    section: dict[str, Any] = {"connector": "cmp", "url": opts.url}
    if opts.mac_secret_file:
        if not opts.reference:
            raise OperatorError("--mac-secret-file goes with --reference")
        section["mac_secret_file"] = _copy(directory, opts.ca_id, opts.mac_secret_file, "cmp-secret", secret=True)
        section["reference"] = opts.reference
    elif opts.client_cert and opts.client_key:
        section["client_cert"] = _copy(directory, opts.ca_id, opts.client_cert, "cmp-client.pem")
        section["client_key"] = _copy(directory, opts.ca_id, opts.client_key, "cmp-client.key", secret=True)
    else:
        raise OperatorError("a cmp CA needs --mac-secret-file/--reference or --client-cert/--client-key")
    if opts.server_cert:
        section["server_cert"] = _copy(directory, opts.ca_id, opts.server_cert, "cmp-server.pem")
    if opts.recipient:
        section["recipient"] = opts.recipient
    if opts.implicit_confirm:
        section["implicit_confirm"] = True
    if opts.request_type != "p10cr":
        section["request_type"] = opts.request_type
    return section


async def add_ca(config: Config, store: Any, hsm: Any, opts: CAOptions, *, actor: str) -> dict[str, Any]:
    """Register the CA under the configuration lock: check the seal, add ``[ca.ID]``, re-seal."""
    with config_lock(config.directory):
        content = await require_sealed(config.directory, store, hsm, actor=actor)  # never re-seal an unreviewed edit
        return await _add_ca(load_config(config.directory, content), store, hsm, opts, actor)


async def _add_ca(config: Config, store: Any, hsm: Any, opts: CAOptions, actor: str) -> dict[str, Any]:
    _check(config, opts)
    directory = config.directory
    anchors = [_copy(directory, opts.ca_id, a, f"anchor-{i}.pem") for i, a in enumerate(opts.anchors)]
    if opts.connector == "local":
        section = await _local_section(hsm, opts)
    elif opts.connector == "cmp":
        section = _cmp_section(directory, opts)
    else:
        raise OperatorError(f"unknown connector {opts.connector!r}")
    if anchors:
        section["anchors"] = anchors
    if opts.key_algorithms:
        section["key_algorithms"] = list(opts.key_algorithms)
    if opts.levels:
        section["levels"] = list(opts.levels)
    raw = copy.deepcopy(config.raw)
    raw.setdefault("ca", {})[opts.ca_id] = section
    write_config(directory, raw)
    await seal(directory, store, hsm, actor=actor)
    client_id, secret = await register_manage_client(store, opts.ca_id, actor=actor)
    return {"caID": opts.ca_id, "connector": opts.connector, "anchors": anchors,
            "client_id": client_id, "client_secret": secret}
