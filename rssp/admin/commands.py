"""The CLI commands of privileged users and of the protected configuration.

``rssp admin add|remove|list``, ``rssp config set|seal|verify`` and
``rssp credential suspend|resume|delete``; :func:`register` adds them to the parser of
:mod:`rssp.cli`, whose ``_emit`` and ``Instance`` they share.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rssp.admin.accounts import add_operator, count_operators, list_operators, remove_operator
from rssp.admin.context import Instance
from rssp.admin.secrets import write_private_file
from rssp.config import CONFIG_NAME, load_config
from rssp.config_seal import problems, seal
from rssp.errors import OperatorError


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


async def _admin_add(args: argparse.Namespace) -> None:
    file = Path(args.save) if args.save else None
    if file and file.exists():
        raise OperatorError(f"{file} exists; refusing to overwrite it")
    async with Instance(args.dir, with_hsm=True) as inst:
        if await count_operators(inst.store, active_only=False) == 0:
            actor = "bootstrap"  # an instance older than operator accounts: its first operator
        else:
            actor = await inst.operator(args, "admin add", dual_control=f"operator:{args.name}")
        new = await add_operator(inst.store, inst.opened_hsm, args.name, args.password, actor=actor)
    if file:
        write_private_file(file, new.secrets_file())
    emit(args, *new.summary(file))


async def _admin_remove(args: argparse.Namespace) -> None:
    async with Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "admin remove", dual_control=f"operator:{args.name}")
        await remove_operator(inst.store, args.name, actor=actor)
    emit(args, {"name": args.name, "status": "removed"}, f"operator {args.name} removed")


async def _admin_list(args: argparse.Namespace) -> None:
    async with Instance(args.dir, with_hsm=False) as inst:
        rows = await list_operators(inst.store)
    emit(args, {"operators": rows}, "\n".join(f"{r['name']} {r['status']} (added by {r['createdBy']})" for r in rows))


async def _config_set(args: argparse.Namespace) -> None:
    from rssp.config_edit import set_setting

    async with Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "config set", sealed=False)  # set_setting checks the seal under its lock
        out = await set_setting(inst.directory, inst.store, inst.opened_hsm, args.key, args.value, actor=actor)
    emit(args, out, f"{args.key} = {json.dumps(out['value'], default=str)} (was "
                    f"{json.dumps(out['previous'], default=str)}); rssp.toml re-sealed; restart 'rssp serve' to apply")


async def _config_seal(args: argparse.Namespace) -> None:
    from rssp.config_seal import config_lock

    async with Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "config seal", sealed=False)
        with config_lock(inst.directory):
            load_config(inst.directory)  # a file that does not load is not sealed
            value = await seal(inst.directory, inst.store, inst.opened_hsm, actor=actor)
    emit(args, {"sealed": True, "seal": value}, f"{CONFIG_NAME} and the files it names sealed by {actor}")


async def _config_verify(args: argparse.Namespace) -> int:
    async with Instance(args.dir, with_hsm=True) as inst:
        found = await problems(inst.directory, inst.store, inst.opened_hsm, (inst.directory / CONFIG_NAME).read_bytes())
    emit(args, {"sealed": not found, "problems": found},
         "\n".join(found) if found else f"{CONFIG_NAME} and the files it names are as sealed")
    return 1 if found else 0


async def _suspension(args: argparse.Namespace, action: str) -> None:
    from rssp.credentials.suspension import Change, SuspensionError, apply, replayed

    async with Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, f"credential {action}")
        change = Change(args.credential_id, action, "operator", actor, args.request_id, args.reason)
        try:
            first = await replayed(inst.store, change)
            out = first if first is not None else await apply(inst.store, change)
        except SuspensionError as exc:
            raise OperatorError(f"credential {args.credential_id}: {exc}") from None
    note = " (a replayed request ID: nothing changed)" if first is not None else ""
    done = {"suspend": "suspended", "resume": "resumed"}[action]
    emit(args, {**out, "replayed": first is not None}, f"{args.credential_id} {done}{note}")


async def _credential_suspend(args: argparse.Namespace) -> None:
    await _suspension(args, "suspend")


async def _credential_resume(args: argparse.Namespace) -> None:
    await _suspension(args, "resume")


async def _credential_delete(args: argparse.Namespace) -> None:
    from rssp.credentials.admin import delete

    async with Instance(args.dir, with_hsm=True) as inst:
        actor = await inst.operator(args, "credential delete", dual_control=args.credential_id)
        await delete(inst.store, inst.opened_hsm, args.credential_id, args.reason, actor=actor)
    emit(args, {"credentialID": args.credential_id, "key": {"status": "deleted"}},
         f"{args.credential_id} deleted; its key is destroyed in the HSM")


Command = Callable[..., argparse.ArgumentParser]


def register(sub: Any, creds: Any, command: Command) -> None:
    """Add the commands to the ``rssp`` parser (``creds``: the ``credential`` sub-parsers)."""
    suspension = (("suspend", _credential_suspend, "suspend a credential: it signs nothing until resumed"),
                  ("resume", _credential_resume, "resume a suspended credential"))
    for action, func, help_ in suspension:
        p = command(action, func, f"{help_} (privileged)", creds, operator=True)
        p.add_argument("credential_id")
        p.add_argument("--reason", required=action == "suspend", help="why (recorded in the audit trail)")
        p.add_argument("--request-id", help="a replay of the same request ID changes nothing")
    p = command("delete", _credential_delete, "delete a credential and destroy its key (two-person control)", creds,
                operator=True, approver=True)
    p.add_argument("credential_id")
    p.add_argument("--reason", required=True, help="why (recorded in the audit trail)")

    admins = sub.add_parser("admin", help="manage operators (privileged users)").add_subparsers(
        dest="action", required=True)
    p = command("add", _admin_add, "add an operator (prints its password and TOTP seed once)", admins,
                operator=True, approver=True)
    p.add_argument("name")
    p.add_argument("--password", help="at least 12 characters (default: a random one, printed once)")
    p.add_argument("--save", metavar="FILE", help="also write the new operator's file (mode 0600) to FILE")
    p = command("remove", _admin_remove, "remove an operator (two-person control)", admins, operator=True,
                approver=True)
    p.add_argument("name")
    command("list", _admin_list, "list operators", admins)

    config = sub.add_parser("config", help="the protected configuration (rssp.toml)").add_subparsers(
        dest="action", required=True)
    p = command("set", _config_set, "change one setting, e.g. security.sad_ttl_seconds 120 (re-seals)", config,
                operator=True)
    p.add_argument("key")
    p.add_argument("value", help="a TOML value (300, true, \"text\", [\"a\", \"b\"]); else taken as text")
    command("seal", _config_seal, "accept rssp.toml and the files it names as they are now (after a review)",
            config, operator=True)
    command("verify", _config_verify, "check rssp.toml and the files it names against the seal", config)
