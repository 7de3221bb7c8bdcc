"""Feature views and the feature service of the example repo.

Three views of one entity, 19 features: a slowly changing profile, daily transaction aggregates
and daily web-session aggregates, as a fraud or churn model would use them.
"""

from datetime import timedelta

from entities import user

from featurestore import Bool, FeatureService, FeatureView, Field, FileSource, Float64, Int64, String

user_profile = FeatureView(
    "user_profile",
    entities=[user],
    source=FileSource(
        "data/sources/user_profile.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
    schema=[
        Field("user_id", Int64),
        Field("age", Int64),
        Field("country", String),
        Field("account_age_days", Int64),
        Field("is_premium", Bool),
        Field("credit_score", Float64),
        Field("signup_channel", String),
    ],
    ttl=None,
    schedule="@daily",  # Airflow runs it daily (dags/)
    description="Profile attributes, updated when the user edits them.",
    owner="growth@example.com",
    tags={"team": "growth"},
)

user_transactions = FeatureView(
    "user_transactions",
    entities=[user],
    source=FileSource(
        "data/sources/user_transactions.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
    schema=[
        Field("txn_count_1d", Int64),
        Field("txn_amount_1d", Float64),
        Field("txn_avg_amount_7d", Float64),
        Field("txn_max_amount_7d", Float64),
        Field("refund_count_30d", Int64),
        Field("distinct_merchants_7d", Int64),
        Field("foreign_txn_ratio_30d", Float64),
    ],
    ttl=timedelta(days=7),
    schedule="@daily",  # Airflow runs it daily (dags/)
    description="Daily transaction aggregates per user.",
    owner="risk@example.com",
    tags={"team": "risk"},
)

user_web_sessions = FeatureView(
    "user_web_sessions",
    entities=[user],
    source=FileSource(
        "data/sources/user_web_sessions.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
    schema=[
        Field("sessions_1d", Int64),
        Field("avg_session_minutes_7d", Float64),
        Field("pages_per_session_7d", Float64),
        Field("last_device", String),
        Field("cart_abandon_rate_30d", Float64),
        Field("days_since_last_login", Int64),
    ],
    ttl=timedelta(days=7),
    schedule="@daily",  # Airflow runs it daily (dags/)
    description="Daily web-session aggregates per user.",
    owner="growth@example.com",
)

fraud_model_v1 = FeatureService(
    "fraud_model_v1",
    features=[
        user_profile[["age", "country", "account_age_days", "credit_score"]],
        user_transactions,
        user_web_sessions[["sessions_1d", "last_device"]],
    ],
    description="Inputs of the fraud model, version 1.",
    owner="risk@example.com",
)
