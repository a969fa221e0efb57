"""End to end in a real browser: the real ``kb serve`` over the session index, driven by
headless Chromium (Debian's /usr/bin/chromium through Playwright, never a browser download).

Screenshots of the results page (desktop and phone) go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import serving_kb

from kb.core.settings import Settings

pytestmark = pytest.mark.slow  # a real browser: minutes, not seconds

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NURSE = "看護師不足"
SCRIPT_QUERY = "<script>alert(1)</script>"
CELL = "2017-atsugi-c13-challenge"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(built_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kb serve`` on a free loopback port over the session index; yields its base URL."""
    scratch = tmp_path_factory.mktemp("serve")
    with serving_kb(built_index.corpus_dir, built_index.index_dir, scratch, 90) as (port, log):
        yield f"http://127.0.0.1:{port}"
    assert "索引がないため" not in log.read_text(encoding="utf-8")  # it used the built index


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watch:
    """What a page did that it should not: requests to other hosts, console errors
    (CSP violations are reported there), dialogs (an injected alert)."""

    def __init__(self, page: Page, base: str) -> None:
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on(
            "request",
            lambda r: None if r.url.startswith((base, "data:")) else self.foreign.append(r.url),
        )
        page.on("console", self._console)
        page.on("response", self._response)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def _console(self, message) -> None:
        # A page answered 404 on purpose is logged as "Failed to load resource"; failed
        # subresources are caught by _response instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} {response.url}")

    def assert_clean(self) -> None:
        assert self.foreign == [], "requests to other hosts (it must work offline)"
        assert self.errors == []
        assert self.dialogs == []


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, locale="ja-JP", base_url=server)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.watch = Watch(page, server)
    yield page
    context.close()


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, locale="ja-JP", base_url=server
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.watch = Watch(page, server)
    yield page
    context.close()


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def search_box(page: Page):
    return page.get_by_role("searchbox", name="困りごと・キーワード")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


# --- the main journey ---------------------------------------------------------------------------


def test_search_filter_open_a_cell_and_come_back(page: Page):
    page.goto("/search")
    expect(page.locator("h2#help-title")).to_be_visible()  # empty query: the help view
    box = search_box(page)
    box.fill(NURSE)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q="))
    assert query_of(page)["q"] == [NURSE]

    # grouped by organisation, terms highlighted
    groups = page.locator("section.org-group")
    expect(groups.first).to_be_visible()
    assert groups.count() >= 3
    headings = page.locator("section.org-group > h3.org-name a").all_inner_texts()
    assert "厚木市障がい福祉課①" in headings and len(set(headings)) == len(headings)
    marks = page.locator(".hit-text mark")
    expect(marks.first).to_be_visible()
    assert any("看護" in m for m in marks.all_inner_texts())
    background = marks.first.evaluate("m => getComputedStyle(m).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent")  # the stylesheet applies
    screenshot(page, "results-desktop.png")

    # the column opens in place
    first_details = page.locator("article.hit details.column").first
    first_details.locator("summary").click()
    expect(first_details.locator(".column-row").first).to_be_visible()

    # filter by the 課題 field
    page.locator("aside.facets section", has=page.locator("h3", has_text="欄")).get_by_role(
        "link", name=re.compile("^課題")
    ).click()
    page.wait_for_url(re.compile(r"field=challenge"))
    assert query_of(page)["field"] == ["challenge"] and query_of(page)["q"] == [NURSE]
    badges = page.locator("article.hit .hit-head .badge").all_inner_texts()
    assert badges and set(badges) == {"課題"}
    expect(page.locator(".active-filters .chip")).to_have_count(1)
    expect(search_box(page)).to_have_value(NURSE)

    # open a cell page through its link, see its column and similar cells
    page.locator("article.hit").first.get_by_role("link", name="このセルの詳細と似た取組み").click()
    page.wait_for_url(re.compile(r"/cells/.+-challenge$"))
    rows = page.locator("dl.column-full .column-row")
    assert rows.count() >= 2
    expect(page.locator(".column-row.current .badge")).to_have_text("課題")
    similar = page.locator("section[aria-labelledby=similar-title]")
    expect(similar.locator("h2")).to_have_text("他の団体の似たセル")
    expect(similar.locator("article.hit").first).to_be_visible()

    # and back to the filtered results
    page.go_back()
    page.wait_for_url(re.compile(r"field=challenge"))
    expect(search_box(page)).to_have_value(NURSE)
    assert set(page.locator("article.hit .hit-head .badge").all_inner_texts()) == {"課題"}

    # the toggle lists cells instead of organisations
    page.get_by_role("link", name="セルごと").click()
    page.wait_for_url(re.compile(r"view=cells"))
    expect(page.locator("section.org-group")).to_have_count(0)
    expect(page.locator("article.hit").first).to_be_visible()
    page.watch.assert_clean()


