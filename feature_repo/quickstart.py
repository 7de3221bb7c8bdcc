"""The quickstart: apply the example repo and build a point-in-time-correct training set.

    python quickstart.py        (run by scripts/quickstart.sh after generating the data)
"""

from __future__ import annotations

from pathlib import Path


def main() -> None:
    import polars as pl

    from featurestore import FeatureStore

    repo = Path(__file__).parent
    store = FeatureStore(repo)
    print(store.plan().explain())
    store.apply()
    print("Applied.\n")

    entity_rows = pl.read_parquet(repo / "data" / "entity_rows.parquet")
    training = store.get_historical_features(entity_rows, features="fraud_model_v1")
    features = training.columns[entity_rows.width:]
    filled = training.select(pl.col(features).is_not_null().mean()).row(0)
    print(
        f"Training set from feature service 'fraud_model_v1': {training.height} rows (one per entity row, "
        f"in order), {len(features)} features, {100 * sum(filled) / len(filled):.0f}% of values present."
    )
    sample = training.select(
        "row_id", "user_id", pl.col("event_timestamp").dt.strftime("%Y-%m-%d %H:%M"), "label",
        "age", "country", "credit_score", "txn_amount_1d", "txn_avg_amount_7d", "sessions_1d", "last_device",
    )
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(sample.filter(pl.col("txn_amount_1d").is_not_null()).head(5))


if __name__ == "__main__":
    main()
