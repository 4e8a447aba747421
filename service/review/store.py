"""Experts' verdicts, stored durably: one schema (:data:`MIGRATIONS`, applied in order and
recorded in ``schema_version``) behind one interface, :class:`VerdictStore`, with two backends:
SQLite (the embedded default: a file, Python's own ``sqlite3``) and PostgreSQL (a team's shared
server, through psycopg from the ``review`` extra).

A verdict is one expert's judgement of one object of one survey: ``anomaly``, ``not`` (not an
anomaly: a known kind of object) or ``bogus`` (an artefact), with an optional free tag, the
score and the model versions that put the object in front of the expert, and when it was first
given and last changed. An expert has one current verdict per object: giving another replaces it
(``created_at`` kept, ``updated_at`` moved).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from models.exceptions import ConfigurationError, DataError
from service.exceptions import StoreError

VERDICTS: Final = ("anomaly", "not", "bogus")

# The schema, one migration per version, written in the SQL that SQLite and PostgreSQL share
# (SQLite takes any type name; timestamps are ISO-8601 UTC text in SQLite, timestamptz in
# PostgreSQL). Never edit a released migration: append the next one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: the verdicts, one per expert and object
        """CREATE TABLE verdicts (
            expert TEXT NOT NULL,
            survey TEXT NOT NULL,
            oid TEXT NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN ('anomaly', 'not', 'bogus')),
            tag TEXT,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
            PRIMARY KEY (expert, survey, oid)
        )""",
    ),
    (  # 2: what was scored: the score, its percentile and the model versions behind it
        "ALTER TABLE verdicts ADD COLUMN scorer TEXT",
        "ALTER TABLE verdicts ADD COLUMN top_class TEXT",
        "ALTER TABLE verdicts ADD COLUMN score DOUBLE PRECISION",
        "ALTER TABLE verdicts ADD COLUMN percentile DOUBLE PRECISION",
        "ALTER TABLE verdicts ADD COLUMN model_version TEXT",
        "ALTER TABLE verdicts ADD COLUMN model_checksum TEXT",
        "CREATE INDEX verdicts_by_expert ON verdicts (expert, updated_at)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


@dataclass(frozen=True)
class Verdict:
    """One expert's current verdict on one object."""

    expert: str
    survey: str
    oid: str
    verdict: str
    tag: str | None = None
    created_at: datetime | None = None  # set by the store when None
    updated_at: datetime | None = None
    scorer: str | None = None
    top_class: str | None = None
    score: float | None = None
    percentile: float | None = None
    model_version: str | None = None
    model_checksum: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ConfigurationError(
                f"unknown verdict {self.verdict!r} (one of {', '.join(VERDICTS)})"
            )
        if not self.expert.strip() or not self.oid.strip() or not self.survey.strip():
            raise ConfigurationError("a verdict needs an expert, a survey and an object id")

    def as_dict(self) -> dict[str, Any]:
        """The verdict's fields, timestamps as ISO-8601 UTC text (the export and topic form)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


COLUMNS: Final = tuple(f.name for f in fields(Verdict))
_UPDATED = tuple(c for c in COLUMNS if c not in ("expert", "survey", "oid", "created_at"))


class VerdictStore(ABC):
    """Verdicts in a database; opened by :func:`open_store`, migrated on opening."""

    placeholder = "%s"

    def __init__(self, description: str) -> None:
        self.description = description  # for messages: never a password

    # --- what a backend provides -------------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the current transaction; its rows (none for writes)."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _lock_schema(self) -> None:
        """Serialise migrations between processes (inside the migrating transaction)."""

    @abstractmethod
    def close(self) -> None: ...

    def _to_db(self, value: datetime) -> Any:
        return value

    def _from_db(self, value: Any) -> datetime | None:
        return value if value is None or isinstance(value, datetime) else None

    # --- the interface -----------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("%s", self.placeholder)

    def schema_version(self) -> int:
        """The version of the schema the database holds (0: none)."""
        rows = self._execute("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    def migrate(self) -> int:
        """Apply the migrations the database lacks, each in its own transaction; the version
        reached. A database newer than this code is an error, never touched."""
        try:
            self._lock_schema()  # two processes creating the table at once would collide
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            self._commit()
            for version, statements in enumerate(MIGRATIONS, start=1):
                self._lock_schema()
                current = self.schema_version()
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.description} holds verdict schema {current}, newer than this "
                        f"alert-anomaly knows ({SCHEMA_VERSION}): upgrade alert-anomaly"
                    )
                if current >= version:
                    self._rollback()
                    continue
                for statement in statements:
                    self._execute(statement)
                self._execute(self._sql("INSERT INTO schema_version VALUES (%s)"), (version,))
                self._commit()
        except BaseException:
            self._rollback()
            raise
        return self.schema_version()

    def record(self, verdict: Verdict) -> Verdict:
        """Store ``verdict`` as its expert's current one on the object (replacing any earlier
        one, whose ``created_at`` is kept); the verdict as stored."""
        now = datetime.now(UTC)
        values = {
            **{c: getattr(verdict, c) for c in COLUMNS},
            "created_at": verdict.created_at or now,
            "updated_at": verdict.updated_at or now,
        }
        params = [
            self._to_db(v) if isinstance(v, datetime) else v for v in (values[c] for c in COLUMNS)
        ]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _UPDATED)
        self._write(
            f"INSERT INTO verdicts ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
            f"ON CONFLICT (expert, survey, oid) DO UPDATE SET {updates}",
            params,
        )
        stored = self.verdicts(verdict.expert, oid=verdict.oid, survey=verdict.survey)
        return stored[0]

    def verdicts(
        self, expert: str | None = None, *, oid: str | None = None, survey: str | None = None
    ) -> list[Verdict]:
        """The stored verdicts (of ``expert``; of one object), oldest change first."""
        where, params = [], []
        for column, value in (("expert", expert), ("oid", oid), ("survey", survey)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT {', '.join(COLUMNS)} FROM verdicts{clause} "
            "ORDER BY updated_at, expert, survey, oid",
            params,
        )
        out = []
        for row in rows:
            values = dict(zip(COLUMNS, row, strict=True))
            values["created_at"] = self._from_db(values["created_at"])
            values["updated_at"] = self._from_db(values["updated_at"])
            out.append(Verdict(**values))
        return out

    def experts(self) -> list[str]:
        """The experts who gave verdicts."""
        return [str(r[0]) for r in self._read("SELECT DISTINCT expert FROM verdicts ORDER BY 1")]

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            rows = self._execute(self._sql(sql), params)
        finally:
            self._rollback()
        return rows

    def _write(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._execute(self._sql(sql), params)
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_dsn(dsn: str) -> str:
    """A database URL without its credentials (for messages)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def open_store(url: str, create: bool = True) -> VerdictStore:
    """The verdict store at ``url``, migrated to :data:`SCHEMA_VERSION`: a file path or
    ``sqlite:///PATH`` (SQLite), or ``postgresql://USER@HOST:PORT/DB`` (PostgreSQL).
    ``create=False``: a missing SQLite file is an error (a reader's typo makes no database)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    store: VerdictStore
    if scheme in ("postgresql", "postgres"):
        from service.review.postgres import PostgresStore

        store = PostgresStore(url)
    elif scheme in ("sqlite", ""):
        from service.review.sqlite import SqliteStore

        # a plain path; sqlite:///relative or sqlite:////absolute (SQLAlchemy's convention)
        path = (url.split(":///", 1)[1] if ":///" in url else "") if scheme else url
        if not path:
            raise ConfigurationError(f"no file in the database URL {url!r} (sqlite:///PATH)")
        if not create and not Path(path).is_file():
            raise DataError(f"no verdict database at {path} (give --db)")
        store = SqliteStore(Path(path))
    else:
        raise ConfigurationError(
            f"unknown database URL {describe_dsn(url)!r}: give a file, sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
