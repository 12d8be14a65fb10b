"""What the document engines take and give: options, tools, outputs and their two failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pyhanko.sign.signers import Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext

from rssp.hsm import SignMechanism

Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
LEVELS: tuple[Level, ...] = ("B-B", "B-T", "B-LT", "B-LTA")


@dataclass(frozen=True)
class DocumentOptions:
    """How one document is to be signed (the handler has normalised the CSC fields)."""

    level: Level
    envelope: str  # PAdES: Certification | Revision; CAdES: Attached | Detached | Parallel
    digest_algorithm: str  # asn1crypto name: sha256, sha384, sha512
    signed_props: tuple[tuple[str, str | None], ...] = ()  # CSC signed_props: (attribute_name, attribute_value)
    field_name: str | None = None  # PAdES only: None picks a fresh one


@dataclass(frozen=True)
class Output:
    """One signature to produce: from a whole document (``data``) or from a digest the client made."""

    format: str
    options: DocumentOptions
    mechanism: SignMechanism
    params: bytes | None  # signAlgoParams DER (PSS)
    authorized: bytes  # what the SAD must cover
    data: bytes | None = None
    digest: bytes | None = None


@dataclass(frozen=True)
class SigningTools:
    """The pyHanko objects an engine signs with.

    ``signer`` produces the one signature value of the document (through the SAM and the HSM);
    ``timestamper`` is None at B-B; ``validation_context`` (None below B-LT) gives a fresh
    context whose fetchers bring the OCSP responses and CRLs that B-LT embeds.
    """

    signer: Signer
    timestamper: TimeStamper | None = None
    validation_context: Callable[[], ValidationContext] | None = None


@dataclass
class ValidationInfo:
    """CSC ``validationInfo``: DER OCSP responses, CRLs and certificates used for the signature."""

    ocsp: list[bytes] = field(default_factory=list)
    crl: list[bytes] = field(default_factory=list)
    certificates: list[bytes] = field(default_factory=list)


@dataclass
class SignedOutput:
    """``document``: CSC DocumentWithSignature; ``signature``: CSC SignatureObject."""

    document: bytes | None = None
    signature: bytes | None = None
    validation_info: ValidationInfo = field(default_factory=ValidationInfo)


class DocumentError(Exception):
    """The document cannot be signed as asked (400 invalid_request); the text is fixed and safe to show."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class UpstreamUnavailable(Exception):
    """A TSA, OCSP responder or CRL the level needs failed (503 temporarily_unavailable)."""
