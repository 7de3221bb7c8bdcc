"""Column statistics for materialization runs and saved training sets.

``column_stats`` profiles each column of a frame in a few vectorised passes and returns a
``ColumnStats``: counts, nulls, moments, a 101-point quantile sketch and a histogram for numbers and
times, the most frequent values for categories. A ``ColumnStats`` is plain data (``to_dict`` /
``from_dict``), 1-3 KB of JSON a column, and carries all that ``drift.compare`` needs: drift is computed
from stored statistics without reading the data again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from featurestore.monitoring import MonitoringError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa

Kind = Literal["numeric", "categorical", "boolean", "timestamp", "other"]
KINDS: tuple[Kind, ...] = ("numeric", "categorical", "boolean", "timestamp", "other")

#: The sketch holds the quantiles at 0, 0.01, ..., 1 (so its ends are the exact min and max).
SKETCH_POINTS = 101
#: The named quantiles, as positions in the sketch.
QUANTILES: dict[str, int] = {"p01": 1, "p05": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}
#: Category values longer than this are stored cut (values sharing the prefix are counted together).
MAX_VALUE_CHARS = 200
#: Distinct counts are exact up to this many values, a HyperLogLog estimate above.
EXACT_DISTINCT_MAX = 1_000_000
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts of values in ``len(edges) - 1`` equal-width bins; the last bin includes its right edge."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts)}


@dataclass(frozen=True, slots=True)
class ColumnStats:
    """The profile of one column. Numbers are floats; times are seconds since the Unix epoch (UTC).

    ``count`` is every row; ``nulls`` the null rows; ``non_finite`` the NaN and infinite floats, which
    are left out of every other statistic and counted as missing in ``null_fraction``. ``sketch``
    holds 101 quantiles (0%, 1%, ..., 100%) of the present values (numbers, times); ``top`` the most
    frequent values with their counts (categories, booleans as ``"true"``/``"false"``), ``other`` the
    present values not in ``top``. ``sample_size`` says how many values the sketch was computed
    from when the column was sampled (None: from all of them); every other figure is exact except
    ``distinct`` above a million values.
    """

    name: str
    kind: Kind
    dtype: str
    count: int
    nulls: int
    non_finite: int = 0
    distinct: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    sketch: tuple[float, ...] = ()
    histogram: Histogram | None = None
    top: tuple[tuple[str, int], ...] = ()
    other: int = 0
    sample_size: int | None = None

    @property
    def values(self) -> int:
        """Rows with a value (not null, not NaN or infinite)."""
        return self.count - self.nulls - self.non_finite

    @property
    def null_fraction(self) -> float:
        """Share of rows without a value (null, NaN or infinite); 0 for an empty column."""
        return (self.nulls + self.non_finite) / self.count if self.count else 0.0

    @property
    def quantiles(self) -> dict[str, float]:
        """``{"p01": ..., "p50": ..., "p99": ...}`` read from the sketch; empty without values."""
        if len(self.sketch) != SKETCH_POINTS:
            return {}
        return {key: self.sketch[i] for key, i in QUANTILES.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` reads it back. Derived figures are included for readers."""
        out: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "count": self.count,
            "nulls": self.nulls,
            "non_finite": self.non_finite,
            "null_fraction": self.null_fraction,
            "distinct": self.distinct,
        }
        if self.kind in ("numeric", "timestamp", "boolean"):
            out.update(mean=self.mean, std=self.std, min=self.min, max=self.max)
        if self.sketch:
            out["quantiles"] = self.quantiles
            out["sketch"] = list(self.sketch)
        if self.histogram is not None:
            out["histogram"] = self.histogram.to_dict()
        if self.kind in ("categorical", "boolean"):
            out["top"] = [[value, n] for value, n in self.top]
            out["other"] = self.other
        if self.sample_size is not None:
            out["sample_size"] = self.sample_size
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnStats:
        """Inverse of ``to_dict``; raises ``MonitoringError`` on malformed input."""
        name = str(data.get("name", "?"))
        try:
            version = data.get("version", FORMAT_VERSION)
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version!r} is not {FORMAT_VERSION}")
            kind = data["kind"]
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
            hist = data.get("histogram")
            histogram = None
            if hist is not None:
                histogram = Histogram(tuple(float(e) for e in hist["edges"]), tuple(int(c) for c in hist["counts"]))
                if len(histogram.edges) != len(histogram.counts) + 1:
                    raise ValueError("histogram needs one more edge than counts")
            sketch = tuple(float(x) for x in data.get("sketch", ()))
            if sketch and len(sketch) != SKETCH_POINTS:
                raise ValueError(f"sketch has {len(sketch)} points, not {SKETCH_POINTS}")
            return cls(
                name=name,
                kind=kind,
                dtype=str(data["dtype"]),
                count=int(data["count"]),
                nulls=int(data["nulls"]),
                non_finite=int(data.get("non_finite", 0)),
                distinct=_opt_int(data.get("distinct")),
                mean=_opt_float(data.get("mean")),
                std=_opt_float(data.get("std")),
                min=_opt_float(data.get("min")),
                max=_opt_float(data.get("max")),
                sketch=sketch,
                histogram=histogram,
                top=tuple((str(v), int(n)) for v, n in data.get("top", ())),
                other=int(data.get("other", 0)),
                sample_size=_opt_int(data.get("sample_size")),
            )
        except (KeyError, TypeError, ValueError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            raise MonitoringError(
                f"stored statistics for column {name!r} are malformed ({what}); recompute them with column_stats"
            ) from e


def column_stats(
    frame: pl.DataFrame | pa.Table,
    columns: Iterable[str] | None = None,
    *,
    bins: int = 20,
    top_k: int = 100,
    sample_values: int | None = 1_000_000,
    seed: int = 0,
) -> dict[str, ColumnStats]:
    """Profile ``columns`` (default: all) of ``frame``; keys keep the order of ``columns``.

    ``bins`` sets the numeric histogram (equal bins from min to max; one bin per integer when an
    integer column spans at most ``bins`` values); ``top_k`` how many category values are kept.
    The quantile sketch of a column with more than ``sample_values`` values is computed from a
    uniform sample of that many (seeded by ``seed``, so reruns agree): its error, about 0.1% in rank
    for a million values, is far below what drift thresholds look at. Counts, moments, min, max and
    the histogram always use every row. ``sample_values=None`` never samples.

    >>> stats = column_stats(pl.DataFrame({"x": [1.0, 2.0, None]}))
    >>> stats["x"].mean, stats["x"].nulls
    (1.5, 1)
    """
    import polars as pl

    if bins < 1:
        raise MonitoringError(f"bins must be at least 1, got {bins}")
    if top_k < 1:
        raise MonitoringError(f"top_k must be at least 1, got {top_k}")
    if sample_values is not None and sample_values < SKETCH_POINTS:
        raise MonitoringError(f"sample_values must be None or at least {SKETCH_POINTS}, got {sample_values}")
    if isinstance(frame, pl.DataFrame):
        df = frame
    else:
        converted = pl.from_arrow(frame)
        if not isinstance(converted, pl.DataFrame):
            raise MonitoringError(
                f"column_stats takes a Polars DataFrame or an Arrow table, got {type(frame).__name__}"
            )
        df = converted
    names = list(dict.fromkeys(columns)) if columns is not None else list(df.columns)
    unknown = [c for c in names if c not in df.columns]
    if unknown:
        raise MonitoringError(
            f"cannot profile unknown column(s) {', '.join(map(repr, unknown))}; the frame has "
            f"{', '.join(map(repr, df.columns)) or 'no columns'}"
        )
    return {name: _profile(df.get_column(name), bins, top_k, sample_values, seed) for name in names}


def stats_to_dict(stats: Mapping[str, ColumnStats]) -> dict[str, Any]:
    """``{column: ColumnStats.to_dict()}``: what the registry stores for one run or training set."""
    return {name: s.to_dict() for name, s in stats.items()}


def stats_from_dict(data: Mapping[str, Any]) -> dict[str, ColumnStats]:
    """Inverse of ``stats_to_dict``."""
    return {name: ColumnStats.from_dict({**d, "name": name}) for name, d in data.items()}


def kind_of(dtype: pl.DataType) -> Kind:
    """How a Polars type is profiled and compared."""
    import polars as pl

    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_numeric():
        return "numeric"
    if isinstance(dtype, pl.Datetime | pl.Date):
        return "timestamp"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical):
        return "categorical"
    return "other"


