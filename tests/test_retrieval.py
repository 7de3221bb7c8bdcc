"""Point-in-time training sets: each semantic rule of DESIGN.md pinned by its own test."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import RetrievalError
from tests.conftest import RepoFactory, events, ts

T0 = ts(2026, 1, 10, 12)
US = timedelta(microseconds=1)


def store_for(make_repo: RepoFactory, rows: list, ttl: str = "None") -> FeatureStore:
    root = make_repo(data={"data/events.parquet": events(rows)}, ttl=ttl)
    store = FeatureStore(root)
    store.apply()
    return store


def entity(rows: list[tuple[int, datetime]], **extra: list) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"user_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]},
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(**{k: pl.Series(v) for k, v in extra.items()}) if extra else frame


def values(store: FeatureStore, rows: list[tuple[int, datetime]], feature: str = "stats:value") -> list:
    return store.get_historical_features(entity(rows), [feature]).get_column(feature.split(":")[1]).to_list()


class TestWindow:
    def test_upper_bound_is_inclusive(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        assert values(store, [(1, T0)]) == [1.0]

    def test_row_after_entity_time_is_not_seen(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        assert values(store, [(1, T0 - US)]) == [None]

    def test_lower_bound_is_inclusive(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        assert values(store, [(1, T0 + timedelta(hours=1))]) == [1.0]

    def test_older_than_ttl_is_null(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        assert values(store, [(1, T0 + timedelta(hours=1) + US)]) == [None]

    def test_ttl_none_has_no_lower_bound(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        assert values(store, [(1, T0 + timedelta(days=3650))]) == [1.0]

    def test_newest_row_outside_ttl_does_not_fall_back_to_older(self, make_repo: RepoFactory) -> None:
        # Only the latest row at or before ts counts; if it is too old, so is every earlier one.
        store = store_for(
            make_repo, [(1, T0, None, 1.0, "a"), (1, T0 + timedelta(hours=2), None, 2.0, "b")],
            ttl="timedelta(hours=1)",
        )
        assert values(store, [(1, T0 + timedelta(hours=2, minutes=30)), (1, T0 + timedelta(hours=3, seconds=1))]) == [
            2.0, None,
        ]

    def test_latest_event_wins(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, None, 1.0, "a"), (1, T0 + timedelta(hours=1), None, 2.0, "b"),
                (1, T0 + timedelta(hours=2), None, 3.0, "c")]
        store = store_for(make_repo, rows)
        assert values(store, [(1, T0 + timedelta(minutes=90))]) == [2.0]

    def test_entity_time_before_any_data(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        assert values(store, [(1, T0 - timedelta(days=400))]) == [None]

    def test_unknown_entity_gets_nulls(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        out = store.get_historical_features(entity([(99, T0)]), ["stats:value", "stats:label"])
        assert out.row(0, named=True) == {"user_id": 99, "event_timestamp": T0, "value": None, "label": None}


class TestTies:
    def test_greatest_created_timestamp_wins(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, T0 + timedelta(minutes=5), 2.0, "late"), (1, T0, T0 + timedelta(minutes=1), 1.0, "early")]
        store = store_for(make_repo, rows)
        assert values(store, [(1, T0)], "stats:label") == ["late"]

    def test_missing_created_timestamp_loses(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, T0, 1.0, "with"), (1, T0, None, 2.0, "without")]
        store = store_for(make_repo, rows)
        assert values(store, [(1, T0)], "stats:label") == ["with"]

    def test_full_tie_goes_to_later_row_in_file(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, T0, 1.0, "first"), (1, T0, T0, 2.0, "second"), (1, T0, T0, 3.0, "third")]
        store = store_for(make_repo, rows)
        assert values(store, [(1, T0)], "stats:label") == ["third"]

    def test_full_tie_across_files_goes_to_later_path(self, make_repo: RepoFactory) -> None:
        defs = """
        from featurestore import Entity, FeatureView, Field, FileSource, Float64, String
        user = Entity("user", join_keys=["user_id"])
        stats = FeatureView("stats", entities=[user], source=FileSource("data/parts", created_timestamp_column="created"),
                            schema=[Field("value", Float64), Field("label", String)])
        """
        root = make_repo(
            files={"defs.py": defs},
            data={
                "data/parts/b.parquet": events([(1, T0, T0, 2.0, "from-b")]),
                "data/parts/a.parquet": events([(1, T0, T0, 1.0, "from-a")]),
            },
        )
        store = FeatureStore(root)
        store.apply()
        assert values(store, [(1, T0)], "stats:label") == ["from-b"]
        store.materialize_offline(T0 - timedelta(days=1), T0 + timedelta(days=1))
        assert values(store, [(1, T0)], "stats:label") == ["from-b"]


class TestTimezones:
    def test_naive_entity_timestamps_are_utc(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        naive = pl.DataFrame({"user_id": [1, 1], "event_timestamp": [datetime(2026, 1, 10, 12), datetime(2026, 1, 10, 11)]})
        out = store.get_historical_features(naive, ["stats:value"])
        assert out.get_column("value").to_list() == [1.0, None]
        assert out.get_column("event_timestamp").to_list() == naive.get_column("event_timestamp").to_list()

    def test_offset_entity_timestamps_are_converted(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(hours=1)")
        tokyo = timezone(timedelta(hours=9))
        # 21:00 in Tokyo is 12:00 UTC (a match); 20:59 in Tokyo is before the event.
        frame = pa.table({
            "user_id": [1, 1],
            "event_timestamp": pa.array(
                [datetime(2026, 1, 10, 21, tzinfo=tokyo), datetime(2026, 1, 10, 20, 59, tzinfo=tokyo)],
                pa.timestamp("us", tz="Asia/Tokyo"),
            ),
        })
        assert store.get_historical_features(frame, ["stats:value"]).get_column("value").to_list() == [1.0, None]

    def test_naive_source_timestamps_are_utc(self, make_repo: RepoFactory) -> None:
        naive = events([(1, T0, None, 1.0, "a")]).with_columns(
            pl.col("event_timestamp").dt.replace_time_zone(None), pl.col("created").dt.replace_time_zone(None)
        )
        root = make_repo(data={"data/events.parquet": naive}, ttl="timedelta(hours=1)")
        store = FeatureStore(root)
        store.apply()
        assert values(store, [(1, T0), (1, T0 - US)]) == [1.0, None]

    def test_nanosecond_and_date_entity_timestamps(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, ts(2026, 1, 10), None, 1.0, "a")])
        frame = pa.table({"user_id": [1, 1], "event_timestamp": pa.array(
            [datetime(2026, 1, 10), datetime(2026, 1, 9)], pa.date32())})
        assert store.get_historical_features(frame, ["stats:value"]).get_column("value").to_list() == [1.0, None]
        nanos = pa.table({"user_id": [1], "event_timestamp": pa.array([T0], pa.timestamp("ns", tz="UTC"))})
        assert store.get_historical_features(nanos, ["stats:value"]).get_column("value").to_list() == [1.0]


class TestRowsKept:
    def test_order_duplicates_and_extra_columns_are_kept(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, None, 1.0, "a"), (2, T0, None, 2.0, "b")]
        store = store_for(make_repo, rows)
        probe = [(2, T0), (1, T0), (2, T0), (3, T0), (1, T0 - US), (1, T0)]
        frame = entity(probe, label=[True, False, True, None, False, True], tags=[[1], [], None, [2, 3], [4], [5]])
        out = store.get_historical_features(frame, ["stats:value"])
        assert out.drop("value").equals(frame)
        assert out.get_column("value").to_list() == [2.0, 1.0, 2.0, None, None, 1.0]

    def test_empty_entity_frame(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        out = store.get_historical_features(entity([]), ["stats:value", "stats:label"])
        assert out.height == 0
        assert out.schema == {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"),
                              "value": pl.Float64, "label": pl.String}

    def test_pandas_arrow_and_polars_inputs_agree(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a"), (2, T0, None, 2.0, "b")])
        frame = entity([(2, T0), (1, T0), (3, T0)])
        expected = store.get_historical_features(frame, ["stats:value"])
        from_arrow = store.get_historical_features(frame.to_arrow(), ["stats:value"])
        from_pandas = store.get_historical_features(frame.to_pandas(), ["stats:value"])
        from_lazy = store.get_historical_features(frame.lazy(), ["stats:value"])
        assert from_arrow.equals(expected)
        assert from_lazy.equals(expected)
        assert from_pandas.get_column("value").to_list() == [2.0, 1.0, None]
        assert isinstance(frame.to_pandas(), pd.DataFrame)

    def test_custom_timestamp_column(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        frame = entity([(1, T0)]).rename({"event_timestamp": "as_of"})
        out = store.get_historical_features(frame, ["stats:value"], timestamp_column="as_of")
        assert out.columns == ["user_id", "as_of", "value"]
        assert out.get_column("value").to_list() == [1.0]

    def test_declared_type_is_applied(self, make_repo: RepoFactory) -> None:
        defs = """
        from featurestore import Entity, FeatureView, Field, FileSource, Float32, Int64
        user = Entity("user", join_keys=["user_id"])
        stats = FeatureView("stats", entities=[user], source=FileSource("data/events.parquet"),
                            schema=[Field("value", Float32), Field("user_id", Int64)])
        """
        root = make_repo(files={"defs.py": defs}, data={"data/events.parquet": events([(1, T0, None, 1.5, "a")])})
        store = FeatureStore(root)
        store.apply()
        out = store.get_historical_features(entity([(1, T0)]), ["stats:value"])
        assert out.schema["value"] == pl.Float32
        assert out.get_column("value").to_list() == [1.5]


class TestFeatureSelection:
    def test_feature_service_and_its_name(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        by_name = store.get_historical_features(entity([(1, T0)]), "svc")
        by_object = store.get_historical_features(entity([(1, T0)]), store.get_feature_service("svc"))
        assert by_name.equals(by_object)
        assert by_name.columns == ["user_id", "event_timestamp", "value", "label"]

    def test_full_feature_names(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        out = store.get_historical_features(entity([(1, T0)]), ["stats:label", "stats:value"], full_feature_names=True)
        assert out.columns == ["user_id", "event_timestamp", "stats__label", "stats__value"]

    def test_two_views_with_same_feature_name(self, make_repo: RepoFactory) -> None:
        defs = """
        from featurestore import Entity, FeatureView, Field, FileSource, Float64
        user = Entity("user", join_keys=["user_id"])
        a = FeatureView("a", entities=[user], source=FileSource("data/events.parquet"), schema=[Field("value", Float64)])
        b = FeatureView("b", entities=[user], source=FileSource("data/other.csv"), schema=[Field("value", Float64)])
        """
        other = pl.DataFrame({"user_id": [1], "event_timestamp": ["2026-01-01T00:00:00"], "value": [9.0]})
        root = make_repo(files={"defs.py": defs},
                         data={"data/events.parquet": events([(1, T0, None, 1.0, "a")]), "data/other.csv": other})
        store = FeatureStore(root)
        store.apply()
        with pytest.raises(RetrievalError, match=r"'value' comes from both 'a:value' and 'b:value'.*full_feature_names"):
            store.get_historical_features(entity([(1, T0)]), ["a:value", "b:value"])
        out = store.get_historical_features(entity([(1, T0)]), ["a:value", "b:value"], full_feature_names=True)
        assert out.select("a__value", "b__value").row(0) == (1.0, 9.0)


class TestErrors:
    @pytest.fixture
    def store(self, make_repo: RepoFactory) -> FeatureStore:
        return store_for(make_repo, [(1, T0, None, 1.0, "a")])

    def test_missing_join_key(self, store: FeatureStore) -> None:
        frame = pl.DataFrame({"uid": [1], "event_timestamp": [T0]})
        with pytest.raises(RetrievalError, match=r"no column 'user_id', a join key of feature view 'stats'.*\['uid'"):
            store.get_historical_features(frame, ["stats:value"])

    def test_missing_timestamp_column(self, store: FeatureStore) -> None:
        frame = pl.DataFrame({"user_id": [1], "ts": [T0]})
        with pytest.raises(RetrievalError, match=r"no timestamp column 'event_timestamp'.*timestamp_column="):
            store.get_historical_features(frame, ["stats:value"])

    def test_string_timestamp_column(self, store: FeatureStore) -> None:
        frame = pl.DataFrame({"user_id": [1], "event_timestamp": ["2026-01-10"]})
        with pytest.raises(RetrievalError, match=r"'event_timestamp' has type (string|large_string|string_view); expected a datetime"):
            store.get_historical_features(frame, ["stats:value"])

    def test_null_timestamp(self, store: FeatureStore) -> None:
        frame = pl.DataFrame({"user_id": [1, 2], "event_timestamp": [T0, None]})
        with pytest.raises(RetrievalError, match="1 null value"):
            store.get_historical_features(frame, ["stats:value"])

    def test_wrong_key_type(self, store: FeatureStore) -> None:
        frame = pl.DataFrame({"user_id": ["1"], "event_timestamp": [T0]})
        with pytest.raises(RetrievalError, match=r"'user_id' has type .*string.* stores it as int64"):
            store.get_historical_features(frame, ["stats:value"])

    def test_unknown_feature(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match=r"view 'stats' has no feature 'nope'; its features: \['value', 'label'\]"):
            store.get_historical_features(entity([(1, T0)]), ["stats:nope"])

    def test_unknown_view(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match=r"unknown feature view 'other'; applied views: \['stats'\]"):
            store.get_historical_features(entity([(1, T0)]), ["other:value"])

    def test_unknown_feature_service(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match=r"unknown feature service 'nope'; applied feature services: \['svc'\]"):
            store.get_historical_features(entity([(1, T0)]), "nope")

    def test_bad_ref(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match="must look like 'view:feature'"):
            store.get_historical_features(entity([(1, T0)]), ["stats:value:x"])

    def test_ref_listed_twice(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match="listed twice"):
            store.get_historical_features(entity([(1, T0)]), ["stats:value", "stats:value"])

    def test_no_features(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match="no features requested"):
            store.get_historical_features(entity([(1, T0)]), [])

    def test_column_clash(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match=r"already has column\(s\) \['value'\]"):
            store.get_historical_features(entity([(1, T0)], value=[0.5]), ["stats:value"])

    def test_unsupported_input(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match="must be a Polars, pandas or Arrow table, got list"):
            store.get_historical_features([{"user_id": 1}], ["stats:value"])

    def test_nothing_applied(self, make_repo: RepoFactory) -> None:
        root = make_repo(data={"data/events.parquet": events([(1, T0, None, 1.0, "a")])})
        with pytest.raises(RetrievalError, match="nothing applied yet"):
            FeatureStore(root).get_historical_features(entity([(1, T0)]), "svc")


def test_source_path_is_resolved_from_repo_root_not_cwd(make_repo: RepoFactory, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
    monkeypatch.chdir(tmp_path)
    assert values(store, [(1, T0)]) == [1.0]


class TestJoinStrategy:
    def test_strategies_agree_on_every_rule(self, make_repo: RepoFactory) -> None:
        rows = [(1, T0, T0, 1.0, "a"), (1, T0, T0 + US, 2.0, "b"), (1, T0 + timedelta(hours=2), None, 3.0, "c"),
                (2, T0, None, 4.0, "d")]
        store = store_for(make_repo, rows, ttl="timedelta(hours=1)")
        probe = [(1, T0), (1, T0 + timedelta(hours=1)), (1, T0 + timedelta(hours=1) + US), (1, T0 + timedelta(hours=3)),
                 (2, T0 - US), (3, T0)]
        answers = {s: store.get_historical_features(entity(probe), ["stats:value", "stats:label"], join_strategy=s)
                   for s in ("auto", "asof", "range")}
        assert answers["asof"].get_column("label").to_list() == ["b", "b", None, "c", None, None]
        assert answers["range"].equals(answers["asof"])
        assert answers["auto"].equals(answers["asof"])

    def test_unknown_strategy(self, make_repo: RepoFactory) -> None:
        store = store_for(make_repo, [(1, T0, None, 1.0, "a")])
        with pytest.raises(RetrievalError, match="join_strategy must be one of auto, asof, range, got 'hash'"):
            store.get_historical_features(entity([(1, T0)]), ["stats:value"], join_strategy="hash")

    def test_choice_follows_the_expected_number_of_pairs(self, make_repo: RepoFactory) -> None:
        from featurestore.offline.retrieval import choose_strategy

        store = store_for(make_repo, [(1, T0, None, 1.0, "a")], ttl="timedelta(days=7)")
        view = store.get_feature_view("stats")
        span = (datetime(2026, 1, 1), datetime(2026, 4, 1))  # 90 days
        # 1M entity rows over 630k keys, 10M rows: ~16 rows per key, 7/90 of them in the window.
        assert choose_strategy(view, 1_000_000, 630_000, (10_000_000, *span)) == "range"
        # A year of daily rows per key and a ttl as long as the data: pairs far exceed the rows.
        assert choose_strategy(view, 1_000_000, 1_000, (365_000, *span)) == "asof"
        # No statistics (CSV): the ASOF join, whose cost does not depend on history length.
        assert choose_strategy(view, 10, 10, None) == "asof"
