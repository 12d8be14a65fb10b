"""The timestamper the engines hand to pyHanko: any TSA failure becomes UpstreamUnavailable.

pyHanko asks a :class:`~pyhanko.sign.timestamps.TimeStamper` for tokens in several places (size
estimation, the signature timestamp, the PAdES document timestamp, the TSA's certificate paths),
and what a failing TSA raises depends on the timestamper (pyHanko's ``TimestampRequestError``,
aiohttp errors, the lead's TSA pool's own exceptions). Wrapping the timestamper, rather than
guessing exception types around pyHanko's calls, maps exactly the failures that came from the
TSA, wherever pyHanko called it, to :class:`~rssp.documents.model.UpstreamUnavailable`.

The wrapper also records the real tokens it returned (not the size-estimation dummies): the TSA
that answered for real may not be the one that answered the dummy request (a pool fails over),
and B-LT must carry the validation data of the TSA whose token is in the signature.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from asn1crypto import cms, tsp
from pyhanko.sign.signers.constants import DEFAULT_MD
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.path import ValidationPath

from rssp.documents.model import UpstreamUnavailable

TSA_FAILED = "The time-stamping authority did not return a valid timestamp"
TSA_UNTRUSTED = "The time-stamping authority's certificate could not be validated"

T = TypeVar("T")


async def _guard(call: Awaitable[T], text: str = TSA_FAILED) -> T:
    try:
        return await call
    except UpstreamUnavailable:
        raise
    except Exception as exc:  # whatever the TSA side raised, the TSA failed
        raise UpstreamUnavailable(text) from exc


class GuardedTimeStamper(TimeStamper):
    """Delegates to ``inner``; TSA failures raise UpstreamUnavailable; real tokens are kept in ``tokens``."""

    def __init__(self, inner: TimeStamper) -> None:
        super().__init__(include_nonce=inner.include_nonce)  # type: ignore[no-untyped-call]  # pyHanko's, unannotated
        self.inner = inner
        self.cert_registry = inner.cert_registry
        self.tokens: list[cms.ContentInfo] = []

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        token = await _guard(self.inner.async_timestamp(message_digest, md_algorithm))
        self.tokens.append(token)
        return token

    async def async_dummy_response(self, md_algorithm: str) -> cms.ContentInfo:
        """The inner timestamper's dummy (it may cache it across documents)."""
        return await _guard(self.inner.async_dummy_response(md_algorithm))

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> Any:
        return await _guard(self.inner.async_request_tsa_response(req))

    async def validation_paths(self, validation_context: ValidationContext) -> AsyncIterator[ValidationPath]:
        """The inner timestamper's TSA paths; failing to build or check one means the TSA is unusable."""
        await _guard(self.inner.async_dummy_response(DEFAULT_MD))  # the TSA's certificates come with a token
        for path in await _guard(_collect(self.inner.validation_paths(validation_context)), TSA_UNTRUSTED):
            yield path


async def _collect(paths: AsyncIterator[ValidationPath]) -> list[ValidationPath]:
    return [path async for path in paths]
