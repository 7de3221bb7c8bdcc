"""Time rules, in one place: everything is UTC, microsecond precision.

Naive timestamps are read as UTC; timestamps with any other zone or offset are converted to UTC.
Inside DuckDB queries instants travel as naive UTC ``TIMESTAMP`` values (the session time zone is
UTC), which keeps interval arithmetic free of daylight-saving surprises.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


def to_utc(value: datetime | date | str) -> datetime:
    """A tz-aware UTC datetime from a datetime (naive = UTC), a date or an ISO-8601 string."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"cannot read {text!r} as a timestamp; use ISO 8601, e.g. 2026-01-31 or 2026-01-31T12:00:00Z"
            ) from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"expected a datetime, date or ISO string, got {type(value).__name__}")


def to_naive_utc(value: datetime | date | str) -> datetime:
    """The same instant as a naive UTC datetime (how DuckDB queries see it)."""
    return to_utc(value).replace(tzinfo=None)


def arrow_to_naive_utc(array: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A timestamp/date Arrow column as naive UTC microsecond timestamps."""
    import pyarrow as pa
    import pyarrow.types as pat

    typ = array.type
    if pat.is_date(typ):
        return array.cast(pa.timestamp("us"))
    if pat.is_timestamp(typ):
        if typ.tz is not None:
            # The stored values of a tz-aware timestamp are already UTC instants.
            array = array.cast(pa.timestamp(typ.unit, tz="UTC")).cast(pa.timestamp(typ.unit))
        if typ.unit == "ns":
            return array.cast(pa.timestamp("us"), safe=False)
        return array.cast(pa.timestamp("us"))
    raise TypeError(f"expected a timestamp or date column, got {typ}")
