"""The ``signHash`` job kind: sign the stored digests with the credential's HSM key.

The request was checked and its SAD spent when the job was created (:mod:`rssp.api.signatures`);
the job stores only what signing needs (digests, algorithm, parameters) and signs through the
same path as a synchronous call (:meth:`rssp.sam.signing.SigningService.sign_authorized`:
HSM, then every value verified against the public key).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from rssp.credentials import get_credential
from rssp.errors import invalid_request, unknown_credential
from rssp.jobs.kinds import job_kind
from rssp.jobs.store import Job, NewJob
from rssp.sam.signing import SignRequest

if TYPE_CHECKING:
    from rssp.services import Services

KIND = "signHash"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_job(req: SignRequest, client_id: str | None, validity_ms: int, response_uri: str | None) -> NewJob:
    """The job for a signHash request whose SAD is being spent (never the SAD itself)."""
    params = _b64(req.sign_algo_params) if req.sign_algo_params is not None else None
    payload = {"hashes": [_b64(d) for d in req.digests], "signAlgo": req.sign_algo,
               "hashAlgorithmOID": req.hash_oid, "signAlgoParams": params}
    return NewJob(KIND, req.user_id, client_id, req.credential.id, payload, validity_ms, response_uri, req.client_ip)


@job_kind(KIND)
async def run(services: Services, job: Job) -> dict[str, Any]:
    """Sign as the synchronous path does; the credential must still be the user's and enabled."""
    cred = await get_credential(services.store, job.credential_id or "", job.user_id)
    if cred is None:
        raise unknown_credential()
    if cred.status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    p = job.payload
    params = base64.b64decode(p["signAlgoParams"]) if p["signAlgoParams"] else None
    req = SignRequest(cred, job.user_id, "", tuple(base64.b64decode(h) for h in p["hashes"]), p["signAlgo"],
                      p["hashAlgorithmOID"], params, job.client_ip)  # no SAD: it was spent at request time
    signatures = await services.signing.sign_authorized(req)
    return {"signatures": [_b64(s) for s in signatures]}
