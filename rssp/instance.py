"""``rssp init``: a self-contained instance directory.

The directory holds ``rssp.toml``, the SQLite database, a SoftHSM2 token with its own
``softhsm2.conf``, the HSM user PIN (``hsm-pin``, mode 0600: the server needs it to log in;
a production HSM would take it from the operator's secret store instead), and the local CA,
whose key is generated in that token.

By default the instance is a development one: it also gets the bundled test PKI
(:mod:`rssp.devpki`: two TSAs, OCSP, CRLs on loopback, started by ``rssp serve``) and
rssp.toml lists its TSAs, so timestamps work out of the box. ``production=True``
(``rssp init DIR --production``) leaves the test PKI out; the operator configures real TSAs.

Init also creates the first operator (``admin`` unless named; :mod:`rssp.admin`) and seals
the configuration (:mod:`rssp.config_seal`) with a new HSM MAC key. The operator's password
and TOTP seed are shown once; they are also written to an operator file (mode 0600) when one
is named, and on a development instance to ``DIR/operator.json`` so that ``scripts/start.sh``
and a newcomer can run privileged commands at once. A production instance writes none unless
asked: its operator keeps them in a secret store.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

from rssp import devpki, plugins
from rssp.auth import argon2_cost
from rssp.audit_chain import MAC_KEY_LABEL as AUDIT_MAC_KEY_LABEL
from rssp.admin.accounts import add_operator, check_name
from rssp.admin.secrets import write_private_file
from rssp.ca.registry import register_manage_client
from rssp.config import CONFIG_NAME, ConfigError, config_from_raw, load_config
from rssp.config_edit import parse_value, set_in
from rssp.config_seal import CONFIG_MAC_LABEL, seal
from rssp.errors import OperatorError
from rssp.hsm import DEFAULT_MODULE, Hsm, init_softhsm_instance
from rssp.sam.factors import TOTP_KEY_LABEL
from rssp.sam.samkeys import ensure_sam_keys
from rssp.store import migrate, open_store

TOKEN_LABEL = "rssp"  # noqa: S105 - the HSM token's name, not a secret
PIN_FILE = "hsm-pin"
OPERATOR_FILE = "operator.json"  # development instances: the first operator's credentials
INIT_ACTOR = "init"


class InstanceExists(OperatorError):
    """The directory is not empty; init never touches an existing instance."""


def _base_config(module: str) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 1024 * 1024},
        "database": {"url": "sqlite:///{dir}/rssp.db"},
        "hsm": {"module": module, "token_label": TOKEN_LABEL, "pin_file": PIN_FILE, "softhsm2_conf": "softhsm2.conf"},
        "security": {"sad_ttl_seconds": 300, "access_token_ttl_seconds": 3600, "max_failed_attempts": 5},
        "service": {"name": "rssp", "description": "rssp Remote Signing Service Provider", "region": "JP",
                    "lang": "en-US"},
        "ca": {"default": "local"},
    }


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


def _validation_table(production: bool) -> dict[str, Any]:
    """validates/* trusts the CAs of [ca.*] (ca_anchors); a development instance also its test PKI."""
    table: dict[str, Any] = {"ca_anchors": True, "trust_anchors": [], "max_document_bytes": 8 * 1024 * 1024}
    if not production:
        table["trust_anchors"] = ["devpki/root.pem"]
    return table


def _apply(raw: dict[str, Any], settings: Sequence[tuple[str, str]]) -> dict[str, Any]:
    for key, text in settings:
        set_in(raw, key, parse_value(text))
    return raw


def _check_settings(directory: Path, raw: dict[str, Any], made_directory: bool) -> None:
    """The configuration loads (it reads the HSM PIN file, the only thing made so far); else that
    file goes again (and the directory, if init made it) and init fails naming the setting."""
    try:
        config_from_raw(directory, raw)
    except ConfigError:
        (directory / PIN_FILE).unlink()
        if made_directory:
            directory.rmdir()
        raise


async def init_instance(directory: Path, *, ca_name: str = "rssp Local CA", module: str = DEFAULT_MODULE,
                        production: bool = False, operator: str = "admin",
                        operator_file: Path | None = None,
                        settings: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Create the instance; returns a summary for the operator.

    Its secrets (the local CA's management client secret, the first operator's password and
    TOTP seed) are shown this once. ``settings`` (``rssp init --set KEY=VALUE``) are written into
    rssp.toml before anything is made from it, as ``rssp config set`` would write them (e.g. the
    argon2 cost the first operator's password is hashed with).
    """
    directory = directory.resolve()  # noqa: ASYNC240 - `rssp init` is one-shot: nothing else runs on the loop
    if directory.exists() and any(directory.iterdir()):
        raise InstanceExists(f"{directory} exists and is not empty; refusing to touch it")
    check_name(operator)
    raw = _apply(_base_config(module), settings)
    if not production:
        devpki.require_extra()  # before anything is made: init never leaves a half-made instance
    if operator_file is not None and (operator_file.exists() or not (  # noqa: ASYNC240 - as above
            operator_file.parent.is_dir() or operator_file.parent.resolve() == directory)):  # noqa: ASYNC240
        raise OperatorError(f"cannot write the first operator's file {operator_file}: it exists (it is never written "
                            "over) or its directory does not; give --operator-file or unset RSSP_OPERATOR_FILE")
    made_directory = not directory.exists()  # noqa: ASYNC240 - as above
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    user_pin = secrets.token_hex(16)
    _write_secret(directory / PIN_FILE, user_pin)
    _check_settings(directory, raw, made_directory)
    init_softhsm_instance(directory, TOKEN_LABEL, so_pin=secrets.token_hex(16), user_pin=user_pin)
    if not production:
        raw.update(devpki.create(directory))
    raw["validation"] = _validation_table(production)  # validates/*: trust the local CA (and the test PKI)
    raw = _apply(raw, settings)  # the operator's settings win over the tables init makes
    (directory / CONFIG_NAME).write_text(tomli_w.dumps(raw), encoding="utf-8")
    config = load_config(directory)
    argon2_cost.configure(config.security)  # the first operator's password hash
    store = open_store(config.database_url)
    hsm = Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)
    try:
        version = await migrate(store)
        await hsm.start()
        await hsm.ensure_aes_key(TOTP_KEY_LABEL)
        await hsm.ensure_mac_key(AUDIT_MAC_KEY_LABEL)  # the audit trail's checkpoints and writer keys
        await hsm.ensure_mac_key(CONFIG_MAC_LABEL)
        await ensure_sam_keys(hsm)  # level 3: the SAD MAC key and the KEK derivation key
        _connector, ca_config = await plugins.ca_connector_class("local").create(hsm, name=ca_name)
        manage_client = await register_manage_client(store, "local", actor=INIT_ACTOR)  # the local CA's RA
        first = await add_operator(store, hsm, operator, actor=INIT_ACTOR)
        raw["ca"]["local"] = ca_config
        (directory / CONFIG_NAME).write_text(_HEADER + tomli_w.dumps(raw), encoding="utf-8")
        await seal(directory, store, hsm, actor=INIT_ACTOR)
    finally:
        await hsm.close()
        await store.close()
    operator_file = operator_file or (None if production else directory / OPERATOR_FILE)
    if operator_file:
        write_private_file(operator_file, first.secrets_file())
    summary = {"directory": str(directory), "database": config.database_url, "schemaVersion": version,
               "hsmToken": TOKEN_LABEL, "ca": {"local": ca_name}, "production": production}
    summary["operator"], summary["operatorText"] = first.summary(operator_file)
    # The management client secret is shown here once (stored only hashed); 'rssp ca secret' rotates it.
    summary["manageClients"] = {"local": {"client_id": manage_client[0], "client_secret": manage_client[1]}}
    if not production:
        summary["devPki"] = {"port": raw["devpki"]["port"], "timestampIDs": list(raw["timestamps"]["tsa"])}
    return summary


_HEADER = """\
# rssp instance configuration (see docs/configuration.md).
# [server]    host/port to listen on, max_body_bytes (request size limit), public_url.
# [database]  url: sqlite:///{dir}/rssp.db (default) or postgresql+asyncpg://user@host/db;
#             the environment variable RSSP_DATABASE_URL overrides it.
# [hsm]       module: the PKCS#11 library; token_label; pin_file (mode 0600); softhsm2_conf.
# [security]  sad_ttl_seconds, access_token_ttl_seconds, refresh_token_ttl_seconds,
#             max_failed_attempts (credential lockout), max_hashes_per_request,
#             require_pin_change_on_first_use (no signing until the signer changes the PIN set for them).
# [service]   what info reports: name, description, region, lang, logo.
# [ca.NAME]   a CA connector ("connector" = entry point name in rssp.ca_connectors) and its settings.
# [credentials] what credentials/create (CSC v2.2) makes: level, key, totp, multisign, pin_digits,
#             subject, max_per_user; [credentials.certificate_policies] OID = CA ID.
# [devpki]    development instances only: the bundled test PKI (TSAs, OCSP, CRLs) that 'rssp serve'
#             starts on host:port; its certificates carry that port. Not for production.
# [timestamps] cooldown_seconds, probe_on_start; [timestamps.tsa.ID] one upstream TSA each
#             (url, anchors, policy_oid, hash_algorithms, priority, default, ...): see docs/timestamps.md.
# [validation] validates/*: trust_anchors (files or directories), tsa_anchors, ca_anchors (trust the
#             [ca.*] roots), max_document_bytes, revocation cache settings: see docs/validation.md.

"""
