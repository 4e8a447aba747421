"""The SQLite backend of the verdict store (the embedded default): a file, Python's own
``sqlite3``, write-ahead logging so that readers (an export) do not block the review page."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.exceptions import StoreError
from service.review.store import VerdictStore


class SqliteStore(VerdictStore):
    """Verdicts in an SQLite file (created with its folder when missing)."""

    placeholder = "?"

    def __init__(self, path: Path) -> None:
        super().__init__(f"sqlite:///{path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit off, explicit transactions: Python's sqlite3 opens them on writes
            self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the verdict database {path}: {exc}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.description}: {exc}") from None

    def _commit(self) -> None:
        self._db.commit()

    def _rollback(self) -> None:
        self._db.rollback()

    def _lock_schema(self) -> None:
        self._execute("BEGIN IMMEDIATE")  # the write lock, taken before reading the version

    def _to_db(self, value: datetime) -> Any:
        return value.astimezone(UTC).isoformat()

    def _from_db(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(str(value))

    def close(self) -> None:
        self._db.close()
