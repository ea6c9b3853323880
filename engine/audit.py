"""The audit log: append-only JSON lines, each one whole and fsync'd before we go on.

An *intent* entry is written before every API call and a *result* entry after it, so a
crash between the two leaves the intent on disk. Refused and declined actions are written
too. No entry ever holds a credential: entries are built from plans, evidence and trimmed
API responses, never from clients or environments.

A write either puts the whole line on disk (checked byte count, then fsync) or leaves
the file as it was (a short write is truncated away) and raises :class:`AuditError`; a
torn line is never left behind for the next entry to be glued onto.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
FILE_MODE = 0o600
DIR_MODE = 0o700


def default_audit_path() -> Path:
    """``$XDG_STATE_HOME/deploywatch/audit.jsonl`` (platformdirs' user state directory)."""
    import platformdirs

    return Path(platformdirs.user_state_dir("deploywatch", appauthor=False)) / AUDIT_FILE


class AuditError(Exception):
    """The audit log cannot be written: no action may be sent without its intent entry."""


class AuditLog:
    """Append-only JSONL file; :meth:`write` returns once the whole line is on disk.

    The file is mode 0600 (an existing file is put back to 0600 on every open). Its
    directory is created with mode 0700; deploywatch's own state directory is put back
    to 0700 too, a directory named in the config is left as its owner made it.

    Args:
        path: The file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dir_checked = False

    def write(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry (``time`` added when absent) and fsync it.

        Raises:
            AuditError: The entry cannot be encoded, or the file cannot be opened or
                written whole (then nothing of the entry is left in it).
        """
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
        try:
            line = json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise AuditError(f"cannot encode an audit entry for {self.path}: {exc}") from exc
        data = (line + "\n").encode()
        with self._lock:
            try:
                self._prepare_dir()
                fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
                )
                try:
                    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode otherwise
                    # Another deploywatch may share the file: hold it while a torn line
                    # could be truncated away. Best effort (some file systems have no locks).
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    self._append(fd, data)
                finally:
                    os.close(fd)  # closing releases the lock
            except OSError as exc:
                raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc
        return record

    @staticmethod
    def _append(fd: int, data: bytes) -> None:
        """Write ``data`` whole and fsync it, or truncate the file back to where it ended."""
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(
                    f"short write: {written} of {len(data)} bytes (disk full or file too large?)"
                )
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise

    def _prepare_dir(self) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            folder.chmod(DIR_MODE)
        elif (
            not self._dir_checked
            and folder == default_audit_path().parent
            and folder.stat().st_mode & 0o777 != DIR_MODE
        ):
            folder.chmod(DIR_MODE)
        self._dir_checked = True

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (a torn line is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries
