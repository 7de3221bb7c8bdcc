"""Windowed aggregations against a brute-force reference: a plain loop over the events.

Deterministic random events (some nulls, repeated event times with different created times, exact
ties) and entity rows on the edges of the windows (equal to an event time, exactly one window after
one, before any data, unknown users). Every training-set cell is compared with the reference, then
online values after materialization are compared with the reference at the materialization end.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from featurestore import FeatureStore
from featurestore.online.retrieval import FieldStatus
from tests.conftest import RepoFactory, online_config, ts, write_repo

B = ts(2026, 3, 1)  # the data spans [B, B + 10 days)
US = timedelta(microseconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
E = B + 5 * DAY + 30 * MIN  # first online materialization end
E2 = B + 12 * DAY  # second one: after every event, the short windows are empty
FAR_PAST = ts(1, 1, 1)

WINDOWS = {"1h": HOUR, "1d": DAY, "7d": 7 * DAY}
FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev", "last", "approx_count_distinct")


@dataclass(frozen=True)
class Agg:
    name: str
    column: str
    function: str
    window: timedelta


# The plain view: every function on amount for each window, and some on an integer and a string.
AGGS = [Agg(f"amount_{f}_{w}", "amount", f, WINDOWS[w]) for w in WINDOWS for f in FUNCTIONS] + [
    Agg("item_sum_1d", "item", "sum", DAY),
    Agg("item_last_7d", "item", "last", 7 * DAY),
    Agg("item_approx_count_distinct_7d", "item", "approx_count_distinct", 7 * DAY),
    Agg("category_last_1d", "category", "last", DAY),
    Agg("category_min_1d", "category", "min", DAY),
    Agg("category_max_7d", "category", "max", 7 * DAY),
    Agg("category_approx_count_distinct_1d", "category", "approx_count_distinct", DAY),
    Agg("distinct_categories", "category", "approx_count_distinct", 7 * DAY),  # a custom name
]
# A view aggregating a SQL transformation's rows (amount2 = amount * 2); `last` is left out, as
# exact ties of transformed rows do not follow file order.
SQL_AGGS = [
    Agg("amount2_sum_2h", "amount2", "sum", 2 * HOUR),
    Agg("amount2_count_3d", "amount2", "count", 3 * DAY),
    Agg("amount2_max_3d", "amount2", "max", 3 * DAY),
    Agg("amount2_mean_2h", "amount2", "mean", 2 * HOUR),
    Agg("amount2_stddev_3d", "amount2", "stddev", 3 * DAY),
]


def window_code(window: timedelta) -> str:
    return f"timedelta(seconds={int(window.total_seconds())})"


def aggregation_code(aggs: list[Agg]) -> str:
    return ",\n        ".join(
        f'Aggregation("{a.column}", "{a.function}", {window_code(a.window)}, name="{a.name}")' for a in aggs
    )


DEFS = f'''
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, FileSource, Float64, Int64, String
from featurestore.definitions.transformation import Aggregation

user = Entity("user", join_keys=["user_id"])
events = FileSource("data/events.parquet", timestamp_field="ts", created_timestamp_column="created")

activity = FeatureView(
    "activity", entities=[user], source=events,
    schema=[Field("amount", Float64), Field("item", Int64), Field("category", String)],
    aggregations=[
        {aggregation_code(AGGS)},
    ],
)

doubled = FeatureView(
    "doubled", entities=[user], source=events,
    sql="SELECT user_id, ts, created, amount * 2 AS amount2 FROM source",
    created_timestamp_column="created",
    schema=[Field("amount2", Float64)],
    aggregations=[
        {aggregation_code(SQL_AGGS)},
    ],
)
'''

REFS = [f"activity:{a.name}" for a in AGGS] + [f"doubled:{a.name}" for a in SQL_AGGS]
BY_NAME = {a.name: a for a in AGGS + SQL_AGGS}


# -- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    pos: int  # position in the file: ingestion order
    user: int
    ts: datetime
    created: datetime | None
    amount: float | None
    item: int | None
    category: str | None

    def value(self, column: str) -> Any:
        if column == "amount2":
            return None if self.amount is None else self.amount * 2
        return getattr(self, column)


def make_events() -> list[Event]:
    rng = random.Random(20260301)
    raw: list[tuple[int, datetime, datetime | None, float | None, int | None, str | None]] = []

    def values() -> tuple[float | None, int | None, str | None]:
        amount = None if rng.random() < 0.12 else round(rng.uniform(-50, 500), 2)
        item = None if rng.random() < 0.1 else rng.randrange(0, 6)
        category = None if rng.random() < 0.1 else rng.choice("abcde")
        return amount, item, category

    def created_for(t: datetime) -> datetime | None:
        return None if rng.random() < 0.15 else t + rng.randrange(0, 120) * MIN

    def add(user: int, t: datetime) -> None:
        raw.append((user, t, created_for(t), *values()))

    for user in (1, 2, 3, 4):
        for _ in range(45):
            add(user, B + rng.randrange(0, 10 * 24 * 60) * MIN)
        for _ in range(12):  # bursts: several events within the short windows
            t = B + rng.randrange(0, 10 * 24 * 60) * MIN
            for k in range(3):
                add(user, t + rng.randrange(0, 50) * MIN + k * MIN)
    for _ in range(12):
        add(5, B + rng.randrange(0, 24 * 60) * MIN)  # user 5: only on the first day
    for _ in range(15):
        add(6, B + 6 * DAY + rng.randrange(0, 4 * 24 * 60) * MIN)  # user 6: only after E
    # Edges at E: an event exactly at E (inside (E - w, E]) and exactly at E - w (outside).
    add(1, E)
    add(2, E - DAY)
    add(3, E - HOUR)
    add(4, E - 7 * DAY)
    add(4, E - 7 * DAY + MIN)
    base = list(raw)
    # Same event time, another created time (later, earlier or missing), other values.
    for user, t, created, *_ in rng.sample(base, 30):
        other = rng.choice([None, t - 5 * MIN, t + 3 * HOUR, (created or t) + MIN])
        raw.append((user, t, other, *values()))
    # Exact ties (same event and created time): the later row in the file wins `last`.
    for user, t, created, *_ in rng.sample(base, 12):
        raw.append((user, t, created, *values()))
    rng.shuffle(raw)
    return [Event(i, *row) for i, row in enumerate(raw)]


EVENTS = make_events()


def events_frame(events: list[Event]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [e.user for e in events],
            "ts": [e.ts for e in events],
            "created": [e.created for e in events],
            "amount": [e.amount for e in events],
            "item": [e.item for e in events],
            "category": [e.category for e in events],
        },
        schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "created": pl.Datetime("us", "UTC"),
                "amount": pl.Float64, "item": pl.Int64, "category": pl.String},
    )


def make_entity_rows() -> list[tuple[int, datetime]]:
    rng = random.Random(7)
    rows: list[tuple[int, datetime]] = []
    for user in (1, 2, 3, 4, 5, 6, 7, 8):  # 7 and 8 have no events
        for _ in range(25):
            rows.append((user, B - 2 * DAY + rng.randrange(0, 14 * 24 * 60) * MIN))
    windows = sorted({a.window for a in AGGS + SQL_AGGS})
    for event in rng.sample(EVENTS, 45):
        rows.append((event.user, event.ts))  # equal to an event time: included
        for w in windows:
            rows.append((event.user, event.ts + w))  # exactly t - w: excluded
            rows.append((event.user, event.ts + w - US))  # just inside
    rows += [(1, B - 30 * DAY), (5, B - US), (1, B), (9, B + DAY)]
    rows += [(u, t) for u in (1, 2, 3, 4, 5, 6, 8) for t in (E, E2)]
    return rows


ENTITY_ROWS = make_entity_rows()


# -- the reference ----------------------------------------------------------------------------------


def reference(events: list[Event], agg: Agg, user: int, at: datetime) -> Any:
    """The aggregation over the user's events in ``(at - window, at]``, by a plain loop."""
    inside = [e for e in events if e.user == user and at - agg.window < e.ts <= at]
    present = [e for e in inside if e.value(agg.column) is not None]
    values = [e.value(agg.column) for e in present]
    if agg.function == "count":
        return len(values)
    if agg.function == "approx_count_distinct":
        return len(set(values))
    if not values:
        return None
    if agg.function == "sum":
        return math.fsum(values) if isinstance(values[0], float) else sum(values)
    if agg.function == "mean":
        return math.fsum(values) / len(values)
    if agg.function == "min":
        return min(values)
    if agg.function == "max":
        return max(values)
    if agg.function == "stddev":
        return statistics.stdev(values) if len(values) > 1 else None
    if agg.function == "last":
        newest = max(present, key=lambda e: (e.ts, e.created or FAR_PAST, e.pos))
        return newest.value(agg.column)
    raise AssertionError(agg.function)


