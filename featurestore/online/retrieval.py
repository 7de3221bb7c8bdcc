"""Online retrieval: feature vectors for entity keys, with a status and event time per value.

Every view and entity of one call is read in one round trip (``OnlineStore.read``). A value is
``PRESENT``; ``NOT_FOUND`` when the store holds nothing for the entity (or only a value written
under an older schema); ``OUTSIDE_MAX_AGE`` when its event time is older than the view's ttl at
request time, whatever Redis still holds: ttl means the same online as in training sets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureView
from featurestore.errors import RetrievalError
from featurestore.online.codec import KeyCodec, ValueCodec, micros_to_datetime

if TYPE_CHECKING:
    import polars as pl

    from featurestore.offline.retrieval import ViewRequest
    from featurestore.online.base import OnlineStore


class FieldStatus(StrEnum):
    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
    IMPUTED = "IMPUTED"  # missing, then filled by the feature service's imputation


@dataclass
class OnlineResponse:
    """Columnar result of ``get_online_features``: one list per entity key and per feature."""

    entity_columns: dict[str, list[Any]]
    values: dict[str, list[Any]]
    statuses: dict[str, list[FieldStatus]]
    event_timestamps: dict[str, list[datetime | None]]
    dtypes: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(next(iter(self.entity_columns.values()), []))

    def to_dict(
        self, *, include_event_timestamps: bool = False, include_statuses: bool = False
    ) -> dict[str, list[Any]]:
        """Entity keys and feature values (None unless PRESENT); optionally ``<feature>__status``
        and ``<feature>__event_timestamp`` columns."""
        out: dict[str, list[Any]] = {**self.entity_columns, **self.values}
        for name in self.values:
            if include_statuses:
                out[f"{name}__status"] = [s.value for s in self.statuses[name]]
            if include_event_timestamps:
                out[f"{name}__event_timestamp"] = self.event_timestamps[name]
        return out

    def to_polars(self, *, include_event_timestamps: bool = False, include_statuses: bool = False) -> pl.DataFrame:
        import polars as pl

        data = self.to_dict(include_event_timestamps=include_event_timestamps, include_statuses=include_statuses)
        columns = []
        for name, values in data.items():
            dtype = polars_type(self.dtypes[name]) if name in self.dtypes else None
            if name.endswith("__event_timestamp"):
                dtype = pl.Datetime("us", "UTC")
            columns.append(pl.Series(name, values, dtype=dtype, strict=False))
        return pl.DataFrame(columns)


def entity_columns(entity_rows: Any) -> dict[str, list[Any]]:
    """``entity_rows`` as columns: a list of dicts (one per entity) or a dict of equal-length lists."""
    if isinstance(entity_rows, Mapping):
        columns = {str(k): list(v) for k, v in entity_rows.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            sizes = {k: len(v) for k, v in columns.items()}
            raise RetrievalError(f"entity_rows columns have different lengths: {sizes}")
        return columns
    if isinstance(entity_rows, Sequence) and not isinstance(entity_rows, str | bytes):
        names: list[str] = []
        for i, row in enumerate(entity_rows):
            if not isinstance(row, Mapping):
                raise RetrievalError(f"entity_rows[{i}] must be a dict such as {{'user_id': 1}}, got {row!r}")
            if not names:
                names = list(row)
            elif list(row) != names and set(row) != set(names):
                raise RetrievalError(f"entity_rows[{i}] has keys {sorted(row)}, but entity_rows[0] has {sorted(names)}")
        return {n: [row[n] for row in entity_rows] for n in names}
    raise RetrievalError(
        "entity_rows must be a list of dicts such as [{'user_id': 1}] or a dict of lists, got "
        f"{type(entity_rows).__name__}"
    )


def read_online(
    store: OnlineStore, project: str, requests: Sequence[ViewRequest], entity_rows: Any
) -> OnlineResponse:
    """Look up ``requests`` for every entity row in one round trip and decode the values."""
    plan = OnlineRead(project, requests, entity_rows)
    return plan.decode(store.read(plan.key_groups))


class OnlineRead:
    """One online lookup: the keys to read (checked up front) and how to decode what comes back.

    Separate from the read itself so the async feature server shares it with the in-process path.
    What depends only on the request's shape (codecs, feature positions, max ages) is worked out
    once per ``FeatureRequests`` (``view_plans``); the server keeps those per request shape.
    """

    def __init__(self, project: str, requests: Sequence[ViewRequest], entity_rows: Any) -> None:
        self.requests = requests
        self.columns = entity_columns(entity_rows)
        self.plans = view_plans(project, requests)
        n = len(next(iter(self.columns.values()), []))
        parts: dict[tuple[str, ...], list[bytes]] = {}  # views with the same join keys share them
        self.key_groups: list[list[bytes]] = []
        for plan in self.plans:
            if not plan.online:
                raise RetrievalError(f"feature view {plan.name!r} has online=False: it is not served online")
            entity = parts.get(plan.join_keys)
            if entity is None:
                entity = parts[plan.join_keys] = _entity_parts(plan, self.columns, n)
            self.key_groups.append(plan.key_codec.keys_of(entity))
        self.size = n

    def __len__(self) -> int:
        """The number of entities looked up."""
        return self.size

    def decode_views(self, raw: Sequence[Sequence[bytes | None]], now_us: int | None = None) -> list[ViewValues]:
        """Per view: a status and event time (microseconds, None when not found) per entity, and the
        requested features' values (None unless PRESENT). ``now_us`` judges max age."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        out = []
        for plan, found in zip(self.plans, raw, strict=True):
            decode, idx, max_age = plan.codec.decode, plan.positions, plan.max_age_us
            oldest = None if max_age is None else now_us - max_age
            if len(found) > _FEW:
                out.append(_decode_many(plan, found, oldest))
                continue
            cols: list[list[Any]] = [[] for _ in idx]
            statuses: list[FieldStatus] = []
            stamps: list[int | None] = []
            for item in found:
                decoded = None if item is None else decode(item)
                if decoded is None:
                    statuses.append(FieldStatus.NOT_FOUND)
                    stamps.append(None)
                    for c in cols:
                        c.append(None)
                    continue
                event_us, _, row = decoded
                stamps.append(event_us)
                if oldest is not None and event_us < oldest:
                    statuses.append(FieldStatus.OUTSIDE_MAX_AGE)
                    for c in cols:
                        c.append(None)
                    continue
                statuses.append(FieldStatus.PRESENT)
                for c, j in zip(cols, idx, strict=True):
                    c.append(row[j])
            out.append(ViewValues(plan.output_names, plan.dtypes, cols, statuses, stamps))
        return out

    def decode(self, raw: Sequence[Sequence[bytes | None]], now_us: int | None = None) -> OnlineResponse:
        """Values, statuses and event times from the stored values (``now_us`` judges max age)."""
        values: dict[str, list[Any]] = {}
        statuses: dict[str, list[FieldStatus]] = {}
        stamps: dict[str, list[datetime | None]] = {}
        dtypes: dict[str, Any] = {}
        for view in self.decode_views(raw, now_us):
            times = [None if t is None else micros_to_datetime(t) for t in view.event_us]
            for name, dtype, column in zip(view.names, view.dtypes, view.columns, strict=True):
                values[name] = column
                statuses[name] = view.statuses
                stamps[name] = times
                dtypes[name] = dtype
        return OnlineResponse(self.columns, values, statuses, stamps, dtypes)


