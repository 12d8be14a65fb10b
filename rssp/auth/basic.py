"""Splitting an HTTP Basic ``Authorization`` header (RFC 7617), for every endpoint that takes one.

``auth/login``, ``manages/login`` and the OAuth token endpoints each answer a bad header with
their own error, so this only tells *what* is wrong: the scheme, or the credentials part.
"""

from __future__ import annotations

import base64
import binascii


class NotBasic(ValueError):
    """The header uses another scheme than Basic."""


class MalformedBasic(ValueError):
    """Basic, but not Base64 of UTF-8 ``user:secret`` with a non-empty user."""


def split_basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise NotBasic(scheme)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedBasic("not Base64 of UTF-8") from None
    user, sep, secret = decoded.partition(":")
    if not sep or not user or "\x00" in user:
        raise MalformedBasic("no user:secret")
    return user, secret
