"""Index builds started from the browser, run one at a time on a background thread.

The build is :func:`kb.index.build` itself: it writes a new build folder and swaps it in
atomically, carrying unchanged cells over from the live build, so only changed cells are
embedded and the server keeps answering from the previous build until the swap (it loads
the new one on its next request). Progress is counted by wrapping the embedder.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np

from kb.admin.storage import locked
from kb.core.errors import KbError
from kb.core.settings import Settings
from kb.corpus.tables import Corpus
from kb.retrieval.embedding import Embedder
from kb.retrieval.index import ROW_KEYS, build, current_build, row_keys

JOBS_KEPT = 50
BUILD_LOCK = ".build.lock"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    """One build: queued → running → done | failed."""

    id: str
    reason: str  # what asked for it, in words (wording.entry_title): 「セルの修正：…」
    user: str
    state: str = "queued"
    cells: int = 0  # cells in the corpus being built
    to_embed: int = 0  # cells the live build does not have (at most this many are embedded)
    embedded: int = 0  # cells embedded so far
    build_id: str | None = None
    error: str | None = None
    queued_at: str = field(default_factory=_now)
    finished_at: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class _Counting:
    """An embedder that counts the passages it embeds into a job (thread-safe enough: only
    the build thread writes)."""

    def __init__(self, inner: Embedder, job: Job) -> None:
        self._inner, self._job = inner, job
        self.name, self.dim = inner.name, inner.dim

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._inner.embed_passages(texts)
        self._job.embedded += len(texts)
        return vectors


def build_lock(settings: Settings):
    """Held around a build started by kb's admin side (the server's jobs, ``kb restore``):
    one at a time, and each reads the corpus inside the lock, so a build that started
    earlier can never go live after one that already includes a later change."""
    return locked(settings.admin_dir / BUILD_LOCK)


def _not_in_live(settings: Settings, corpus: Corpus) -> int:
    """How many of the corpus's cells the live build does not have (they need embedding,
    unless the cache knows their text)."""
    keys = row_keys(corpus.chunks)
    try:
        live = np.load(current_build(settings.index_dir) / ROW_KEYS)
    except (KbError, OSError, ValueError):
        return len(keys)
    return int((~np.isin(keys, live)).sum())


class Builder:
    """Runs submitted builds in order on one thread; keeps the last :data:`JOBS_KEPT`."""

    def __init__(self, settings: Settings, embedder: Callable[[], Embedder]) -> None:
        self._settings = settings
        self._embedder = embedder
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: list[Job] = []
        self._wake = threading.Condition()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._analyzer = None

    def submit(self, reason: str, user: str) -> Job:
        job = Job(id=f"{time.strftime('%Y%m%d%H%M%S')}-{next(self._ids)}", reason=reason, user=user)
        with self._wake:
            self._jobs[job.id] = job
            while len(self._jobs) > JOBS_KEPT:
                self._jobs.popitem(last=False)
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="kb-admin-build", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def status(self) -> dict:
        """What is running and waiting, and the last finished build job (public: no users)."""
        jobs = list(self._jobs.values())
        running = next((j for j in jobs if j.state == "running"), None)
        finished = [j for j in jobs if j.state in ("done", "failed")]
        public = ("id", "state", "cells", "to_embed", "embedded", "build_id", "finished_at")
        shown = lambda j: {k: getattr(j, k) for k in public} if j else None  # noqa: E731
        return {
            "running": shown(running),
            "queued": sum(j.state == "queued" for j in jobs),
            "last": shown(finished[-1] if finished else None),
        }

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._queue:
                    self._wake.wait()
                job = self._queue.pop(0)
            self._run(job)

    def _run(self, job: Job) -> None:
        from kb.retrieval.analysis import Analyzer

        job.state = "running"
        try:
            self._analyzer = self._analyzer or Analyzer()
            with build_lock(self._settings):
                corpus = Corpus.load(self._settings.corpus_dir)
                job.cells = len(corpus.chunks)
                job.to_embed = _not_in_live(self._settings, corpus)
                report = build(
                    self._settings, _Counting(self._embedder(), job), self._analyzer, corpus=corpus
                )
            job.build_id, job.embedded, job.state = report.build_id, report.embedded, "done"
        except Exception as exc:  # a failed build leaves the previous index; say why
            job.error = str(exc) if isinstance(exc, KbError) else f"{exc.__class__.__name__}: {exc}"
            job.state = "failed"
            print(f"kb: build {job.id} failed: {job.error}", file=sys.stderr)
        finally:
            job.finished_at = _now()
