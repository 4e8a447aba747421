"""Which topics outputs go to: fixed names, or a new pair of topics every day as ALeRCE names
them.

ALeRCE's steps (their ``apf`` framework, ``DailyTopicStrategy``) name a topic from a format with
one ``%s`` and today's UTC date in a ``strftime`` format; from a change hour (UTC) on, the next
day's topic is listed as well. Their producer writes every message to every topic it lists (the
earlier days' too, up to a retention in days), and their consumer subscribes to that same list
(their steps start a new topic at its beginning).

We write each output once, to the newest topic their strategy lists at the moment the output is
first produced: before the change hour the topic of today's date, from the change hour on the
topic of tomorrow's. A consumer with their strategy lists that topic at that moment and keeps
listing it afterwards, so it reads every output, and reads it once (from their producer, a
consumer reads a message once per listed topic it went to). ``retention_days`` does not change
where we write; it is kept for their settings (``PRODUCER_RETENTION_DAYS``): how many days back
their consumers keep listing topics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple, Protocol

from models.exceptions import ConfigurationError

Clock = Callable[[], datetime]

# ALeRCE's DailyTopicStrategy defaults (apf, libs/apf/apf/core/topic_management.py;
# tests/unit/upstream/alerce_topics.json keeps them with the upstream commit)
ALERCE_TOPIC_FORMAT = "ztf_%s_programid1"
ALERCE_DATE_FORMAT = "%Y%m%d"
ALERCE_CHANGE_HOUR = 22
ALERCE_RETENTION_DAYS = 8

_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's rule for a topic name
_EVER = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


class Topics(NamedTuple):
    """Where the outputs of one moment go."""

    scores: str
    dead_letters: str


class TopicStrategy(Protocol):
    def at(self, when: datetime) -> Topics:
        """The topics of outputs first produced at ``when``."""

    def period(self, when: datetime) -> tuple[datetime, datetime]:
        """The span (start inclusive, end exclusive, UTC) around ``when`` with the same topics."""


@dataclass(frozen=True)
class FixedTopics:
    """The same two topics at every moment."""

    scores: str
    dead_letters: str

    def at(self, when: datetime) -> Topics:
        return Topics(self.scores, self.dead_letters)

    def period(self, when: datetime) -> tuple[datetime, datetime]:
        return _EVER


@dataclass(frozen=True)
class DailyTopics:
    """A topic pair a day, named as ALeRCE's ``DailyTopicStrategy`` names it (see the module's
    docstring). The defaults are theirs."""

    scores_format: str
    dead_letters_format: str
    date_format: str = ALERCE_DATE_FORMAT
    change_hour: int = ALERCE_CHANGE_HOUR
    retention_days: int = ALERCE_RETENTION_DAYS

    def __post_init__(self) -> None:
        check_daily(
            (self.scores_format, self.dead_letters_format), self.date_format, self.change_hour
        )
        if self.retention_days < 1:
            raise ConfigurationError(f"retention_days {self.retention_days} is not 1 or more")

    def day(self, when: datetime) -> date:
        """The date in the name of the topic written at ``when``: today's (UTC) before the
        change hour, tomorrow's from it on."""
        return (_utc(when) + timedelta(hours=24 - self.change_hour)).date()

    def name(self, topic_format: str, day: date) -> str:
        """One topic's name for ``day``."""
        return topic_format % day.strftime(self.date_format)

    def at(self, when: datetime) -> Topics:
        day = self.day(when)
        return Topics(self.name(self.scores_format, day), self.name(self.dead_letters_format, day))

    def period(self, when: datetime) -> tuple[datetime, datetime]:
        day = self.day(when)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(
            hours=24 - self.change_hour
        )
        return start, start + timedelta(days=1)


def check_daily(formats: tuple[str, ...], date_format: str, change_hour: int) -> None:
    """Raise :class:`ConfigurationError` (one line) unless each format has one ``%s`` and gives
    a legal Kafka topic name with ``date_format``, and ``change_hour`` is an hour of a day."""
    if not 0 <= change_hour <= 23:
        raise ConfigurationError(f"change_hour {change_hour} is not an hour from 0 to 23")
    sample = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).strftime(date_format)
    for topic_format in formats:
        if topic_format.replace("%%", "").count("%s") != 1:
            raise ConfigurationError(
                f"topic format {topic_format!r} needs exactly one %s (where the date goes)"
            )
        try:
            name = topic_format % sample
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"topic format {topic_format!r} has a % other than its %s"
            ) from None
        if not _LEGAL_TOPIC.fullmatch(name):
            raise ConfigurationError(
                f"topic format {topic_format!r} with date format {date_format!r} gives "
                f"{name!r}, not a Kafka topic name (letters, digits, . _ -; 249 at most)"
            )


class CurrentTopics:
    """The topics of now, by ``clock``: the names are made once per period of the strategy
    (a day) and the clock is read once per call - cheap enough for every batch."""

    __slots__ = ("_end", "_start", "_topics", "clock", "strategy")

    def __init__(self, strategy: TopicStrategy, clock: Clock = utc_now) -> None:
        self.strategy = strategy
        self.clock = clock
        self._start, self._end = _EVER[1], _EVER[1]  # nothing cached yet
        self._topics = Topics("", "")

    def __call__(self) -> Topics:
        now = _utc(self.clock())
        if self._start <= now < self._end:
            return self._topics
        self._topics = self.strategy.at(now)
        self._start, self._end = self.strategy.period(now)
        return self._topics


def _utc(when: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC, as ALeRCE's ``utcnow``)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
