"""Forward fill: a null takes the entity's previous non-null value of that feature when that
previous row is at most ttl older than the row (any age without a ttl), offline and online alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from featurestore.errors import DefinitionError
from featurestore.online.retrieval import FieldStatus
from featurestore.repo import load_repo
from tests.conftest import RepoFactory, online_config

H = timedelta(hours=1)
DAY = timedelta(days=1)
# Times relative to now, so that online values are within their ttl when read.
NOW = datetime.now(UTC).replace(microsecond=0)
T = NOW.replace(minute=0, second=0) - 2 * DAY
E = NOW  # the materialization's end and the training set's instant

DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, FileSource, Float64, String

sensor = Entity("sensor", join_keys=["sensor_id"])
source = FileSource("data/readings.parquet")
readings = FeatureView(
    "readings", entities=[sensor], source=source,
    schema=[Field("temp", Float64), Field("state", String), Field("humidity", Float64)],
    ttl=timedelta(days=1), forward_fill=["temp", "state"],
)
# The same rows without a ttl: a previous value of any age fills.
readings_all = FeatureView(
    "readings_all", entities=[sensor], source=source, schema=[Field("temp", Float64)], forward_fill=["temp"],
)
# The same rows without forward fill.
readings_raw = FeatureView(
    "readings_raw", entities=[sensor], source=source,
    schema=[Field("temp", Float64), Field("state", String), Field("humidity", Float64)], ttl=timedelta(days=1),
)
"""

SCHEMA = {"sensor_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "temp": pl.Float64,
          "state": pl.String, "humidity": pl.Float64}
# (sensor, time, temp, state, humidity) -> (temp, state, humidity) of `readings` at that time.
ROWS: list[tuple[tuple[int, datetime, float | None, str | None, float | None], tuple[Any, ...]]] = [
    ((1, T, None, None, 1.0), (None, None, 1.0)),  # the first row: nothing to fill from
    ((1, T + H, 20.0, "ok", None), (20.0, "ok", None)),  # humidity is not forward-filled
    ((1, T + 2 * H, None, None, 3.0), (20.0, "ok", 3.0)),
    ((1, T + 3 * H, None, "warn", None), (20.0, "warn", None)),
    ((1, T + 25 * H, None, None, 5.0), (20.0, "warn", 5.0)),  # temp from exactly ttl (24 h) earlier: filled
    ((1, T + 30 * H, None, None, 6.0), (None, None, 6.0)),  # 29 h and 27 h: older than the ttl
    ((1, T + 31 * H, 25.0, None, None), (25.0, None, None)),  # state's previous value is 28 h old
    ((1, T + 32 * H, None, None, 8.0), (25.0, None, 8.0)),
    ((2, T + H, None, None, 2.0), (None, None, 2.0)),  # sensor 2 never has a temp
    ((2, T + 2 * H, None, "idle", None), (None, "idle", None)),
    ((3, T + H, 7.0, "ok", 1.0), (7.0, "ok", 1.0)),
    ((3, T + 47 * H, None, None, None), (None, None, None)),  # 46 h after its values: nothing fills
]
# `readings_all` (no ttl) fills temp at any age.
ALL_TEMPS = [None, 20.0, 20.0, 20.0, 20.0, 20.0, 25.0, 25.0, None, None, 7.0, 7.0]
DATA = {"data/readings.parquet": pl.DataFrame([r for r, _ in ROWS], schema=SCHEMA, orient="row")}
FEATURES = ["temp", "state", "humidity"]


