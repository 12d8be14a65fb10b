"""Form-encoded and query-string parameters, checked the way RFC 6749 §3.1 asks.

A parameter sent twice is an error (not "last one wins"), values must be printable text of
bounded length, and nothing is read from a body that is not ``application/x-www-form-urlencoded``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from aiohttp import web

from rssp.api.middleware import UnreadableBody
from rssp.api.parse import is_text
from rssp.oauth.errors import invalid_request

MAX_VALUE = 8192  # hashes lists and authorization_details can be long; the body limit caps the rest


def params_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise invalid_request(f"Duplicated parameter {name[:64]}" if is_text(name) else "Duplicated parameter")
        if len(value) > MAX_VALUE or not is_text(value) or not is_text(name):
            raise invalid_request(f"Invalid parameter {name[:64]}" if is_text(name) else "Invalid parameter")
        out[name] = value
    return out


def parse_query(query_string: str) -> dict[str, str]:
    """``query_string`` as sent (``rel_url.raw_query_string``): aiohttp's ``query_string`` is
    decoded once already, and decoding it again turns ``%2562`` into ``b``."""
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("Malformed query string") from None
    return {k: v for k, v in params_from_pairs(pairs).items() if v != ""}


async def read_form(request: web.Request) -> dict[str, str]:
    """The POST body as parameters; empty values count as absent (RFC 6749 §3.1)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise invalid_request("Content-Type must be application/x-www-form-urlencoded")
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        raise UnreadableBody() from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("Malformed request body") from None
    return parse_query(text)
