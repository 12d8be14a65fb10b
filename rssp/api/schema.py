"""Request and response schemas of API methods, declared where the methods are registered.

Each :class:`~rssp.api.registry.Method` may carry a :class:`Doc`: a summary, the JSON Schema
of its request body and of its 200 answer, the other success statuses it uses, and the error
statuses it may answer. :mod:`rssp.api.openapi` builds the served OpenAPI document from the
registry, so the document lists exactly the mounted methods with what they declare here.

Schemas describe what the server accepts and sends; they stay open (extra members allowed),
as CSC clients send fields of other versions. The helpers keep declarations short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

# statuses every authenticated method may answer (bad input, bad token, overload, failures)
COMMON_ERRORS = (400, 401, 413, 429, 500, 503)


@dataclass(frozen=True)
class Doc:
    summary: str
    request: Schema
    response: Schema
    other: dict[int, Schema | None] = field(default_factory=dict)  # e.g. 202 (pending), 204 (no body)
    errors: tuple[int, ...] = COMMON_ERRORS
    tag: str = "CSC"


def string(description: str = "", **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def b64(description: str = "") -> Schema:
    return string(description or "Base64 (standard or URL-safe alphabet)", contentEncoding="base64")


def boolean(description: str = "") -> Schema:
    return {"type": "boolean", **({"description": description} if description else {})}


def integer(description: str = "", **extra: Any) -> Schema:
    return {"type": "integer", **extra, **({"description": description} if description else {})}


def number(description: str = "") -> Schema:
    return {"type": "number", **({"description": description} if description else {})}


def array(items: Schema, description: str = "", **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra, **({"description": description} if description else {})}


def obj(required: tuple[str, ...] = (), /, **properties: Schema) -> Schema:
    """An object with these members (a member may be called ``description``: no keyword of our own here)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def one_of(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


CLIENT_DATA = string("Opaque data echoed nowhere; accepted on every method")
LANG = string("Preferred language (BCP 47)")
CERTIFICATES = one_of("none", "single", "chain")
ERROR = obj(("error", "error_description"), error=string(), error_description=string())
