"""The signer's pages for the factors beyond PIN and TOTP, in Japanese and English.

The consent page's further fields (an e-mailed code, a passkey, a sign-in at an OpenID
Provider), the page an e-mailed approval link opens, and the passkey registration pages. Plain
HTML built like the OAuth pages (:mod:`rssp.oauth.pages`: every dynamic value escaped, no
framing, no caching); pages with a passkey ceremony load one same-origin script
(``/signer/passkey.js``) and carry the WebAuthn options as a JSON data block, never inline code.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape

from rssp.factors.pending import LinkView
from rssp.oauth.pages import language, page

SCRIPT = "/signer/passkey.js"

_TEXT = {
    "en": {
        "email_otp": "One-time password sent by e-mail to {address}", "send_code": "Send a code by e-mail",
        "code_sent": "A one-time password was sent by e-mail.", "passkey": "Use your passkey",
        "passkey_done": "Passkey confirmed.", "passkey_failed": "The passkey was not used. Try again.",
        "passkey_missing": "No passkey is registered for this credential yet.",
        "oidc": "Sign in at {provider}", "oidc_done": "Signed in at {provider}.",
        "title_approve": "Approve a signature", "approve_intro": "A signature application asks to create {n} "
        "signature(s) with credential {credential}.", "approve": "Approve", "refuse": "Refuse",
        "approved": "You approved the request. The signature application can continue.",
        "refused": "You refused the request.", "link_dead": "This link is no longer valid.",
        "signatures": "Number of signatures", "description": "Description", "digests": "Digests",
        "title_register": "Register a passkey", "register_intro": "Register a passkey for credential {credential}.",
        "username": "User name", "password": "Password", "pin": "PIN", "otp": "One-time password",
        "continue": "Continue", "create": "Create the passkey", "registered": "Your passkey is registered.",
        "login_failed": "The user name, the password or the credential's factors are wrong.",
        "busy": "Too many attempts. Try again later.", "register_failed": "The passkey could not be registered.",
    },
    "ja": {
        "email_otp": "{address} 宛てにメールで送信されたワンタイムパスワード", "send_code": "メールでコードを送信",
        "code_sent": "ワンタイムパスワードをメールで送信しました。", "passkey": "パスキーを使用",
        "passkey_done": "パスキーを確認しました。",
        "passkey_failed": "パスキーが使用されませんでした。もう一度お試しください。",
        "passkey_missing": "このクレデンシャルにはまだパスキーが登録されていません。",
        "oidc": "{provider} でログイン", "oidc_done": "{provider} でログインしました。",
        "title_approve": "署名の承認", "approve_intro": "署名アプリケーションが、クレデンシャル {credential} で "
        "{n} 件の署名を行うことを求めています。", "approve": "承認する", "refuse": "拒否する",
        "approved": "承認しました。署名アプリケーションで処理が続行されます。",
        "refused": "拒否しました。", "link_dead": "このリンクは無効です。",
        "signatures": "署名数", "description": "説明", "digests": "ハッシュ値",
        "title_register": "パスキーの登録", "register_intro": "クレデンシャル {credential} のパスキーを登録します。",
        "username": "ユーザー名", "password": "パスワード", "pin": "PIN", "otp": "ワンタイムパスワード",
        "continue": "次へ", "create": "パスキーを作成", "registered": "パスキーを登録しました。",
        "login_failed": "ユーザー名、パスワード、またはクレデンシャルの認証要素が正しくありません。",
        "busy": "試行回数が多すぎます。しばらくしてから再度お試しください。",
        "register_failed": "パスキーを登録できませんでした。",
    },
}


def t(lang: str, key: str, **values: object) -> str:
    return _TEXT[language(lang)][key].format(**{k: escape(str(v)) for k, v in values.items()})


@dataclass(frozen=True)
class ConsentFactors:
    """What the consent page offers beyond the PIN and the TOTP code."""

    otp: bool = False  # a TOTP code is one of the factors
    email: str | None = None  # the masked address, when an e-mailed code is a factor
    code_sent: bool = False
    passkey_options: str | None = None  # WebAuthn request options (JSON)
    passkey_missing: bool = False
    oidc_label: str | None = None
    oidc_done: bool = False

    @property
    def script(self) -> str | None:
        return SCRIPT if self.passkey_options else None


def _json_block(element_id: str, mode: str, data: str) -> str:
    safe = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}" data-mode="{mode}">{safe}</script>'


def _passkey(lang: str, options: str, mode: str, label_key: str) -> str:
    return (_json_block("passkey-options", mode, options)
            + '<input type="hidden" id="passkey-response" name="passkey" value="">'
            + f'<button type="button" id="passkey">{t(lang, label_key)}</button>'
            + f'<span id="passkey-status" role="status" data-done="{t(lang, "passkey_done")}" '
              f'data-failed="{t(lang, "passkey_failed")}"></span>')


def consent_fields(lang: str, cf: ConsentFactors) -> str:
    out = ""
    if cf.email:
        sent = f'<p id="code-sent" role="status">{t(lang, "code_sent")}</p>' if cf.code_sent else ""
        out += (f'{sent}<label for="email-otp">{t(lang, "email_otp", address=cf.email)}</label>'
                f'<input id="email-otp" name="email_otp" inputmode="numeric" autocomplete="one-time-code">'
                f'<button type="submit" id="send-code" name="action" value="send_code" formnovalidate>'
                f'{t(lang, "send_code")}</button>')
    if cf.passkey_options:
        out += f"<p>{_passkey(lang, cf.passkey_options, 'get', 'passkey')}</p>"
    elif cf.passkey_missing:
        out += f'<p class="error">{t(lang, "passkey_missing")}</p>'
    if cf.oidc_label and cf.oidc_done:
        out += f'<p id="oidc-done" role="status">{t(lang, "oidc_done", provider=cf.oidc_label)}</p>'
    elif cf.oidc_label:
        out += (f'<p><button type="submit" id="oidc" name="action" value="oidc" formnovalidate>'
                f'{t(lang, "oidc", provider=cf.oidc_label)}</button></p>')
    return out


def _details(lang: str, view: LinkView) -> str:
    req = view.request
    rows = f"<dt>{t(lang, 'signatures')}</dt><dd id=\"num-signatures\">{req.num_signatures}</dd>"
    if req.description:
        rows += f"<dt>{t(lang, 'description')}</dt><dd>{escape(req.description)}</dd>"
    if req.digests:
        items = "".join(f"<li><code>{escape(base64.b64encode(d).decode())}</code></li>" for d in req.digests)
        rows += f"<dt>{t(lang, 'digests')} ({escape(req.hash_name or '')})</dt><dd><ul id=\"digests\">{items}</ul></dd>"
    return f"<dl>{rows}</dl>"


def approve_page(view: LinkView, action: str, token: str) -> str:
    lang = language(view.request.lang)
    content = (f"<p>{t(lang, 'approve_intro', n=view.request.num_signatures, credential=view.credential_id)}</p>"
               f"{_details(lang, view)}<form method=\"post\" action=\"{escape(action)}\">"
               f'<input type="hidden" name="token" value="{escape(token)}">'
               f'<button type="submit" id="approve" name="decision" value="approve">{t(lang, "approve")}</button>'
               f'<button type="submit" id="refuse" name="decision" value="refuse">{t(lang, "refuse")}</button></form>')
    return page(lang, t(lang, "title_approve"), content)


def message_page(lang: str | None, title_key: str, message_key: str, error: bool = False) -> str:
    lang = language(lang)
    css = ' class="error" role="alert"' if error else ' role="status"'
    return page(lang, t(lang, title_key), f'<p id="message"{css}>{t(lang, message_key)}</p>')


def register_login_page(lang: str | None, action: str, credential_id: str, hidden: dict[str, str],
                        factors: bool, error: str | None = None) -> str:
    """Who registers: the credential's owner (password), and without a link the credential's factors too."""
    lang = language(lang)
    fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items())
    more = (f'<label for="pin">{t(lang, "pin")}</label><input id="pin" name="pin" type="password" autocomplete="off">'
            f'<label for="otp">{t(lang, "otp")}</label><input id="otp" name="otp" inputmode="numeric" '
            f'autocomplete="one-time-code">') if factors else ""
    problem = f'<p class="error" role="alert">{t(lang, error)}</p>' if error else ""
    content = (f"<p>{t(lang, 'register_intro', credential=credential_id)}</p>{problem}"
               f'<form method="post" action="{escape(action)}">{fields}'
               f'<label for="username">{t(lang, "username")}</label>'
               f'<input id="username" name="username" autocomplete="username" required>'
               f'<label for="password">{t(lang, "password")}</label>'
               f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
               f'{more}<button type="submit" id="continue">{t(lang, "continue")}</button></form>')
    return page(lang, t(lang, "title_register"), content)


def register_ceremony_page(lang: str | None, action: str, credential_id: str, ceremony: str, options: str) -> str:
    lang = language(lang)
    content = (f"<p>{t(lang, 'register_intro', credential=credential_id)}</p>"
               f'<form method="post" action="{escape(action)}"><input type="hidden" name="ceremony" '
               f'value="{escape(ceremony)}"><input type="hidden" name="lang" value="{lang}">'
               f'{_passkey(lang, options, "create", "create")}</form>')
    return page(lang, t(lang, "title_register"), content, SCRIPT)
