"""The sandbox's Sentry: events from real sentry-sdk service processes, read over httpx."""

from __future__ import annotations

import gzip
import json
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sandbox.service import ServiceProcess
from tests.integration.conftest import wait_until

if TYPE_CHECKING:
    from sandbox.sentry_api import SentryServer

pytestmark = pytest.mark.integration

LINK_RE = re.compile(
    r'^<(?P<prev_url>[^>]+)>; rel="previous"; results="(?P<prev_results>true|false)"; '
    r'cursor="(?P<prev>0:\d+:1)", '
    r'<(?P<next_url>[^>]+)>; rel="next"; results="(?P<next_results>true|false)"; '
    r'cursor="(?P<next>0:\d+:0)"$'
)


def _api(server: SentryServer, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/0/organizations/{server.org}/{path}",
        params=params,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=5,
    )


def _hit(service: ServiceProcess, count: int) -> int:
    """Send ``count`` requests straight to a version; return how many answered 500."""
    failures = 0
    with httpx.Client(timeout=5) as client:
        for i in range(count):
            resp = client.get(f"{service.url}/checkout", headers={"X-User-Id": f"user-{i % 3}"})
            failures += resp.status_code == 500
    return failures


def test_new_issue_for_release_v2(sentry_server: SentryServer) -> None:
    before = len(sentry_server.app.events())
    started = time.time()
    dsn = sentry_server.dsn("web")
    v1 = ServiceProcess(
        "web", "v1", {"error_ratio": 0.1, "exceptions": ["TimeoutError"]}, dsn=dsn
    ).start(wait=False)
    v2 = ServiceProcess(
        "web",
        "v2",
        {"error_ratio": 0.25, "exceptions": ["CheckoutFailedError"], "latency": {"base_ms": 1}},
        dsn=dsn,
    ).start(wait=False)
    with v1, v2:
        v1.wait_ready()
        v2.wait_ready()
        failed_v1 = _hit(v1, 20)
        failed_v2 = _hit(v2, 40)
        assert failed_v1 == 2 and failed_v2 == 10
        assert sentry_server.app.wait_for_events(before + failed_v1 + failed_v2, timeout=15)

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))
    resp = _api(
        sentry_server,
        "issues/",
        query=f"release:v2 is:unresolved firstSeen:>{since}",
        project=1,
        environment="sandbox",
        statsPeriod="1h",
    )
    assert resp.status_code == 200
    issues = resp.json()
    assert len(issues) == 1
    (issue,) = issues
    print(f"v2 issue {issue['shortId']}: count={issue['count']} userCount={issue['userCount']}")
    assert issue["title"] == "CheckoutFailedError: simulated failure of web v2 on GET /checkout"
    assert issue["culprit"] == "sandbox.service in _fail"
    assert issue["count"] == str(failed_v2)
    assert issue["userCount"] == 3
    assert issue["level"] == "error"
    assert issue["status"] == "unresolved"
    assert issue["project"] == {"id": "1", "name": "web", "slug": "web", "platform": "python"}
    assert issue["firstRelease"]["version"] == "v2"
    assert issue["metadata"]["type"] == "CheckoutFailedError"
    assert re.fullmatch(r"WEB-[0-9A-Z]+", issue["shortId"])
    assert issue["firstSeen"].endswith("Z") and issue["lastSeen"] >= issue["firstSeen"]
    assert len(issue["stats"]["24h"]) == 24

    # The old release's issue is not v2's, and relative firstSeen works too.
    v1_issues = _api(sentry_server, "issues/", query="release:v1 firstSeen:-1h").json()
    assert [i["metadata"]["type"] for i in v1_issues] == ["TimeoutError"]
    assert v1_issues[0]["count"] == str(failed_v1)
    assert _api(sentry_server, "issues/", query="release:v2", environment="prod").json() == []
    assert _api(sentry_server, "issues/", query="release:v2 firstSeen:+1h").json() == []

    stats = _api(
        sentry_server,
        "events-stats/",
        query="release:v2",
        interval="1m",
        statsPeriod="10m",
        yAxis="count()",
    )
    assert stats.status_code == 200
    body = stats.json()
    assert sum(point[1][0]["count"] for point in body["data"]) == failed_v2
    assert all(isinstance(ts, int) for ts, _ in body["data"])
    assert body["start"] <= body["data"][0][0] and body["end"] >= body["data"][-1][0]


