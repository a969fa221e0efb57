"""The page style sheet read as it is served: colours people must be able to read."""

from __future__ import annotations

import re

import pytest

from kb.core.fields import FIELDS
from kb.interfaces.web.pages import STATIC_DIR

STYLE = (STATIC_DIR / "style.css").read_text(encoding="utf-8")
WCAG_AA = 4.5  # normal-size text (the badges are .8em)


def luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    dark, light = sorted((luminance(a), luminance(b)))
    return (light + 0.05) / (dark + 0.05)


def rule(selector: str, css: str = STYLE) -> str:
    """The declarations of ``selector``'s rule in ``css``."""
    found = re.search(rf"(?m)^{re.escape(selector)}\s*\{{([^}}]*)\}}", css)
    assert found, f"no rule for {selector}"
    return found.group(1)


def declared(selector: str, prop: str) -> str:
    value = re.search(rf"(?:^|;)\s*{prop}\s*:\s*(#[0-9a-fA-F]{{6}})", rule(selector))
    assert value, f"{selector} has no {prop} as #rrggbb"
    return value.group(1)


def test_the_contrast_formula_on_known_pairs():
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("field", [f.value for f in FIELDS])
def test_every_field_badge_is_readable_white_on_its_colour(field):
    assert re.search(r"(?:^|;)\s*color:\s*#fff(fff)?\s*;", rule(".badge"))  # white text
    background = declared(f".badge-{field}", "background")
    assert contrast(background, "#ffffff") >= WCAG_AA, (field, background)
