"""The README's transformation example is a working repo: apply it, read features offline and online."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from tests.conftest import online_config

README = Path(__file__).resolve().parent.parent / "README.md"
T0 = datetime(2026, 1, 1)


def _example() -> str:
    text = README.read_text()
    section = text.split("## Transformations, aggregations and on-demand features", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README lost its transformation example"
    return found.group(1)


@pytest.fixture
def repo(tmp_path: Path, redis_server: Any, project_name: str) -> Path:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "featurestore.yaml").write_text(online_config(redis_server, project_name))
    (root / "defs.py").write_text(_example())
    day = timedelta(days=1)
    pl.DataFrame({
        "user_id": [1, 1, 1, 2],
        "amount": [10_000.0, 20_000.0, None, 500.0],
        "ts": [T0, T0 + 5 * day, T0 + 6 * day, T0 + day],
        "created": [T0, T0 + 5 * day, T0 + 6 * day, T0 + day],
    }).write_parquet(root / "data" / "txns.parquet")
    pl.DataFrame({"user_id": [1, 2], "country": ["FR", "DE"], "ts": [T0, T0]}).write_parquet(
        root / "data" / "users.parquet")
    return root


def test_readme_example_applies_and_serves(repo: Path) -> None:
    end = T0 + timedelta(days=7)
    with FeatureStore(repo) as store:
        plan = store.apply()
        assert {c.name for c in plan.changes} >= {"txn_enriched", "big_txn", "in_cents", "spend", "amount_ratio", "model"}
        entity = pl.DataFrame({"user_id": [1, 2], "event_timestamp": [end, end], "amount": [150.0, 5.0]})
        offline = store.get_historical_features(
            entity, ["big_txn:is_big", "in_cents:amount_cents", "spend:amount_sum_7d", "spend:amount_count_1d",
                     "spend:amount_mean_30d", "amount_ratio:amount_ratio"])
        assert offline.to_dicts() == [
            # user 1's newest event has no amount; the 7-day window (Jan 1, Jan 8] excludes Jan 1
            {"user_id": 1, "event_timestamp": end, "amount": 150.0, "is_big": None, "amount_cents": None,
             "amount_sum_7d": 20_000.0, "amount_count_1d": 0, "amount_mean_30d": 15_000.0,
             "amount_ratio": 0.01},
            {"user_id": 2, "event_timestamp": end, "amount": 5.0, "is_big": False, "amount_cents": 50_000.0,
             "amount_sum_7d": 500.0, "amount_count_1d": 0, "amount_mean_30d": 500.0, "amount_ratio": 0.01},
        ]
        store.materialize(T0, end)
        # Transformed views got their offline snapshot of the window too; plain views did not.
        snapshots = {r.view for r in store.offline_runs() if r.kind == "offline" and r.status == "committed"}
        assert snapshots == {"txn_enriched", "big_txn", "in_cents"}
        # A caller that has just snapshotted the window (the Airflow tasks) skips the second snapshot.
        before = len(store.offline_runs())
        store.materialize(T0, end, views=["txn_enriched"], write_snapshot=False)
        assert [r.kind for r in store.offline_runs()[before:]] == ["online"]
        online = store.get_online_features(
            "model", [{"user_id": 1, "amount": 150.0}, {"user_id": 2, "amount": 5.0}]).to_dict()
        assert online == {
            "user_id": [1, 2], "amount": [150.0, 5.0], "amount_sum_7d": [20_000.0, 500.0],
            "amount_count_1d": [0, 0], "amount_mean_30d": [15_000.0, 500.0], "amount_ratio": [0.01, 0.01],
        }
        assert str(store.lineage("big_txn:is_big").render()).splitlines()[-1].strip().endswith(
            "data/txns.parquet : amount   (SQL: t.amount / 100)")


def test_cli_lists_describes_and_traces_the_example(repo: Path) -> None:
    from click.testing import CliRunner

    from featurestore.cli import cli

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--repo", str(repo), *args], obj={})
        assert result.exit_code == 0, result.output
        return result.output

    run("apply")
    lines = {" ".join(line.split()[:-5]): " ".join(line.split()) for line in run("ls").splitlines()}
    assert any(v.endswith("spend v1 1 fields, entities ['user'], 3 aggregations") for v in lines.values())
    assert any(v.endswith("amount_ratio v1 1 features from ['spend'], polars mode") for v in lines.values())
    assert any(v.endswith("txn_enriched v1 2 fields, entities ['user'], sql transformation") for v in lines.values())
    assert run("ls", "on-demand-views").count("\n") == 2  # header and one view
    assert '"kind": "on_demand_feature_view"' in run("describe", "amount_ratio")
    assert run("lineage", "--source", "data/users.parquet").split() == ["txn_enriched:country"]
    assert run("lineage", "--source", "data/txns.parquet", "--column", "amount").split() == [
        "amount_ratio:amount_ratio", "big_txn:is_big", "in_cents:amount_cents", "spend:amount_count_1d",
        "spend:amount_mean_30d", "spend:amount_sum_7d", "txn_enriched:amount_eur"]