def same(actual: Any, expected: Any, function: str = "") -> bool:
    """Floats to 1e-9; approx_count_distinct exactly for small sets (the items and categories: at
    most 6 values), else within HyperLogLog's error (1, or 5% of larger counts); the rest exactly."""
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if function == "approx_count_distinct" and expected > 6 and isinstance(actual, int):
        return abs(actual - expected) <= max(1, math.ceil(0.05 * expected))
    return type(actual) is type(expected) and actual == expected


def mismatches(
    get: Callable[[str, int], Any], rows: list[tuple[int, datetime]], aggs: list[Agg] | None = None
) -> list[str]:
    """Cells that differ from the reference: ``get(feature, row index)`` gives the actual value."""
    bad = []
    for agg in aggs or AGGS + SQL_AGGS:
        for i, (user, at) in enumerate(rows):
            expected = reference(EVENTS, agg, user, at)
            actual = get(agg.name, i)
            if not same(actual, expected, agg.function):
                bad.append(f"{agg.name} user={user} at={at.isoformat()}: got {actual!r}, expected {expected!r}")
    return bad


def entity_df(rows: list[tuple[int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]},
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")},
    )


def training_set(store: FeatureStore, rows: list[tuple[int, datetime]]) -> dict[str, list[Any]]:
    return store.get_historical_features(entity_df(rows), REFS).to_dict(as_series=False)


