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
    _emit(args, summary, f"initialised {summary['directory']} as a {kind} instance")


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
        done = await enroll(inst.store, inst.hsm, build_connector(inst.config.cas[ca_id], inst.hsm), req)
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
    p.add_argument("--level", type=int, choices=(1, 2), default=1)
    p.add_argument("--key", default="rsa-2048", choices=("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"))
    p.add_argument("--pin", required=True)
    p.add_argument("--totp", action="store_true", help="add a TOTP factor (required for level 2)")
    p.add_argument("--multisign", type=int, default=1)
    p.add_argument("--description")
    p.add_argument("--subject", help="subject DN, e.g. 'CN=Taro Yamada,O=Example,C=JP'")
    p.add_argument("--ca", help="CA ID from rssp.toml (default: the default CA)")
    p = command("unlock", _credential_unlock, "clear a credential's lockout (privileged)", creds)
    p.add_argument("credential_id")

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
