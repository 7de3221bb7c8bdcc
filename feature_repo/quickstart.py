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

    entity_rows = pl.read_parquet(repo / "data" / "entity_rows.parquet").head(8)
    training = store.get_historical_features(entity_rows, features="fraud_model_v1")
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print("Training set from feature service 'fraud_model_v1' (first rows):")
        print(training)


if __name__ == "__main__":
    main()