# -- tests ------------------------------------------------------------------------------------------


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    return make_repo({"defs.py": DEFS}, {"data/events.parquet": events_frame(EVENTS)})


class TestData:
    def test_the_data_has_the_edge_cases(self) -> None:
        keyed: dict[tuple[int, datetime], list[Event]] = {}
        for e in EVENTS:
            keyed.setdefault((e.user, e.ts), []).append(e)
        repeated = [g for g in keyed.values() if len(g) > 1]
        assert 200 <= len(EVENTS) <= 400
        assert any(len({e.created for e in g}) > 1 for g in repeated)  # same time, other created time
        assert any(len(g) != len({e.created for e in g}) for g in repeated)  # exact ties
        assert any(None in {e.created for e in g} for g in repeated)
        assert any(e.amount is None for e in EVENTS) and any(e.category is None for e in EVENTS)
        # The reference sees the edges: the event at E counts, the one at E - 1d does not.
        assert reference([Event(0, 2, E - DAY, None, 1.0, 1, "a")], AGGS[0], 2, E) == 0
        assert reference([Event(0, 1, E, None, 1.0, 1, "a")], AGGS[0], 1, E) == 1


class TestTrainingSet:
    def test_every_cell_matches_the_reference(self, repo: Path) -> None:
        store = FeatureStore(repo)
        store.apply()
        out = training_set(store, ENTITY_ROWS)
        assert out["user_id"] == [u for u, _ in ENTITY_ROWS]
        bad = mismatches(lambda name, i: out[name][i], ENTITY_ROWS)
        assert not bad, f"{len(bad)} cells differ, e.g.:\n" + "\n".join(bad[:20])

    def test_feature_types(self, repo: Path) -> None:
        store = FeatureStore(repo)
        store.apply()
        schema = store.get_historical_features(entity_df([(1, E)]), REFS).schema
        assert schema["amount_count_1h"] == pl.Int64
        assert schema["amount_sum_1d"] == schema["amount_mean_1d"] == schema["amount_stddev_7d"] == pl.Float64
        assert schema["amount_last_7d"] == schema["amount_min_1h"] == pl.Float64
        assert schema["item_sum_1d"] == schema["item_last_7d"] == schema["item_approx_count_distinct_7d"] == pl.Int64
        assert schema["category_last_1d"] == schema["category_max_7d"] == pl.String
        assert schema["distinct_categories"] == pl.Int64

    def test_specific_cells(self, repo: Path) -> None:
        events = [
            Event(0, 1, B, B, 10.0, 1, "b"),
            Event(1, 1, B + HOUR, B + 2 * HOUR, 20.0, 2, "a"),  # same time as the next, later created
            Event(2, 1, B + HOUR, B + HOUR, 40.0, 2, "c"),
            Event(3, 1, B + 2 * HOUR, None, None, None, None),
            Event(4, 1, B + 3 * HOUR, B, 5.0, 3, "z"),
            Event(5, 1, B + 3 * HOUR, B, 7.0, 4, "y"),  # exact tie: later in the file
        ]
        root = repo.parent / "small"
        write_repo(root, {"defs.py": DEFS}, {"data/events.parquet": events_frame(events)})
        store = FeatureStore(root)
        store.apply()
        rows = [(1, B + HOUR), (1, B + 2 * HOUR), (1, B + 3 * HOUR), (1, B + 4 * HOUR), (1, B + 2 * DAY)]
        out = training_set(store, rows)
        assert out["amount_count_1h"] == [2, 0, 2, 0, 0]  # (t - 1h, t]: the event at t - 1h is out
        assert out["amount_count_1d"] == [3, 3, 5, 5, 0]
        assert out["amount_sum_1d"] == [70.0, 70.0, 82.0, 82.0, None]
        assert out["amount_mean_1h"] == [30.0, None, 6.0, None, None]
        assert out["amount_min_1d"] == [10.0, 10.0, 5.0, 5.0, None]
        assert out["amount_max_1h"] == [40.0, None, 7.0, None, None]
        assert out["amount_last_1d"] == [20.0, 20.0, 7.0, 7.0, None]  # later created, then file order
        assert out["amount_last_7d"] == [20.0, 20.0, 7.0, 7.0, 7.0]
        assert out["category_last_1d"] == ["a", "a", "y", "y", None]
        assert out["item_approx_count_distinct_7d"] == [2, 2, 4, 4, 4]
        assert out["amount_stddev_1h"][0] == pytest.approx(statistics.stdev([20.0, 40.0]))
        assert out["amount_stddev_1h"][1:] == [None, pytest.approx(statistics.stdev([5.0, 7.0])), None, None]
        assert out["amount2_sum_2h"] == [140.0, 120.0, 24.0, 24.0, None]

    def test_offline_snapshots_give_the_same_training_set(self, repo: Path) -> None:
        store = FeatureStore(repo)
        store.apply()
        before = store.get_historical_features(entity_df(ENTITY_ROWS), REFS)
        runs = store.materialize_offline(B + 2 * DAY, B + 6 * DAY)
        # Aggregating views keep every event of the window, ties included.
        assert {r.view: r.rows for r in runs} == {
            "activity": sum(B + 2 * DAY <= e.ts < B + 6 * DAY for e in EVENTS),
            "doubled": sum(B + 2 * DAY <= e.ts < B + 6 * DAY for e in EVENTS),
        }
        after = store.get_historical_features(entity_df(ENTITY_ROWS), REFS)
        bad = mismatches(lambda name, i: after[name][i], ENTITY_ROWS)
        assert not bad, f"{len(bad)} cells differ, e.g.:\n" + "\n".join(bad[:20])
        # Equal but for the order floats are summed in.
        assert_frame_equal(after, before, rel_tol=1e-12, abs_tol=1e-9)


