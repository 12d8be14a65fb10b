"""The operator's command line: ``rssp init|serve|user|credential|audit``.

Every command prints JSON with ``--json`` so it can be scripted; errors go to stderr with a
non-zero exit status and never include secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rssp.config import load_config
from rssp.errors import OperatorError
from rssp.hsm import Hsm
from rssp.hsm.types import KeySpec
from rssp.store import migrate, open_store


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


class _Instance:
    """Store and (when needed) HSM of an instance, opened for one CLI command."""

    def __init__(self, directory: str, with_hsm: bool) -> None:
        self.config = load_config(directory)
        self.store = open_store(self.config.database_url)
        hsm = self.config.hsm
        self.hsm = Hsm(hsm.module, hsm.token_label, hsm.pin, hsm.softhsm2_conf) if with_hsm else None

    async def __aenter__(self) -> "_Instance":
        await migrate(self.store)
        if self.hsm:
            await self.hsm.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hsm:
            await self.hsm.close()
        await self.store.close()


async def _init(args: argparse.Namespace) -> None:
    from rssp.instance import init_instance

    summary = await init_instance(Path(args.dir), production=args.production)
    kind = "production" if args.production else "development (with the bundled test PKI)"
    text = f"initialised {summary['directory']} as a {kind} instance"
    for ca_id, client in summary.get("manageClients", {}).items():
        text += (f"\nmanagement client of CA {ca_id}: client_id {client['client_id']}, "
                 f"client_secret (shown once) {client['client_secret']}")
    _emit(args, summary, text)


async def _user_add(args: argparse.Namespace) -> None:
    from rssp.users import add_user

    async with _Instance(args.dir, with_hsm=False) as inst:
        user = await add_user(inst.store, args.user, args.password)
    _emit(args, {"userID": user.id, "username": user.username}, f"user {user.username} added")


async def _credential_create(args: argparse.Namespace) -> None:
    from rssp.ca import build_connector
    from rssp.credentials.enroll import EnrollRequest, enroll

    async with _Instance(args.dir, with_hsm=True) as inst:
        assert inst.hsm is not None
        ca_id = args.ca or inst.config.default_ca
        if ca_id not in inst.config.cas:
            raise LookupError(f"no CA {ca_id!r} in rssp.toml")
        req = EnrollRequest(
            username=args.user, level=args.level, key_spec=KeySpec.parse(args.key), pin=args.pin, totp=args.totp,
            multisign=args.multisign, description=args.description, subject_dn=args.subject, ca_id=ca_id,
        )
        connector = build_connector(inst.config.cas[ca_id], inst.hsm, inst.config.directory)
        done = await enroll(inst.store, inst.hsm, connector, req)
    out: dict[str, Any] = {"credentialID": done.credential_id}
    text = f"credentialID: {done.credential_id}"
    if done.otpauth_uri:
        out["otpauthURI"] = done.otpauth_uri
        text += f"\notpauth URI (shown once): {done.otpauth_uri}"
    _emit(args, out, text)


async def _credential_unlock(args: argparse.Namespace) -> None:
    from rssp.credentials.admin import unlock

    async with _Instance(args.dir, with_hsm=False) as inst:
        await unlock(inst.store, args.credential_id)
    _emit(args, {"credentialID": args.credential_id, "locked": False}, f"{args.credential_id} unlocked")


async def _audit_list(args: argparse.Namespace) -> None:
    from rssp.audit_query import recent

    async with _Instance(args.dir, with_hsm=False) as inst:
        rows = await recent(inst.store, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print(f"{r['time']} {r['actor']} {r['action']} {r['target'] or '-'} {r['outcome']} {r['clientIP'] or '-'}")


async def _ca_add(args: argparse.Namespace) -> None:
    from rssp.ca_admin import CAOptions, add_ca

    opts = CAOptions(
        ca_id=args.ca_id, connector=args.connector, anchors=tuple(args.anchor or ()), name=args.name,
        key_algorithms=tuple(args.key_algorithms.split(",")) if args.key_algorithms else None,
        levels=tuple(int(v) for v in args.levels.split(",")) if args.levels else None,
        url=args.url, mac_secret_file=args.mac_secret_file, reference=args.reference, recipient=args.recipient,
        server_cert=args.server_cert, client_cert=args.client_cert, client_key=args.client_key,
        implicit_confirm=args.implicit_confirm, request_type=args.request_type,
    )
    async with _Instance(args.dir, with_hsm=args.connector == "local") as inst:
        out = await add_ca(inst.config, inst.store, inst.hsm, opts)
    _emit(args, out, f"CA {out['caID']} added; management client_id {out['client_id']}, "
                     f"client_secret (shown once) {out['client_secret']}\nrestart 'rssp serve' to use it")


async def _ca_secret(args: argparse.Namespace) -> None:
    from rssp.ca_registry import register_manage_client

    async with _Instance(args.dir, with_hsm=False) as inst:
        if args.ca_id not in inst.config.cas:
            raise LookupError(f"no CA {args.ca_id!r} in rssp.toml")
        client_id, secret = await register_manage_client(inst.store, args.ca_id)
    _emit(args, {"caID": args.ca_id, "client_id": client_id, "client_secret": secret},
          f"CA {args.ca_id}: new management client_id {client_id}, client_secret (shown once) {secret}")


def _words(values: list[str] | None) -> list[str] | None:
    """``--scopes service credential`` or ``--scopes service,credential``."""
    return [w for v in values for w in v.split(",") if w] if values else None


async def _client_add(args: argparse.Namespace) -> None:
    from rssp.oauth.clients import add_client

    async with _Instance(args.dir, with_hsm=False) as inst:
        client, secret = await add_client(
            inst.store, args.name, args.redirect_uri or [], public=args.public,
            scopes=_words(args.scopes), grant_types=_words(args.grant_types),
        )
    out: dict[str, Any] = {"client_id": client.client_id, "name": client.name, "redirect_uris": list(client.redirect_uris),
                           "scopes": list(client.scopes), "grant_types": list(client.grant_types)}
    text = f"client_id: {client.client_id}"
    if secret:
        out["client_secret"] = secret
        text += f"\nclient_secret (shown once, stored hashed): {secret}"
    _emit(args, out, text)


def _serve(args: argparse.Namespace) -> None:
    from rssp.server import serve

    serve(Path(args.dir), args.host, args.port, args.workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rssp", description="Remote Signing Service Provider")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[..., Any], help_: str, parent: Any = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_)
        p.add_argument("dir", help="instance directory")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=func)
        return p

    p = command("init", _init, "create a self-contained instance in DIR")
    p.add_argument("--production", action="store_true",
                   help="leave out the bundled test PKI (development TSAs, OCSP, CRLs)")
    p = command("serve", _serve, "serve the API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1)

    users = sub.add_parser("user", help="manage signers").add_subparsers(dest="action", required=True)
    p = command("add", _user_add, "add a signer", users)
    p.add_argument("user")
    p.add_argument("--password", required=True)

    creds = sub.add_parser("credential", help="manage credentials").add_subparsers(dest="action", required=True)
    p = command("create", _credential_create, "create a credential (key in the HSM, certificate from a CA)", creds)
    p.add_argument("--user", required=True)
    p.add_argument("--level", type=int, choices=(1, 2, 3), default=1,
                   help="1: PIN; 2: PIN and TOTP; 3: PIN and TOTP, the key usable only with the PIN "
                        "(docs/level3.md)")
    p.add_argument("--key", default="rsa-2048", choices=("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"))
    p.add_argument("--pin", required=True,
                   help="levels 1-2: 4 to 32 digits; level 3: 8 to 64 characters with a letter and a digit")
    p.add_argument("--totp", action="store_true", help="add a TOTP factor (required for levels 2 and 3)")
    p.add_argument("--multisign", type=int, default=1)
    p.add_argument("--description")
    p.add_argument("--subject", help="subject DN, e.g. 'CN=Taro Yamada,O=Example,C=JP'")
    p.add_argument("--ca", help="CA ID from rssp.toml (default: the default CA)")
    p = command("unlock", _credential_unlock, "clear a credential's lockout (privileged)", creds)
    p.add_argument("credential_id")

    cas = sub.add_parser("ca", help="register CAs (manages/* clients, connectors)").add_subparsers(
        dest="action", required=True)
    p = command("add", _ca_add, "register a CA and print its management client credentials", cas)
    p.add_argument("ca_id", metavar="CAID")
    p.add_argument("--connector", required=True, choices=("local", "cmp"))
    p.add_argument("--anchor", action="append", help="PEM/DER trust anchor of the CA's certificates (repeatable)")
    p.add_argument("--name", help="local connector: the new CA's name (default: rssp CA CAID)")
    p.add_argument("--key-algorithms", help="comma-separated allowed keys, e.g. rsa-2048,ec-p256 (default: all)")
    p.add_argument("--levels", help="comma-separated allowed levels (default: 1,2,3)")
    p.add_argument("--url", help="cmp: the CA's CMP HTTP endpoint, e.g. http://ca.example/pkix/")
    p.add_argument("--mac-secret-file", help="cmp: file holding the shared secret for MAC (PBM) protection")
    p.add_argument("--reference", help="cmp: the reference (senderKID) that goes with the shared secret")
    p.add_argument("--recipient", help="cmp: the CA's DN (recipient), e.g. 'CN=Example CA'")
    p.add_argument("--server-cert", help="cmp: the CMP server's certificate (signature-protected responses)")
    p.add_argument("--client-cert", help="cmp: certificate for signature protection of requests")
    p.add_argument("--client-key", help="cmp: PEM private key for signature protection of requests")
    p.add_argument("--implicit-confirm", action="store_true", help="cmp: ask for implicit confirmation")
    p.add_argument("--request-type", choices=("p10cr", "cr", "ir"), default="p10cr",
                   help="cmp: PKCS#10 request (default) or CRMF cr/ir with POP signed by the HSM key")
    p = command("secret", _ca_secret, "issue a new management client secret for a CA (the old one stops working)",
                cas)
    p.add_argument("ca_id", metavar="CAID")

    oauth_clients = sub.add_parser("client", help="manage OAuth clients").add_subparsers(dest="action", required=True)
    p = command("add", _client_add, "register an OAuth 2.0 client (prints client_id and, once, client_secret)",
                oauth_clients)
    p.add_argument("name")
    p.add_argument("--redirect-uri", action="append", help="a redirect URI, matched exactly (repeatable)")
    p.add_argument("--public", action="store_true", help="a public client: no secret, code flow with PKCE only")
    p.add_argument("--scopes", nargs="+", help="service and/or credential (default: both)")
    p.add_argument("--grant-types", nargs="+",
                   help="authorization_code, refresh_token, client_credentials (default: the first two)")

    audit = sub.add_parser("audit", help="read the audit trail").add_subparsers(dest="action", required=True)
    p = command("list", _audit_list, "recent audit records", audit)
    p.add_argument("--limit", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = args.func(args)
        if isinstance(result, Awaitable):
            asyncio.run(result)  # type: ignore[arg-type]
    except (OperatorError, ValueError, LookupError) as exc:
        print(f"rssp: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, not a traceback
        name = type(exc).__name__
        print(f"rssp: {name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