def _profile(series: pl.Series, bins: int, top_k: int, sample_values: int | None, seed: int) -> ColumnStats:
    kind = kind_of(series.dtype)
    base: dict[str, Any] = {
        "name": series.name, "kind": kind, "dtype": str(series.dtype),
        "count": series.len(), "nulls": series.null_count(),
    }
    if kind in ("numeric", "timestamp"):
        return _numeric(series, base, bins, sample_values, seed)
    if kind == "boolean":
        return _boolean(series, base)
    if kind == "categorical":
        return _categorical(series, base, top_k)
    return ColumnStats(**base, distinct=_distinct(series))


def _numeric(series: pl.Series, base: dict[str, Any], bins: int, sample_values: int | None, seed: int) -> ColumnStats:
    import numpy as np
    import polars as pl

    if base["kind"] == "timestamp":
        if series.dtype == pl.Date:
            numbers = series.dt.epoch("s").cast(pl.Float64)
        else:
            numbers = series.dt.epoch("us").cast(pl.Float64) * 1e-6
    else:
        numbers = series.cast(pl.Float64)
    finite = numbers.filter(numbers.is_finite())
    n = finite.len()
    base["non_finite"] = base["count"] - base["nulls"] - n
    if n == 0:
        return ColumnStats(**base, distinct=0)
    lo, hi = cast(float, finite.min()), cast(float, finite.max())
    values = finite.to_numpy()
    sample, sample_size = values, None
    if sample_values is not None and n > sample_values:
        sample = values[np.random.default_rng(seed).integers(0, n, sample_values)]
        sample_size = sample_values
    sketch = np.quantile(sample, np.linspace(0.0, 1.0, SKETCH_POINTS))
    sketch[0], sketch[-1] = lo, hi  # exact even when sampled
    sketch = np.clip(sketch, lo, hi)
    integer = series.dtype.is_integer()
    return ColumnStats(
        **base,
        distinct=_distinct(finite),
        mean=_r(finite.mean()),
        std=_r(finite.std()),
        min=_rf(lo),
        max=_rf(hi),
        sketch=tuple(_rf(x) for x in sketch),
        histogram=_histogram(values, lo, hi, bins, integer),
        sample_size=sample_size,
    )


