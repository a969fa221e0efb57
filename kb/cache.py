"""A persistent cache of values computed from texts (embeddings, Sudachi terms).

Keyed by (namespace, sha256 of the text): the namespace names what computed the value
(an embedder, an analyser version), so a different model never reuses another's values.
Rebuilding an index after editing one cell then recomputes one cell.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

_BATCH = 500  # SQLite's default limit on host parameters is 999


class TextCache:
    """One SQLite file; use from one thread (the build)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (namespace TEXT, key BLOB, value BLOB, "
            "PRIMARY KEY (namespace, key))"
        )

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, namespace: str, texts: Sequence[str]) -> dict[str, bytes]:
        """Cached values of those ``texts`` that have one."""
        by_key = {self._key(t): t for t in texts}
        keys = list(by_key)
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            rows = self._db.execute(
                f"SELECT key, value FROM entries WHERE namespace = ? AND key IN ({','.join('?' * len(batch))})",
                [namespace, *batch],
            )
            found.update((by_key[key], value) for key, value in rows)
        return found

    def put(self, namespace: str, items: Iterable[tuple[str, bytes]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
            ((namespace, self._key(text), value) for text, value in items),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TextCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
