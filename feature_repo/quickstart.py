"""The quickstart: apply the example repo, build a point-in-time-correct training set, serve online.

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

    # Online: 'featurestore materialize' loaded the latest values into the online store. The example
    # data ends on 2026-04-01, so values of views with a ttl are older than their ttl today: they
    # come back as None with status OUTSIDE_MAX_AGE. A fresh push makes user 1's sessions current.
    from datetime import UTC, datetime

    with store:  # closing the store stops the embedded online server it started
        store.push("user_web_sessions", pl.DataFrame({
            "user_id": [1], "event_timestamp": [datetime.now(UTC)], "sessions_1d": [3],
            "avg_session_minutes_7d": [6.0], "pages_per_session_7d": [4.5], "last_device": ["ios"],
            "cart_abandon_rate_30d": [0.2], "days_since_last_login": [0],
        }))
        online = store.get_online_features("fraud_model_v1", [{"user_id": 1}, {"user_id": 2}])
        print("\nOnline feature vectors from the feature service (value, status):")
        values = online.to_dict()
        for name in ("age", "country", "txn_avg_amount_7d", "sessions_1d", "last_device"):
            cells = [f"{values[name][i]!s:>6} {online.statuses[name][i].value:<15}" for i in range(len(online))]
            print(f"  {name:<18} user 1: {cells[0]}  user 2: {cells[1]}")


if __name__ == "__main__":
    main()
