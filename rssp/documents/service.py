"""Producing the outputs of a ``signatures/signDoc`` call once its SAD is spent.

Each output is built by its engine (:mod:`rssp.documents.pades`, :mod:`rssp.documents.cades`,
:mod:`rssp.documents.xades`) on
the documents thread (:class:`~rssp.loop_thread.LoopThread`), with pyHanko objects over the SAM
permit, the TSA pool and a revocation fetcher (:mod:`rssp.documents.tools`). A call gives all its
outputs or none: when a TSA or responder fails, every output of the call goes back to the SAD
(:meth:`rssp.sam.documents.SignaturePermit.give_back`) and the caller gets 503, so it can retry
with the same SAD.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from asn1crypto import x509

from rssp.ca.registry import ca_policy
from rssp.config import Config
from rssp.credentials import Credential
from rssp.documents import cades, pades, xades
from rssp.documents.model import DocumentError, Output, SignedOutput, SigningTools, UpstreamUnavailable
from rssp.documents.preflight import preflight
from rssp.documents.tools import (
    HsmSigner, PoolTimeStamper, fetcher_backend, signed_digest_algorithm, tsa_anchors, validation_context_factory,
)
from rssp.errors import CSCError, hsm_unavailable, invalid_request
from rssp.loop_thread import LoopThread
from rssp.sam.documents import SignaturePermit
from rssp.sam.signing import HsmFailed
from rssp.tsa import TimestampAuthority

log = logging.getLogger("rssp.documents")
_LONG_TERM = ("B-LT", "B-LTA")  # the levels that validate the paths they embed
_UNAVAILABLE = CSCError(503, "temporarily_unavailable", "A timestamp or revocation service is unavailable; retry")


class DocumentService:
    def __init__(self, revocation_timeout_seconds: float = 10.0, signer_anchors: tuple[bytes, ...] = ()) -> None:
        self.loop = LoopThread("rssp-documents")
        self._backend = fetcher_backend(revocation_timeout_seconds)
        self._anchors = [x509.Certificate.load(der) for der in signer_anchors]

    async def start(self) -> None:
        self.loop.start()

    async def close(self) -> None:
        await self.loop.close(self._backend.close)

    async def check(self, outputs: list[Output]) -> None:
        """Refuse, before anything is spent, inputs that cannot be signed (off the event loop)."""
        for output in outputs:
            await self.loop.run(lambda o=output: _preflight(o))  # type: ignore[misc]

    async def sign(self, outputs: list[Output], permit: SignaturePermit, cred: Credential,
                   pool: TimestampAuthority | None, timestamp_id: str | None,
                   give_back: bool = True) -> list[SignedOutput]:
        """Every output, in order; or, if one fails, none: 503 or 400 after giving them all back
        (503 ``The HSM is temporarily unavailable`` when the HSM failed).

        A call delivers all its outputs or nothing, so on any failure every output of the call goes
        back to the SAD, those already signed included: no signature of this call left the server.
        An asynchronous job passes ``give_back=False``: it is retried on the same spent
        authorization, so nothing may return to the SAD.
        """
        chain = _chain(cred)
        done: list[SignedOutput] = []
        try:
            long_term = any(o.options.level in _LONG_TERM for o in outputs)
            roots = [*self._anchors, *await tsa_anchors(pool)] if long_term else []
            for index, output in enumerate(outputs):
                tools = self._tools(output, index, permit, cred, chain, roots, pool, timestamp_id)
                done.append(await self.loop.run(lambda o=output, t=tools: _engine(o, t)))  # type: ignore[misc]
        except BaseException as exc:
            if give_back:
                await permit.give_back(range(len(outputs)))
                if isinstance(exc, HsmFailed):  # no signature made, the SAD whole again: retry with it
                    raise hsm_unavailable() from None
            if isinstance(exc, UpstreamUnavailable):
                cause = exc.__cause__
                log.warning("signDoc: %s%s", exc, f" ({type(cause).__name__}: {cause})" if cause else "")
                raise _UNAVAILABLE from None
            if isinstance(exc, DocumentError):
                raise invalid_request(exc.description) from None
            raise
        return done

    def _tools(self, output: Output, index: int, permit: SignaturePermit, cred: Credential,
               chain: list[x509.Certificate], roots: list[x509.Certificate], pool: TimestampAuthority | None,
               timestamp_id: str | None) -> SigningTools:
        """``roots``: the CAs' anchors and the TSAs' roots, for B-LT and B-LTA."""
        level = output.options.level

        def sign(digest: bytes) -> Awaitable[bytes]:
            return self.loop.on_main(permit.sign(index, digest))

        signer = HsmSigner(chain[0], chain, signed_digest_algorithm(output.mechanism, output.params), sign,
                           cred.key_len, cred.key_kind)
        stamper = PoolTimeStamper(pool, self.loop, timestamp_id) if level != "B-B" and pool is not None else None
        contexts = validation_context_factory(chain, roots, self._backend) if level in _LONG_TERM else None
        return SigningTools(signer, stamper, contexts)


def signer_anchors(config: Config) -> tuple[bytes, ...]:
    """The roots the configured CAs' certificates chain to (``[ca.ID] anchors``, the local CA's root).

    B-LT validates the signer's path before it fetches the path's revocation data; a CA may deliver
    a certificate chain without its root, so the root is looked for among these too.
    """
    anchors = (a for ca_id, settings in config.cas.items()
               for a in ca_policy(ca_id, settings, config.directory).anchors)
    return tuple(dict.fromkeys(anchors))


def _chain(cred: Credential) -> list[x509.Certificate]:
    if cred.certificate is None:
        raise invalid_request("The credential has no certificate")
    return [x509.Certificate.load(cred.certificate), *(x509.Certificate.load(c) for c in cred.chain)]


async def _preflight(output: Output) -> None:
    try:
        preflight(output)
    except DocumentError as exc:
        raise invalid_request(exc.description) from None


async def _engine(output: Output, tools: SigningTools) -> SignedOutput:
    opts = output.options
    result: Any
    if output.format == "P":
        result = (await pades.sign_pdf(output.data, opts, tools) if output.data is not None
                  else await pades.sign_pdf_digest(output.digest, opts, tools))  # type: ignore[arg-type]
    elif output.format == "X":
        result = (await xades.sign_xml(output.data, opts, tools) if output.data is not None
                  else await xades.sign_xml_digest(output.digest, opts, tools))  # type: ignore[arg-type]
    elif output.data is None:
        result = await cades.sign_digest(output.digest, opts, tools)  # type: ignore[arg-type]
    elif opts.envelope == "Parallel":
        result = await cades.add_parallel(output.data, None, opts, tools)
    else:
        result = await cades.sign_data(output.data, opts, tools)
    return result  # type: ignore[no-any-return]
