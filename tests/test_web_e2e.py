"""End to end in a real browser: the real ``kb serve`` over the session index, driven by
headless Chromium (Debian's ``chromium`` found on PATH, through Playwright, never a browser
download). Without it the tests skip on a workstation and fail under CI (``CI=true``).

Screenshots of the results page (desktop and phone) go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import serving_kb

from kb.core.settings import Settings

pytestmark = pytest.mark.slow  # a real browser: minutes, not seconds

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not on PATH (apt-get install chromium)", pytrace=False)
    pytest.skip("chromium is not on PATH (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# Every test here drives a real browser: slow, left out by -m "not slow".
pytestmark = pytest.mark.slow

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
NONSENSE = "xyzzy"
# 厚木保健福祉事務所: disaster support for children on ventilators, which nobody else writes about
DISASTER_CHALLENGE = "2017-atsugi-c08-challenge"
OFF_TOPIC = "ゴルフ場"  # near words (場), nothing the table is about
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
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
    badges = page.locator("article.hit .hit-head .badge").all_text_contents()
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
    assert set(page.locator("article.hit .hit-head .badge").all_text_contents()) == {"課題"}

    # the toggle lists cells instead of organisations
    page.get_by_role("link", name="セルごと").click()
    page.wait_for_url(re.compile(r"view=cells"))
    expect(page.locator("section.org-group")).to_have_count(0)
    expect(page.locator("article.hit").first).to_be_visible()
    page.watch.assert_clean()


def test_no_match_page_says_so_and_folds_the_weak_candidates(page: Page):
    page.goto(f"/search?q={NONSENSE}")
    said = page.locator("section.no-match")
    expect(said.locator("h2")).to_have_text(f"「{NONSENSE}」に該当する記載は見つかりませんでした")
    expect(said.get_by_role("link", name="共通テーマ")).to_be_visible()
    expect(said.get_by_role("link", name="一覧表")).to_be_visible()
    weak = page.locator("details.weak")
    expect(weak.locator(":scope > summary")).to_contain_text("関連が薄い候補")
    # Collapsed: no cell is on screen until the section is opened.
    assert weak.locator("article.hit").count() > 0
    expect(page.locator("article.hit").first).to_be_hidden()
    expect(page.locator("aside.facets")).to_have_count(0)
    screenshot(page, "no-match-desktop.png")
    weak.locator(":scope > summary").click()
    expect(weak.locator("article.hit").first).to_be_visible()
    page.watch.assert_clean()


def test_weak_only_page_opened_reads_as_candidates_not_answers(page: Page):
    page.goto(f"/search?q={OFF_TOPIC}")
    expect(page.locator("section.no-match h2")).to_contain_text(
        "該当する記載は見つかりませんでした"
    )
    weak = page.locator("details.weak")
    weak.locator(":scope > summary").click()
    expect(weak.locator(".weak-note")).to_contain_text("とは限りません")
    expect(weak.locator("article.hit").first).to_be_visible()
    assert page.locator("article.hit").count() == weak.locator("article.hit").count()
    assert "場" not in page.locator("mark").all_inner_texts()  # no fragment lit up
    screenshot(page, "weak-only-open-desktop.png")
    page.watch.assert_clean()


def test_answers_come_first_and_weak_candidates_after_them(page: Page):
    page.goto(f"/search?q={NURSE}&view=cells")
    expect(page.locator("#results-title")).to_contain_text("当てはまる記載")
    weak = page.locator("details.weak")
    expect(weak).to_have_count(1)
    answers = page.locator("section.results > article.hit")
    assert answers.count() > 0
    # The weak section comes after the last answer in the page.
    below = weak.evaluate("d => d.getBoundingClientRect().top + scrollY")
    last = answers.last.evaluate("a => a.getBoundingClientRect().bottom + scrollY")
    assert below >= last
    weak.locator(":scope > summary").click()
    weak.scroll_into_view_if_needed()
    screenshot(page, "answers-then-weak-desktop.png")
    page.watch.assert_clean()


def test_cell_page_says_when_nobody_else_wrote_about_it(page: Page):
    page.goto(f"/cells/{DISASTER_CHALLENGE}")
    related = page.locator("section[aria-labelledby=related-title]")
    expect(related.locator("h2")).to_have_text("この課題に、他の団体が取り組んでいること")
    expect(related).to_contain_text("他の団体の記載は見つかりませんでした。")
    expect(related.locator("article.hit")).to_have_count(0)
    related.scroll_into_view_if_needed()
    screenshot(page, "cell-nobody-else-desktop.png")
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


def test_the_themes_page_reads_as_an_agenda(page: Page):
    """/themes on FY2017: the contents lead to each shared theme, every shared theme says
    what to discuss, and single-agency themes show what their agency asks of the others."""
    page.goto("/themes")
    toc = page.get_by_role("navigation", name="テーマの一覧")
    first = toc.get_by_role("link").first
    label = first.inner_text()
    first.click()
    expect(
        page.get_by_role("heading", name=re.compile(f"^1\\. {re.escape(label)}$"))
    ).to_be_in_viewport()
    shared = page.locator("section.theme:not(.theme-single)")
    assert shared.count() >= 2
    for n in range(shared.count()):
        expect(shared.nth(n).locator(".theme-question h3")).to_have_text(
            "会議で話し合いたいこと（案）"
        )
    single = page.locator("section.theme-single")
    expect(single.get_by_role("heading", name="単独の課題")).to_be_visible()
    asked = single.locator(".single-question")
    assert asked.count() >= 1
    expect(asked.first).to_contain_text("話し合いたいこと（案）「")
    screenshot(page, "themes.png")
    page.watch.assert_clean()


# --- a phone -----------------------------------------------------------------------------------

PHONE_PAGES = [
    "/search",
    f"/search?q={NONSENSE}",
    f"/search?q={NURSE}",
    f"/search?q={NURSE}&view=cells&field=challenge",
    f"/cells/{CELL}",
    "/organisations",
    "/organisations/厚木市障がい者基幹相談支援センター（ゆいはあと）",
    "/help",
    "/table",
    "/themes",
    "/cells/2017-atsugi-c99-challenge",
]


def test_a_phone_width_never_scrolls_sideways(phone: Page):
    for path in PHONE_PAGES:
        phone.goto(path)
        widths = phone.evaluate(
            "[innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth]"
        )
        assert widths[1] <= widths[0] and widths[2] <= widths[0], (path, widths)
        if path == f"/search?q={NONSENSE}":
            screenshot(phone, "no-match-phone.png")
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


def test_table_cells_look_like_links_and_underline_when_pointed_at(page: Page):
    page.goto("/table")
    link = page.locator("table.grid td a").first
    cell_text = page.locator("table.grid tbody th").first

    def style(locator, prop: str) -> str:
        return locator.evaluate(f"e => getComputedStyle(e).{prop}")

    assert style(link, "color") != style(cell_text, "color")  # not the plain text colour
    assert "underline" not in style(link, "textDecorationLine")  # calm until pointed at
    link.hover()
    assert "underline" in style(link, "textDecorationLine")
    screenshot(page, "table-link-hover.png")
    page.mouse.move(0, 0)
    link.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard: :focus-visible
    assert "underline" in style(link, "textDecorationLine")
    screenshot(page, "table-link-focus.png")
