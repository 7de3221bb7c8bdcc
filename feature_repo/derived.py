"""Features derived from the base views: windowed aggregations, a SQL view joining two views and
validated before it is written, an on-demand feature computed at request time, and a feature
service that imputes missing values.
"""

from datetime import timedelta

import polars as pl  # functions may use pl (and math, datetime) without importing them; this is for readers and linters
from entities import user
from features import user_profile, user_transactions

from featurestore import (
    Aggregation,
    Expect,
    FeatureService,
    FeatureView,
    Field,
    Float64,
    Impute,
    RequestSource,
    on_demand_feature_view,
)

# Aggregates the daily rows of user_transactions over trailing windows (t - window, t].
user_spend = FeatureView(
    "user_spend",
    entities=[user],
    source=user_transactions,
    schema=[Field("txn_amount_1d", Float64)],
    aggregations=[
        Aggregation("txn_amount_1d", "sum", timedelta(days=30)),
        Aggregation("txn_amount_1d", "max", timedelta(days=30)),
        Aggregation("txn_amount_1d", "count", timedelta(days=30), name="active_days_30d"),
    ],
    schedule="@daily",
    description="30-day spend per user, from the daily transaction aggregates.",
    owner="risk@example.com",
)

# Each day's spend against the credit score the user had at that time (an ASOF join in DuckDB SQL).
user_credit_usage = FeatureView(
    "user_credit_usage",
    entities=[user],
    sources={"t": user_transactions, "p": user_profile},
    sql="""
        SELECT t.user_id, t.event_timestamp, t.created,
               t.txn_amount_1d / NULLIF(p.credit_score, 0) AS spend_per_credit_point
        FROM t ASOF LEFT JOIN p ON t.user_id = p.user_id AND t.event_timestamp >= p.event_timestamp
    """,
    schema=[Field("spend_per_credit_point", Float64)],
    created_timestamp_column="created",
    ttl=timedelta(days=7),
    schedule="@daily",
    # Checked by Great Expectations before every write; failing rows are set aside, not written
    # (`featurestore quarantine user_credit_usage` lists them).
    expectations=[
        Expect.not_null("user_id"),
        Expect.between("spend_per_credit_point", 0, 1),
        Expect.null_fraction("spend_per_credit_point", at_most=0.6),  # no profile yet: no credit score
    ],
    on_failure="quarantine",
    owner="risk@example.com",
)

payment = RequestSource("payment", schema=[Field("amount", Float64)])


@on_demand_feature_view(
    sources=[user_transactions[["txn_avg_amount_7d"]], payment],
    schema=[Field("amount_vs_avg_7d", Float64)],
)
def amount_vs_avg(df):
    """The payment being scored, relative to the user's 7-day average transaction."""
    return df.select((pl.col("amount") / pl.col("txn_avg_amount_7d")).alias("amount_vs_avg_7d"))


fraud_model_v2 = FeatureService(
    "fraud_model_v2",
    features=[
        user_profile[["age", "country", "credit_score"]],
        user_spend,
        user_credit_usage,
        amount_vs_avg,
    ],
    imputation={
        "user_profile:credit_score": Impute.median(),
        "user_profile:country": Impute.mode(),
        "user_spend:txn_amount_1d_sum_30d": Impute.constant(0.0),
        "amount_vs_avg:amount_vs_avg_7d": Impute.constant(1.0),
    },
    description="Inputs of the fraud model, version 2: 30-day spend, credit usage, the payment amount.",
    owner="risk@example.com",
)
