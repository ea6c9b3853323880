"""sources.redact at its raw bound: an upstream body is looked at only up to
``MAX_RAW_LEN`` characters, and a secret that straddles that cut must not leave its first
characters behind — whitespace collapses, so what lay 16 KiB in can reach the pane
(issue 11, defect 8: scrub first, then cut)."""

from __future__ import annotations

import pytest

from sources.redact import MAX_ERROR_LEN, MAX_RAW_LEN, public_text
from tests.unit.test_redact import KEY, prefixes


@pytest.mark.parametrize("inside", [4, 10, len(KEY) - 1])
@pytest.mark.parametrize("filler", [" ", "\n", "\t "])
def test_a_known_secret_cut_by_the_raw_bound_leaves_no_prefix(inside: int, filler: str) -> None:
    """A 403 body of blank lines, then the echoed key right where the raw cut falls."""
    before = (filler * MAX_RAW_LEN)[: MAX_RAW_LEN - inside]
    body = "HTTP 403:" + before[9:] + KEY + " forbidden"
    assert len(body[:MAX_RAW_LEN]) == MAX_RAW_LEN and body.index(KEY) == MAX_RAW_LEN - inside
    text = public_text(body, environ={"DD_API_KEY": KEY})
    assert prefixes(text, KEY) == [], text
    assert text.startswith("HTTP 403:") and len(text) <= MAX_ERROR_LEN


@pytest.mark.parametrize("inside", [4, 7])
def test_a_header_shaped_value_cut_by_the_raw_bound_leaves_no_prefix(inside: int) -> None:
    """An unknown credential (``Authorization: Bearer …``) cut to fewer characters than
    a secret's minimum length would no longer look like one."""
    head = "HTTP 401: Authorization: Bearer "
    body = " " * (MAX_RAW_LEN - len(head) - inside) + head + KEY + " denied"
    assert body.index(KEY) == MAX_RAW_LEN - inside
    text = public_text(body, environ={})
    assert prefixes(text, KEY) == [], text


def test_a_secret_masked_before_the_cut_does_not_pull_a_split_one_in() -> None:
    """Two echoes of the key: the first, masked, is shorter than the key; the second,
    split by the cut, must not slide under it with its first characters."""
    second = MAX_RAW_LEN - 6
    body = "HTTP 403: " + KEY + " " * (second - 10 - len(KEY)) + KEY + " again"
    assert body.index(KEY, 20) == second
    text = public_text(body, environ={"DD_API_KEY": KEY})
    assert prefixes(text, KEY) == [], text
    assert text.startswith("HTTP 403: ***")