def _histogram(values: np.ndarray, lo: float, hi: float, bins: int, integer: bool) -> Histogram:
    import numpy as np

    if integer and hi - lo + 1 <= bins:
        edges = np.arange(lo - 0.5, hi + 1.0, 1.0)  # one bin centred on each integer
    elif hi > lo:
        edges = np.linspace(lo, hi, bins + 1)
    else:
        edges = np.array([lo - 0.5, hi + 0.5])
    nbins = len(edges) - 1
    index = np.floor((values - edges[0]) / (edges[-1] - edges[0]) * nbins).astype(np.int64)
    counts = np.bincount(np.clip(index, 0, nbins - 1), minlength=nbins)
    return Histogram(tuple(_rf(e) for e in edges), tuple(int(c) for c in counts))


def _boolean(series: pl.Series, base: dict[str, Any]) -> ColumnStats:
    present = series.len() - series.null_count()
    true = int(series.sum() or 0)
    pairs = sorted([("true", true), ("false", present - true)], key=lambda p: (-p[1], p[0]))
    top = tuple(p for p in pairs if p[1] > 0)
    return ColumnStats(**base, distinct=len(top), mean=_r(true / present) if present else None, top=top)


def _categorical(series: pl.Series, base: dict[str, Any], top_k: int) -> ColumnStats:
    import polars as pl

    present = series.drop_nulls().cast(pl.String).rename("v")
    counts = present.value_counts(name="n").sort(["n", "v"], descending=[True, False])
    merged: dict[str, int] = {}
    for value, n in counts.head(top_k).iter_rows():
        key = value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
        merged[key] = merged.get(key, 0) + int(n)
    top = tuple(sorted(merged.items(), key=lambda p: (-p[1], p[0])))
    return ColumnStats(**base, distinct=counts.height, top=top, other=present.len() - sum(n for _, n in top))


def _distinct(series: pl.Series) -> int | None:
    import polars as pl

    present = series.drop_nulls()
    try:
        if present.len() <= EXACT_DISTINCT_MAX:
            return int(present.n_unique())
        return int(present.to_frame().select(pl.first().approx_n_unique()).item())
    except pl.exceptions.PolarsError:  # types without hashing (some nested types)
        return None


def _r(x: Any) -> float | None:
    """A float rounded to 12 significant digits (stored size, stable JSON); None for missing/non-finite."""
    if x is None:
        return None
    value = float(x)
    return _rf(value) if math.isfinite(value) else None


def _rf(x: Any) -> float:
    """``_r`` for a value known to be finite."""
    return float(f"{float(x):.12g}")


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)
