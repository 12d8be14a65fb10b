"""Passkeys (WebAuthn / FIDO2) with the ``webauthn`` library: options, registration, assertions.

The library parses the CBOR and COSE, checks the client data (type, challenge, origin), the
RP ID hash, the user-presence and user-verification flags, the signature and the counter;
rssp decides what the challenge is and keeps the state:

- **User verification is required** in both ceremonies: the passkey is a second factor that is
  itself "something you have, unlocked by something you are or know".
- **The challenge binds the approval.** On the consent page it is
  ``SHA-256("rssp passkey approval v1" | nonce | credential | digest of the hashes)``, with a
  fresh random nonce for every page (:mod:`rssp.factors.states`, spent by the check): the
  authenticator signs over the credential and the hashes being authorized, and an assertion
  cannot be presented again, nor for other hashes.
- **Clone detection.** A stored sign counter moves forward with a compare-and-swap; an
  assertion whose counter does not exceed it (an authenticator copied, then used elsewhere)
  is refused (the library's check), as is one whose counter another request moved meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from rssp.factors.model import Passkey, advance_counter
from rssp.factors.oob import Binding
from rssp.factors.settings import WebAuthnSettings
from rssp.store import Store

MAX_RESPONSE = 64 * 1024  # a credential response larger than this is not a passkey's


class PasskeyError(Exception):
    """The browser's response is not a valid passkey ceremony for this challenge."""


@dataclass(frozen=True)
class NewPasskey:
    webauthn_id: str  # base64url
    public_key: bytes
    sign_count: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def approval_challenge(nonce: bytes, credential_id: str, binding: Binding) -> bytes:
    return hashlib.sha256(b"rssp passkey approval v1\0" + nonce + b"\0" + credential_id.encode() + b"\0"
                          + binding.digest().encode()).digest()


def new_nonce() -> bytes:
    return secrets.token_bytes(32)


def _descriptors(passkeys: tuple[Passkey, ...]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=unb64url(p.webauthn_id)) for p in passkeys]


def registration_options(settings: WebAuthnSettings, credential_id: str, user_name: str,
                         existing: tuple[Passkey, ...], challenge: bytes) -> str:
    """``navigator.credentials.create()`` options (JSON) for a passkey of this signing credential."""
    options = generate_registration_options(
        rp_id=settings.rp_id, rp_name=settings.rp_name, user_name=f"{user_name} ({credential_id})",
        user_id=hashlib.sha256(b"rssp passkey user\0" + credential_id.encode()).digest()[:16],
        user_display_name=user_name, challenge=challenge, timeout=settings.timeout_seconds * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=_descriptors(existing),
    )
    return options_to_json(options)


def authentication_options(settings: WebAuthnSettings, passkeys: tuple[Passkey, ...], challenge: bytes) -> str:
    """``navigator.credentials.get()`` options (JSON): only this credential's passkeys, UV required."""
    options = generate_authentication_options(
        rp_id=settings.rp_id, challenge=challenge, timeout=settings.timeout_seconds * 1000,
        allow_credentials=_descriptors(passkeys), user_verification=UserVerificationRequirement.REQUIRED)
    return options_to_json(options)


def _parse(response: str) -> dict[str, object]:
    if len(response) > MAX_RESPONSE:
        raise PasskeyError("response too large")
    try:
        data = json.loads(response)
    except ValueError:
        raise PasskeyError("response is not JSON") from None
    if not isinstance(data, dict):
        raise PasskeyError("response is not a JSON object")
    return data


def verify_new_passkey(settings: WebAuthnSettings, response: str, challenge: bytes) -> NewPasskey:
    """A registration response checked against the challenge, RP and origin (UV required)."""
    try:
        verified = verify_registration_response(
            credential=_parse(response), expected_challenge=challenge, expected_rp_id=settings.rp_id,
            expected_origin=settings.origin, require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(str(exc)[:200]) from None
    return NewPasskey(b64url(verified.credential_id), verified.credential_public_key, verified.sign_count)


async def check_assertion(store: Store, settings: WebAuthnSettings, passkeys: tuple[Passkey, ...], response: str,
                          challenge: bytes) -> bool:
    """Whether ``response`` is a fresh assertion of one of ``passkeys`` over ``challenge``."""
    try:
        data = _parse(response)
        passkey = next((p for p in passkeys if p.webauthn_id == data.get("id")), None)
        if passkey is None:
            return False
        verified = verify_authentication_response(
            credential=data, expected_challenge=challenge, expected_rp_id=settings.rp_id,
            expected_origin=settings.origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count, require_user_verification=True)
    except (PasskeyError, WebAuthnException, ValueError, KeyError, TypeError):
        return False
    if verified.new_sign_count == 0 and passkey.sign_count == 0:
        return True  # an authenticator without a counter: nothing to move
    return await advance_counter(store, passkey, verified.new_sign_count)
