"""The ``signDoc`` job kind: build the signed documents of an asynchronous ``signatures/signDoc``.

The request was checked, its inputs pre-flighted and its SAD spent when the job was created
(:mod:`rssp.api.signdoc`); the job stores the planned outputs (documents or digests, Base64,
with their options and algorithms) and builds them as a synchronous call does
(:meth:`rssp.documents.service.DocumentService.sign`), with a permit for the authorization
already spent. Nothing goes back to the SAD on failure: a failed run is tried again by the
runner, on the same authorization, and a job that finally fails reports its CSC error.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rssp.documents.response import signdoc_response
from rssp.credentials import get_credential
from rssp.documents.model import DocumentOptions, Output
from rssp.errors import invalid_request, unknown_credential
from rssp.hsm import SignMechanism
from rssp.jobs.kinds import job_kind
from rssp.jobs.store import Job, NewJob
from rssp.sam.documents import DocumentAuthorization, SignaturePermit
from rssp.tsa import TSA_POOL

if TYPE_CHECKING:
    from rssp.services import Services

KIND = "signDoc"


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _unb64(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value is not None else None


def new_job(outputs: list[Output], *, user_id: str, client_id: str | None, credential_id: str,
            timestamp_id: str | None, with_info: bool, validity_ms: int, response_uri: str | None,
            client_ip: str | None) -> NewJob:
    """The job for a signDoc request whose SAD is being spent (never the SAD itself)."""
    payload = {
        "outputs": [{"format": o.format, "options": {**asdict(o.options), "signed_props": list(o.options.signed_props)},
                     "mechanism": asdict(o.mechanism), "params": _b64(o.params), "authorized": _b64(o.authorized),
                     "data": _b64(o.data), "digest": _b64(o.digest)} for o in outputs],
        "timestampID": timestamp_id, "returnValidationInfo": with_info,
    }
    return NewJob(KIND, user_id, client_id, credential_id, payload, validity_ms, response_uri, client_ip)


def _output(stored: dict[str, Any]) -> Output:
    opts = dict(stored["options"])
    opts["signed_props"] = tuple(tuple(p) for p in opts["signed_props"])
    return Output(stored["format"], DocumentOptions(**opts), SignMechanism(**stored["mechanism"]),
                  _unb64(stored["params"]), _unb64(stored["authorized"]) or b"", data=_unb64(stored["data"]),
                  digest=_unb64(stored["digest"]))


@job_kind(KIND)
async def run(services: Services, job: Job) -> dict[str, Any]:
    """Build every output; the credential must still be the user's and enabled."""
    cred = await get_credential(services.store, job.credential_id or "", job.user_id)
    if cred is None:
        raise unknown_credential()
    if cred.status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    outputs = [_output(o) for o in job.payload["outputs"]]
    auth = DocumentAuthorization(cred, job.user_id, "", tuple(o.mechanism for o in outputs),
                                 tuple(o.authorized for o in outputs), job.client_ip)
    permit = SignaturePermit(services.signing, auth)  # spent when the job was created
    signed = await services.documents.sign(outputs, permit, cred, services.extras.get(TSA_POOL),
                                           job.payload["timestampID"], give_back=False)
    return signdoc_response(signed, job.payload["returnValidationInfo"])
