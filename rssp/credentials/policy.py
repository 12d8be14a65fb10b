"""The operator's policy for credentials signers create themselves (``credentials/create``, CSC v2.2).

Read from ``[credentials]`` in rssp.toml (docs/configuration.md). The caller chooses only the
certificate policy, which selects one of the configured CAs (``[credentials.certificate_policies]``
maps each accepted policy OID to a ``[ca.ID]``; none named: the default CA). Everything else —
level, key, factors, how many signatures per authorization, the subject name, how many
credentials a signer may have — is this policy, never the request.

API-made credentials are level 1 (PIN) or 2 (PIN and TOTP). A level-3 key is wrapped under the
signer's own PIN (docs/level3.md), which no ``credentials/create`` request carries: level-3
credentials are made by the operator (``rssp credential create``) or a CA's RA (``manages/*``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, fields
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from rssp.config import Config, ConfigError
from rssp.errors import invalid_param
from rssp.hsm.types import KeySpec

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]{0,8})){1,30}$")


@dataclass(frozen=True)
class CreationPolicy:
    level: int = 1
    key: str = "ec-p256"
    totp: bool = False  # enrol a TOTP factor at level 1 too (always at level 2)
    multisign: int = 1
    pin_digits: int = 6
    subject: str = "CN={username}"
    max_per_user: int = 10  # live credentials of one signer; credentials/create refuses beyond (0: no API creation)
    certificate_policies: dict[str, str] = field(default_factory=dict)  # certificatePolicy OID -> CA ID
    default_ca: str = ""  # [ca] default, used when the request names no certificatePolicy

    @classmethod
    def from_config(cls, config: Config) -> CreationPolicy:
        raw: dict[str, Any] = dict(config.section("credentials"))
        known = {f.name for f in fields(cls)} - {"default_ca"}
        if unknown := set(raw) - known:
            raise ConfigError(f"[credentials]: unknown setting(s) {', '.join(sorted(unknown))}")
        try:
            policy = cls(**raw, default_ca=config.default_ca)
        except TypeError as exc:
            raise ConfigError(f"[credentials]: {exc}") from None
        policy._check(config)
        return policy

    def _check(self, config: Config) -> None:
        def bad(why: str) -> ConfigError:
            return ConfigError(f"[credentials] {why}")

        if self.level not in (1, 2):
            raise bad("level must be 1 or 2 (level-3 credentials need the signer's own PIN: rssp credential create)")
        try:
            KeySpec.parse(self.key)
        except ValueError as exc:
            raise bad(f"key: {exc}") from None
        if not 1 <= self.multisign <= 1000 or not 6 <= self.pin_digits <= 32 or self.max_per_user < 0:
            raise bad("multisign must be 1-1000, pin_digits 6-32 and max_per_user at least 0")
        if "{username}" not in self.subject:
            raise bad("subject must contain {username}")
        for oid, ca_id in self.certificate_policies.items():
            if not _OID.match(oid) or ca_id not in config.cas:
                raise bad(f"certificate_policies: {oid!r} must be an OID naming a [ca.ID] table ({ca_id!r} is none)")

    @property
    def key_spec(self) -> KeySpec:
        return KeySpec.parse(self.key)

    @property
    def enrols_totp(self) -> bool:
        return self.totp or self.level >= 2

    def ca_for(self, certificate_policy: str | None) -> str:
        """The CA a ``certificatePolicy`` selects; an OID not in the policy is refused."""
        if certificate_policy is None:
            return self.default_ca
        ca_id = self.certificate_policies.get(certificate_policy)
        if ca_id is None:
            raise invalid_param("certificatePolicy")
        return ca_id

    def subject_for(self, username: str) -> str:
        """The subject DN, the user name escaped (RFC 4514): a name cannot add attributes of its own."""
        escaped = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, username)]).rfc4514_string()[len("CN="):]
        return self.subject.replace("{username}", escaped)

    def new_pin(self) -> str:
        """The credential's PIN, made by the server and shown once in the answer."""
        return "".join(secrets.choice("0123456789") for _ in range(self.pin_digits))
