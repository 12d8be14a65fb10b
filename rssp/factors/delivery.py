"""Sending codes and approval links out of band: one small interface, plug-ins by entry point.

A delivery gets a finished :class:`OobMessage` (recipient, subject, text in the signer's
language) and sends it, or raises :class:`DeliveryError`. rssp renders the text itself
(:mod:`rssp.factors.messages`), so a plug-in never sees more than it must send, and the code is
never logged: a plug-in must not log message bodies either.

Built in: ``smtp`` (:mod:`rssp.factors.smtp`, the relay of ``[smtp]``). Others come from the
entry point group ``rssp.otp_delivery``: a callable ``factory(settings: FactorSettings) ->
OtpDelivery`` under the name that ``[oob] delivery`` selects. An SMS gateway, for instance,
registers ``sms-gw = "vendor.rssp:factory"`` and delivers to the phone number it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Protocol

from rssp.factors.settings import FactorSettings

GROUP = "rssp.otp_delivery"
_BUILTIN = {"smtp": "rssp.factors.smtp:SmtpDelivery"}


class DeliveryError(Exception):
    """The message could not be handed to the relay; the text is safe to log (no message content)."""


@dataclass(frozen=True)
class OobMessage:
    recipient: str
    subject: str
    text: str

    def __repr__(self) -> str:  # never the text: it carries the code or the link
        return f"OobMessage(recipient=<{len(self.recipient)} chars>, subject={self.subject!r})"


class OtpDelivery(Protocol):
    async def send(self, message: OobMessage) -> None:
        """Hand the message over for delivery; raise :class:`DeliveryError` if that failed."""
        ...


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def load_delivery(settings: FactorSettings) -> OtpDelivery:
    """The delivery ``[oob] delivery`` names: an installed entry point, else a built-in one."""
    name = settings.oob.delivery
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name in found:
        factory = found[name].load()
    elif name in _BUILTIN:
        factory = _load(_BUILTIN[name])
    else:
        installed = ", ".join(sorted(found)) or "none"
        raise LookupError(f"no OTP delivery named {name!r} (built in: smtp; installed: {installed})")
    return factory(settings)  # type: ignore[no-any-return]
