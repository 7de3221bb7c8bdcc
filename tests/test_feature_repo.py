"""The example repo works end to end: generate, apply, materialize, training set."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl

from featurestore import FeatureStore

EXAMPLE = Path(__file__).resolve().parents[1] / "feature_repo"


def test_example_repo_end_to_end(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    sys.path.insert(0, str(repo))
    try:
        import generate_data

        paths = generate_data.generate(repo / "data", n_users=300, rows_per_user=10, seed=3)
    finally:
        sys.path.remove(str(repo))
        sys.modules.pop("generate_data", None)

    store = FeatureStore(repo)
    plan = store.apply()
    # 1 entity, 3 base views (19 features) and 2 derived ones, an on-demand view, 2 services.
    assert plan.counts() == {"create": 9, "update": 0, "delete": 0, "unchanged": 0}
    views = [v for v in store.list_feature_views() if v.file_source is not None]
    assert sum(len(v.feature_names) for v in views) == 19

    entity_df = pl.read_parquet(paths["entity_rows"])
    refs = [f"{v.name}:{f}" for v in views for f in v.feature_names]
    before = store.get_historical_features(entity_df, refs)
    assert before.height == entity_df.height
    assert before.get_column("row_id").to_list() == entity_df.get_column("row_id").to_list()
    # Realistic data: most known users in range have a profile; unknown users never do.
    known = before.filter(pl.col("user_id") < 300)
    assert known.get_column("age").null_count() < known.height
    assert before.filter(pl.col("user_id") >= 300).get_column("age").null_count() == before.filter(
        pl.col("user_id") >= 300).height

    store.materialize_offline("2026-01-01", "2026-04-01")
    after = store.get_historical_features(entity_df, refs)
    assert after.equals(before)

    service = store.get_historical_features(entity_df, "fraud_model_v1")
    assert service.columns[-13:] == [
        "age", "country", "account_age_days", "credit_score", "txn_count_1d", "txn_amount_1d",
        "txn_avg_amount_7d", "txn_max_amount_7d", "refund_count_30d", "distinct_merchants_7d",
        "foreign_txn_ratio_30d", "sessions_1d", "last_device",
    ]
