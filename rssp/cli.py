"""The operator's command line: ``rssp init|serve|user|credential|client|ca|admin|config|audit|conformance``.

Every command prints JSON with ``--json`` so it can be scripted; errors go to stderr with a
non-zero exit status and never include secrets. Every command that changes the instance is
privileged: it authenticates an operator (:mod:`rssp.admin`), checks the configuration seal
(:mod:`rssp.config_seal`) and is audited under ``operator:NAME``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rssp.admin import commands as admin_commands
from rssp.admin.context import Instance as _Instance
from rssp.errors import OperatorError
from rssp.hsm.types import HsmError, KeySpec

_emit = admin_commands.emit


def _setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``rssp init --set``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. security.sad_ttl_seconds=300)")
    return key.strip(), value


async def _init(args: argparse.Namespace) -> None:
    from rssp.instance import init_instance

    if args.join and args.settings:
        raise OperatorError("--set and --join do not go together: a joining host takes the deployment's rssp.toml")
    if args.join:  # a further host of an existing deployment (#18, rssp.join)
        from rssp.join import join_instance

        joined = await join_instance(Path(args.dir), Path(args.join))
        _emit(args, joined, f"initialised {joined['directory']} as a host of the deployment in {args.join}")
        return

    operator_file = args.operator_file or os.environ.get("RSSP_OPERATOR_FILE") or None
    summary = await init_instance(Path(args.dir), production=args.production, operator=args.operator,
                                  operator_file=Path(operator_file) if operator_file else None,
                                  settings=args.settings)
    kind = "production" if args.production else "development (with the bundled test PKI)"
    text = f"initialised {summary['directory']} as a {kind} instance"
    for ca_id, client in summary.get("manageClients", {}).items():
        text += (f"\nmanagement client of CA {ca_id}: client_id {client['client_id']}, "
                 f"client_secret (shown once) {client['client_secret']}")
    text += "\nfirst " + summary["operatorText"]
    if not summary["operator"]["file"]:
        text += ("\n  keep them in your secret store; privileged commands read RSSP_OPERATOR, "
                 "RSSP_OPERATOR_PASSWORD and RSSP_OPERATOR_OTP (or an operator file): see docs/operators.md")
    _emit(args, {k: v for k, v in summary.items() if k != "operatorText"}, text)


async def _user_add(args: argparse.Namespace) -> None:
    from rssp.users import add_user

    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "user add")
        user = await add_user(inst.store, args.user, args.password, actor=actor)
    _emit(args, {"userID": user.id, "username": user.username}, f"user {user.username} added")


async def _credential_create(args: argparse.Namespace) -> None:
    from rssp.ca import build_connector
    from rssp.credentials.enroll import EnrollRequest, enroll
    from rssp.factors.settings import load_settings

    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "credential create")
        ca_id = args.ca or inst.config.default_ca
        if ca_id not in inst.config.cas:
            raise LookupError(f"no CA {ca_id!r} in rssp.toml")
        req = EnrollRequest(
            username=args.user, level=args.level, key_spec=KeySpec.parse(args.key), pin=args.pin, totp=args.totp,
            multisign=args.multisign, description=args.description, subject_dn=args.subject, ca_id=ca_id,
            pin_change_required=inst.config.security.require_pin_change_on_first_use,
            factors=_factor_request(args),
        )
        connector = build_connector(inst.config.cas[ca_id], inst.opened_hsm, inst.config.directory)
        done = await enroll(inst.store, inst.opened_hsm, connector, req, actor=actor,
                            factors=load_settings(inst.config) if req.factors.any else None)
    out: dict[str, Any] = {"credentialID": done.credential_id}
    text = f"credentialID: {done.credential_id}"
    if done.otpauth_uri:
        out["otpauthURI"] = done.otpauth_uri
        text += f"\notpauth URI (shown once): {done.otpauth_uri}"
    if done.passkey_uri:
        out["passkeyRegistrationURI"] = done.passkey_uri
        text += f"\npasskey registration link for the signer (shown once): {done.passkey_uri}"
    _emit(args, out, text)


def _factor_request(args: argparse.Namespace) -> Any:
    """``--email``, ``--passkey``, ``--oidc-issuer`` + ``--oidc-subject``, ``--expression`` (docs/factors.md)."""
    from rssp.factors.link import FactorRequest

    if bool(args.oidc_issuer) != bool(args.oidc_subject):
        raise OperatorError("--oidc-issuer and --oidc-subject go together")
    oidc = (args.oidc_issuer, args.oidc_subject) if args.oidc_issuer else None
    return FactorRequest(email=args.email, oidc=oidc, passkey=args.passkey, expression=args.expression)


async def _credential_unlock(args: argparse.Namespace) -> None:
    from rssp.credentials.admin import unlock

    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "credential unlock")
        await unlock(inst.store, args.credential_id, actor=actor)
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


async def _audit_verify(args: argparse.Namespace) -> int:
    """Exit status 0: intact (records not yet sealed included); 1: tampering found."""
    from rssp.audit_verify import iso_time, verify_trail

    async with _Instance(args.dir, with_hsm=True, audit_writer=False) as inst:
        try:
            report = await verify_trail(inst.store, inst.opened_hsm)
        except HsmError as exc:  # no audit key in the token: nothing can be verified (exit status 2)
            raise OperatorError(f"the HSM cannot compute the audit trail's MACs: {exc}") from None
    problems = report.ordered()
    summary = {"intact": report.intact, "records": report.records, "chains": report.chains,
               "checkpoints": report.checkpoints, "latestCheckpoint": report.latest, "unsealed": report.unsealed,
               "oldestUnsealed": iso_time(report.oldest_unsealed) if report.oldest_unsealed is not None else None,
               "withoutWriterKey": report.unkeyed,
               "problems": [{"kind": p.kind, "text": p.text, "recordID": p.record_id, "chain": p.chain, "seq": p.seq}
                            for p in problems]}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(_verify_text(report.intact, problems, summary))
    return 0 if report.intact else 1


def _verify_text(intact: bool, problems: list[Any], summary: dict[str, Any]) -> str:
    lines = ["audit trail intact"] if intact else [
        f"audit trail TAMPERED: {len(problems)} problem(s); the first:", *(f"  {p.text}" for p in problems)]
    latest = summary["latestCheckpoint"]
    lines.append(f"checked {summary['records']} records in {summary['chains']} chains against "
                 f"{summary['checkpoints']} checkpoints"
                 + (f"; the latest: #{latest['seq']} at {latest['time']}, MAC {latest['mac']}" if latest else ""))
    if summary["unsealed"]:
        lines.append(f"{summary['unsealed']} records not yet sealed (written after the last checkpoint of their chain; "
                     f"the oldest at {summary['oldestUnsealed']})")
    return "\n".join(lines)


async def _ca_add(args: argparse.Namespace) -> None:
    from rssp.ca.admin import CAOptions, add_ca

    opts = CAOptions(
        ca_id=args.ca_id, connector=args.connector, anchors=tuple(args.anchor or ()), name=args.name,
        key_algorithms=tuple(args.key_algorithms.split(",")) if args.key_algorithms else None,
        levels=tuple(int(v) for v in args.levels.split(",")) if args.levels else None,
        url=args.url, mac_secret_file=args.mac_secret_file, reference=args.reference, recipient=args.recipient,
        server_cert=args.server_cert, client_cert=args.client_cert, client_key=args.client_key,
        implicit_confirm=args.implicit_confirm, request_type=args.request_type,
    )
    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "ca add", sealed=False)  # add_ca checks the seal under its lock
        out = await add_ca(inst.config, inst.store, inst.hsm, opts, actor=actor)
    _emit(args, out, f"CA {out['caID']} added; management client_id {out['client_id']}, "
                     f"client_secret (shown once) {out['client_secret']}\nrestart 'rssp serve' to use it")


async def _ca_secret(args: argparse.Namespace) -> None:
    from rssp.ca.registry import register_manage_client

    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "ca secret")
        if args.ca_id not in inst.config.cas:
            raise LookupError(f"no CA {args.ca_id!r} in rssp.toml")
        client_id, secret = await register_manage_client(inst.store, args.ca_id, actor=actor)
    _emit(args, {"caID": args.ca_id, "client_id": client_id, "client_secret": secret},
          f"CA {args.ca_id}: new management client_id {client_id}, client_secret (shown once) {secret}")


def _words(values: list[str] | None) -> list[str] | None:
    """``--scopes service credential`` or ``--scopes service,credential``."""
    return [w for v in values for w in v.split(",") if w] if values else None


async def _client_add(args: argparse.Namespace) -> None:
    from rssp.oauth.clients import add_client

    async with _Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "client add")
        client, secret = await add_client(
            inst.store, args.name, args.redirect_uri or [], public=args.public,
            scopes=_words(args.scopes), grant_types=_words(args.grant_types), actor=actor,
        )
    out: dict[str, Any] = {"client_id": client.client_id, "name": client.name,
                           "redirect_uris": list(client.redirect_uris), "scopes": list(client.scopes),
                           "grant_types": list(client.grant_types)}
    text = f"client_id: {client.client_id}"
    if secret:
        out["client_secret"] = secret
        text += f"\nclient_secret (shown once, stored hashed): {secret}"
    _emit(args, out, text)


def _serve(args: argparse.Namespace) -> None:
    """Serve; once stopped (its workers gone, its clean-up done), exit at once (:func:`exit_now`)."""
    from rssp.server import serve
    from rssp.serving import exit_now

    try:
        serve(Path(args.dir), args.host, args.port, args.workers)
    except SystemExit as stopped:  # the supervisor's exit status
        exit_now(stopped.code if isinstance(stopped.code, int) else 1)
    exit_now(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rssp", description="Remote Signing Service Provider")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[..., Any], help_: str, parent: Any = sub, *, operator: bool = False,
                approver: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        p.add_argument("dir", help="instance directory")
        p.add_argument("--json", action="store_true", help="print JSON")
        if operator:
            p.add_argument("--operator-file", metavar="FILE",
                           help="the operator's name, password and TOTP (JSON or TOML, mode 0600); "
                                "default: RSSP_OPERATOR* variables, then RSSP_OPERATOR_FILE")
        if approver:
            p.add_argument("--approver-file", metavar="FILE",
                           help="two-person control: a second operator's file (default: RSSP_APPROVER*)")
        p.set_defaults(func=func)
        return p

    p = command("init", _init, "create a self-contained instance in DIR")
    p.add_argument("--production", action="store_true",
                   help="leave out the bundled test PKI (development TSAs, OCSP, CRLs)")
    p.add_argument("--operator", default="admin", help="the first operator's name (default: admin)")
    p.add_argument("--operator-file", metavar="FILE",
                   help="write the first operator's file there (default: RSSP_OPERATOR_FILE, else DIR/operator.json "
                        "on a development instance; a production instance only prints it)")
    p.add_argument("--join", metavar="SRC", help="join the deployment whose instance directory is SRC "
                   "(same PostgreSQL database and HSM token; see docs/operations.md)")
    p.add_argument("--set", dest="settings", metavar="KEY=VALUE", action="append", default=[], type=_setting,
                   help="a setting of rssp.toml, as 'rssp config set' takes it (repeatable), written before anything "
                        "is made from it: e.g. security.argon2_memory_kib=262144")
    p = command("serve", _serve, "serve the API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1)

    users = sub.add_parser("user", help="manage signers").add_subparsers(dest="action", required=True)
    p = command("add", _user_add, "add a signer", users, operator=True)
    p.add_argument("user")
    p.add_argument("--password", required=True)

    creds = sub.add_parser("credential", help="manage credentials").add_subparsers(dest="action", required=True)
    p = command("create", _credential_create, "create a credential (key in the HSM, certificate from a CA)", creds,
                operator=True)
    p.add_argument("--user", required=True)
    p.add_argument("--level", type=int, choices=(1, 2, 3), default=1,
                   help="1: PIN; 2: PIN and a second factor; 3: the same, the key usable only with the PIN "
                        "(docs/level3.md, docs/factors.md)")
    p.add_argument("--key", default="rsa-2048", choices=("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"))
    p.add_argument("--pin", required=True,
                   help="levels 1-2: 4 to 32 digits; level 3: 8 to 64 characters with a letter and a digit")
    p.add_argument("--totp", action="store_true", help="add a TOTP factor (levels 2 and 3 need a second factor)")
    p.add_argument("--email", metavar="ADDRESS", help="add one-time codes and approval links by e-mail ([smtp])")
    p.add_argument("--passkey", action="store_true", help="add a passkey; prints the signer's registration link")
    p.add_argument("--oidc-issuer", metavar="ISSUER", help="add a sign-in at this OpenID Provider ([oidc.NAME])")
    p.add_argument("--oidc-subject", metavar="SUB", help="the signer's subject at --oidc-issuer")
    p.add_argument("--expression", help="how the factors combine, e.g. 'PIN AND (OTP OR FIDO)' (default: all)")
    p.add_argument("--multisign", type=int, default=1)
    p.add_argument("--description")
    p.add_argument("--subject", help="subject DN, e.g. 'CN=Taro Yamada,O=Example,C=JP'")
    p.add_argument("--ca", help="CA ID from rssp.toml (default: the default CA)")
    p = command("unlock", _credential_unlock, "clear a credential's lockout (privileged)", creds, operator=True)
    p.add_argument("credential_id")

    cas = sub.add_parser("ca", help="register CAs (manages/* clients, connectors)").add_subparsers(
        dest="action", required=True)
    p = command("add", _ca_add, "register a CA and print its management client credentials", cas, operator=True)
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
                cas, operator=True)
    p.add_argument("ca_id", metavar="CAID")

    oauth_clients = sub.add_parser("client", help="manage OAuth clients").add_subparsers(dest="action", required=True)
    p = command("add", _client_add, "register an OAuth 2.0 client (prints client_id and, once, client_secret)",
                oauth_clients, operator=True)
    p.add_argument("name")
    p.add_argument("--redirect-uri", action="append", help="a redirect URI, matched exactly (repeatable)")
    p.add_argument("--public", action="store_true", help="a public client: no secret, code flow with PKCE only")
    p.add_argument("--scopes", nargs="+", help="service, credential, credential-creation, credential-deletion "
                                               "(default: service and credential)")
    p.add_argument("--grant-types", nargs="+",
                   help="authorization_code, refresh_token, client_credentials (default: the first two)")

    admin_commands.register(sub, creds, command)

    from rssp.doctor import add_command as add_doctor  # rssp doctor (#18)

    add_doctor(command)

    from rssp.conformance.runner import add_parser as add_conformance  # rssp conformance URL (#17)

    add_conformance(sub)

    audit = sub.add_parser("audit", help="read and verify the audit trail").add_subparsers(dest="action", required=True)
    p = command("list", _audit_list, "recent audit records", audit)
    p.add_argument("--limit", type=int, default=50)
    command("verify", _audit_verify, "check the whole trail against its hash chains and HSM-MACed checkpoints; "
            "exit status 1 names the first record inserted, deleted, reordered or edited", audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = args.func(args)
        if isinstance(result, Awaitable):
            result = asyncio.run(result)  # type: ignore[arg-type]
    except (OperatorError, ValueError, LookupError) as exc:
        print(f"rssp: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, not a traceback
        name = type(exc).__name__
        print(f"rssp: {name}: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0  # a command's own exit status (audit verify)


if __name__ == "__main__":
    sys.exit(main())