def entity_df(rows: list[tuple[int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame({"sensor_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]},
                        schema={"sensor_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})


AT_ROWS = entity_df([(r[0], r[1]) for r, _ in ROWS])


def refs(view: str, features: list[str] = FEATURES) -> list[str]:
    return [f"{view}:{f}" for f in features]


@pytest.fixture
def store(make_repo: RepoFactory, redis_server: Any, project_name: str) -> Any:
    root = make_repo({"defs.py": DEFS}, DATA, config=online_config(redis_server, project_name))
    with FeatureStore(root) as s:
        s.apply()
        yield s


class TestOffline:
    def test_values_row_by_row(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_ROWS, refs("readings"))
        assert list(out.select(FEATURES).iter_rows()) == [v for _, v in ROWS]

    def test_without_a_ttl_any_age_fills(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_ROWS, ["readings_all:temp"])
        assert out.get_column("temp").to_list() == ALL_TEMPS

    def test_without_forward_fill_nulls_stay(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_ROWS, refs("readings_raw"))
        assert list(out.select(FEATURES).iter_rows()) == [(r[2], r[3], r[4]) for r, _ in ROWS]

    def test_between_rows_and_every_join_strategy(self, store: FeatureStore) -> None:
        entity = entity_df([(1, T + 2 * H + H / 2), (1, T + 26 * H), (1, T + 30 * H + H / 2),
                            (3, T + 20 * H), (3, T + 26 * H), (1, T - H)])
        expected = [(20.0, "ok", 3.0), (20.0, "warn", 5.0), (None, None, 6.0), (7.0, "ok", 1.0),
                    (None, None, None), (None, None, None)]
        # Sensor 3 at T+26h: its only row is 25 h old, outside the ttl of the join itself.
        for strategy in ("auto", "asof", "range"):
            out = store.get_historical_features(entity, refs("readings"), join_strategy=strategy)
            assert list(out.select(FEATURES).iter_rows()) == expected, strategy

    def test_offline_snapshots_keep_the_fills(self, store: FeatureStore) -> None:
        """A snapshot of a window that starts after the filling value still holds the filled value."""
        store.materialize_offline(T + 31 * H + H / 2, E)  # only (1, T+32h) and (3, T+47h)
        out = store.get_historical_features(AT_ROWS, refs("readings"))
        assert list(out.select(FEATURES).iter_rows()) == [v for _, v in ROWS]
        store.materialize_offline(T - DAY, E)
        out = store.get_historical_features(AT_ROWS, [*refs("readings"), "readings_all:temp"],
                                            full_feature_names=True)
        assert list(out.select(["readings__temp", "readings__state", "readings__humidity"]).iter_rows()) == [
            v for _, v in ROWS]
        assert out.get_column("readings_all__temp").to_list() == ALL_TEMPS

    @pytest.mark.parametrize("snapshots", [False, True], ids=["sources", "snapshots"])
    def test_changing_the_ttl_changes_what_is_filled(self, store: FeatureStore, snapshots: bool) -> None:
        """The ttl decides which nulls are filled: after a ttl change, snapshots taken before it must
        not keep serving the fills of the old ttl (they must equal what the sources give)."""
        if snapshots:
            store.materialize_offline(T - DAY, E)
        defs = store.repo_path / "defs.py"
        defs.write_text(defs.read_text().replace(
            'ttl=timedelta(days=1), forward_fill=["temp", "state"]', 'ttl=timedelta(days=2), forward_fill=["temp", "state"]'))
        # The ttl decides the stored (filled) rows, so the change is destructive.
        assert [c.destructive_reasons for c in store.plan().changes if c.name == "readings"] == [
            ("changes ttl_seconds: stored data no longer matches",)]
        store.apply(allow_destructive=True)
        out = store.get_historical_features(entity_df([(1, T + 30 * H)]), refs("readings"))
        # Now 29 h and 27 h are within the ttl: temp and state fill.
        assert list(out.select(FEATURES).iter_rows()) == [(20.0, "warn", 6.0)]


class TestOnline:
    def test_online_equals_offline_at_the_materialization_instant(self, store: FeatureStore) -> None:
        store.materialize(T - DAY, E)
        sensors = [1, 2, 3, 4]
        online = store.get_online_features([*refs("readings"), "readings_all:temp"],
                                           [{"sensor_id": s} for s in sensors], full_feature_names=True)
        offline = store.get_historical_features(entity_df([(s, E) for s in sensors]),
                                                [*refs("readings"), "readings_all:temp"], full_feature_names=True)
        got = online.to_dict()
        for name in ["readings__temp", "readings__state", "readings__humidity", "readings_all__temp"]:
            assert got[name] == offline.get_column(name).to_list(), name
        assert got == {
            "sensor_id": sensors,
            "readings__temp": [25.0, None, None, None],  # sensor 2's row is older than the ttl at E
            "readings__state": [None, None, None, None],
            "readings__humidity": [8.0, None, None, None],
            "readings_all__temp": [25.0, None, 7.0, None],
        }
        present, outside, missing = FieldStatus.PRESENT, FieldStatus.OUTSIDE_MAX_AGE, FieldStatus.NOT_FOUND
        assert online.statuses["readings__temp"] == [present, outside, present, missing]
        assert online.event_timestamps["readings__temp"] == [T + 32 * H, T + 2 * H, T + 47 * H, None]

    def test_a_window_after_the_filling_value(self, store: FeatureStore) -> None:
        """Only the newest rows are in the window; the values that fill them are older."""
        runs = store.materialize(T + 31 * H + H / 2, E, ["readings", "readings_all"])
        assert {r.view: r.rows for r in runs} == {"readings": 2, "readings_all": 2}
        online = store.get_online_features(["readings:temp", "readings_all:temp"],
                                           [{"sensor_id": 1}, {"sensor_id": 3}], full_feature_names=True)
        assert online.to_dict() == {"sensor_id": [1, 3], "readings__temp": [25.0, None],
                                    "readings_all__temp": [25.0, 7.0]}
        assert online.event_timestamps["readings_all__temp"] == [T + 32 * H, T + 47 * H]


    def test_pushed_rows_are_stored_as_given(self, store: FeatureStore) -> None:
        """Forward fill applies to rows read from the source; a pushed row carries the pusher's
        current values and is stored as given, the same offline and online (documented)."""
        store.materialize(T - DAY, E)
        row = pl.DataFrame([(1, NOW - H, None, None, 9.0)], schema=SCHEMA, orient="row")
        store.push("readings", row, to="online_and_offline")
        offline = store.get_historical_features(entity_df([(1, NOW)]), refs("readings"))
        online = store.get_online_features(refs("readings"), [{"sensor_id": 1}])
        assert list(offline.select(FEATURES).iter_rows()) == [(None, None, 9.0)]
        assert online.to_dict() == {"sensor_id": [1], "temp": [None], "state": [None], "humidity": [9.0]}


class TestDefinitionErrors:
    def test_unknown_feature(self) -> None:
        from featurestore import Entity, FeatureView, Field, FileSource, Float64

        with pytest.raises(DefinitionError) as err:
            FeatureView("v", entities=[Entity("e", join_keys=["k"])], source=FileSource("x.parquet"),
                        schema=[Field("temp", Float64)], forward_fill=["temp", "pressure"])
        assert err.value.reason == ("forward_fill lists ['temp', 'pressure']: each must be a feature of the view, "
                                    "once; features: ['temp']")
        assert err.value.obj == "feature view 'v'" and err.value.field == "forward_fill"

    def test_unknown_feature_in_a_repo_names_file_and_line(self, make_repo: RepoFactory) -> None:
        root = make_repo({"defs.py": DEFS.replace('forward_fill=["temp"]', 'forward_fill=["tmp"]')}, DATA)
        with pytest.raises(DefinitionError) as err:
            load_repo(root)
        message = str(err.value)
        assert "feature view 'readings_all', field 'forward_fill'" in message
        assert "forward_fill lists ['tmp']: each must be a feature of the view, once; features: ['temp']" in message
        assert err.value.file is not None and Path(err.value.file).name == "defs.py"
        assert err.value.line is not None and err.value.line > 1

    def test_a_feature_listed_twice(self) -> None:
        from featurestore import Entity, FeatureView, Field, FileSource, Float64

        with pytest.raises(DefinitionError, match=r"forward_fill lists \['temp', 'temp'\]: each must be a feature "
                                                  r"of the view, once"):
            FeatureView("v", entities=[Entity("e", join_keys=["k"])], source=FileSource("x.parquet"),
                        schema=[Field("temp", Float64)], forward_fill=["temp", "temp"])

    def test_a_join_key_or_timestamp_is_not_a_feature(self) -> None:
        from featurestore import Entity, FeatureView, Field, FileSource, Float64

        for name in ("k", "event_timestamp"):
            with pytest.raises(DefinitionError, match="each must be a feature of the view"):
                FeatureView("v", entities=[Entity("e", join_keys=["k"])], source=FileSource("x.parquet"),
                            schema=[Field("temp", Float64)], forward_fill=[name])

    def test_not_with_aggregations(self) -> None:
        from featurestore import Aggregation, Entity, FeatureView, Field, FileSource, Float64

        with pytest.raises(DefinitionError, match="forward_fill is for views of values, not aggregations"):
            FeatureView("v", entities=[Entity("e", join_keys=["k"])], source=FileSource("x.parquet"),
                        schema=[Field("amount", Float64)], forward_fill=["amount_sum_1d"],
                        aggregations=[Aggregation("amount", "sum", DAY)])

    def test_a_valid_repo_keeps_the_list(self, make_repo: RepoFactory) -> None:
        contents = load_repo(make_repo({"defs.py": DEFS}, DATA))
        assert contents.feature_views["readings"].forward_fill == ("temp", "state")
        assert contents.feature_views["readings_raw"].forward_fill == ()
