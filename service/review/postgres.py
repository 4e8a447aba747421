"""The PostgreSQL backend of the verdict store (a team's shared store): psycopg, from the
``review`` extra, imported when a ``postgresql://`` store is opened."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.exceptions import StoreError
from service.review.store import VerdictStore, describe_dsn


class PostgresStore(VerdictStore):
    """Verdicts in a PostgreSQL database (a team's shared store); psycopg from the ``review``
    extra."""

    def __init__(self, dsn: str) -> None:
        from models.extras import REVIEW, require

        psycopg = require("psycopg", REVIEW, "a PostgreSQL verdict store")
        super().__init__(describe_dsn(dsn))
        self._errors = psycopg.Error
        try:
            # lock_timeout: a migration waiting for another one fails instead of hanging
            self._db = psycopg.connect(dsn, connect_timeout=10, options="-c lock_timeout=30s")
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            raise StoreError(f"cannot connect to {self.description}: {detail}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cursor = self._db.execute(sql, tuple(params))
            return list(cursor.fetchall()) if cursor.description else []
        except self._errors as exc:
            detail = " ".join(str(exc).split())
            raise StoreError(f"{self.description}: {detail}") from None

    def _commit(self) -> None:
        self._db.commit()

    def _rollback(self) -> None:
        self._db.rollback()

    def _lock_schema(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(733033)")  # any fixed key: ours

    def close(self) -> None:
        self._db.close()
