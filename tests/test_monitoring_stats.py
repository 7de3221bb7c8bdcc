"""Column statistics: exact values on small frames, the JSON form the registry stores, edge cases."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from featurestore.errors import FeatureStoreError
from featurestore.monitoring import MonitoringError
from featurestore.monitoring.stats import (
    MAX_VALUE_CHARS,
    ColumnStats,
    column_stats,
    stats_from_dict,
    stats_to_dict,
)


def roundtrip(s: ColumnStats) -> ColumnStats:
    return ColumnStats.from_dict(json.loads(json.dumps(s.to_dict())))


def test_numeric_values_on_a_known_column() -> None:
    s = column_stats(pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, None]}), bins=4)["x"]
    assert s.kind == "numeric"
    assert (s.count, s.nulls, s.non_finite, s.values, s.distinct) == (6, 1, 0, 5, 5)
    assert s.null_fraction == pytest.approx(1 / 6)
    assert s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(2.5))  # sample standard deviation
    assert (s.min, s.max) == (1.0, 5.0)
    # linear interpolation between order statistics, as numpy and Polars do
    assert s.quantiles == pytest.approx({"p01": 1.04, "p05": 1.2, "p25": 2.0, "p50": 3.0, "p75": 4.0,
                                         "p95": 4.8, "p99": 4.96})
    assert len(s.sketch) == 101 and s.sketch[0] == 1.0 and s.sketch[-1] == 5.0
    assert s.histogram is not None
    assert s.histogram.edges == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert s.histogram.counts == (1, 1, 1, 2)  # the last bin holds its right edge
    assert s.sample_size is None


def test_integer_column_gets_one_bin_per_value_when_the_range_is_small() -> None:
    s = column_stats(pl.DataFrame({"n": [1, 1, 2, 3, 3, 3]}))["n"]
    assert s.histogram is not None
    assert s.histogram.edges == (0.5, 1.5, 2.5, 3.5)
    assert s.histogram.counts == (2, 1, 3)
    assert s.quantiles["p50"] == 2.5


def test_constant_column_has_one_bin_and_a_flat_sketch() -> None:
    s = column_stats(pl.DataFrame({"x": [7.5] * 4}))["x"]
    assert s.histogram is not None and s.histogram.counts == (4,)
    assert set(s.sketch) == {7.5}
    assert s.std == 0.0


def test_nan_and_infinity_count_as_missing_and_stay_out_of_the_moments() -> None:
    s = column_stats(pl.DataFrame({"x": [1.0, float("nan"), float("inf"), 2.0, None]}))["x"]
    assert (s.nulls, s.non_finite, s.values) == (1, 2, 2)
    assert s.null_fraction == pytest.approx(3 / 5)
    assert (s.mean, s.min, s.max) == (1.5, 1.0, 2.0)
    json.dumps(s.to_dict(), allow_nan=False)  # nothing non-finite is stored


def test_categorical_top_k_with_other_bucket_and_stable_ties() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["e", "d"] + [None]
    s = column_stats(pl.DataFrame({"c": values}), top_k=2)["c"]
    assert s.kind == "categorical"
    assert s.top == (("a", 5), ("b", 3))
    assert s.other == 4
    assert (s.distinct, s.nulls, s.values) == (5, 1, 12)
    assert s.sketch == () and s.histogram is None
    # equal counts are ordered by value
    assert column_stats(pl.DataFrame({"c": values}), top_k=4)["c"].top == (("a", 5), ("b", 3), ("c", 2), ("d", 1))
    assert column_stats(pl.DataFrame({"c": values}))["c"].other == 0


def test_polars_categorical_and_long_values() -> None:
    long = "x" * (MAX_VALUE_CHARS + 50)
    frame = pl.DataFrame({"c": pl.Series(["u", "v", "u"], dtype=pl.Categorical), "t": [long, long + "y", "short"]})
    stats = column_stats(frame)
    assert stats["c"].kind == "categorical" and stats["c"].top == (("u", 2), ("v", 1))
    # values sharing a cut prefix are counted together; stored values stay short
    key, n = stats["t"].top[0]
    assert n == 2 and len(key) == MAX_VALUE_CHARS
    assert stats["t"].top[1] == ("short", 1)


def test_boolean_column() -> None:
    s = column_stats(pl.DataFrame({"b": [True, True, False, None]}))["b"]
    assert s.kind == "boolean"
    assert s.top == (("true", 2), ("false", 1))
    assert s.mean == pytest.approx(2 / 3)
    assert (s.nulls, s.distinct, s.other) == (1, 2, 0)


def test_timestamps_are_seconds_since_the_epoch() -> None:
    frame = pl.DataFrame({
        "ts": [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), None],
        "day": [date(1970, 1, 2), date(1970, 1, 3), date(1970, 1, 4)],
    })
    stats = column_stats(frame)
    ts = stats["ts"]
    assert ts.kind == "timestamp"
    assert (ts.min, ts.max, ts.nulls) == (1767225600.0, 1767312000.0, 1)
    assert ts.mean == 1767225600.0 + 43200.0
    assert stats["day"].kind == "timestamp"
    assert (stats["day"].min, stats["day"].max) == (86400.0, 259200.0)


def test_all_null_columns() -> None:
    frame = pl.DataFrame({
        "f": pl.Series([None, None, None], dtype=pl.Float64),
        "s": pl.Series([None, None, None], dtype=pl.String),
        "n": pl.Series([None, None, None]),
    })
    stats = column_stats(frame)
    f = stats["f"]
    assert (f.kind, f.count, f.nulls, f.values, f.null_fraction) == ("numeric", 3, 3, 0, 1.0)
    assert f.mean is None and f.sketch == () and f.histogram is None and f.quantiles == {}
    assert (stats["s"].kind, stats["s"].top, stats["s"].other, stats["s"].distinct) == ("categorical", (), 0, 0)
    assert stats["n"].kind == "other" and stats["n"].nulls == 3
    for s in stats.values():
        assert roundtrip(s) == s


def test_empty_frame() -> None:
    frame = pl.DataFrame(schema={"x": pl.Float64, "c": pl.String, "b": pl.Boolean, "t": pl.Datetime("us", "UTC")})
    stats = column_stats(frame)
    assert list(stats) == ["x", "c", "b", "t"]
    for s in stats.values():
        assert (s.count, s.nulls, s.values, s.null_fraction) == (0, 0, 0, 0.0)
        assert s.sketch == () and s.mean is None
        assert roundtrip(s) == s


def test_other_kinds_keep_counts_only() -> None:
    s = column_stats(pl.DataFrame({"emb": [[1.0, 2.0], [1.0, 2.0], None]}))["emb"]
    assert (s.kind, s.count, s.nulls) == ("other", 3, 1)
    assert s.sketch == () and s.top == ()


def test_json_round_trip_of_every_kind_and_modest_size() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    frame = pl.DataFrame({
        "x": rng.normal(size=n),
        "i": rng.integers(0, 1000, n),
        "c": [f"value-{v:05d}" for v in rng.integers(0, 5000, n)],
        "b": rng.random(n) < 0.3,
        "t": pl.datetime_range(datetime(2026, 1, 1), datetime(2026, 1, 1, 2, 46, 39), "1s", eager=True),
    })
    stats = column_stats(frame)
    for s in stats.values():
        data = s.to_dict()
        text = json.dumps(data, allow_nan=False)
        assert len(text) < 4500, (s.name, len(text))
        assert roundtrip(s) == s
    assert stats_from_dict(json.loads(json.dumps(stats_to_dict(stats)))) == stats
    assert stats["c"].other > 0 and len(stats["c"].top) == 100


def test_from_dict_rejects_malformed_statistics() -> None:
    good = column_stats(pl.DataFrame({"x": [1.0, 2.0]}))["x"].to_dict()
    with pytest.raises(MonitoringError, match=r"'x' are malformed.*missing field 'count'"):
        ColumnStats.from_dict({k: v for k, v in good.items() if k != "count"})
    with pytest.raises(MonitoringError, match="sketch has 3 points"):
        ColumnStats.from_dict({**good, "sketch": [1, 2, 3]})
    with pytest.raises(MonitoringError, match="kind 'vector'"):
        ColumnStats.from_dict({**good, "kind": "vector"})
    with pytest.raises(MonitoringError, match="format version 99"):
        ColumnStats.from_dict({**good, "version": 99})


def test_columns_selection_arrow_input_and_unknown_columns() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "x"], "c": [0.5, 1.5, None]})
    stats = column_stats(table, ["c", "a"])
    assert list(stats) == ["c", "a"]
    assert stats["a"].mean == 2.0
    with pytest.raises(MonitoringError, match="unknown column\\(s\\) 'zz'; the frame has 'a', 'b', 'c'") as e:
        column_stats(table, ["a", "zz"])
    assert isinstance(e.value, FeatureStoreError)
    with pytest.raises(MonitoringError, match="bins"):
        column_stats(table, bins=0)


def test_sampling_keeps_exact_counts_and_close_quantiles() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 2.0, 200_000)
    frame = pl.DataFrame({"x": values})
    sampled = column_stats(frame, sample_values=5_000)["x"]
    assert sampled.sample_size == 5_000
    assert (sampled.min, sampled.max) == (pytest.approx(values.min()), pytest.approx(values.max()))
    assert sampled.mean == pytest.approx(values.mean())
    assert sampled.histogram is not None and sum(sampled.histogram.counts) == len(values)
    exact = np.quantile(values, [0.05, 0.5, 0.95])
    got = [sampled.quantiles[k] for k in ("p05", "p50", "p95")]
    assert got == pytest.approx(list(exact), abs=0.15)
    # the same seed gives the same sketch, so reruns store the same statistics
    assert column_stats(frame, sample_values=5_000)["x"] == sampled
    assert column_stats(frame, sample_values=None)["x"].sample_size is None
