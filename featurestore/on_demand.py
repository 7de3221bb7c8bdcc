"""Running on-demand feature functions on retrieved features: one code path for training sets and
online lookups, so both compute the same values from the same inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurestore.errors import RetrievalError
from featurestore.resolve import OnDemandRequest

if TYPE_CHECKING:
    import polars as pl

    from featurestore.online.retrieval import OnlineResponse


def compute(req: OnDemandRequest, frame: pl.DataFrame) -> pl.DataFrame:
    """The requested features of ``req`` for every row of ``frame`` (which holds its inputs),
    named by ``req.output_names`` and cast to their declared types."""
    import polars as pl

    from featurestore.online.retrieval import polars_type

    view = req.view
    missing = [col for _, col in req.inputs if col not in frame.columns]
    if missing:
        raise RetrievalError(
            f"on-demand view {view.name!r} needs request value(s) {missing}: pass them as columns of "
            "entity_df (training sets) or as keys of entity_rows (online)"
        )
    inputs = frame.select([pl.col(col).alias(name) for name, col in req.inputs])
    function = view.function
    assert function is not None
    try:
        if view.mode == "python":
            rows = [function(row) for row in inputs.iter_rows(named=True)]
            for i, r in enumerate(rows):
                if not isinstance(r, dict) or not set(view.feature_names) <= set(r):
                    got = sorted(r) if isinstance(r, dict) else type(r).__name__
                    raise RetrievalError(
                        f"on-demand view {view.name!r} returned {got} for row {i}; it must return a dict with the "
                        f"keys {list(view.feature_names)}"
                    )
            schema = {f.name: polars_type(f.dtype) for f in view.schema}
            result = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, strict=False) \
                if rows else pl.DataFrame(schema=schema)
        else:
            out = function(inputs)
            if isinstance(out, list | tuple):
                out = inputs.select(out)
            if isinstance(out, pl.LazyFrame):
                out = out.collect()
            if not isinstance(out, pl.DataFrame):
                raise TypeError(f"returned {type(out).__name__}; expected a DataFrame or a list of expressions")
            result = out
    except RetrievalError:
        raise
    except Exception as exc:
        raise RetrievalError(f"on-demand view {view.name!r} failed: {type(exc).__name__}: {exc}") from exc
    absent = [f for f in req.features if f not in result.columns]
    if absent or result.height != frame.height:
        raise RetrievalError(
            f"on-demand view {view.name!r} returned columns {result.columns} and {result.height} rows; it must "
            f"return {list(view.feature_names)} for each of the {frame.height} rows"
        )
    types = {f.name: f.dtype for f in view.schema}
    return result.select([
        pl.col(f).cast(polars_type(types[f]), strict=False).alias(out)
        for f, out in zip(req.features, req.output_names, strict=True)
    ])


def add_to_frame(frame: pl.DataFrame, on_demand: Sequence[OnDemandRequest], hidden: Sequence[str]) -> pl.DataFrame:
    """A training set with its on-demand features added and the hidden inputs dropped."""
    if on_demand:
        frame = frame.hstack([col for req in on_demand for col in compute(req, frame).get_columns()])
    return frame.drop(hidden) if hidden else frame


def add_to_response(
    response: OnlineResponse, on_demand: Sequence[OnDemandRequest], hidden: Sequence[str]
) -> OnlineResponse:
    """Online values with on-demand features added. A computed value's status is its inputs' worst
    (``NOT_FOUND`` over ``OUTSIDE_MAX_AGE`` over ``PRESENT``) and its event time their newest; a
    value whose status is not ``PRESENT`` is None, as for any feature."""
    import polars as pl

    from featurestore.online.retrieval import FieldStatus

    if not on_demand:
        return response
    rank = {FieldStatus.PRESENT: 0, FieldStatus.OUTSIDE_MAX_AGE: 1, FieldStatus.NOT_FOUND: 2}
    n = len(response)
    data: dict[str, Any] = dict(response.entity_columns)
    data.update(response.values)
    frame = pl.DataFrame({k: pl.Series(k, v, strict=False) for k, v in data.items()}, height=n)
    for req in on_demand:
        columns = [col for _, col in req.inputs if col in response.values]
        statuses = [
            max((response.statuses[c][i] for c in columns), key=rank.__getitem__, default=FieldStatus.PRESENT)
            for i in range(n)
        ]
        stamps = [
            max((t for c in columns if (t := response.event_timestamps[c][i]) is not None), default=None)
            for i in range(n)
        ]
        computed = compute(req, frame)
        for out, f in zip(req.output_names, req.features, strict=True):
            values = computed.get_column(out).to_list()
            response.values[out] = [v if s is FieldStatus.PRESENT else None for v, s in zip(values, statuses,
                                                                                          strict=True)]
            response.statuses[out] = statuses
            response.event_timestamps[out] = stamps
            response.dtypes[out] = {fld.name: fld.dtype for fld in req.view.schema}[f]
    for name in hidden:
        for table in (response.values, response.statuses, response.event_timestamps, response.dtypes):
            table.pop(name, None)
    return response
