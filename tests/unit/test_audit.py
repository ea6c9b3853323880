"""The audit log fails safe: a short write sends nothing and leaves no torn line; no audit
failure on any path raises out of the engine; files are 0600, folders 0700."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.actions import ActionEngine, ApiCall, Outcome, Verb
from engine.audit import AuditError, AuditLog, default_audit_path
from tests.fakes import T0
from tests.unit.test_actions import Recorder, in_flight, make_plan, state

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT = Path(__file__).resolve().parents[2]


def engine(log: Path, executor: Recorder, *, read_only: bool = False) -> ActionEngine:
    return ActionEngine(
        audit=AuditLog(log),
        executor=executor,
        read_only=read_only,
        operator=lambda: "alice",
        clock=lambda: T0,
    )


def rollback() -> Any:
    return make_plan(Verb.ROLLBACK, state(in_flight()))


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each of which must be whole JSON (no torn line)."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"torn last line: {raw[-80:]!r}"
    return [json.loads(line) for line in raw.decode().splitlines()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """An audit log holding one earlier entry (written before any loop runs)."""
    path = tmp_path / "state" / "audit.jsonl"
    AuditLog(path).write({"phase": "earlier", "id": "e0"})
    return path


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A log path whose folder is a file: every write fails."""
    (tmp_path / "state").write_text("a file where the folder should be")
    return tmp_path / "state" / "audit.jsonl"


# ---- short writes ---------------------------------------------------------------------


