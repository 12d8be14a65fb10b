"""Where a command finds its operator's name, password and one-time code.

Scriptable first (JT2A privileged users, kept automatable):

1. ``--operator-file FILE`` (``--approver-file`` for the second operator of two-person control);
2. the environment: ``RSSP_OPERATOR``, ``RSSP_OPERATOR_PASSWORD`` and either ``RSSP_OPERATOR_OTP``
   (a code) or ``RSSP_OPERATOR_TOTP_SEED_FILE`` (the seed, for automation that computes codes);
3. ``RSSP_OPERATOR_FILE``;
4. a prompt, when standard input is a terminal.

An operator file is JSON or TOML with ``name``, ``password`` and ``otp``, ``totp_seed`` or
``totp_seed_file``. Files holding secrets must be private to their owner (no group or other
permission bits): a readable one is refused rather than used.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from rssp.errors import OperatorError


@dataclass(frozen=True)
class OperatorSecrets:
    name: str
    password: str = field(repr=False)
    otp: str = field(repr=False)


def private_file(path: Path, what: str) -> bytes:
    """The content of a secrets file that only its owner may read."""
    try:
        mode = path.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise OperatorError(f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                                f"chmod 600 {path}")
        return path.read_bytes()
    except FileNotFoundError:
        raise OperatorError(f"{what} {path} not found") from None
    except OSError as exc:
        raise OperatorError(f"{what} {path}: {exc.strerror}") from None


def write_private_file(path: Path, data: dict[str, str]) -> None:
    """Write an operator file (JSON, mode 0600); never over an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OperatorError(f"{path} exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def _code_from_seed(seed: str) -> str:
    try:
        return pyotp.TOTP(seed.strip().replace(" ", "")).now()
    except Exception:  # noqa: BLE001 - a malformed seed; its content must not be echoed
        raise OperatorError("the TOTP seed is not valid Base32") from None


def _seed_file(path: str) -> str:
    return _code_from_seed(private_file(Path(path), "TOTP seed file").decode("utf-8", "replace"))


def _parse_file(path: Path) -> dict[str, Any]:
    text = private_file(path, "operator file").decode("utf-8", "replace")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError):
        raise OperatorError(f"operator file {path} is neither valid JSON nor TOML for its name") from None
    if not isinstance(data, dict):
        raise OperatorError(f"operator file {path} must hold an object")
    return data


def from_file(path: str) -> OperatorSecrets:
    data = _parse_file(Path(path))
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise OperatorError(f"operator file {path} needs 'name' and 'password'")
    otp = data.get("otp")
    if isinstance(data.get("totp_seed"), str) and otp is None:
        otp = _code_from_seed(data["totp_seed"])
    elif isinstance(data.get("totp_seed_file"), str) and otp is None:
        otp = _seed_file(data["totp_seed_file"])
    if not isinstance(otp, str):
        raise OperatorError(f"operator file {path} needs 'otp', 'totp_seed' or 'totp_seed_file'")
    return OperatorSecrets(name, password, otp)


def _from_env(prefix: str) -> OperatorSecrets | None:
    env = os.environ
    name = env.get(prefix)
    if not name:
        return None
    password = env.get(f"{prefix}_PASSWORD")
    if password is None:
        raise OperatorError(f"{prefix} is set but {prefix}_PASSWORD is not")
    otp = env.get(f"{prefix}_OTP")
    if otp is None and env.get(f"{prefix}_TOTP_SEED_FILE"):
        otp = _seed_file(env[f"{prefix}_TOTP_SEED_FILE"])
    if otp is None:
        raise OperatorError(f"{prefix} is set but neither {prefix}_OTP nor {prefix}_TOTP_SEED_FILE is")
    return OperatorSecrets(name, password, otp)


def _prompt(role: str) -> OperatorSecrets | None:
    if not sys.stdin.isatty():
        return None
    name = input(f"{role} name: ").strip()
    return OperatorSecrets(name, getpass.getpass(f"{role} password: "), getpass.getpass(f"{role} one-time code: "))


def load_secrets(file: str | None, role: str = "operator") -> OperatorSecrets | None:
    """The secrets of the ``role`` (``operator`` or ``approver``), or None when none were given."""
    prefix = f"RSSP_{role.upper()}"
    if file:
        return from_file(file)
    found = _from_env(prefix)
    if found is None and os.environ.get(f"{prefix}_FILE"):
        found = from_file(os.environ[f"{prefix}_FILE"])
    return found or _prompt(role)
