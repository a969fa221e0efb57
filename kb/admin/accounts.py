"""Secretariat accounts and bearer tokens, in ``<admin>/users.json`` (mode 0600).

Passwords are kept only as Argon2id hashes (argon2-cffi, salted per hash). A bearer token
is ``kb_<id>_<secret>``: 256 random bits, so one SHA-256 of the secret is enough to store it
(a slow hash protects guessable passwords, not random keys) and checking it costs nothing
per request. The file is read again whenever it changes on disk, so ``kb token revoke``
or ``kb user remove`` stops a running server from accepting the token or user at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from kb.admin.storage import locked, write_private
from kb.core.errors import KbError

USERS_FILE = "users.json"
LOCK_FILE = ".users.lock"
MIN_PASSWORD = 8
_NAME = re.compile(r"[\w.@-]{1,64}")
_TOKEN = re.compile(r"kb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@cache
def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id, RFC 9106 low-memory profile


@cache
def _dummy_hash() -> str:
    # Verified against for unknown names, so a wrong name costs as long as a wrong password.
    return _hasher().hash(secrets.token_hex(16))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Accounts:
    """The accounts file of one admin folder; safe to share between threads."""

    def __init__(self, admin_dir: Path) -> None:
        self.path = admin_dir / USERS_FILE
        self._lock_path = admin_dir / LOCK_FILE
        self._seen: tuple[object, dict] | None = None  # (stat signature, parsed file)

    # --- reading --------------------------------------------------------------------------

    def _data(self) -> dict:
        """The file as it is on disk now (parsed again only when it changed)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {"users": {}, "tokens": {}}
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._seen is None or self._seen[0] != signature:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise KbError(f"利用者のファイルを読めません（{self.path}: {exc}）") from exc
            self._seen = (signature, data)
        return self._seen[1]

    def users(self) -> list[dict]:
        """[{"name", "created", "tokens"}] sorted by name."""
        data = self._data()
        counts: dict[str, int] = {}
        for token in data["tokens"].values():
            counts[token["user"]] = counts.get(token["user"], 0) + 1
        return [
            {"name": name, "created": user["created"], "tokens": counts.get(name, 0)}
            for name, user in sorted(data["users"].items())
        ]

    def exists(self, name: str) -> bool:
        return name in self._data()["users"]

    def tokens(self) -> list[dict]:
        """[{"id", "user", "created"}] of live tokens (never their secrets)."""
        return [
            {"id": token_id, "user": t["user"], "created": t["created"]}
            for token_id, t in sorted(self._data()["tokens"].items())
        ]

    def check_password(self, name: str, password: str) -> bool:
        """True when ``name`` exists and ``password`` is its password."""
        from argon2.exceptions import Argon2Error

        user = self._data()["users"].get(name)
        try:
            matches = _hasher().verify(user["hash"] if user else _dummy_hash(), password)
        except (Argon2Error, ValueError):  # a mismatch, or a damaged hash
            return False
        return matches and user is not None

    def user_for_token(self, token: str) -> str | None:
        """The user a bearer token belongs to, or None if it is unknown or revoked."""
        match = _TOKEN.fullmatch(token.strip())
        if not match:
            return None
        stored = self._data()["tokens"].get(match.group(1))
        if stored is None or not hmac.compare_digest(stored["sha256"], _sha256(match.group(2))):
            return None
        return stored["user"] if self.exists(stored["user"]) else None

    # --- changing -------------------------------------------------------------------------

    def _change(self, edit) -> object:
        """Apply ``edit(data)`` to the file under the lock, from a fresh read; returns
        what ``edit`` returns."""
        with locked(self._lock_path):
            self._seen = None
            data = json.loads(json.dumps(self._data()))  # a private copy to edit
            result = edit(data)
            text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
            write_private(self.path, text.encode("utf-8"))
            self._seen = None
            return result

    def add(self, name: str, password: str) -> None:
        if not _NAME.fullmatch(name):
            raise KbError(
                f"利用者名「{name}」は使えません。英数字・かな漢字と . @ - _ で64文字までにしてください"
            )
        if len(password) < MIN_PASSWORD:
            raise KbError(f"パスワードは{MIN_PASSWORD}文字以上にしてください")
        hashed = _hasher().hash(password)

        def edit(data: dict) -> None:
            if name in data["users"]:
                raise KbError(f"利用者「{name}」は既にいます")
            data["users"][name] = {"hash": hashed, "created": _now()}

        self._change(edit)

    def remove(self, name: str) -> int:
        """Remove a user and their tokens; returns how many tokens went with them."""

        def edit(data: dict) -> int:
            if data["users"].pop(name, None) is None:
                raise KbError(f"利用者「{name}」はいません")
            gone = [i for i, t in data["tokens"].items() if t["user"] == name]
            for token_id in gone:
                del data["tokens"][token_id]
            return len(gone)

        return self._change(edit)

    def create_token(self, name: str) -> str:
        """A new bearer token for ``name`` (shown once; only its hash is kept)."""
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)

        def edit(data: dict) -> None:
            if name not in data["users"]:
                raise KbError(
                    f"利用者「{name}」はいません。先に kb user add {name} で登録してください"
                )
            data["tokens"][token_id] = {"user": name, "sha256": _sha256(secret), "created": _now()}

        self._change(edit)
        return f"kb_{token_id}_{secret}"

    def revoke(self, token_or_id: str) -> str:
        """Revoke a token given whole or by its id; returns the id."""
        match = _TOKEN.fullmatch(token_or_id.strip())
        token_id = match.group(1) if match else token_or_id.strip()

        def edit(data: dict) -> None:
            if data["tokens"].pop(token_id, None) is None:
                raise KbError(
                    f"トークン「{token_id}」はありません（kb token list で確かめられます）"
                )

        self._change(edit)
        return token_id