def test_pagination_walks_every_page(sentry_server: SentryServer) -> None:
    names = [f"Scripted{i:02d}Error" for i in range(12)]
    with ServiceProcess(
        "api",
        "v3",
        {"error_ratio": 1.0, "exceptions": names, "latency": {"base_ms": 0, "jitter_ms": 0}},
        dsn=sentry_server.dsn("api"),
    ) as service:
        before = len(sentry_server.app.events())
        assert _hit(service, len(names)) == len(names)
        assert sentry_server.app.wait_for_events(before + len(names), timeout=15)

    url: str | None = None
    pages: list[list[str]] = []
    links: list[dict[str, str]] = []
    for _ in range(10):
        if url is None:
            resp = _api(sentry_server, "issues/", query="release:v3", project=2, limit=5)
        else:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {sentry_server.token}"})
        assert resp.status_code == 200
        match = LINK_RE.match(resp.headers["Link"])
        assert match, resp.headers["Link"]
        links.append(match.groupdict())
        pages.append([issue["id"] for issue in resp.json()])
        if match["next_results"] == "false":
            break
        url = match["next_url"]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert len({i for p in pages for i in p}) == len(names)
    first = links[0]
    assert first["prev"] == "0:0:1" and first["prev_results"] == "false"
    assert first["next"] == "0:5:0" and first["next_results"] == "true"
    assert first["next_url"].endswith("?query=release%3Av3&project=2&limit=5&cursor=0:5:0")
    assert links[1]["prev"] == "0:0:1" and links[1]["prev_results"] == "true"
    assert links[2]["next"] == "0:15:0" and links[2]["next_results"] == "false"
    # Following "previous" from the last page gives the middle page back.
    back = httpx.get(
        links[2]["prev_url"], headers={"Authorization": f"Bearer {sentry_server.token}"}
    )
    assert [i["id"] for i in back.json()] == pages[1]


def test_web_api_needs_the_token(sentry_server: SentryServer) -> None:
    url = f"{sentry_server.url}/api/0/organizations/{sentry_server.org}/issues/"
    missing = httpx.get(url)
    assert missing.status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Invalid token"}
    ok = _api(sentry_server, "issues/")
    assert ok.status_code == 200
    for name in ("Limit", "Remaining", "Reset", "ConcurrentLimit", "ConcurrentRemaining"):
        assert f"X-Sentry-Rate-Limit-{name}" in ok.headers
    assert int(ok.headers["X-Sentry-Rate-Limit-Reset"]) >= int(time.time())


def test_unsupported_search_is_a_clear_400(sentry_server: SentryServer) -> None:
    resp = _api(sentry_server, "issues/", query="assigned_or_suggested:me")
    assert resp.status_code == 400
    assert "assigned_or_suggested" in resp.json()["detail"]
    resp = _api(sentry_server, "events-stats/", yAxis="p95(transaction.duration)")
    assert resp.status_code == 400


def test_envelopes_plain_and_gzip(sentry_server: SentryServer) -> None:
    project = sentry_server.app.project_id("api")
    event = {
        "event_id": "a" * 32,
        "level": "warning",
        "release": "manual-1",
        "environment": "sandbox",
        "message": "disk almost full",
        "platform": "python",
    }
    payload = json.dumps(event).encode()
    envelope = (
        json.dumps({"event_id": event["event_id"]}).encode()
        + b"\n"
        + json.dumps({"type": "event", "length": len(payload)}).encode()
        + b"\n"
        + payload
        + b"\n"
        + b'{"type":"client_report"}\n{"discarded_events":[]}\n'
    )
    url = f"{sentry_server.url}/api/{project}/envelope/"
    auth = {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={sentry_server.app.public_key}"}
    plain = httpx.post(url, content=envelope, headers=auth)
    assert plain.status_code == 200 and plain.json() == {"id": "a" * 32}
    zipped = httpx.post(
        url, content=gzip.compress(envelope), headers={**auth, "Content-Encoding": "gzip"}
    )
    assert zipped.status_code == 200
    bad_key = httpx.post(url, content=envelope, headers={"X-Sentry-Auth": "Sentry sentry_key=x"})
    assert bad_key.status_code == 401
    issues = wait_until(
        lambda: _api(sentry_server, "issues/", query="release:manual-1").json(), timeout=2
    )
    assert len(issues) == 1
    assert issues[0]["title"] == "disk almost full"
    assert issues[0]["count"] == "2"
    assert issues[0]["level"] == "warning"
    assert issues[0]["type"] == "default"
