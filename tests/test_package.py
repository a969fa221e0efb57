"""kb as a real package: the wheel built from this checkout, installed (not editable) into a
fresh virtual environment, runs `kb build`, `kb search` and `kb serve` against a KB_HOME
that is not this checkout, from a folder that is not this checkout.

Nothing is downloaded: the wheel is built without build isolation, and the new venv sees
the running environment's installed dependencies through a path file placed after its own
site-packages, so the installed wheel's ``kb`` is the one that runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from urllib.request import urlopen

import pytest
from conftest import CORPUS, REPO

pytestmark = pytest.mark.slow


def run(*args: object, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv with the wheel of this checkout installed."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and kb.egg-info/ next to the sources.
    source = root / "source"
    shutil.copytree(REPO / "kb", source / "kb", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = root / "wheels"
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        source,
    )
    # No packaging warning to alarm a new user (scripts/serve.sh shows them): the web UI's
    # templates and static folders were reported three times as "would be ignored".
    assert "BuildBackendWarning" not in built.stdout + built.stderr
    (wheel,) = wheels.glob("kb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "kb/interfaces/web/templates/search.html",
        "kb/interfaces/web/static/style.css",
        "kb/interfaces/web/templates/admin/login.html",
        "kb/search/calibration.json",  # without it every answer would be judged by words alone
    } <= names
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    host_sites = [p for p in sys.path if p.endswith("site-packages")]
    (purelib / "zz-host-dependencies.pth").write_text("\n".join(host_sites) + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--no-deps",
        "--no-index",
        # The host's kb (an editable install) is visible through the path file; install
        # the wheel anyway, and never touch the host's.
        "--ignore-installed",
        wheel,
        env=kb_env(),
    )
    return venv / "bin"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    shutil.copytree(CORPUS, home / "corpus")
    return home


def kb_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "PYTHON"))}
    return {**env, "PYTHONUTF8": "1", **extra}


def test_the_installed_kb_is_the_wheel(installed: Path, tmp_path: Path):
    done = run(
        installed / "python", "-c", "import kb; print(kb.__file__)", cwd=tmp_path, env=kb_env()
    )
    assert Path(done.stdout.strip()).is_relative_to(installed.parent)


def test_build_and_search_from_anywhere(installed: Path, home: Path, tmp_path: Path):
    env = kb_env(KB_HOME=str(home))
    built = run(installed / "kb", "build", cwd=tmp_path, env=env)
    assert "82セル" in built.stderr
    found = run(installed / "kb", "search", "看護師不足", "--json", cwd=tmp_path, env=env)
    hits = json.loads(found.stdout)
    assert hits and any("看護" in h["text"] for h in hits)


def test_kb_home_defaults_to_a_folder_holding_corpus(installed: Path, home: Path, tmp_path):
    found = run(installed / "kb", "search", "看護師不足", cwd=home, env=kb_env())
    assert "看護" in found.stdout
    lost = subprocess.run(
        [installed / "kb", "search", "看護師不足"],
        cwd=tmp_path,
        env=kb_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lost.returncode == 1 and lost.stdout == ""
    assert len(lost.stderr.strip().splitlines()) == 1 and "KB_HOME" in lost.stderr


def test_serve_answers_a_page_and_the_api(installed: Path, home: Path, tmp_path: Path):
    log = tmp_path / "serve.txt"
    with log.open("w", encoding="utf-8") as stderr:
        server = subprocess.Popen(
            [installed / "kb", "serve", "--port", "0"],
            cwd=tmp_path,
            env=kb_env(KB_HOME=str(home)),
            stderr=stderr,
            stdout=subprocess.DEVNULL,
        )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            found = re.search(r"http://127\.0\.0\.1:\d+/", log.read_text(encoding="utf-8"))
            url = found.group(0) if found else time.sleep(0.2)
        page = urlopen(f"{url}search?q=%E7%9C%8B%E8%AD%B7%E5%B8%AB%E4%B8%8D%E8%B6%B3")
        assert page.status == 200 and "看護" in page.read().decode()
        assert urlopen(f"{url}static/style.css").status == 200
        api = json.loads(urlopen(f"{url}api/search?q=%E7%9C%8B%E8%AD%B7").read())
        assert api["hits"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(re.fullmatch(r"GET /api/search 200 \d+ms", line) for line in lines), lines
