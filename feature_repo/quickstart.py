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
        _print_vectors(online, ("age", "country", "txn_avg_amount_7d", "sessions_1d", "last_device"))

        # fraud_model_v2 adds derived features (derived.py): 30-day aggregates, a SQL view, an
        # on-demand ratio to the payment amount sent with the request, and imputation learned from
        # a saved training set and reused unchanged online.
        saved = store.save_training_set(
            "fraud_v2_train", entity_rows.with_columns(amount=pl.lit(120.0)), "fraud_model_v2", overwrite=True,
        )
        learned = store.get_training_set("fraud_v2_train")["imputation"]
        print(f"\nSaved training set 'fraud_v2_train' ({saved.height} rows); imputation learned from it:")
        for ref, info in learned.items():
            print(f"  {ref:<36} {info['strategy']:<8} {info['value']!r}")
        online = store.get_online_features("fraud_model_v2", [{"user_id": 1, "amount": 120.0},
                                                             {"user_id": 99_999, "amount": 40.0}])
        print("Online vectors of fraud_model_v2 (user 99999 is unknown: imputed):")
        _print_vectors(online, ("credit_score", "country", "txn_amount_1d_sum_30d", "amount_vs_avg_7d"))


def _print_vectors(online: object, names: tuple[str, ...]) -> None:
    values = online.to_dict()  # type: ignore[attr-defined]
    statuses = online.statuses  # type: ignore[attr-defined]
    for name in names:
        cells = [f"{values[name][i]!s:>8.8} {statuses[name][i].value:<15}" for i in range(len(values[name]))]
        print(f"  {name:<22} user {values['user_id'][0]}: {cells[0]}  user {values['user_id'][1]}: {cells[1]}")


if __name__ == "__main__":
    main()