class TestOnline:
    def test_online_values_equal_the_reference_at_the_end_instant(
        self, make_repo: RepoFactory, redis_server: Any, project_name: str
    ) -> None:
        root = make_repo({"defs.py": DEFS}, {"data/events.parquet": events_frame(EVENTS)},
                         config=online_config(redis_server, project_name))
        users = [1, 2, 3, 4, 5, 6, 8]
        with FeatureStore(root) as store:
            store.apply()
            runs = store.materialize(B - DAY, E)
            # Users with an event in (start - 7d, E]: 1-5 (user 6's events come after E).
            assert {r.view: r.rows for r in runs} == {"activity": 5, "doubled": 5}
            resp = store.get_online_features(REFS, [{"user_id": u} for u in users])
            online = resp.to_dict()
            at_e = [(u, E) for u in users]
            written = range(5)  # users 1-5
            bad = mismatches(lambda name, i: online[name][i], at_e[:5])
            assert not bad, f"{len(bad)} values differ, e.g.:\n" + "\n".join(bad[:20])
            for name in ("amount_count_1h", "amount_sum_7d", "amount2_count_3d"):
                assert resp.statuses[name] == [FieldStatus.PRESENT] * 5 + [FieldStatus.NOT_FOUND] * 2
                assert resp.event_timestamps[name] == [E] * 5 + [None] * 2
            # Online equals the training set at E for every written entity.
            train = training_set(store, at_e)
            for agg in AGGS + SQL_AGGS:
                for i in written:
                    assert same(online[agg.name][i], train[agg.name][i]), (agg.name, users[i])
            # The edges: user 1's event at E counts; user 5 (first day only) has empty windows.
            assert online["amount_count_1d"][users.index(5)] == 0
            assert online["amount_count_7d"][users.index(5)] == reference(EVENTS, BY_NAME["amount_count_7d"], 5, E) > 0

            # Later: the 1h and 1d windows of everyone and the 7d window of user 5 are empty now.
            runs = store.materialize(E, E2)
            # Entities with an event in (E - longest window, E2]: 1-6 for activity (7d); for doubled
            # (3d) user 5 is not rewritten: its windows were empty at E already.
            assert {r.view: r.rows for r in runs} == {"activity": 6, "doubled": 5}
            resp = store.get_online_features(REFS, [{"user_id": u} for u in users])
            online = resp.to_dict()
            at_e2 = [(u, E2) for u in users]
            bad = mismatches(lambda name, i: online[name][i], at_e2[:6])
            assert not bad, f"{len(bad)} values differ, e.g.:\n" + "\n".join(bad[:20])
            assert online["amount_count_1h"] == [0, 0, 0, 0, 0, 0, None]
            assert online["amount_count_1d"] == [0, 0, 0, 0, 0, 0, None]
            assert online["amount_count_7d"][users.index(5)] == 0
            assert online["amount_sum_7d"][users.index(5)] is None
            assert online["amount_approx_count_distinct_7d"][users.index(5)] == 0
            assert online["amount2_count_3d"][users.index(5)] == 0
            assert resp.statuses["amount_count_7d"] == [FieldStatus.PRESENT] * 6 + [FieldStatus.NOT_FOUND]
            assert resp.event_timestamps["amount_count_7d"] == [E2] * 6 + [None]
            train = training_set(store, at_e2)
            for agg in AGGS + SQL_AGGS:
                for i in range(6):
                    assert same(online[agg.name][i], train[agg.name][i]), (agg.name, users[i])
