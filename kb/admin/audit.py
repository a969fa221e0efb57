"""The audit log and the versions of each table, under the admin folder.

``audit.jsonl``                 one JSON object per change, appended, never rewritten:
                                who, when, what (upload, edit, restore, remove), which table, the
                                uploaded file's name and SHA-256, before/after of each cell
``versions/<table>/<id>.yaml``  every state a table file has had, byte for byte

Every change to ``corpus/tables/`` made from the browser or ``kb restore`` goes through
:meth:`History.write`, under one lock shared by the server's threads and ``kb`` commands:
two changes never interleave, and a change prepared against a table that has moved on
since (another upload applied first) is refused instead of silently undoing it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import yaml

from kb.admin.changes import counts, diff
from kb.admin.storage import append_private, locked, write_private
from kb.core.errors import InputError, KbError
from kb.core.model import Table
from kb.core.yamlio import write_atomically
from kb.corpus.history import broken_links
from kb.corpus.tables import TABLES_DIR, Corpus, load_table, table_from_dict

AUDIT_FILE = "audit.jsonl"
VERSIONS_DIR = "versions"
LOCK_FILE = ".changes.lock"
SLUG = re.compile(r"[0-9]{4}-[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
VERSION = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}")


JAPAN = timezone(timedelta(hours=9), "JST")  # no tz database needed; Japan has no DST


def local_time(stamp: str | None) -> str:
    """An ISO time from the log, a job or an account as office staff read it: Japan time,
    to the minute (the pages and the commands' plain output; JSON keeps the ISO time)."""
    if not stamp:
        return ""
    return datetime.fromisoformat(stamp).astimezone(JAPAN).strftime("%Y年%m月%d日 %H:%M")


def version_time(version: str) -> str:
    """The UTC time a version id (:data:`VERSION`, made in :meth:`History._keep`) starts
    with, as an ISO time: 20261130T142758731573Z-28a44324 → 2026-11-30T14:27:58+00:00."""
    saved = datetime.strptime(version[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    return saved.isoformat(timespec="seconds")


# What to do after a Conflict, by the action that met it.
_RETRY = {
    "upload": "もう一度アップロードして、変更点を確かめてください",
    "edit": "セルの画面を開き直して、もう一度修正してください",
    "restore": "変更の履歴を開き直して、もう一度確かめてください",
}


class Conflict(KbError):
    """The table changed after the change was prepared."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class History:
    """Changes to the tables of ``corpus_dir``, recorded under ``admin_dir``."""

    def __init__(self, admin_dir: Path, corpus_dir: Path) -> None:
        self.admin_dir = admin_dir
        self.corpus_dir = corpus_dir
        self.log_path = admin_dir / AUDIT_FILE

    def table_file(self, slug: str) -> Path:
        """The corpus file of a table; the slug is checked, so it never leaves tables/."""
        if not SLUG.fullmatch(slug):
            raise KbError(f"表の名前「{slug}」が正しくありません（例: 2017-atsugi）")
        return self.corpus_dir / TABLES_DIR / f"{slug}.yaml"

    def base(self, slug: str) -> str | None:
        """SHA-256 of the table file as it is now (None if there is no such table yet)."""
        path = self.table_file(slug)
        return sha256(path.read_bytes()) if path.exists() else None

    # --- versions -----------------------------------------------------------------------

    def _versions_dir(self, slug: str) -> Path:
        self.table_file(slug)  # checks the slug
        return self.admin_dir / VERSIONS_DIR / slug

    def versions(self, slug: str) -> list[dict]:
        """Kept versions of a table, newest first: [{"version", "saved_at", "sha256"}]."""
        folder = self._versions_dir(slug)
        found = sorted(folder.glob("*.yaml"), reverse=True) if folder.exists() else []
        return [
            {"version": p.stem, "saved_at": version_time(p.stem), "sha256": sha256(p.read_bytes())}
            for p in found
        ]

    def _keep(self, slug: str, data: bytes, saved: datetime | None = None) -> str:
        """Store ``data`` as a version of the table unless the newest version is the same;
        returns that version's id, which starts with when the text was saved (``saved``,
        default now)."""
        folder = self._versions_dir(slug)
        digest = sha256(data)
        newest = max(folder.glob("*.yaml"), default=None) if folder.exists() else None
        if newest is not None and sha256(newest.read_bytes()) == digest:
            return newest.stem
        version = f"{(saved or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S%f')}Z-{digest[:8]}"
        write_private(folder / f"{version}.yaml", data)
        return version

    def version_text(self, slug: str, version: str) -> bytes:
        path = self._versions_dir(slug) / f"{version}.yaml"
        if not VERSION.fullmatch(version) or not path.exists():
            raise KbError(f"表 {slug} に版「{version}」はありません（kb restore {slug} --list）")
        return path.read_bytes()

    def current(self, slug: str) -> Table | None:
        """The table as it is in the corpus now (None if there is none)."""
        path = self.table_file(slug)
        return load_table(path) if path.exists() else None

    def version_table(self, slug: str, version: str) -> Table:
        """A kept version, read as a table (KbError if there is no such version)."""
        return _parse(self.version_text(slug, version), slug)

    # --- changing -----------------------------------------------------------------------

    def write(
        self,
        new_text: bytes | None,
        slug: str,
        *,
        user: str,
        action: str,
        expected_base: str | bool | None = False,
        extra: dict | None = None,
    ) -> dict:
        """Make ``new_text`` (a corpus table file) the table ``slug`` — or, for None, remove
        the table — keep both versions and append the audit entry, which is returned.

        ``expected_base`` is the SHA-256 of the file the change was prepared against (None:
        the table did not exist); if the file is different now, :class:`Conflict` is raised
        and nothing changes. ``False`` skips the check (a restore chooses its target)."""
        new = _parse(new_text, slug) if new_text is not None else None
        target = self.table_file(slug)
        with locked(self.admin_dir / LOCK_FILE):
            old_text = target.read_bytes() if target.exists() else None
            if expected_base is not False and (old_text and sha256(old_text)) != expected_base:
                raise Conflict(
                    f"表 {slug} は、確認の画面を出した後に別の更新で変わりました。"
                    + _RETRY.get(action, _RETRY["restore"])
                )
            if old_text is None and new_text is None:
                raise KbError(f"表 {slug} はありません（既に消されています）")
            self._check_links(slug, new, "消" if new is None else "この版に戻")
            old = load_table(target) if old_text is not None else None
            # The text the change replaces is named by when it was written (its file's time):
            # named by now, the table as it was before a first upload read as that upload's
            # own version (「01:01 の版に戻しますか」 to undo the upload of 01:01).
            before = (
                self._keep(slug, old_text, datetime.fromtimestamp(target.stat().st_mtime, UTC))
                if old_text is not None
                else None
            )
            if new_text is None:
                target.unlink()  # its last state is kept above; undone by a restore
            else:
                write_atomically(target, new_text.decode("utf-8"))
            after = self._keep(slug, new_text) if new_text is not None else None
            changes = diff(old, new)
            entry = {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "user": user,
                "action": action,
                "table": slug,
                "council": (new or old).council,  # so the log can name the table as people do
                "before_version": before,
                "after_version": after,
                **(extra or {}),
                **counts(changes),
                "cells": [c.as_dict() for c in changes],
            }
            append_private(self.log_path, json.dumps(entry, ensure_ascii=False) + "\n")
        return entry

    def _check_links(self, slug: str, new: Table | None, verb: str) -> None:
        """Conflict if a later table of the council continues items of ``slug`` that ``new``
        (None: removing the table) lacks: the later table's 継続元 would point at nothing
        and the corpus would no longer load. ``verb`` says the change (消 / この版に戻)."""
        rest = [t for t in Corpus.load(self.corpus_dir).tables if t.slug != slug]
        problems = broken_links([*rest, *([new] if new is not None else [])])
        if not problems:
            return
        table, column, message = problems[0]
        if table.slug == slug:  # the version itself continues a column no longer there
            raise Conflict(f"表 {slug} は{verb}せません（列 {column.key}: {message}）")
        raise Conflict(
            f"表 {slug} は{verb}せません。{table.year}年度の表（{table.slug}）の列 "
            f"{column.key} がその項目を引き継いでいます（{verb}すと: {message}）"
        )

    def restore(
        self, slug: str, version: str, user: str, expected_base: str | bool | None = False
    ) -> dict:
        """Make a kept version the table again (itself a change, logged and undoable)."""
        return self.write(
            self.version_text(slug, version),
            slug,
            user=user,
            action="restore",
            expected_base=expected_base,
            extra={"restored": version},
        )

    def remove(self, slug: str, user: str, expected_base: str | bool | None = False) -> dict:
        """Take the table out of the corpus: what undoes its first upload. Its versions stay
        kept, the log records it (every cell "removed"), and restoring the entry's
        ``before_version`` puts it back."""
        return self.write(None, slug, user=user, action="remove", expected_base=expected_base)

    # --- reading the log ----------------------------------------------------------------

    def entries(self, limit: int | None = None) -> list[dict]:
        """Audit entries, newest first."""
        found = list(self._lines())
        found.reverse()
        return found[:limit] if limit else found

    def _lines(self) -> Iterator[dict]:
        if not self.log_path.exists():
            return
        with self.log_path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _parse(text: bytes, slug: str) -> Table:
    """The table in a corpus file's bytes, with the corpus's own checks."""
    try:
        raw = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"表として読めません（{exc.__class__.__name__}）", file=slug) from exc
    table = table_from_dict(raw, slug)
    if table.slug != slug:
        raise InputError(f"中身は表 {table.slug} です（{slug} ではありません）", file=slug)
    return table
