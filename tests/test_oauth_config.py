"""OAuth settings that need their own instance ([oauth] require_par, short TTLs), and the
schema step that brings an older database up to the OAuth tables."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, inspect, text

from deployment import Deployment
from oauth_helpers import FormBrowser, add_client, auth_params, exchange, pkce, query_of, token_request
from rssp.store import migrate, open_store
from rssp.store.migrations import schema_version

REDIRECT = "https://sa.example/cb"


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A one-process SQLite instance with PAR mandatory and one-second codes and PAR URIs."""
    import os

    directory = tmp_path_factory.mktemp("oauth-strict") / "instance"
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    dep = Deployment(directory, None, env)
    dep.rssp("init", str(directory), "--production")
    dep.add_user("alice", "alice-password")
    with open(directory / "rssp.toml", "a", encoding="utf-8") as fh:
        fh.write("\n[oauth]\nrequire_par = true\ncode_ttl_seconds = 1\npar_ttl_seconds = 1\n")
    dep.seal_config()
    dep.start(workers=1)
    yield dep
    dep.stop()


async def test_par_can_be_made_mandatory(http, strict):
    client = add_client(strict, "Portal", REDIRECT)
    async with http.get(f"{strict.base}/.well-known/oauth-authorization-server") as resp:
        assert (await resp.json())["require_pushed_authorization_requests"] is True
    verifier, challenge = pkce()
    params = auth_params(client, challenge)
    async with FormBrowser(strict) as browser:
        page = await browser.authorize(params)
        assert page.status == 303
        assert query_of(page.location)["error"] == "invalid_request"
    status, pushed = await token_request(http, strict, client, params, endpoint="pushed_authorize")
    assert status == 201 and pushed["expires_in"] == 1
    async with FormBrowser(strict) as browser:
        page = await browser.authorize({"client_id": client.client_id, "request_uri": pushed["request_uri"]})
        assert page.status == 200, page.text
        page = await browser.login()
        code = query_of(page.location)["code"]
    await asyncio.sleep(1.5)  # past code_ttl_seconds
    status, err = await exchange(http, strict, client, code, verifier)
    assert status == 400 and err["error"] == "invalid_grant"
    status, pushed = await token_request(http, strict, client, params, endpoint="pushed_authorize")
    await asyncio.sleep(1.5)  # past par_ttl_seconds
    async with FormBrowser(strict) as browser:
        page = await browser.authorize({"client_id": client.client_id, "request_uri": pushed["request_uri"]})
        assert page.status == 400


def test_bad_oauth_settings_are_refused(strict):
    from dataclasses import replace

    from rssp.config import ConfigError, load_config
    from rssp.oauth.settings import OAuthSettings

    config = load_config(strict.directory)
    assert OAuthSettings.from_config(config).require_par is True
    assert OAuthSettings.from_config(config).issuer == config.public_url
    for bad in ({"code_ttl_seconds": 600}, {"par_ttl_seconds": 0}, {"no_such_setting": 1}):
        with pytest.raises(ConfigError):
            OAuthSettings.from_config(replace(config, raw={**config.raw, "oauth": bad}))


async def test_migration_2_adds_the_oauth_tables_to_an_older_database(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/old.db")
    try:
        await migrate(store)

        def downgrade(conn):
            for name in ("oauth_clients", "oauth_sessions", "oauth_codes", "par_requests"):
                conn.execute(text(f"DROP TABLE {name}"))
            conn.execute(text("DROP INDEX ix_tokens_client"))
            conn.execute(delete(schema_version).where(schema_version.c.version >= 2))

        await store.transaction(downgrade)
        version = await migrate(store)
        assert version >= 2
        names = await store.query(lambda conn: set(inspect(conn).get_table_names()))
        assert {"oauth_clients", "oauth_sessions", "oauth_codes", "par_requests"} <= names
        indexes = await store.query(lambda conn: {i["name"] for i in inspect(conn).get_indexes("tokens")})
        assert "ix_tokens_client" in indexes
        assert await migrate(store) == version  # idempotent
    finally:
        await store.close()
