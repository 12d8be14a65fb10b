"""Logging set-up of a server process: JSON lines by default, no request content in the log.

Every record is one JSON object on one line (``time``, ``level``, ``logger``, ``pid``,
``message`` and, for the access log of :mod:`rssp.api.access`, the request's fields), which
log shippers parse without rules; ``[logging] format = "text"`` (or ``RSSP_LOG_FORMAT=text``)
gives plain lines for development.

aiohttp logs a request it cannot parse (a request line or header over 8 KiB, a bad
Content-Length) with a traceback that quotes up to 100 raw bytes of it: the URL with its
query string or a header line, where a client may have put a token, a code or a password.
The filter keeps the event (status and kind of error) and drops the quoted bytes.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
FIELDS = "rssp_fields"  # LogRecord attribute holding structured fields (``extra={FIELDS: {...}}``)


class MalformedRequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request refused (%s, %s)", (exc.code, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a traceback, if any, goes in ``exception`` (still one line)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        out.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with an access record's fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, FIELDS, None)
        return text + "".join(f" {k}={v}" for k, v in fields.items()) if fields else text


def log_format(raw: dict[str, Any] | None = None) -> str:
    """``json`` or ``text``: ``RSSP_LOG_FORMAT``, else ``[logging] format``, else ``json``."""
    table = (raw or {}).get("logging", {})
    value = os.environ.get("RSSP_LOG_FORMAT") or (table.get("format") if isinstance(table, dict) else None) or "json"
    if value not in ("json", "text"):
        raise ValueError(f"[logging] format must be \"json\" or \"text\", not {value!r}")
    return value


def configure(fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
