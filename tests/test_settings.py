"""Where kb finds its data (KB_HOME and friends) and the public API named in kb/__init__."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kb
from kb.core.errors import KbError
from kb.core.settings import Settings


@pytest.fixture
def no_kb_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("KB_HOME", "KB_CORPUS", "KB_INDEX", "KB_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_kb_home_is_used_when_set(no_kb_env, tmp_path: Path):
    no_kb_env.setenv("KB_HOME", str(tmp_path))
    settings = Settings.from_env()
    assert (settings.corpus_dir, settings.index_dir) == (tmp_path / "corpus", tmp_path / "index")


def test_without_kb_home_the_current_folder_holding_corpus_is_home(no_kb_env, tmp_path: Path):
    (tmp_path / "corpus").mkdir()
    no_kb_env.chdir(tmp_path)
    assert Settings.from_env().corpus_dir == tmp_path / "corpus"


def test_without_kb_home_or_corpus_kb_says_what_to_set(no_kb_env, tmp_path: Path):
    no_kb_env.chdir(tmp_path)
    with pytest.raises(KbError) as raised:
        Settings.from_env()
    message = str(raised.value)
    assert "KB_HOME" in message and "corpus/" in message and "\n" not in message


def test_corpus_and_index_folders_need_no_home(no_kb_env, tmp_path: Path):
    no_kb_env.chdir(tmp_path)
    no_kb_env.setenv("KB_CORPUS", str(tmp_path / "c"))
    no_kb_env.setenv("KB_INDEX", str(tmp_path / "i"))
    assert Settings.from_env() == Settings(tmp_path / "c", tmp_path / "i")


def test_the_cli_without_a_home_is_one_japanese_line(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "PYTHONUTF8": "1"}

    def kb_in_empty_folder(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kb", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = kb_in_empty_folder("search", "看護")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("エラー: ") and len(done.stderr.strip().splitlines()) == 1
    helped = kb_in_empty_folder("search", "--help")  # help needs no data
    assert helped.returncode == 0 and "QUERY" in helped.stdout


def test_the_public_api_names_resolve():
    for name in kb.__all__:
        assert getattr(kb, name) is not None, name
    assert kb.SearchService.__module__ == "kb.search.service"
    assert issubclass(kb.CellNotFound, kb.KbError)
    with pytest.raises(AttributeError):
        _ = kb.no_such_name


def test_import_kb_is_light():
    """Naming the API loads nothing heavy until a name is used."""
    code = "import sys, kb; print(sorted(m for m in ('numpy', 'faiss', 'fastapi') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
