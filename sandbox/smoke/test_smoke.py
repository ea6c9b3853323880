"""Smoke tests of a demo service, run after a deployment (``[[smoke]]`` in the config the
sandbox writes): health, cart and checkout through the service's front proxy.

``SMOKE_BASE_URL`` names the proxy (``http://127.0.0.1:PORT``). A bad release answers
some requests 500: checkout, tried :data:`CHECKOUT_TRIES` times, fails on the first.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

CHECKOUT_TRIES = 20
"""Checkouts in a row that must all succeed (a 15 % error rate cannot pass)."""
TIMEOUT = 5.0


def base_url() -> str:
    url = os.environ.get("SMOKE_BASE_URL", "")
    assert url.startswith("http://"), "SMOKE_BASE_URL must name the service (http://...)"
    return url.rstrip("/")


def get(path: str) -> tuple[int, Any]:
    """``(status, JSON body)`` of a GET (an HTTP error status is an answer too)."""
    try:
        with urllib.request.urlopen(base_url() + path, timeout=TIMEOUT) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body or b"null")
        except ValueError:
            return error.code, None


def test_health() -> None:
    status, body = get("/health")
    assert status == 200, f"/health answered {status}"
    assert body["status"] == "ok"


def test_cart() -> None:
    for _ in range(5):
        status, body = get("/cart")
        error = body.get("error") if isinstance(body, dict) else None
        assert status == 200, f"/cart answered {status} {error or ''}".rstrip()


def test_checkout() -> None:
    for attempt in range(1, CHECKOUT_TRIES + 1):
        status, body = get("/checkout")
        error = body.get("error") if isinstance(body, dict) else None
        assert status == 200, (
            f"checkout {attempt}/{CHECKOUT_TRIES} answered {status} {error or ''}".rstrip()
        )