def test_a_script_query_is_shown_as_text(page: Page):
    page.goto("/search")
    box = search_box(page)
    box.fill(SCRIPT_QUERY)
    page.get_by_role("button", name="検索").click()
    page.wait_for_url(re.compile(r"/search\?q="))
    expect(search_box(page)).to_have_value(SCRIPT_QUERY)
    expect(page.locator("#results-title")).to_contain_text(f"「{SCRIPT_QUERY}」")
    assert SCRIPT_QUERY in page.title()
    assert page.evaluate("document.scripts.length") == 0  # nothing injected (pages have none)
    page.wait_for_timeout(200)  # a dialog would have fired by now
    page.watch.assert_clean()


def test_keyboard_reaches_the_skip_link_and_the_search_box(page: Page):
    page.goto("/search")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip-link")
    expect(skip).to_be_focused()
    expect(skip).to_have_text("本文へ移動")
    box = skip.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0  # shown on screen while focused
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(search_box(page)).to_be_focused()
    page.keyboard.type("ショートステイ")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=%E3%82%B7"))
    expect(page.locator("article.hit").first).to_be_visible()
    # focus is visible
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert page.evaluate("document.activeElement.tagName") == "A"
    assert outline != "none"
    page.watch.assert_clean()


def test_docs_render_offline(page: Page):
    page.goto("/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock-summary-path").filter(has_text="/api/search").count() == 1
    page.watch.assert_clean()


# --- a phone -----------------------------------------------------------------------------------

PHONE_PAGES = [
    "/search",
    f"/search?q={NURSE}",
    f"/search?q={NURSE}&view=cells&field=challenge",
    f"/cells/{CELL}",
    "/organisations",
    "/organisations/厚木市障がい者基幹相談支援センター（ゆいはあと）",
    "/help",
    "/table",
    "/cells/2017-atsugi-c99-challenge",
]


def test_a_phone_width_never_scrolls_sideways(phone: Page):
    for path in PHONE_PAGES:
        phone.goto(path)
        widths = phone.evaluate(
            "[innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth]"
        )
        assert widths[1] <= widths[0] and widths[2] <= widths[0], (path, widths)
        if path == f"/search?q={NURSE}":
            screenshot(phone, "results-phone.png")
            # the filters sit below the results on a phone: a link leads to them
            link = phone.get_by_role("link", name=re.compile("^絞り込み"))
            expect(link).to_be_visible()
            link.click()
            expect(phone.locator("#facets")).to_be_in_viewport()
    # the grid scrolls inside its own box, with the row names kept in view
    phone.goto("/table")
    grid = phone.locator(".grid-scroll").first
    assert grid.evaluate("g => g.scrollWidth > g.clientWidth")
    grid.evaluate("g => { g.scrollLeft = 400; }")
    row_name = grid.locator("tbody th").first
    assert row_name.evaluate("th => th.getBoundingClientRect().left") >= grid.evaluate(
        "g => g.getBoundingClientRect().left"
    )
    phone.watch.assert_clean()
