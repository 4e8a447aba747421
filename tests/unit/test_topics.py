"""Daily output topics as ALeRCE names them: the switch at the change hour (UTC) by an injected
clock, the names, the settings and their one-line errors, and our defaults against the facts
read from ALeRCE's code (tests/unit/upstream/alerce_topics.json).

The drift check against the upstream files themselves needs a clone of alercebroker/pipeline
(``ALERCE_PIPELINE_GIT``: its git directory); CI has none, so there it checks our code against
the committed facts only."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from models.exceptions import ConfigurationError
from service.config import OutputSettings, load_settings
from service.config.streams import topic_strategy
from service.exceptions import SettingsError
from service.io.topics import (
    ALERCE_TOPIC_FORMAT,
    CurrentTopics,
    DailyTopics,
    FixedTopics,
    Topics,
)
from tests.alerce_upstream import facts, needs_clone, upstream

FACTS = facts("topics")
DAILY = DailyTopics("scores_%s", "dlq_%s")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "day"),
    [
        (utc(2026, 12, 5, 0, 0), "20261205"),
        (utc(2026, 12, 5, 21, 59, 59, 999999), "20261205"),  # just before the change hour
        (utc(2026, 12, 5, 22, 0), "20261206"),  # at it
        (utc(2026, 12, 5, 23, 59, 59), "20261206"),  # after it
        (utc(2026, 12, 6, 0, 0), "20261206"),  # across midnight: the same topic
        (utc(2026, 12, 6, 21, 59), "20261206"),
        (utc(2026, 12, 31, 21, 59), "20261231"),  # a year's end
        (utc(2026, 12, 31, 22, 0), "20270101"),
        (utc(2027, 1, 1, 12, 0), "20270101"),
        (utc(2028, 2, 28, 22, 0), "20280229"),  # a leap day
    ],
)
def test_the_topic_switches_to_the_next_day_at_the_change_hour(when: datetime, day: str) -> None:
    assert DAILY.at(when) == Topics(f"scores_{day}", f"dlq_{day}")
    start, end = DAILY.period(when)
    assert start <= when < end
    assert end - start == timedelta(days=1)
    assert DAILY.at(start) == DAILY.at(end - timedelta(microseconds=1)) == DAILY.at(when)
    assert DAILY.at(end) != DAILY.at(when)


def test_times_are_utc_whatever_the_clock_s_zone() -> None:
    chile = timezone(timedelta(hours=-3))
    at_switch = datetime(2026, 12, 5, 19, 0, tzinfo=chile)  # 22:00 UTC
    assert DAILY.at(at_switch).scores == "scores_20261206"
    assert DAILY.at(at_switch - timedelta(seconds=1)).scores == "scores_20261205"
    assert DAILY.at(datetime(2026, 12, 5, 22, 0)).scores == "scores_20261206"  # naive: UTC


@pytest.mark.parametrize(
    ("hour", "before", "after"), [(0, "20261206", "20261206"), (23, "20261205", "20261206")]
)
def test_the_change_hour_s_edges(hour: int, before: str, after: str) -> None:
    strategy = DailyTopics("t_%s", "d_%s", change_hour=hour)
    assert strategy.at(utc(2026, 12, 5, 22, 59)).scores == f"t_{before}"
    assert strategy.at(utc(2026, 12, 5, 23, 0)).scores == f"t_{after}"


def alerce_lists(strategy: DailyTopics, started: datetime, when: datetime) -> set[str]:
    """The topics a consumer with ALeRCE's strategy, running since ``started``, lists at
    ``when`` (the facts of alerce_topics.json; within the retention): the topic of the start's
    date, and each next day's from that day's change hour on."""
    first, today = started.date(), when.date()
    days = [first + timedelta(days=n) for n in range((today - first).days + 1)]
    if when.hour >= strategy.change_hour:
        days.append(today + timedelta(days=1))
    return {strategy.name(strategy.scores_format, d) for d in days}


def test_an_alerce_consumer_lists_the_topic_of_every_output_when_it_is_written() -> None:
    """Whenever their consumer started, the topic we write at a moment is among the ones it
    lists at that moment (and it is the newest of them): it reads every output."""
    moments = [utc(2026, 12, 30, 0) + timedelta(minutes=20 * n) for n in range(3 * 72)]
    for when in moments:
        topic = DAILY.at(when).scores
        for started in moments:
            if started > when:
                break
            listed = alerce_lists(DAILY, started, when)
            assert topic in listed, (started, when)
            assert topic == max(listed)


def test_current_topics_makes_names_once_a_day_and_reads_the_clock_once_a_call() -> None:
    made: list[datetime] = []

    class Counting(DailyTopics):
        def at(self, when: datetime) -> Topics:
            made.append(when)
            return super().at(when)

    now = [utc(2026, 12, 5, 21, 0)]
    reads = []

    def clock() -> datetime:
        reads.append(now[0])
        return now[0]

    current = CurrentTopics(Counting("s_%s", "d_%s"), clock)
    seen = []
    for _ in range(4 * 60):  # four hours, a call a minute, across the change hour
        seen.append(current().scores)
        now[0] += timedelta(minutes=1)
    assert len(reads) == 4 * 60
    assert len(made) == 2  # one per day's topics
    assert seen == ["s_20261205"] * 60 + ["s_20261206"] * 180
    now[0] = utc(2026, 12, 5, 21, 59)  # a clock set back: the earlier day's topics again
    assert current() == Topics("s_20261205", "d_20261205")


def test_fixed_topics_never_change() -> None:
    current = CurrentTopics(FixedTopics("a", "b"), lambda: utc(2026, 12, 5, 22))
    assert current() == Topics("a", "b")
    assert FixedTopics("a", "b").at(utc(1, 1, 1)) == Topics("a", "b")


def test_settings_make_the_strategy_and_derive_the_daily_names() -> None:
    fixed = load_settings(None, {})
    assert topic_strategy(fixed.output) == FixedTopics("anomaly-scores", "anomaly-scores-dlq")
    daily = load_settings(None, {"output": {"topic_strategy": "daily"}})
    assert topic_strategy(daily.output).at(utc(2026, 12, 5, 22)) == Topics(
        "anomaly-scores_20261206", "anomaly-scores-dlq_20261206"
    )
    named = load_settings(
        None,
        {
            "output": {
                "topic_strategy": "daily",
                "topic_format": "lc_anomaly_%s",
                "dead_letter_topic_format": "lc_anomaly_dlq_%s",
                "date_format": "%Y-%m-%d",
                "change_hour": 23,
                "retention_days": 1,
            }
        },
    )
    assert topic_strategy(named.output).at(utc(2026, 12, 31, 23)) == Topics(
        "lc_anomaly_2027-01-01", "lc_anomaly_dlq_2027-01-01"
    )


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"topic_format": "scores"}, "topic format 'scores' needs exactly one %s"),
        ({"topic_format": "a_%s_%s"}, "needs exactly one %s"),
        ({"dead_letter_topic_format": "dlq_%d_%s"}, "has a % other than its %s"),
        ({"change_hour": 24}, "change_hour 24 is not an hour from 0 to 23"),
        ({"change_hour": -1}, "change_hour -1 is not an hour"),
        ({"topic_format": "a/%s"}, "gives 'a/20261231', not a Kafka topic name"),
        ({"date_format": "%Y %m"}, "not a Kafka topic name"),
        ({"retention_days": 0}, "output.retention_days"),
    ],
)
def test_daily_settings_are_checked_in_one_line(output: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match="invalid setting output") as caught:
        load_settings(None, {"output": {"topic_strategy": "daily", **output}})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_daily_settings_without_the_daily_strategy_are_an_error() -> None:
    with pytest.raises(SettingsError, match="change_hour is for topic_strategy daily"):
        load_settings(None, {"output": {"change_hour": 23}})


def test_our_defaults_and_names_are_alerces() -> None:
    """Drift: the strategy's defaults, and the settings naming ALeRCE's variables, against the
    facts read from their code; their documented example gives the topic names it should."""
    defaults = FACTS["strategy"]["defaults"]
    assert defaults["topic_format"] == ALERCE_TOPIC_FORMAT
    ours = DailyTopics("x_%s", "y_%s")
    assert (ours.date_format, ours.change_hour, ours.retention_days) == (
        defaults["date_format"],
        defaults["change_hour"],
        defaults["retention_days"],
    )
    fields = OutputSettings.model_fields
    for parameter, variable in FACTS["step_settings"]["parameters_from_environment"].items():
        assert variable in (fields[parameter].description or ""), parameter
        if parameter in defaults and parameter != "topic_format":
            assert fields[parameter].default == defaults[parameter], parameter
    example = FACTS["documented_example"]
    theirs = DailyTopics(
        example["PRODUCER_TOPIC_FORMAT"],
        "dlq_%s",
        example["PRODUCER_DATE_FORMAT"],
        example["PRODUCER_CHANGE_HOUR"],
        example["PRODUCER_RETENTION_DAYS"],
    )
    assert theirs.at(utc(2026, 12, 5, 22, 59)).scores == "lc_classifier_20261205"
    assert theirs.at(utc(2026, 12, 5, 23, 0)).scores == "lc_classifier_20261206"


def test_daily_topics_refuse_what_apf_would_fail_on() -> None:
    with pytest.raises(ConfigurationError, match="retention_days 0"):
        DailyTopics("a_%s", "b_%s", retention_days=0)


@needs_clone
def test_the_facts_are_still_upstream_s() -> None:
    """The committed facts against the upstream files themselves: the strategy's defaults (read
    from its signature) and the environment variables the anomaly step's settings give it."""
    strategy = FACTS["strategy"]
    tree = ast.parse(upstream(strategy["file"]))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == strategy["class"]]
    [init] = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    names = [a.arg for a in init.args.args[-len(init.args.defaults) :]]
    values = [ast.literal_eval(d) for d in init.args.defaults]
    assert dict(zip(names, values, strict=True)) == strategy["defaults"]
    settings = upstream(FACTS["step_settings"]["file"])
    for parameter, variable in FACTS["step_settings"]["parameters_from_environment"].items():
        assert f'"{parameter}"' in settings
        assert f'os.environ["{variable}"]' in settings
    assert FACTS["step_settings"]["strategy_class_default"] in settings
    assert FACTS["step_settings"]["strategy_class_variable"] in settings


def test_a_date_is_named_by_the_date_format() -> None:
    assert DAILY.name("x_%s", date(2027, 1, 1)) == "x_20270101"