_FEW = 4  # above this many entities, a view's values are decoded column by column (ValueCodec.decode_columns)


def _decode_many(plan: ViewPlan, found: Sequence[bytes | None], oldest: int | None) -> ViewValues:
    """``decode_views`` for one view and many entities: the same statuses, times and values."""
    stamps, cols = plan.codec.decode_columns(found, plan.positions)
    statuses = [FieldStatus.NOT_FOUND if t is None else FieldStatus.PRESENT for t in stamps]
    if oldest is not None:
        stale = [i for i, t in enumerate(stamps) if t is not None and t < oldest]
        for i in stale:
            statuses[i] = FieldStatus.OUTSIDE_MAX_AGE
            for c in cols:
                c[i] = None
    return ViewValues(plan.output_names, plan.dtypes, cols, statuses, stamps)


@dataclass(frozen=True)
class ViewPlan:
    """How to read one view's requested features: keys, value codec, positions, max age."""

    name: str
    online: bool
    join_keys: tuple[str, ...]
    key_codec: KeyCodec
    codec: ValueCodec
    positions: tuple[int, ...]  # of the requested features in the decoded row
    max_age_us: int | None
    output_names: tuple[str, ...]
    dtypes: list[Any]


def view_plans(project: str, requests: Sequence[ViewRequest]) -> tuple[ViewPlan, ...]:
    """The plans of ``requests``, kept on the requests object when it can hold them."""
    cache = getattr(requests, "online_plans", None)
    if cache is not None and cache[0] == project:
        return cache[1]
    plans = tuple(_view_plan(project, req) for req in requests)
    if hasattr(requests, "online_plans"):
        requests.online_plans = (project, plans)
    return plans


