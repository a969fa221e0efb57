"""The secretariat's year in a real browser: headless Debian Chromium (Playwright) against
the real ``kb serve`` over a private copy of the session index.

Sign in, upload the invented FY2018 sheet, read the preview, apply it, watch the build's
progress, find a new cell by searching; then fix the wording of that cell, undo the fix
from the history page (through its confirmation page) and undo the upload itself, which
removes the table. Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_helpers import FY2018_XLSX, PASSWORD, USER
from conftest import serving_kb
from test_web_e2e import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Watch, screenshot

from kb.admin.accounts import Accounts

pytestmark = pytest.mark.slow

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

BUILD_TIMEOUT_MS = 240_000
NARROW = {"width": 375, "height": 812}  # the narrowest phone the pages are made for


@pytest.fixture
def server(built_index_copy, tmp_path: Path) -> Iterator[str]:
    scratch = tmp_path / "home"
    scratch.mkdir()
    Accounts(scratch / "admin").add(USER, PASSWORD)  # KB_HOME/admin, as `kb user add`
    with serving_kb(built_index_copy.corpus_dir, built_index_copy.index_dir, scratch) as (port, _):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page(server: str) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP, locale="ja-JP", base_url=server)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.watch = Watch(page, server)
        yield page
        browser.close()


def _wait_for_build(page: Page, shot: str) -> None:
    """On a job page: see it running (or queued), then wait until it says it is live."""
    page.wait_for_url(re.compile(r"/admin/jobs/"))
    expect(page.locator(".job-state")).to_be_visible()
    shown = page.locator(".job-state", has_text=re.compile("更新中|反映しました|更新できません"))
    expect(shown).to_be_visible(timeout=BUILD_TIMEOUT_MS)  # the page refreshes itself
    screenshot(page, shot)  # the progress bar, unless the build was quicker than a refresh
    expect(page.locator(".job-done")).to_contain_text("反映しました", timeout=BUILD_TIMEOUT_MS)


def assert_no_sideways_scroll(page: Page, paths: list[str]) -> None:
    """At a 375 px phone's width none of ``paths`` scrolls sideways (the history's SHA-256
    of an upload wraps inside its card); the viewport is put back afterwards."""
    page.set_viewport_size(NARROW)
    for path in paths:
        page.goto(path)
        widths = page.evaluate(
            "[innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth]"
        )
        assert widths[1] <= widths[0] and widths[2] <= widths[0], (path, widths)
        if path == "/admin/history":
            screenshot(page, "admin-history-phone.png")
    page.set_viewport_size(DESKTOP)


def test_upload_a_year_then_fix_a_cell_and_undo(page: Page):
    # Signing in: the upload page sends an anonymous visitor to the sign-in form first.
    page.goto("/admin/upload")
    page.wait_for_url(re.compile(r"/admin/login\?next=/admin/upload"))
    page.get_by_label("利用者名").fill(USER)
    page.get_by_label("パスワード").fill("wrong-password")
    page.get_by_role("button", name="ログイン").click()
    expect(page.get_by_role("alert")).to_have_text("利用者名かパスワードが違います")
    page.get_by_label("パスワード").fill(PASSWORD)
    screenshot(page, "admin-login.png")
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(re.compile(r"/admin/upload$"))

    # Upload and read the preview.
    page.get_by_label(re.compile("ファイル")).set_input_files(str(FY2018_XLSX))
    page.get_by_role("button", name="内容を確かめる").click()
    expect(page.locator("h1")).to_contain_text("2018年度")
    summary = page.locator(".preview-summary").inner_text()
    added = int(re.search(r"追加 (\d+) セル", summary).group(1))
    assert added > 20 and "変更 0 セル" in summary and "削除 0 セル" in summary
    assert page.locator("tr.change-added").count() == added
    screenshot(page, "admin-preview.png")
    row = page.locator("tr.change-added", has_text="開催").first
    cell_id = row.locator("small").inner_text().split("・")[-1]
    text = row.locator("td").nth(3).inner_text()

    # Apply: the build runs in the background while the page follows it.
    page.get_by_role("button", name="この内容で反映する").click()
    _wait_for_build(page, "admin-progress.png")
    screenshot(page, "admin-done.png")

    # The new cell is found by searching.
    page.goto("/search")
    page.get_by_role("searchbox", name="困りごと・キーワード").fill(text.splitlines()[0][:30])
    page.get_by_role("button", name="検索").click()
    link = page.locator(f'a[href="/cells/{cell_id}"]').first
    expect(link).to_be_visible()
    screenshot(page, "admin-search-new-cell.png")

    # Fix the wording of that cell from its page, preview, save.
    page.goto(f"/cells/{cell_id}")
    page.get_by_role("link", name="事務局：このセルを修正する").click()
    page.wait_for_url(re.compile(rf"/admin/cells/{cell_id}$"))
    box = page.get_by_label(re.compile("セルの内容"))
    original = box.input_value()
    fixed = original.replace("開催", "実施", 1)
    box.fill(fixed)
    page.get_by_role("button", name="変更点を確かめる").click()
    expect(page.locator("tr.change-changed")).to_have_count(1)
    expect(page.locator("tr.change-changed td").nth(3)).to_contain_text("実施")
    screenshot(page, "admin-cell-preview.png")
    page.get_by_role("button", name="この修正を保存する").click()
    _wait_for_build(page, "admin-cell-progress.png")
    cell_job = page.url
    expect(page.locator(".job-done")).to_contain_text("新たに埋め込んだセル 1 件")
    assert page.request.get(f"/api/cells/{cell_id}").json()["text"] == fixed  # every line kept
    page.goto(f"/cells/{cell_id}")
    expect(page.locator(".column-row.current dd")).to_contain_text(fixed.splitlines()[0])

    # Undo it from the history page.
    page.goto("/admin/history")
    latest = page.locator("article.history-entry").first
    expect(latest.locator("h2")).to_contain_text("セルの修正")
    screenshot(page, "admin-history.png")
    assert_no_sideways_scroll(page, ["/admin", "/admin/upload", "/admin/history", cell_job])
    page.goto("/admin/history")
    latest.get_by_role("button", name="この変更の前に戻す").click()
    # Nothing changes before the confirmation page's own button is pressed.
    expect(page.locator("h1")).to_contain_text("に戻しますか")
    expect(page.locator("tr.change-changed")).to_have_count(1)
    assert page.request.get(f"/api/cells/{cell_id}").json()["text"] == fixed
    screenshot(page, "admin-undo-confirm.png")
    page.get_by_role("button", name="この版に戻す").click()
    _wait_for_build(page, "admin-undo-progress.png")
    assert page.request.get(f"/api/cells/{cell_id}").json()["text"] == original
    page.goto(f"/cells/{cell_id}")
    expect(page.locator(".column-row.current dd")).to_contain_text(original.splitlines()[0])
    page.goto("/admin/history")
    expect(page.locator("article.history-entry").first.locator("h2")).to_contain_text("元に戻す")

    # The year's first upload is undone too: the table is removed, after a confirmation.
    first = page.locator(
        "article.history-entry",
        has_text="アップロード：2018年度 厚木地域小児等在宅医療連絡会議の表",
    )
    first.get_by_role("button", name="この変更の前に戻す").click()
    expect(page.locator("h1")).to_contain_text("を消しますか")
    expect(page.locator("tr.change-removed")).to_have_count(added)
    page.get_by_role("button", name="この表を消す").click()
    _wait_for_build(page, "admin-remove-progress.png")
    assert page.request.get(f"/api/cells/{cell_id}").status == 404
    page.goto("/admin/history")
    expect(page.locator("article.history-entry").first.locator("h2")).to_contain_text(
        "表を消す：2018年度 厚木地域小児等在宅医療連絡会議の表"
    )

    # Signing out ends the session.
    page.get_by_role("button", name="ログアウト").click()
    page.wait_for_url(re.compile(r"/admin/login"))
    page.goto("/admin/history")
    page.wait_for_url(re.compile(r"/admin/login"))
    page.watch.assert_clean()
