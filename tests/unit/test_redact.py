"""sources.redact: secrets scrubbed first, then cut; HTML pages as their title."""

from __future__ import annotations

import pytest

from sources.redact import MAX_ERROR_LEN, public_text

KEY = "Abc123secretKEYvalue9876"


def prefixes(text: str, secret: str) -> list[str]:
    return [secret[:n] for n in range(4, len(secret) + 1) if secret[:n] in text]


@pytest.mark.parametrize("offset", [0, 100, 150, MAX_ERROR_LEN - 5, MAX_ERROR_LEN + 5])
def test_a_secret_anywhere_leaves_no_prefix(offset: int) -> None:
    text = public_text("x" * offset + KEY + " y" * 200, environ={"DD_APP_KEY": KEY})
    assert prefixes(text, KEY) == [] and len(text) <= MAX_ERROR_LEN


@pytest.mark.parametrize(
    "words",
    [
        f"Authorization: Bearer {KEY}",
        f"authorization=Basic {KEY}",
        f'{{"DD-API-KEY": "{KEY}"}}',
        f"GET /x?token={KEY}&a=1",
        f"header was bearer {KEY}",
    ],
)
def test_credentials_in_header_shapes_are_scrubbed_without_being_known(words: str) -> None:
    text = public_text(words, environ={})
    assert prefixes(text, KEY) == [] and "***" in text


def test_short_words_after_a_header_name_stay_readable() -> None:
    assert public_text("token: expired", environ={}) == "token: expired"


def test_an_html_page_is_its_title_on_one_line() -> None:
    page = "<!doctype html>\n<html>\n<title>502 Bad\n Gateway</title>\n<body>" + "z" * 500
    assert public_text(f"HTTP 502: {page}", environ={}) == "HTTP 502: 502 Bad Gateway"
    assert public_text("<html><body><h1>Oops &amp; more</h1></body></html>", environ={}) == (
        "Oops & more"
    )


def test_long_text_is_cut_to_one_line_with_an_ellipsis() -> None:
    text = public_text("a\nb\t" + "c" * 1000, environ={})
    assert text.startswith("a b c") and text.endswith("…") and len(text) == MAX_ERROR_LEN


def test_the_bus_password_is_a_known_secret_too() -> None:
    password = "mqtt-S3cret-pass"
    text = public_text(
        f"connection refused for {password} at the broker",
        environ={"DEPLOYWATCH_MQTT_PASSWORD": password},
    )
    assert password not in text and "***" in text
