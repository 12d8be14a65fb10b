"""Logging set-up of a server process, with one guard: no request content in the log.

aiohttp logs a request it cannot parse (a request line or header over 8 KiB, a bad
Content-Length) with a traceback that quotes up to 100 raw bytes of it: the URL with its
query string or a header line, where a client may have put a token, a code or a password.
The filter keeps the event (status and kind of error) and drops the quoted bytes.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


class MalformedRequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request refused (%s, %s)", (exc.code, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
        return True


def configure() -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
