"""Console texts: Japanese by default, English selectable (cookie ``lang``)."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("ja", "en")
MESSAGES: dict[str, tuple[str, str]] = {
    "app.title": ("催告コールセンター", "Dunning call center"),
    "demo": ("デモ環境", "Demo"),
    "login.title": ("ログイン", "Sign in"),
    "login.hint": (
        "個人ごとのIDでログインしてください。IDの共用は禁止されています。",
        "Sign in with your personal account. Shared accounts are not allowed.",
    ),
    "login.username": ("ユーザーID", "User ID"),
    "login.password": ("パスワード", "Password"),
    "login.submit": ("ログイン", "Sign in"),
    "totp.title": ("確認コード", "Verification code"),
    "totp.hint": (
        "認証アプリに表示された6桁のコードを入力してください。",
        "Enter the 6-digit code from your authenticator app.",
    ),
    "logout": ("ログアウト", "Sign out"),
    "nav.operator": ("架電業務", "Calls"),
    "nav.staff": ("引継ぎ", "Hand-offs"),
    "nav.supervisor": ("進捗管理", "Supervision"),
    "nav.admin": ("管理", "Admin"),
    "lang.switch": ("English", "日本語"),
    "error.title": ("エラー", "Error"),
    "role.operator": ("オペレータ", "Operator"),
    "role.staff": ("職員", "Staff"),
    "role.supervisor": ("管理者", "Supervisor"),
    "role.admin": ("システム管理者", "Administrator"),
}


def translator(language: str) -> Callable[[str], str]:
    index = 1 if language == "en" else 0

    def translate(key: str) -> str:
        pair = MESSAGES.get(key)
        return pair[index] if pair else key

    return translate
