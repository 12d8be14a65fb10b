"""``rssp config set DIR KEY VALUE``: change one setting of rssp.toml, checked, audited and re-sealed.

KEY is a dotted path (``security.sad_ttl_seconds``, ``timestamps.tsa.dev-ec.priority``);
VALUE is read as a TOML value (``300``, ``true``, ``"text"``, ``["a", "b"]``) and, if it is not
one, taken as a string. The new file must load as a configuration, and a setting that exists
keeps its type (a number stays a number), so a typo cannot leave an instance that no longer
starts. The change, its audit record and the new seal are made under one file lock.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from rssp.audit import record
from rssp.config import CONFIG_NAME, config_from_raw, write_config
from rssp.config_seal import config_lock, require_sealed, seal
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.store import Store

_SECRET_WORDS = ("pin", "password", "secret", "seed")


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def set_in(raw: dict[str, Any], key: str, value: Any) -> Any:
    """Set ``key`` in ``raw``; returns its old value (None if it was not set)."""
    parts = key.split(".")
    if not all(parts):
        raise OperatorError(f"{key!r} is not a dotted setting name such as security.sad_ttl_seconds")
    table = raw
    for part in parts[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise OperatorError(f"{key}: {part} is a setting, not a table")
    old = table.get(parts[-1])
    if old is not None and _kind(old) != _kind(value):
        raise OperatorError(f"{key} is {_kind(old)}; {value!r} is {_kind(value)}")
    table[parts[-1]] = value
    return old


def _shown(key: str, value: Any) -> Any:
    """What the audit record may say about the value: nothing for a secret-looking setting."""
    if any(w in key.split(".")[-1].lower() for w in _SECRET_WORDS):
        return "(not recorded)"
    return json.loads(json.dumps(value, default=str))  # TOML dates as text


async def set_setting(directory: Path, store: Store, hsm: Hsm, key: str, text: str, *, actor: str) -> dict[str, Any]:
    """Change ``key`` to ``text`` (a TOML value), check the result, write and re-seal it."""
    value = parse_value(text)
    with config_lock(directory):
        content = await require_sealed(directory, store, hsm)  # never re-seal an edit nobody reviewed
        raw = tomllib.loads(content.decode("utf-8"))
        changed = copy.deepcopy(raw)
        old = set_in(changed, key, value)
        config_from_raw(directory, changed)
        write_config(directory, changed)
        async with store.write() as conn:
            await record(conn, actor=actor, action="config.set", target=CONFIG_NAME, outcome="ok",
                         detail={"setting": key, "value": _shown(key, value), "previous": _shown(key, old)})
        await seal(directory, store, hsm, actor=actor)
    return {"setting": key, "value": value, "previous": old}
