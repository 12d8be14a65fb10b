"""The long-lived objects of one server process, built once at start-up.

Plug-ins receive this object in ``setup(app, registry, services)`` and as ``call.services``; what
they may use of it, and which tables are whose, is in docs/plugins.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rssp.audit_seal import AuditSealer, checkpoint_seconds
from rssp.auth.admission import LoginGate
from rssp.auth.password_login import PasswordLogin
from rssp.auth.throttle import LoginThrottle, ThrottlePolicy
from rssp.auth.tokens import TokenService
from rssp.ca import build_connector
from rssp.config import Config
from rssp.credentials.cache import SigningKeyCache
from rssp.credentials.lifecycle import CredentialLifecycle
from rssp.documents.service import DocumentService, signer_anchors
from rssp.hsm import Hsm
from rssp.jobs.runner import JobRunner
from rssp.sam.samkeys import ensure_sam_keys
from rssp.sam.signing import SigningService
from rssp.store import Store, migrate, open_store


@dataclass
class Services:
    config: Config
    store: Store
    hsm: Hsm
    tokens: TokenService
    signing: SigningService
    signing_keys: SigningKeyCache
    logins: PasswordLogin
    documents: DocumentService
    jobs: JobRunner
    audit: AuditSealer
    lifecycle: CredentialLifecycle  # credential state changes for plug-ins (docs/plugins.md)
    extras: dict[str, Any] = field(default_factory=dict)  # what extensions attach
    _cas: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, config: Config) -> Services:
        store = open_store(config.database_url)
        hsm = Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)
        return cls(
            config=config,
            store=store,
            hsm=hsm,
            tokens=TokenService(store, config.security),
            signing=SigningService(store, hsm),
            signing_keys=SigningKeyCache(store),
            logins=PasswordLogin(store, LoginThrottle(store, _throttle_policy(config), config.directory),
                                 LoginGate(config.security.login_concurrency)),
            documents=DocumentService(config.documents.revocation_timeout_seconds, signer_anchors(config)),
            jobs=JobRunner(store, config.asynchronous, config.directory),
            audit=AuditSealer(store, hsm, checkpoint_seconds(config)),
            lifecycle=CredentialLifecycle(store, hsm),
        )

    def ca(self, ca_id: str | None = None) -> Any:
        """The connector of a configured CA (the default one if ``ca_id`` is None)."""
        ca_id = ca_id or self.config.default_ca
        if ca_id not in self.config.cas:
            raise LookupError(f"no CA {ca_id!r} configured")
        if ca_id not in self._cas:
            self._cas[ca_id] = build_connector(self.config.cas[ca_id], self.hsm, self.config.directory)
        return self._cas[ca_id]

    async def start(self) -> None:
        await migrate(self.store)
        await self.hsm.start()
        await self.audit.start()  # the writer key first: nothing before it writes audit records
        await ensure_sam_keys(self.hsm)  # level 3 (an instance made before it gets its SAM keys here)
        await self.documents.start()
        self.jobs.start(self)

    async def close(self) -> None:
        await self.jobs.stop()  # first: running jobs give their claims back while the store is open
        await self.documents.close()
        await self.audit.stop()  # the last checkpoint, while the HSM is still open
        await self.hsm.close()
        await self.store.close()


def _throttle_policy(config: Config) -> ThrottlePolicy:
    sec = config.security
    return ThrottlePolicy(user_failures=sec.login_user_failures, address_failures=sec.login_address_failures,
                          block_seconds=sec.login_block_seconds, max_block_seconds=sec.login_max_block_seconds)

