"""The outside-text boundary (engine/text.py) and its widget-side helpers.

Properties over any text: nothing that acts on a terminal survives, the bound holds,
plain printable text is left alone. Examples: each shape reported from the sandbox.
"""

from __future__ import annotations

import string
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.text import Text
from textual.content import Content

from engine.text import BIDI, ELLIPSIS, LIMIT, NEWLINE, ZWJ, clean, is_unsafe
from widgets.safe import markup_literal, safe_text

NASTY = [
    "\x1b",
    "\x1b[2J",
    "\x1b]2;PWNED\x1b\\",
    "\x07",
    "\x08",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x00",
    "\x7f",
    "\x9b",
    "\x85",
    "\u2028",
    *sorted(BIDI),
    "\u200b",
    "\u00ad",
    "\ufeff",
    "\ud800",
    "[",
    "]",
    "[/]",
    "[b]",
    "[bold red]",
    "[@click=app.quit]",
    "\\",
    "é",
    "漢",
    "👩\u200d💻",
]
"""Pieces of hostile or odd text the strategies mix with anything."""

outside = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=12).map("".join)


def terminal_unsafe(text: str) -> list[str]:
    """Characters in ``text`` a terminal would act on (or hide) rather than show."""
    return [
        c
        for c in text
        if ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in BIDI
        or unicodedata.category(c) == "Cs"
        or (unicodedata.category(c) == "Cf" and c != ZWJ)
    ]


@settings(max_examples=300, deadline=None)
@given(outside, st.one_of(st.none(), st.integers(min_value=1, max_value=400)))
@example("invalid coupon code: \x1b[2J\x1b]2;PWNED\x1b\\", None)
@example("x" * 5000, None)
def test_clean_output_is_visible_and_bounded(value: str, limit: int | None) -> None:
    out = clean(value, limit) if limit is not None else clean(value)
    bound = LIMIT if limit is None else limit
    assert terminal_unsafe(out) == []
    assert len(out) <= bound
    assert "\n" not in out  # one line unless asked
    out.encode("utf-8")  # no lone surrogate left to crash the writer
    if len(out) < len(value) and not terminal_unsafe(value) and "\t" not in value:
        assert out.endswith(ELLIPSIS)


@settings(max_examples=200, deadline=None)
@given(outside)
def test_clean_is_idempotent_and_multiline_keeps_only_line_breaks(value: str) -> None:
    once = clean(value)
    assert clean(once) == once
    lines = clean(value, None, multiline=True)
    assert all(terminal_unsafe(line) == [] for line in lines.split("\n"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable.strip() + " ", max_size=LIMIT))
def test_plain_printable_ascii_is_unchanged(value: str) -> None:
    assert clean(value) == value
    assert clean(value, None) == value


def test_each_control_is_shown_as_what_it_is() -> None:
    assert clean("invalid coupon code: \x1b[2J\x1b]2;PWNED\x1b\\") == (
        "invalid coupon code: ␛[2J␛]2;PWNED␛\\"
    )
    assert clean("ring\x07 back\x08 del\x7f nul\x00") == "ring␇ back␈ del␡ nul␀"
    assert clean("csi\x9b") == "csi<U+009B>"
    assert clean("over\rwrite") == "over␍write"
    assert clean("two\nlines\r\nthree") == f"two{NEWLINE}lines{NEWLINE}three"
    assert clean("two\nlines", multiline=True) == "two\nlines"
    assert clean("a\tb") == "a b"


def test_bidi_and_invisible_format_characters_are_named() -> None:
    assert clean("evil\u202egnp.exe") == "evil<U+202E>gnp.exe"
    for char in BIDI:
        assert clean(char) == f"<U+{ord(char):04X}>"
    assert clean("zero\u200bwidth") == "zero<U+200B>width"
    assert clean("\ud800") == "<U+D800>"
    assert clean("👩\u200d💻 café 漢字") == "👩\u200d💻 café 漢字"  # real text stays
    assert not is_unsafe("é") and is_unsafe("\u202e") and is_unsafe("\x1b")


def test_a_long_title_is_cut_with_an_ellipsis_and_a_stand_in_never_split() -> None:
    out = clean("x" * 5000)
    assert len(out) == LIMIT and out.endswith(ELLIPSIS) and out.startswith("x" * 299)
    assert clean("abcdef", 4) == "abc…"
    cut = clean("ab\u202ecdef", 6)
    assert cut == "ab…"  # "<U+202E>" does not fit whole: not half of it
    assert clean("", 5) == "" and clean(None) == "" and clean(42) == "42"
    assert clean("x" * 5000, None) == "x" * 5000  # the full value where it is needed


def test_safe_text_is_literal_never_markup() -> None:
    text = safe_text("Log group [/ecs/web] does not exist [bold red]x[/] [@click=app.quit]q")
    assert isinstance(text, Text)
    assert text.plain == "Log group [/ecs/web] does not exist [bold red]x[/] [@click=app.quit]q"
    assert text.spans == []
    assert safe_text("\x1b[2J").plain == "␛[2J"


@settings(max_examples=300, deadline=None)
@given(outside)
@example("Log group [/ecs/web] does not exist")
@example("[taskDefinition] w[/] x [/] y [Foo] [0] \\[b] a\\")
def test_markup_literal_reads_back_as_the_clean_text(value: str) -> None:
    # The command palette parses its titles and help as markup: what it shows must be
    # the clean text itself, with no tag taking effect and no MarkupError.
    content = Content.from_markup(markup_literal(value))
    assert content.plain == clean(value)
    assert not content.spans
