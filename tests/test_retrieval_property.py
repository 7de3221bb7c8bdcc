"""Property test: get_historical_features equals a brute-force Python reference on random data.

Timestamps come from a small grid so exact ties (same event time, same created time) are common;
entity rows hit boundaries of the ttl window exactly. Both read paths are checked: straight from
the source, and with part of the time range served by offline snapshots.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from tests.conftest import BASIC_DEFS, events, ts, write_repo

BASE = ts(2026, 1, 1)
STEP = timedelta(hours=1)

feature_rows = st.lists(
    st.tuples(
        st.integers(0, 3),                       # user_id
        st.integers(0, 12),                      # event time, in steps
        st.one_of(st.none(), st.integers(0, 3)),  # created time, in steps after the event (None: missing)
        st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    ),
    min_size=0, max_size=40,
)
entity_rows = st.lists(st.tuples(st.integers(0, 4), st.integers(-2, 16)), min_size=1, max_size=30)
ttls = st.sampled_from([None, 1, 3])  # in steps


def reference(feats: list[tuple], probes: list[tuple[int, datetime]], ttl: timedelta | None) -> list:
    """The rule, written as plainly as possible: filter, then take the max by (event, created, position)."""
    out = []
    for user, t in probes:
        best = None
        for pos, (u, event, created, value) in enumerate(feats):
            if u != user or event > t or (ttl is not None and event < t - ttl):
                continue
            key = (event, created or datetime.min.replace(tzinfo=event.tzinfo), pos)
            if best is None or key > best[0]:
                best = (key, value)
        out.append(None if best is None else best[1])
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feats=feature_rows, probes=entity_rows, ttl_steps=ttls, split=st.integers(0, 14))
def test_matches_brute_force(tmp_path_factory, feats, probes, ttl_steps, split) -> None:  # type: ignore[no-untyped-def]
    ttl = None if ttl_steps is None else STEP * ttl_steps
    rows = [
        (u, BASE + STEP * e, None if c is None else BASE + STEP * (e + c), v, f"{u}-{e}-{i}")
        for i, (u, e, c, v) in enumerate(feats)
    ]
    ttl_text = "None" if ttl is None else f"timedelta(seconds={ttl.total_seconds()})"
    root = write_repo(
        tmp_path_factory.mktemp("repo"),
        {"defs.py": BASIC_DEFS.format(ttl=ttl_text)},
        {"data/events.parquet": events(rows)},
    )
    store = FeatureStore(root)
    store.apply()
    probe_times = [(u, BASE + STEP * s) for u, s in probes]
    frame = pl.DataFrame(
        {"user_id": [p[0] for p in probe_times], "event_timestamp": [p[1] for p in probe_times]},
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")},
    )
    expected_value = reference([(r[0], r[1], r[2], r[3]) for r in rows], probe_times, ttl)
    expected_label = reference([(r[0], r[1], r[2], r[4]) for r in rows], probe_times, ttl)

    got = store.get_historical_features(frame, ["stats:value", "stats:label"])
    assert got.get_column("value").to_list() == expected_value
    assert got.get_column("label").to_list() == expected_label
    for strategy in ("asof", "range"):
        assert store.get_historical_features(frame, ["stats:value", "stats:label"], join_strategy=strategy).equals(got)

    # Serve part of the range from an offline snapshot: the answer must not change.
    store.materialize_offline(BASE + STEP * split, BASE + STEP * (split + 4))
    for strategy in ("asof", "range"):
        cached = store.get_historical_features(frame, ["stats:value", "stats:label"], join_strategy=strategy)
        assert cached.equals(got)
    # And everything from snapshots.
    store.materialize_offline(BASE - STEP * 10, BASE + STEP * 40)
    for strategy in ("asof", "range"):
        assert store.get_historical_features(frame, ["stats:value", "stats:label"], join_strategy=strategy).equals(got)
    assert isinstance(root, Path)
