"""The login, consent and error pages: plain HTML, no external assets, ja or en.

No scripts, but for one same-origin file on a consent page that offers a passkey (the WebAuthn
ceremony needs the browser's JavaScript API; :mod:`rssp.factors.pages`).

Every value that is not a fixed string of this module goes through :func:`html.escape`
(quotes included), whether it came from the client (labels, description, client name) or from
the store. Pages forbid framing and caching (headers set by :func:`html_response`).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

_TEXT = {
    "en": {
        "title_login": "Sign in", "title_consent": "Authorize signing", "title_error": "Authorization error",
        "intro_login": "{client} asks to access the signing service on your behalf.",
        "username": "User name", "password": "Password", "signin": "Sign in",
        "intro_consent": "{client} asks to create {n} signature(s) with your credential.",
        "credential": "Credential", "signatures": "Number of signatures", "documents": "Documents",
        "label": "Label", "hash": "Hash", "algorithm": "Hash algorithm", "description": "Description",
        "pin": "PIN", "otp": "One-time password", "approve": "Authorize", "deny": "Cancel",
        "no_label": "(no label)", "error": "Error",
        "login_failed": "The user name or password is wrong.",
        "login_throttled": "Too many failed attempts. Try again later.",
        "login_busy": "The service is busy. Try again in a moment.",
        "factors_failed": "The authentication data is invalid.",
        "missing_factors": "Enter every authentication factor.",
        "title_create": "Create a credential", "title_delete": "Delete a credential",
        "intro_create": "{client} asks to create a new signing credential for you.",
        "intro_delete": "{client} asks to delete your credential. Its key will be destroyed: this cannot be undone.",
        "certificate_policy": "Certificate policy", "ca": "Certificate authority", "level": "Level",
        "key": "Key", "default_policy": "(the service's default)",
        "code_not_sent": "The one-time password could not be sent. Try again later.",
        "code_throttled": "Too many one-time passwords were sent. Try again later.",
        "oidc_failed": "The sign-in at the identity provider was not accepted.",
    },
    "ja": {
        "title_login": "ログイン", "title_consent": "署名の承認", "title_error": "認可エラー",
        "intro_login": "{client} があなたに代わって署名サービスを利用することを求めています。",
        "username": "ユーザー名", "password": "パスワード", "signin": "ログイン",
        "intro_consent": "{client} があなたの署名用クレデンシャルで {n} 件の署名を行うことを求めています。",
        "credential": "クレデンシャル", "signatures": "署名数", "documents": "文書",
        "label": "名称", "hash": "ハッシュ値", "algorithm": "ハッシュアルゴリズム", "description": "説明",
        "pin": "PIN", "otp": "ワンタイムパスワード", "approve": "承認する", "deny": "キャンセル",
        "no_label": "(名称なし)", "error": "エラー",
        "login_failed": "ユーザー名またはパスワードが正しくありません。",
        "login_throttled": "失敗が続いたため、しばらくしてから再度お試しください。",
        "login_busy": "混み合っています。しばらくしてから再度お試しください。",
        "factors_failed": "認証データが正しくありません。",
        "missing_factors": "すべての認証要素を入力してください。",
        "title_create": "クレデンシャルの作成", "title_delete": "クレデンシャルの削除",
        "intro_create": "{client} があなたの新しい署名用クレデンシャルの作成を求めています。",
        "intro_delete": "{client} があなたのクレデンシャルの削除を求めています。鍵は破棄され、元に戻せません。",
        "certificate_policy": "証明書ポリシー", "ca": "認証局", "level": "レベル",
        "key": "鍵", "default_policy": "(サービスの既定)",
        "code_not_sent": "ワンタイムパスワードを送信できませんでした。しばらくしてから再度お試しください。",
        "code_throttled": "ワンタイムパスワードの送信回数が上限に達しました。しばらくしてから再度お試しください。",
        "oidc_failed": "外部の認証サービスでのログインを受け付けられませんでした。",
    },
}


def language(lang: str | None) -> str:
    """``ja`` for any Japanese tag (``ja``, ``ja-JP``), else English."""
    return "ja" if lang and lang.lower().split("-")[0] == "ja" else "en"


def _t(lang: str, key: str, **values: object) -> str:
    return _TEXT[lang][key].format(**{k: escape(str(v)) for k, v in values.items()})


_STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}"
    "label{display:block;margin-top:.8em}input{font-size:1em;padding:.3em;width:100%;box-sizing:border-box}"
    "button{margin-top:1em;margin-right:.5em;font-size:1em;padding:.4em 1.2em}"
    ".error{color:#a00;font-weight:bold}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em;text-align:left;word-break:break-all}"
)


def page(lang: str, title: str, content: str, script: str | None = None) -> str:
    """A whole page around ``content`` (escaped by the caller); ``script``: a same-origin script path."""
    tag = f'<script src="{escape(script)}" defer></script>' if script else ""
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_STYLE}</style>{tag}</head>"
            f"<body><h1>{title}</h1>{content}</body></html>")


def _page(lang: str, title_key: str, content: str, script: str | None = None) -> str:
    return page(lang, _t(lang, title_key), content, script)


def _error(lang: str, key: str | None) -> str:
    return f'<p class="error" role="alert">{_t(lang, key)}</p>' if key else ""


def login_page(lang: str, action: str, csrf: str, client_name: str, error: str | None = None) -> str:
    content = (
        f"<p>{_t(lang, 'intro_login', client=client_name)}</p>{_error(lang, error)}"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<label for="username">{_t(lang, "username")}</label>'
        f'<input id="username" name="username" autocomplete="username" required>'
        f'<label for="password">{_t(lang, "password")}</label>'
        f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
        f'<button type="submit" id="signin">{_t(lang, "signin")}</button></form>'
    )
    return _page(lang, "title_login", content)


@dataclass(frozen=True)
class ConsentView:
    client_name: str
    credential_id: str
    credential_description: str | None
    num_signatures: int
    hash_algorithm: str | None
    documents: tuple[tuple[str | None, str], ...]  # (label, Base64 hash)
    description: str | None
    needs_otp: bool
    action: str = "sign"  # sign | create | delete (CSC v2.2 credential-creation / credential-deletion)
    terms: tuple[tuple[str, str], ...] = ()  # create: (text key, value) rows of what will be made ("": default)
    otp_required: bool = True  # False where another factor may stand in for the TOTP code
    factors_html: str = ""  # further factors (rssp.factors.pages.consent_fields): e-mail code, passkey, OpenID
    script: str | None = None  # the passkey ceremony's script, when the page offers one


def _documents(lang: str, view: ConsentView) -> str:
    if not view.documents:
        return ""
    rows = "".join(
        f"<tr><td>{escape(label) if label else _t(lang, 'no_label')}</td><td><code>{escape(h)}</code></td></tr>"
        for label, h in view.documents
    )
    return (f"<h2>{_t(lang, 'documents')}</h2><p>{_t(lang, 'algorithm')}: {escape(view.hash_algorithm or '')}</p>"
            f'<table id="documents"><tr><th>{_t(lang, "label")}</th><th>{_t(lang, "hash")}</th></tr>{rows}</table>')


def _subject(lang: str, view: ConsentView) -> str:
    """What the signer approves: the signatures, the credential to delete, or the one to make."""
    if view.action == "create":
        rows = "".join(f"<dt>{_t(lang, key)}</dt><dd>{escape(value) if value else _t(lang, 'default_policy')}</dd>"
                       for key, value in view.terms)
        return f'<dl id="terms">{rows}</dl>'
    cred = escape(view.credential_id) + (f" ({escape(view.credential_description)})"
                                         if view.credential_description else "")
    count = (f'<dt>{_t(lang, "signatures")}</dt><dd id="num-signatures">{view.num_signatures}</dd>'
             if view.action == "sign" else "")
    return f'<dl><dt>{_t(lang, "credential")}</dt><dd id="credential">{cred}</dd>{count}</dl>'


def _factors(lang: str, view: ConsentView) -> str:
    """The credential's factors confirm signing and deleting; nothing exists yet to confirm a creation."""
    if view.action == "create":
        return ""
    otp = ""
    if view.needs_otp:
        otp = (f'<label for="otp">{_t(lang, "otp")}</label>'
               f'<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code"'
               f'{" required" if view.otp_required else ""}>')
    return (f'<label for="pin">{_t(lang, "pin")}</label>'
            f'<input id="pin" name="pin" type="password" autocomplete="off">{otp}{view.factors_html}')


