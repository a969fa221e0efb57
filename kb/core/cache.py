"""A persistent cache of values computed from texts (embeddings, Sudachi terms).

Keyed by (namespace, sha256 of the text): the namespace names what computed the value
(an embedder, an analyser version), so a different model never reuses another's values.
Rebuilding an index after editing one cell then recomputes one cell.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

_BATCH = 500  # SQLite's default limit on host parameters is 999


def _warn(message: str) -> None:
    print(f"注意: {message}", file=sys.stderr, flush=True)


class TextCache:
    """One SQLite file; use from one thread (the build)."""

    def __init__(self, path: Path) -> None:
        # A cache only saves time: if its file cannot be used (a full disk, a damaged file),
        # the build goes on without it rather than failing.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open(str(path))
        except (OSError, sqlite3.Error) as exc:
            _warn(f"キャッシュ {path} を使えません（{exc}）。すべて計算し直します")
            self._db = self._open(":memory:")

    @staticmethod
    def _open(where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where)
        db.execute(
            "CREATE TABLE IF NOT EXISTS entries (namespace TEXT, key BLOB, value BLOB, "
            "PRIMARY KEY (namespace, key))"
        )
        return db

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, namespace: str, texts: Sequence[str]) -> dict[str, bytes]:
        """Cached values of those ``texts`` that have one."""
        by_key = {self._key(t): t for t in texts}
        keys = list(by_key)
        found: dict[str, bytes] = {}
        try:
            for start in range(0, len(keys), _BATCH):
                batch = keys[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT key, value FROM entries WHERE namespace = ? AND key IN ({marks})",
                    [namespace, *batch],
                )
                found.update((by_key[key], value) for key, value in rows)
        except sqlite3.Error as exc:
            self._give_up(exc)
            return {}
        return found

    def put(self, namespace: str, items: Iterable[tuple[str, bytes]]) -> None:
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                ((namespace, self._key(text), value) for text, value in items),
            )
            self._db.commit()
        except sqlite3.Error as exc:  # e.g. the disk is full: the values are simply not kept
            self._give_up(exc)

    def _give_up(self, exc: sqlite3.Error) -> None:
        """Go on with an empty cache in memory once the file fails (a full disk)."""
        _warn(f"キャッシュを読み書きできません（{exc}）。キャッシュなしで続けます")
        self._db.close()
        self._db = self._open(":memory:")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TextCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
