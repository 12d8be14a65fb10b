"""Create a private SoftHSM2 instance (config file + token directory + one token).

SoftHSM2 reads its token directory from the file named by ``SOFTHSM2_CONF``. Giving every
deployment (and every test) its own config keeps tokens out of the system-wide
``/var/lib/softhsm`` and lets several instances live side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .types import HsmError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM2_UTIL = "softhsm2-util"


def init_softhsm_instance(directory: Path, label: str, so_pin: str, user_pin: str) -> Path:
    """Write ``directory/softhsm2.conf``, create ``directory/tokens/`` and a token ``label``.

    Returns the absolute path of the config file, to be passed as ``softhsm2_conf`` to
    :class:`rssp.hsm.Hsm`. The PINs are given to ``softhsm2-util`` on its command line (it
    has no other way); they never appear in logs or exception messages raised here.
    Refuses to create a second token with an existing label: the service finds its token
    by label and two equal labels would make that ambiguous.
    """
    directory = Path(directory).resolve()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    if label in _existing_labels(env):
        raise HsmError(f"a token labelled {label!r} already exists in {tokens}")
    _run_util(
        ["--init-token", "--free", "--label", label, "--pin", user_pin, "--so-pin", so_pin],
        env,
        secrets=(user_pin, so_pin),
    )
    return conf


def _existing_labels(env: dict[str, str]) -> set[str]:
    """Labels of the initialised tokens of the instance selected by ``env``."""
    out = _run_util(["--show-slots"], env, secrets=())
    return {m.group(1).strip() for m in re.finditer(r"^\s*Label:[ \t]*(.*)$", out, re.M)} - {""}


def _run_util(args: list[str], env: dict[str, str], secrets: tuple[str, ...]) -> str:
    """Run ``softhsm2-util``; on failure raise :class:`HsmError` with secrets redacted."""
    try:
        proc = subprocess.run(  # noqa: S603 - softhsm2-util with our own arguments, no shell
            [SOFTHSM2_UTIL, *args], env=env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise HsmError(f"cannot run {SOFTHSM2_UTIL}: {exc.strerror}") from None
    if proc.returncode != 0:
        detail = _redact((proc.stderr or proc.stdout).strip(), secrets)
        raise HsmError(f"{SOFTHSM2_UTIL} {args[0]} failed ({proc.returncode}): {detail}")
    return proc.stdout


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in ``text`` so a PIN can never leak through tool output."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