async def test_a_short_intent_write_refuses_sends_nothing_and_leaves_no_torn_line(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def half(fd: int, data: Any) -> int:
        if b'"phase":"intent"' in bytes(data):  # only the intent: disk full right there
            return real_write(fd, bytes(data)[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half)
    rec = Recorder()
    result = await engine(log, rec).request(rollback())
    assert result.outcome is Outcome.REFUSED
    assert "not sent" in result.message and "audit log could not be written" in result.message
    assert "short write" in result.message and result.audit_error
    assert rec.calls == []
    entries = await asyncio.to_thread(lines_of, log)
    assert [e["phase"] for e in entries] == ["earlier"]
    # The next entry starts on a clean line: nothing was glued onto a torn one.
    monkeypatch.setattr(os, "write", real_write)
    result = await engine(log, rec).request(rollback())
    assert result.outcome is Outcome.DONE and len(rec.calls) == 1
    entries = await asyncio.to_thread(lines_of, log)
    assert [e["phase"] for e in entries] == ["earlier", "intent", "result"]


RLIMIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys
    from pathlib import Path
    from engine.actions import ActionEngine, Verb
    from engine.audit import AuditLog
    from tests.fakes import T0
    from tests.fakes import T0
    from tests.unit.test_actions import Recorder, in_flight, make_plan, state

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write / EFBIG, not a kill
    log = Path(sys.argv[1])
    size = log.stat().st_size
    # Room for 40 more bytes: the intent entry (several hundred) is cut short by the kernel.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, resource.RLIM_INFINITY))
    rec = Recorder()
    engine = ActionEngine(
        audit=AuditLog(log), executor=rec, read_only=False,
        operator=lambda: "alice", clock=lambda: T0,
    )
    result = asyncio.run(engine.request(make_plan(Verb.ROLLBACK, state(in_flight()))))
    print(json.dumps({"outcome": result.outcome.value, "message": result.message,
                      "calls": len(rec.calls), "size": log.stat().st_size, "before": size}))
    """
)


def test_a_real_short_write_at_the_file_size_limit_sends_nothing(log: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_SCRIPT, str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["outcome"] == "refused" and out["calls"] == 0, out
    assert "audit log could not be written" in out["message"]
    assert out["size"] == out["before"]  # truncated back to where the line began
    assert [e["phase"] for e in lines_of(log)] == ["earlier"]


# ---- no audit failure raises out of the engine -----------------------------------------


async def test_an_unwritable_log_while_refusing_reports_it_and_never_raises(
    unwritable: Path,
) -> None:
    rec = Recorder()
    e = engine(unwritable, rec, read_only=True)
    for automatic in (False, True):
        result = await e.request(rollback(), automatic=automatic)
        assert result.outcome is Outcome.REFUSED
        assert result.message.startswith("read-only:")
        assert "audit log could not be written" in result.message
        assert result.audit_error and str(unwritable) in result.audit_error
    # A disabled plan is refused the same way.
    e.read_only = False
    result = await e.request(make_plan(Verb.PAUSE, state(in_flight())))
    assert result.outcome is Outcome.REFUSED and result.audit_error
    assert rec.calls == []


async def test_record_and_declined_return_the_error_instead_of_raising(
    unwritable: Path, tmp_path: Path
) -> None:
    e = engine(unwritable, Recorder())
    error = await e.record("cancelled", action="rollback", targets=["demo/web"])
    assert error is not None and "cannot write the audit log" in error
    error = await e.declined(rollback())
    assert error is not None and "cannot write the audit log" in error
    # Written: None, and the declined entry names the action and its target.
    ok = engine(tmp_path / "ok" / "audit.jsonl", Recorder())
    assert await ok.record("cancelled", action="rollback") is None
    assert await ok.declined(rollback(), "operator said no") is None
    entries = ok.audit.read()
    assert [x["phase"] for x in entries] == ["cancelled", "declined"]
    declined = entries[1]
    assert declined["operator"] == "alice" and declined["action"] == "rollback"
    assert declined["target"]["service"] == "web" and declined["reason"] == "operator said no"


async def test_a_result_that_cannot_be_written_says_the_call_was_sent(tmp_path: Path) -> None:
    log = tmp_path / "state" / "audit.jsonl"

    class BreakTheLog(Recorder):
        """Sends, then the log becomes unwritable (a folder where the file was)."""

        def __call__(self, call: ApiCall) -> Mapping[str, Any]:
            log.unlink()
            log.mkdir()
            return super().__call__(call)

    rec = BreakTheLog()
    result = await engine(log, rec).request(rollback())
    assert len(rec.calls) == 1
    assert result.outcome is Outcome.DONE
    assert "the call WAS sent" in result.message and result.audit_error


def test_an_entry_that_cannot_be_encoded_is_an_audit_error(tmp_path: Path) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(AuditError, match="cannot encode"):
        AuditLog(tmp_path / "audit.jsonl").write({"phase": "x", "evidence": loop})


# ---- modes, reading --------------------------------------------------------------------


def test_an_existing_0644_log_becomes_0600_and_the_state_folder_0700(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    path = default_audit_path()
    assert path.is_relative_to(tmp_path)
    path.parent.mkdir(parents=True)
    path.parent.chmod(0o755)
    path.write_text('{"phase":"old"}\n')
    path.chmod(0o644)
    AuditLog(path).write({"phase": "new"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [e["phase"] for e in AuditLog(path).read()] == ["old", "new"]
    # A folder named in the config is left as its owner made it; the file is still 0600.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    AuditLog(shared / "audit.jsonl").write({"phase": "x"})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "audit.jsonl").stat().st_mode) == 0o600
    # A folder it creates is 0700.
    AuditLog(tmp_path / "new" / "audit.jsonl").write({"phase": "x"})
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_read_returns_whole_entries_and_skips_torn_or_foreign_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    assert AuditLog(path).read() == []
    AuditLog(path).write({"phase": "intent", "id": "a"})
    AuditLog(path).write({"phase": "result", "id": "a", "ok": True})
    with path.open("ab") as f:
        f.write(b'[1, 2]\n\xff not json\n{"phase":"intent","id":"b","tar')
    entries = AuditLog(path).read()
    assert [(e["phase"], e["id"]) for e in entries] == [("intent", "a"), ("result", "a")]
    assert all("time" in e for e in entries)
