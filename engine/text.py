"""Outside text made fit for a terminal: the one boundary every upstream value crosses
before it is shown.

ECS, Datadog, Sentry, probe targets, AWS error messages and even the config carry text
that nobody here wrote. On a terminal such text can act instead of being read: an ESC
starts an escape sequence (clear the screen, rename the window), a carriage return or
backspace overwrites what is already drawn, a bidi override reverses what follows, and
a five-thousand-character title pushes everything else off the pane. :func:`clean`
turns any value into text that can only be read:

- C0 and C1 control characters and DEL are made visible: ``␛`` for ESC, ``␇`` for BEL,
  ``␈`` for backspace, ``␡`` for DEL (Unicode's control pictures), ``<U+009B>`` for C1;
- a line break (``\\n``, ``\\r\\n``, U+2028/U+2029, NEL) becomes ``⏎`` on one line, or
  stays a line break where the caller shows several lines; a tab becomes a space;
- bidi controls (U+202A to U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C) and every other
  invisible format character (zero-width spaces, soft hyphens …, but not the zero-width
  joiner that holds emoji together) and lone surrogates are shown as ``<U+202E>``;
- the result is at most ``limit`` characters, the last one an ellipsis when cut.

Pure functions over ``str``: no Textual, no Rich, no markup. The caller decides how to
style the clean text; it never feeds it to a markup parser.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

LIMIT = 300
"""Default bound, in characters, of a value shown on screen (titles, names, tags)."""

LONG = 1000
"""Bound for prose that is shown in full where it appears (ECS reasons and events, AWS
errors of an action): longer than any such message AWS writes, short of a flood."""

ELLIPSIS = "…"
NEWLINE = "⏎"
"""What a line break looks like where a value is shown on one line."""

ZWJ = "\u200d"
"""The zero-width joiner: invisible but harmless, and what emoji sequences are made of."""

BIDI = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
)
"""Bidirectional formatting characters (embeddings, overrides, isolates, marks)."""

_BREAKS = ("\r\n", "\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c")
"""Line breaks as terminals and Unicode know them (CR alone is not one: it overwrites)."""


def is_unsafe(char: str) -> bool:
    """Whether one character must never reach the terminal as it is (a C0/C1 control,
    DEL, a bidi control, another invisible format character, a lone surrogate)."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if code < 0xA0:
        return False
    if char in BIDI:
        return True
    category = unicodedata.category(char)
    return category == "Cs" or (category == "Cf" and char != ZWJ)


@lru_cache(maxsize=1024)
def _visible(char: str) -> str:
    """The visible stand-in for one unsafe character (or the character itself)."""
    code = ord(char)
    if char == "\t":
        return " "
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟: Unicode's control pictures
    if code == 0x7F:
        return "\u2421"  # ␡
    if is_unsafe(char):
        return f"<U+{code:04X}>"
    return char


def _tokens(text: str, multiline: bool) -> list[str]:
    """``text`` as the pieces that will be shown: each one a character or the stand-in
    of one (a stand-in is never cut in two)."""
    for brk in _BREAKS:
        if brk in text:
            text = text.replace(brk, "\n")
    out: list[str] = []
    for char in text:
        if char == "\n":
            out.append("\n" if multiline else NEWLINE)
        else:
            out.append(_visible(char))
    return out


def clean(value: object, limit: int | None = LIMIT, *, multiline: bool = False) -> str:
    """Any outside value as text that is safe to show.

    Args:
        value: What came from outside (``None`` is shown as nothing; anything else
            as its ``str``).
        limit: The most characters returned (the last one ``…`` when cut); ``None``
            keeps the value whole (a dialog that must show the exact target).
        multiline: Keep line breaks (as ``\\n``) instead of showing them as ``⏎``.

    Returns:
        Text with no control, bidi or other invisible format character, at most
        ``limit`` characters long; plain printable text comes back unchanged.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text  # the common case: nothing to do (isprintable() is False for them all)
    if limit is not None and limit <= 0:
        return ""
    tokens = _tokens(text, multiline)
    if limit is None or sum(len(token) for token in tokens) <= limit:
        return "".join(tokens)
    room = limit - len(ELLIPSIS)
    out: list[str] = []
    used = 0
    for token in tokens:
        if used + len(token) > room:
            break
        out.append(token)
        used += len(token)
    out.append(ELLIPSIS)
    return "".join(out)
