"""The time-stamping interface between core and the TSA plug-ins.

Core never imports ``tsa_clients``: a plug-in (the pool in ``tsa_clients.pool``, installed by
the ``timestamps`` extension) puts an object satisfying :class:`TimestampAuthority` into
``Services.extras[TSA_POOL]``, and anything in core that needs a timestamp (``signDoc`` at
B-T and above, for instance) asks it through this protocol only. Upstream TSA clients are
plug-ins too (entry point group ``rssp.tsa_clients``), described by :class:`TsaClient`.

The exceptions are the only failure vocabulary: each maps onto exactly one CSC error, so a
caller never has to know which upstream failed or why (that stays in the server log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

TSA_POOL = "tsa_pool"  # key of the pool in Services.extras


class TimestampError(Exception):
    """Base class of the failures a :class:`TimestampAuthority` reports."""


class UnknownTsa(TimestampError):
    """The requested timestampID is not configured, or is disabled (400 Invalid parameter timestampID)."""


class UnsupportedHash(TimestampError):
    """The chosen TSA, or every selectable TSA, does not accept this hash algorithm (400)."""


class TsaUnavailable(TimestampError):
    """Every candidate TSA failed or is cooling down (503 temporarily_unavailable)."""


class TokenRejected(TimestampError):
    """An upstream answer failed verification: it must never be relayed.

    The message names the failed check for the operator's log; it is never sent to clients.
    """


@dataclass(frozen=True)
class TimestampRequest:
    """What to stamp: a digest the client computed, its algorithm OID, and an optional nonce.

    ``nonce`` None means "no client nonce": the pool then sends its own random one, so every
    upstream request is still bound to exactly one answer.
    """

    digest: bytes
    hash_oid: str
    nonce: int | None = None
    timestamp_id: str | None = None


@dataclass(frozen=True)
class VerifiedToken:
    """A TimeStampToken that passed every check, with what the checks learned about it."""

    token: bytes  # DER ContentInfo(SignedData(TSTInfo)), as the TSA sent it
    gen_time: datetime
    policy_oid: str
    serial_number: int
    signer_cert: bytes  # DER of the TSU certificate
    chain: tuple[bytes, ...] = ()  # DER certificates from the TSU certificate's issuer up to the anchor
    accuracy_seconds: float | None = None


@dataclass(frozen=True)
class Timestamp:
    """A verified token and the ID of the TSA that issued it."""

    timestamp_id: str
    token: VerifiedToken


@dataclass(frozen=True)
class TsaDescription:
    """What ``timestamps/info`` may say about one TSA: never its URL nor its credentials."""

    timestamp_id: str
    name: str | dict[str, str]
    description: str | dict[str, str]
    status: str  # available | unavailable | disabled
    default: bool
    policy_oid: str | None
    hash_oids: tuple[str, ...]
    accuracy_seconds: float | None
    accreditation: dict[str, Any] = field(default_factory=dict)
    signer_cert: bytes | None = None
    chain: tuple[bytes, ...] = ()


@runtime_checkable
class TimestampAuthority(Protocol):
    """A source of verified RFC 3161 tokens (in rssp: the multi-TSA pool)."""

    async def timestamp(self, request: TimestampRequest) -> Timestamp:
        """A verified token for the request; raises a :class:`TimestampError` subclass."""
        ...

    def ids(self, *, only_valid: bool = False) -> list[str]:
        """TSA IDs in selection order (the default first)."""
        ...

    def describe(self, timestamp_id: str) -> TsaDescription:
        """The public description of one TSA; raises :class:`UnknownTsa` if not configured."""
        ...

    async def described(self, timestamp_id: str) -> TsaDescription:
        """:meth:`describe`, once a token of the TSA is known (its certificate comes only from one)."""
        ...


class TsaClient(Protocol):
    """One upstream TSA. Plug-ins in ``rssp.tsa_clients`` are factories for these.

    The factory is called as ``factory(settings, table, directory)``: the fields every TSA has
    (``tsa_clients.settings.TsaSettings``: ID, URL, anchors, policy, timeouts, ...), the TSA's
    raw table from rssp.toml (for the plug-in's own keys) and the instance directory (for
    relative paths). ``request`` returns only tokens it has verified completely; anything
    else raises (:class:`TokenRejected` for a bad answer, any other exception for transport).
    """

    async def start(self) -> None: ...

    async def request(self, digest: bytes, hash_oid: str, nonce: int) -> VerifiedToken: ...

    async def close(self) -> None: ...
