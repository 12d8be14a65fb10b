"""The served OpenAPI document lists what the CSC OpenAPI 2.1.0.1 lists for every method.

In particular ``501`` (``components/responses/notImplementedResponse``): the answer,
``not_implemented``, that a client gets for a CSC method the server does not offer, so a
client generated from the served document knows that answer as it does from the CSC's.
"""

from __future__ import annotations

from rssp.api import (auth, credentials, info, lifecycle, oob, openapi, pin_change, polling, signatures, signdoc,
                      suspension)
from rssp.api.registry import Registry

# components/responses/notImplementedResponse of the CSC OpenAPI 2.1.0.1, word for word
CSC_DESCRIPTION = ('The request has failed due to an unimplemented method being requested. '
                   'Error string is "not_implemented".')
NOT_IMPLEMENTED = {"error": "not_implemented", "error_description": "Method not implemented"}


def _core_document() -> dict:
    registry = Registry()
    for module in (info, auth, credentials, lifecycle, oob, signatures, signdoc, polling, suspension, pin_change):
        module.register(registry)
    return openapi.build(registry, "https://rssp.example")


def _follow(document: dict, node: dict) -> dict:
    """``node`` with its ``$ref`` (``#/...``) followed, as a client generator does."""
    while "$ref" in node:
        target: dict = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _assert_501_listed(document: dict) -> None:
    assert document["paths"]
    for path, item in document["paths"].items():
        answer = _follow(document, item["post"]["responses"].get("501", {}))
        assert answer.get("description") == CSC_DESCRIPTION, path
        schema = _follow(document, answer["content"]["application/json"]["schema"])
        assert set(schema["required"]) <= set(NOT_IMPLEMENTED), path


def test_every_method_lists_501_not_implemented_as_the_csc_openapi_does():
    document = _core_document()
    _assert_501_listed(document)
    assert document["components"]["responses"]["notImplementedResponse"]["description"] == CSC_DESCRIPTION


async def test_the_served_document_lists_the_501_the_server_answers(dep, http):
    async with http.get(f"{dep.base}/csc/v2/openapi.json") as resp:
        assert resp.status == 200
        document = await resp.json()
    assert set(document["paths"]) >= set(_core_document()["paths"])  # and the extensions' methods, if mounted
    _assert_501_listed(document)
    async with http.post(f"{dep.base}/csc/v2/credentials/nosuch", json={}) as resp:
        assert (resp.status, await resp.json()) == (501, NOT_IMPLEMENTED)
