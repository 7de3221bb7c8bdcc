"""Deterministic data for the example repo (and the benchmarks, at larger scales).

    python generate_data.py [--users N] [--rows-per-user R] [--seed S]

Writes data/sources/{user_profile,user_transactions,user_web_sessions}.parquet and
data/entity_rows.parquet. The data has what real data has: duplicate event timestamps told apart by
the created timestamp, about 0.5% nulls, and entity rows for unknown users and for times before any
data.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
_US = 1_000_000
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "NG", "CA", "AU"]
CHANNELS = ["organic", "ads", "referral", "partner"]
DEVICES = ["ios", "android", "web", "tablet"]


def _timestamps(rng: np.random.Generator, n_users: int, rows_per_user: int) -> tuple[np.ndarray, np.ndarray]:
    """User ids and event times (microseconds since epoch), with some exact duplicates."""
    users = np.repeat(np.arange(n_users, dtype=np.int64), rows_per_user)
    n = len(users)
    base = int(START.timestamp()) * _US
    # Events land on whole seconds so that exact duplicates are common enough to matter.
    ts = base + rng.integers(0, DAYS * 86_400, n, dtype=np.int64) * _US
    dup = rng.random(n) < 0.02  # 2% of rows repeat the previous row's (user, event time)
    dup[0] = False
    same_user = np.concatenate([[False], users[1:] == users[:-1]])
    dup &= same_user
    idx = np.flatnonzero(dup)
    ts[idx] = ts[idx - 1]
    return users, ts


def _choice(rng: np.random.Generator, values: list[str], n: int) -> np.ndarray:
    return np.array(values, dtype=object)[rng.integers(0, len(values), n)]


def _nullify(rng: np.random.Generator, values: np.ndarray, typ: pa.DataType, rate: float = 0.005) -> pa.Array:
    mask = rng.random(len(values)) < rate
    return pa.array(values, type=typ, mask=mask)


def _created(rng: np.random.Generator, ts: np.ndarray) -> pa.Array:
    return pa.array(ts + rng.integers(0, 3_600, len(ts), dtype=np.int64) * _US, pa.timestamp("us"))


def _table(users: np.ndarray, ts: np.ndarray, created: pa.Array, cols: dict[str, pa.Array]) -> pa.Table:
    return pa.table({
        "user_id": pa.array(users, pa.int64()),
        "event_timestamp": pa.array(ts, pa.timestamp("us")),
        "created": created,
        **cols,
    })


def generate(out: Path, n_users: int = 2_000, rows_per_user: int = 10, seed: int = 7,
             entity_rows: int | None = None) -> dict[str, Path]:
    """Write the three sources and an entity-rows file under ``out``; return their paths."""
    rng = np.random.default_rng(seed)
    n = n_users * rows_per_user
    sources = out / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    # Profiles change less often than the daily aggregates.
    users, ts = _timestamps(rng, n_users, max(1, rows_per_user // 4))
    m = len(users)
    profile = _table(users, ts, _created(rng, ts), {
        "age": _nullify(rng, rng.integers(18, 90, m), pa.int64()),
        "country": _nullify(rng, _choice(rng, COUNTRIES, m), pa.string()),
        "account_age_days": _nullify(rng, rng.integers(0, 3_000, m), pa.int64()),
        "is_premium": _nullify(rng, rng.random(m) < 0.2, pa.bool_()),
        "credit_score": _nullify(rng, np.round(rng.normal(680, 60, m), 1), pa.float64()),
        "signup_channel": _nullify(rng, _choice(rng, CHANNELS, m), pa.string()),
    })
    paths["user_profile"] = sources / "user_profile.parquet"
    pq.write_table(profile, paths["user_profile"])

    users, ts = _timestamps(rng, n_users, rows_per_user)
    amounts = np.round(rng.gamma(2.0, 40.0, n), 2)
    txns = _table(users, ts, _created(rng, ts), {
        "txn_count_1d": _nullify(rng, rng.poisson(3, n), pa.int64()),
        "txn_amount_1d": _nullify(rng, amounts, pa.float64()),
        "txn_avg_amount_7d": _nullify(rng, np.round(amounts * rng.uniform(0.5, 1.5, n), 2), pa.float64()),
        "txn_max_amount_7d": _nullify(rng, np.round(amounts * rng.uniform(1.0, 3.0, n), 2), pa.float64()),
        "refund_count_30d": _nullify(rng, rng.poisson(0.3, n), pa.int64()),
        "distinct_merchants_7d": _nullify(rng, rng.integers(1, 25, n), pa.int64()),
        "foreign_txn_ratio_30d": _nullify(rng, np.round(rng.beta(1, 12, n), 4), pa.float64()),
    })
    paths["user_transactions"] = sources / "user_transactions.parquet"
    pq.write_table(txns, paths["user_transactions"])

    users, ts = _timestamps(rng, n_users, rows_per_user)
    sessions = _table(users, ts, _created(rng, ts), {
        "sessions_1d": _nullify(rng, rng.poisson(2, n), pa.int64()),
        "avg_session_minutes_7d": _nullify(rng, np.round(rng.exponential(6.0, n), 2), pa.float64()),
        "pages_per_session_7d": _nullify(rng, np.round(rng.exponential(4.0, n) + 1, 2), pa.float64()),
        "last_device": _nullify(rng, _choice(rng, DEVICES, n), pa.string()),
        "cart_abandon_rate_30d": _nullify(rng, np.round(rng.beta(2, 5, n), 4), pa.float64()),
        "days_since_last_login": _nullify(rng, rng.integers(0, 30, n), pa.int64()),
    })
    paths["user_web_sessions"] = sources / "user_web_sessions.parquet"
    pq.write_table(sessions, paths["user_web_sessions"])

    paths["entity_rows"] = out / "entity_rows.parquet"
    pq.write_table(make_entity_rows(entity_rows or n_users, n_users, seed + 1), paths["entity_rows"])
    return paths


def make_entity_rows(n: int, n_users: int, seed: int = 8) -> pa.Table:
    """Labelled entity rows: mostly known users inside the data's time range, plus 2% unknown users
    and 2% timestamps before the data starts."""
    rng = np.random.default_rng(seed)
    base = int(START.timestamp()) * _US
    users = rng.integers(0, n_users, n, dtype=np.int64)
    unknown = rng.random(n) < 0.02
    users[unknown] = n_users + rng.integers(0, n_users, int(unknown.sum()))
    ts = base + rng.integers(0, (DAYS + 5) * 86_400 * _US, n, dtype=np.int64)
    early = rng.random(n) < 0.02
    ts[early] = base - rng.integers(1, 30 * 86_400 * _US, int(early.sum()), dtype=np.int64)
    return pa.table({
        "row_id": pa.array(np.arange(n, dtype=np.int64)),
        "user_id": pa.array(users),
        "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.random(n) < 0.1),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rows-per-user", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    paths = generate(args.out, args.users, args.rows_per_user, args.seed)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    main()
