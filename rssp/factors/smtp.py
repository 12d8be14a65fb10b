"""The built-in e-mail delivery: the SMTP relay of ``[smtp]``, with STARTTLS or TLS and authentication.

The standard library's :mod:`smtplib` does the protocol, in a thread of its own (it blocks).
With ``security = "starttls"`` (the default, port 587) the session is upgraded before anything
else is said, and a relay that does not offer STARTTLS is an error, never a fallback to plain
text; ``"tls"`` (port 465) speaks TLS from the first byte. The relay's certificate and name are
verified against the system's anchors or ``cafile``. ``"none"`` is for a relay on the same
host. Authentication (``username`` and the password in ``password_file``) is used only over TLS.
The message body is never logged.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from rssp.factors.delivery import DeliveryError, OobMessage
from rssp.factors.settings import FactorSettings, SmtpSettings
from rssp.threads import named_pool

_pool = named_pool("rssp-smtp", 2)


class SmtpDelivery:
    def __init__(self, settings: FactorSettings) -> None:
        self.smtp = settings.smtp
        if not self.smtp.host or not self.smtp.sender:
            raise LookupError("[smtp] host and from are needed to send e-mail")

    async def send(self, message: OobMessage) -> None:
        mail = _mail(self.smtp, message)
        await asyncio.get_running_loop().run_in_executor(_pool, _send_sync, self.smtp, mail)


def _mail(smtp: SmtpSettings, message: OobMessage) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = smtp.sender
    mail["To"] = message.recipient
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2].strip("> ") or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to a code
    mail.set_content(message.text, charset="utf-8")
    return mail


def _context(smtp: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=smtp.cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _send_sync(smtp: SmtpSettings, mail: EmailMessage) -> None:
    try:
        if smtp.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_seconds,
                                                    context=_context(smtp))
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
        with client:
            client.ehlo()
            if smtp.security == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError(f"the relay {smtp.host}:{smtp.port} does not offer STARTTLS")
                client.starttls(context=_context(smtp))
                client.ehlo()
            if smtp.username:
                if smtp.security == "none":
                    raise DeliveryError("[smtp] authentication needs security = starttls or tls")
                client.login(smtp.username, smtp.password)
            client.send_message(mail)
    except DeliveryError:
        raise
    except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
        raise DeliveryError(f"the relay {smtp.host}:{smtp.port} refused or failed: {type(exc).__name__}") from None
