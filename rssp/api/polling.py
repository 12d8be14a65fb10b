"""Asynchronous mode over HTTP: the ``operationMode: "A"`` fields, and ``signatures/signPolling``.

A signing method in mode "A" checks everything and spends its SAD as in mode "S", stores
a job in the same transaction and answers at once ``200 {"responseID"}``
(:func:`async_request`, :func:`accepted`). ``signatures/signPolling`` then answers ``202``
while the job is pending or running, and the job's result (``200``) or its CSC error once
it is finished, on every call until the validity period ends. Only the user (and OAuth
client) that made the request sees the job; for anyone else, and after the validity
period, the ID is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from rssp.api.parse import Body
from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.errors import invalid_param, invalid_request
from rssp.jobs.store import NewJob, outcome_for
from rssp.services import Services

# The OpenAPI's acceptedRequestResponse: the error-response schema, with the code of the notes.
PENDING = {"error": "accepted_request",
           "error_description": "The request has been accepted for processing, but the processing has not yet "
                                "been completed"}


@dataclass(frozen=True)
class AsyncRequest:
    validity_ms: int
    response_uri: str | None


def async_request(body: Body, services: Services) -> AsyncRequest | None:
    """``operationMode`` "A" with its ``validity_period`` and ``response_uri``; None for "S".

    Both are checked here, before anything is spent; in mode "S" they are ignored (CSC).
    ``response_uri`` must point at a host the operator allowed (``[async] response_uri_hosts``).
    """
    if body.choice("operationMode", ("S", "A"), "S") == "S":
        return None
    settings = services.config.asynchronous
    validity = body.integer("validity_period", default=settings.default_validity_period_ms)
    if not 0 < validity <= settings.max_validity_period_ms:
        raise invalid_request("Out of bounds parameter validity_period")
    uri = body.string("response_uri", max_len=2048)
    return AsyncRequest(validity, services.jobs.policy.check_uri(uri) if uri is not None else None)


def accepted(services: Services, job: NewJob) -> web.Response:
    """The answer to a request whose job was stored (committed): its ``responseID``."""
    services.jobs.wake()
    return web.json_response({"responseID": job.id})


async def sign_polling(call: Call) -> web.Response:
    body = call.body
    request_id = body.required_string("requestID", max_len=64)
    if "userID" in body:
        raise invalid_request("userID parameter SHALL be null")  # the token names the user
    outcome = await outcome_for(call.services.store, request_id, call.user.user_id, call.user.client_id)
    if outcome is None:
        raise invalid_param("requestID")
    if not outcome.finished:
        return web.json_response(PENDING, status=202)
    if outcome.error is not None:
        raise outcome.error
    return web.json_response(outcome.result)


def register(registry: Registry) -> None:
    registry.add(Method("signatures/signPolling", sign_polling, scopes=frozenset({"service", "credential"}),
                        doc=schemas.SIGN_POLLING))
