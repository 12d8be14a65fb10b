"""One CLI command's view of an instance: its store and HSM, its operator, its sealed configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from rssp.admin.accounts import Operator, count_operators
from rssp.admin.login import OperatorAuth
from rssp.admin.secrets import load_secrets
from rssp.audit import record
from rssp.auth import argon2_cost
from rssp.audit_seal import AuditSealer
from rssp.config import load_config
from rssp.config_seal import require_sealed
from rssp.hsm import Hsm
from rssp.store import migrate, open_store


class Instance:
    """Store and (when needed) HSM of an instance, opened for one CLI command."""

    def __init__(self, directory: str, with_hsm: bool, audit_writer: bool = True) -> None:
        self.config = load_config(directory)
        argon2_cost.configure(self.config.security)  # what the command hashes (a password, a PIN)
        self.store = open_store(self.config.database_url)
        hsm = self.config.hsm
        self.hsm = Hsm(hsm.module, hsm.token_label, hsm.pin, hsm.softhsm2_conf) if with_hsm else None
        # With the HSM open, the command's audit records are chained under a writer key and sealed at exit.
        self.audit = AuditSealer(self.store, self.hsm, None) if self.hsm and audit_writer else None

    @property
    def directory(self) -> Path:
        return self.config.directory

    async def __aenter__(self) -> Instance:
        await migrate(self.store)
        if self.hsm:
            await self.hsm.start()
        if self.audit:
            await self.audit.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.audit:
            await self.audit.stop()
        if self.hsm:
            await self.hsm.close()
        await self.store.close()

    @property
    def opened_hsm(self) -> Hsm:
        """The HSM, for a command that opened it (``with_hsm``); any other use is a bug, refused here."""
        if self.hsm is None:
            raise RuntimeError("this command needs the HSM but opened the instance without it")
        return self.hsm

    def _auth(self) -> OperatorAuth:
        return OperatorAuth.of(self.config, self.store, self.opened_hsm)  # privileged commands open the HSM

    async def operator(self, args: argparse.Namespace, command: str, *, sealed: bool = True,
                       dual_control: str | None = None) -> str:
        """Authenticate the command's operator and return its audit actor (``operator:NAME``).

        ``sealed``: the configuration must match its seal, and the command then works from the
        bytes that were checked. ``dual_control``: the target of a two-person-control action;
        a second operator must approve it when the instance has more than one.
        """
        auth = self._auth()
        operator = await auth.authenticate(load_secrets(getattr(args, "operator_file", None)), command)
        if dual_control is not None:
            await self._approve(auth, args, command, operator, dual_control)
        if sealed:
            content = await require_sealed(self.directory, self.store, self.opened_hsm, actor=operator.actor)
            self.config = load_config(self.directory, content)
            argon2_cost.configure(self.config.security)
        return operator.actor

    async def _approve(self, auth: OperatorAuth, args: argparse.Namespace, command: str, operator: Operator,
                       target: str) -> None:
        """Two-person control: another active operator authenticates and approves (audited)."""
        if await count_operators(self.store) < 2:
            return  # a sole operator has nobody to ask; adding a second one is what starts dual control
        approver = await auth.authenticate(load_secrets(getattr(args, "approver_file", None), "approver"), command,
                                           role="approver")
        if approver.id == operator.id:
            raise await auth.refuse(approver.actor, command, "approver is the operator",
                                    "two-person control: the approver must be another operator", "approver")
        async with self.store.write() as conn:
            await record(conn, actor=approver.actor, action="operator.approve", target=target, outcome="ok",
                         detail={"command": command, "operator": operator.name})
