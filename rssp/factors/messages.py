"""The e-mails rssp sends a signer: a one-time code, or a link that approves one authorization.

Plain text in Japanese or English (the request's ``lang``, else the service's). Each says what
it authorizes — the credential, how many signatures and, when bound, the digests and the
description the signature application gave — so the signer can refuse what they did not ask for.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from rssp.factors.delivery import OobMessage
from rssp.oauth.pages import language

_TEXT = {
    "en": {
        "code_subject": "{service}: your one-time password",
        "code_body": "Your one-time password for credential {credential} is:\n\n    {code}\n\n"
                     "It is valid for {minutes} minute(s) and can be used once.\n",
        "link_subject": "{service}: approve a signature",
        "link_body": "A signature application asks to create {n} signature(s) with credential {credential}.\n\n"
                     "To approve or refuse, open this link within {minutes} minute(s):\n\n    {link}\n",
        "what": "\nWhat it authorizes:\n", "signatures": "  Number of signatures: {n}\n",
        "description": "  Description: {text}\n", "digest": "  Digest ({algorithm}): {value}\n",
        "footer": "\nIf you did not ask for this, do not use it, and tell your signing service provider.\n",
    },
    "ja": {
        "code_subject": "{service}: ワンタイムパスワード",
        "code_body": "クレデンシャル {credential} のワンタイムパスワードは次のとおりです。\n\n    {code}\n\n"
                     "有効期間は {minutes} 分で、1 回だけ使用できます。\n",
        "link_subject": "{service}: 署名の承認",
        "link_body": "署名アプリケーションが、クレデンシャル {credential} で {n} 件の署名を行うことを求めています。\n\n"
                     "承認または拒否するには、{minutes} 分以内に次のリンクを開いてください。\n\n    {link}\n",
        "what": "\n承認の対象:\n", "signatures": "  署名数: {n}\n", "description": "  説明: {text}\n",
        "digest": "  ハッシュ値 ({algorithm}): {value}\n",
        "footer": "\n心当たりがない場合は使用せず、署名サービス事業者に連絡してください。\n",
    },
}


def mask(address: str) -> str:
    """``t***@example.jp``: enough for the signer to recognise the mailbox, not to learn it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class Subject:
    """What a code or link authorizes, as the signer will read it."""

    credential: str
    num_signatures: int | None = None
    hash_name: str | None = None
    digests: tuple[bytes, ...] = ()
    description: str | None = None
    lang: str | None = None


def _what(t: dict[str, str], subject: Subject) -> str:
    if subject.num_signatures is None and not subject.digests:
        return ""
    out = t["what"]
    if subject.num_signatures is not None:
        out += t["signatures"].format(n=subject.num_signatures)
    if subject.description:
        out += t["description"].format(text=subject.description)
    for d in subject.digests:
        out += t["digest"].format(algorithm=subject.hash_name, value=base64.b64encode(d).decode())
    return out


def code_message(recipient: str, service: str, subject: Subject, code: str, ttl_seconds: int) -> OobMessage:
    t = _TEXT[language(subject.lang)]
    body = t["code_body"].format(credential=subject.credential, code=code, minutes=max(1, ttl_seconds // 60))
    return OobMessage(recipient, t["code_subject"].format(service=service), body + _what(t, subject) + t["footer"])


def link_message(recipient: str, service: str, subject: Subject, link: str, ttl_seconds: int) -> OobMessage:
    t = _TEXT[language(subject.lang)]
    body = t["link_body"].format(credential=subject.credential, n=subject.num_signatures, link=link,
                                 minutes=max(1, ttl_seconds // 60))
    return OobMessage(recipient, t["link_subject"].format(service=service), body + _what(t, subject) + t["footer"])
