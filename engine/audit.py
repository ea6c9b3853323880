"""The audit log: append-only JSON lines, each one flushed and fsync'd before we go on.

An *intent* entry is written before every API call and a *result* entry after it, so a
crash between the two leaves the intent on disk. Refused actions are written too. No
entry ever holds a credential: entries are built from plans, evidence and trimmed API
responses, never from clients or environments.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def default_audit_path() -> Path:
    """``$XDG_STATE_HOME/deploywatch/audit.jsonl`` (platformdirs' user state directory)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("deploywatch", appauthor=False)) / AUDIT_FILE


class AuditError(Exception):
    """The audit log cannot be written: no action may be sent without its intent entry."""


class AuditLog:
    """Append-only JSONL file; :meth:`write` returns once the line is on disk.

    Args:
        path: The file; its directory is created on first write (mode 0700).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry (``time`` added when absent) and fsync it.

        Raises:
            AuditError: The file cannot be opened or written.
        """
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
        line = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (line + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc
        return record

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (a torn last line is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries
