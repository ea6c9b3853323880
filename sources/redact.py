"""Upstream text made fit for a pane: secrets scrubbed first, then cut to one short line.

Every source that shows an upstream's own words (an error body, an SDK message) passes
them through :func:`public_text`. The order matters: cutting first could leave the first
characters of a key that straddles the cut, and those would reach the screen.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping

MAX_ERROR_LEN = 240
"""Longest error text put in a failure (it is shown in a pane)."""
MIN_SECRET_LEN = 8
"""Secrets shorter than this are not scrubbed from text (they would mangle words)."""
MAX_RAW_LEN = 16_384
"""Upstream text beyond this is never looked at (a huge body must not cost a scan), so
nothing beyond it is ever shown. What lies just before it can be (whitespace and HTML
collapse): the cut never leaves part of a secret (see ``_raw_cut``)."""
SECRET_ENV = (
    "DD_API_KEY",
    "DD_APP_KEY",
    "DD_APPLICATION_KEY",
    "SENTRY_AUTH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "DEPLOYWATCH_MQTT_PASSWORD",
)
"""Environment variables whose values never appear in a pane."""
MASK = "***"

# ``Authorization: Bearer abc...``, ``DD-API-KEY=abc...``, ``"token": "abc..."``: values
# of at least MIN_SECRET_LEN characters (``token: expired`` stays readable).
_HEADER_VALUE = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|dd-api-key|dd-application-key"
    r"|x-amz-security-token|x-api-key|api[_-]?key|app[_-]?key|token)\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:bearer|basic|token|aws4-hmac-sha256)\s+)?[^\s\"',;}]{8,}"
)
# A bare ``Bearer abc`` / ``Basic abc`` wherever it appears.
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_HTML = re.compile(r"(?i)<!doctype\s+html|<html\b|<head\b|<body\b")
_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title\s*>")
_H1 = re.compile(r"(?is)<h1[^>]*>(.*?)</h1\s*>")
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def env_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of :data:`SECRET_ENV` set in ``environ`` (``os.environ`` when ``None``)."""
    env = os.environ if environ is None else environ
    return tuple(value for name in SECRET_ENV if (value := env.get(name)))


def looks_like_html(text: str) -> bool:
    """Whether ``text`` holds an HTML page (a proxy's or web server's error page)."""
    return _HTML.search(text[:MAX_RAW_LEN]) is not None


def without_html(text: str) -> str:
    """``text`` with an HTML page in it (a proxy's or web server's error page) replaced
    by the page's title: ``HTTP 500: <!doctype html>...`` → ``HTTP 500: Internal Server
    Error``."""
    match = _HTML.search(text)
    if match is None:
        return text
    return text[: match.start()] + (html_title(text[match.start() :]) or "HTML page")


def html_title(text: str) -> str:
    """The words of an HTML page's ``<title>`` (else its first ``<h1>``), or ``""``."""
    for pattern in (_TITLE, _H1):
        match = pattern.search(text)
        if match:
            words = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", match.group(1)))).strip()
            if words:
                return words
    return ""


def scrub(
    text: str, secrets: Iterable[str | None] = (), *, environ: Mapping[str, str] | None = None
) -> str:
    """``text`` with every secret replaced by ``***``: the given ones, those of the
    environment (:data:`SECRET_ENV`) and header-like ``name: value`` credentials.

    Args:
        text: Upstream text.
        secrets: Further secret values (a source's own keys, a probe's header values).
        environ: Environment to read (``os.environ`` when ``None``).

    Returns:
        The text, whole length, secrets masked.
    """
    for value in _known(secrets, environ):
        text = text.replace(value, MASK)
    text = _HEADER_VALUE.sub(lambda m: m.group(1) + MASK, text)
    return _SCHEME_VALUE.sub(lambda m: f"{m.group(1)} {MASK}", text)


def public_text(
    text: str,
    secrets: Iterable[str | None] = (),
    *,
    limit: int = MAX_ERROR_LEN,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Upstream text fit for a pane: an HTML page becomes its title, secrets are
    scrubbed, *then* the text is cut to one line of at most ``limit`` characters.

    Args:
        text: Upstream text (an error body, an SDK message).
        secrets: Further secret values to scrub (see :func:`scrub`).
        limit: Longest result.
        environ: Environment to read (``os.environ`` when ``None``).

    Returns:
        One short line with no secret in it.
    """
    secrets = tuple(secrets)  # read twice: at the raw cut and in the scrub
    text = _raw_cut(text, secrets, environ)
    text = _SPACE.sub(" ", scrub(without_html(text), secrets, environ=environ)).strip()
    if len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def _known(secrets: Iterable[str | None], environ: Mapping[str, str] | None) -> list[str]:
    """The secrets to mask, longest first (a longer secret may hold a shorter)."""
    values = {s for s in (*secrets, *env_secrets(environ)) if s and len(s) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def _raw_cut(text: str, secrets: Iterable[str | None], environ: Mapping[str, str] | None) -> str:
    """``text`` within :data:`MAX_RAW_LEN`, never ending in part of a secret.

    The cut moves before a known secret it would split (its first characters would no
    longer be found to mask), and a value the cut leaves shorter than a secret is dropped (an unknown
    credential cut short would no longer look like one). What lay 16 KiB in can still
    reach the pane: whitespace and HTML collapse.
    """
    if len(text) <= MAX_RAW_LEN:
        return text
    known = _known(secrets, environ)
    cut, moved = MAX_RAW_LEN, True
    while moved:  # the cut moves before any known secret it splits (each moves it once)
        moved = False
        for value in known:
            start = text.find(value, max(0, cut - len(value) + 1), cut + len(value) - 1)
            if start != -1 and start < cut:
                cut, moved = start, True
    head = text[:cut]
    # The value the cut ends in, if shorter than a secret: a credential's first
    # characters would no longer look like one to the scrub. A longer one still does.
    run = 0
    while run < min(MIN_SECRET_LEN, len(head)) and not _ends_value(head[-1 - run]):
        run += 1
    if run < MIN_SECRET_LEN:
        head = head[: len(head) - run]
    return head + "…"


def _ends_value(char: str) -> bool:
    """Whether ``char`` ends a header-shaped value (see ``_HEADER_VALUE``)."""
    return char.isspace() or char in "\"',;}"