def consent_page(lang: str, action: str, csrf: str, view: ConsentView, error: str | None = None) -> str:
    intro = "intro_consent" if view.action == "sign" else f"intro_{view.action}"
    description = f"<p>{_t(lang, 'description')}: {escape(view.description)}</p>" if view.description else ""
    content = (
        f"<p>{_t(lang, intro, client=view.client_name, n=view.num_signatures)}</p>{_error(lang, error)}"
        f"{_subject(lang, view)}{description}{_documents(lang, view)}"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">{_factors(lang, view)}'
        f'<button type="submit" id="approve" name="action" value="approve">{_t(lang, "approve")}</button>'
        f'<button type="submit" id="deny" name="action" value="deny" formnovalidate>{_t(lang, "deny")}</button>'
        f"</form>"
    )
    return _page(lang, "title_consent" if view.action == "sign" else f"title_{view.action}", content, view.script)


def error_page(lang: str, description: str) -> str:
    """Shown instead of redirecting when the client or redirect URI cannot be trusted."""
    return _page(lang, "title_error", f'<p class="error" role="alert">{escape(description)}</p>')


def html_response(body: str, status: int = 200, *, scripts: bool = False) -> web.Response:
    """``scripts``: the page loads same-origin scripts (the passkey ceremony); never inline ones."""
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"  # no form-action: it would
        # block the redirect to the client's redirect URI that follows the form post
        + ("; script-src 'self'" if scripts else "")
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