def _view_plan(project: str, req: ViewRequest) -> ViewPlan:
    view = req.view
    key_codec, value_codec = _codecs(project, view)
    by_name = {f.name: f for f in view.features}
    return ViewPlan(
        name=view.name, online=view.online, join_keys=tuple(view.join_keys), key_codec=key_codec,
        codec=value_codec,
        positions=tuple(value_codec.index[f] for f in req.features),
        max_age_us=None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000),
        output_names=tuple(req.output_names), dtypes=[by_name[f].dtype for f in req.features],
    )


def _entity_parts(plan: ViewPlan, columns: Mapping[str, list[Any]], n: int) -> list[bytes]:
    """The entity part of each row's key (``KeyCodec.entity_key``, encoded), checked against the key types."""
    missing = [k for k in plan.join_keys if k not in columns]
    if missing:
        raise RetrievalError(
            f"entity_rows lack join key(s) {missing} of feature view {plan.name!r}; they have {sorted(columns)}"
        )
    if len(plan.join_keys) == 1:
        values = columns[plan.join_keys[0]]
        if all(type(v) is int for v in values):  # the common case: one integer key (bool is not int here)
            return [b"%d" % v for v in values]
    key_values = [columns[k] for k in plan.join_keys]
    parts = []
    for i in range(n):
        try:
            parts.append(plan.key_codec.entity_key([col[i] for col in key_values]).encode())
        except Exception as exc:
            raise RetrievalError(f"entity_rows[{i}]: {exc}") from None
    return parts


@dataclass(frozen=True)
class ViewValues:
    """One view's part of an online lookup."""

    names: tuple[str, ...]
    dtypes: list[Any]
    columns: list[list[Any]]
    statuses: list[FieldStatus]
    event_us: list[int | None]


@lru_cache(maxsize=4096)
def _codecs(project: str, view: FeatureView) -> tuple[KeyCodec, ValueCodec]:
    """Codecs per view definition: building them costs more than a whole lookup's decoding."""
    return KeyCodec(project, view.name, view.join_keys), ValueCodec(view)


def polars_type(dtype: Any) -> Any:
    """The Polars type of a feature type. Mapped directly: going through an empty Arrow array would
    make pyarrow import pandas (when installed) on the first call, 0.2-0.4 s."""
    import polars as pl

    from featurestore.types import ArrayType

    if isinstance(dtype, ArrayType):
        return pl.List(polars_type(dtype.element))
    return {
        "Int32": pl.Int32, "Int64": pl.Int64, "Float32": pl.Float32, "Float64": pl.Float64,
        "String": pl.String, "Bool": pl.Boolean, "UnixTimestamp": pl.Datetime("us", "UTC"), "Bytes": pl.Binary,
    }[dtype.name]
