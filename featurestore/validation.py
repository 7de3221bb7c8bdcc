"""Validating batches with Great Expectations before they are written.

``validate`` compiles a view's (or source's) expectations into a Great Expectations 1.x suite, runs
it on the batch (an Arrow table, handed to GE as pandas) and returns a ``ValidationResult``: per
expectation, how many rows fail and a few example values. ``apply_policy`` then decides what is
written: ``fail`` writes nothing (``ValidationError``), ``warn`` writes everything, ``quarantine``
writes the rows that pass every row-level expectation and returns the others to be kept aside.

Great Expectations takes seconds to import, so it is imported here, on first use, never by
``import featurestore``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from featurestore.definitions.expectations import Expectation, expected_dtype
from featurestore.errors import FeatureStoreError, ValidationError
from featurestore.timeutil import to_naive_utc

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featurestore.alerts import Alerter
    from featurestore.compile import Compiler
    from featurestore.definitions import FeatureView, FileSource
    from featurestore.registry import Registry

EXAMPLES = 5


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation on one batch."""

    expectation: str  # as it reads: between(age, min=0, max=120)
    success: bool
    row_level: bool
    failing_rows: int | None  # None for table-level expectations
    rows: int
    examples: tuple[Any, ...] = ()
    observed: Any = None  # table-level: what was measured (row count, newest event, null fraction)

    def explain(self) -> str:
        if self.success:
            return f"ok    {self.expectation}"
        if self.failing_rows is not None:
            share = self.failing_rows / self.rows if self.rows else 0.0
            examples = ", ".join(_short(v) for v in self.examples)
            return (f"FAIL  {self.expectation}: {self.failing_rows:,} of {self.rows:,} rows ({share:.1%})"
                    + (f"; e.g. {examples}" if examples else ""))
        return f"FAIL  {self.expectation}: observed {_short(self.observed)}"

    def to_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "success": self.success, "row_level": self.row_level,
                "failing_rows": self.failing_rows, "rows": self.rows,
                "examples": [_jsonable(v) for v in self.examples], "observed": _jsonable(self.observed)}


@dataclass
class ValidationResult:
    """Every expectation's outcome on one batch, and which rows failed a row-level one."""

    subject: str  # "feature view 'x'" or "source 'data/x.parquet' of feature view 'x'"
    policy: str
    rows: int
    results: list[ExpectationResult]
    failed_rows: list[int] = field(default_factory=list, repr=False)  # positions, sorted
    row_failures: dict[int, list[str]] = field(default_factory=dict, repr=False)  # position -> expectations

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def table_level_failed(self) -> bool:
        return any(not r.success and not r.row_level for r in self.results)

    def explain(self) -> str:
        failed = sum(not r.success for r in self.results)
        head = (f"{self.subject}: {len(self.results)} expectation(s) on {self.rows:,} rows, "
                f"{'all passed' if not failed else f'{failed} failed'} (policy {self.policy})")
        return "\n".join([head, *[f"  {r.explain()}" for r in self.results]])

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "policy": self.policy, "rows": self.rows, "success": self.success,
                "failed_rows": len(self.failed_rows), "results": [r.to_dict() for r in self.results]}


def validate(
    table: pa.Table, expectations: Sequence[Expectation], *, subject: str, policy: str,
    timestamp_column: str | None, window_end: datetime | None,
) -> ValidationResult:
    """Run ``expectations`` on ``table`` (user-visible columns) with Great Expectations."""
    import pyarrow as pa

    gx_expectations: list[Any] = []
    results: list[ExpectationResult | None] = []
    for exp in expectations:
        if exp.kind == "type":  # checked on the Arrow schema: exact, and no pandas dtype guessing
            results.append(_type_result(table, exp))
            gx_expectations.append(None)
            continue
        gx_expectations.append(_compile(exp, timestamp_column, window_end, table))
        results.append(None)
    quarantine = policy == "quarantine"
    outcomes = _run_suite(table, [g for g in gx_expectations if g is not None], complete=quarantine)
    failed: dict[int, list[str]] = {}
    out: list[ExpectationResult] = []
    it = iter(outcomes)
    for exp, done in zip(expectations, results, strict=True):
        if done is not None:
            out.append(done)
            continue
        outcome = next(it)
        raised = (outcome.exception_info or {}).get("raised_exception")
        if raised:
            message = (outcome.exception_info or {}).get("exception_message") or "an error"
            raise FeatureStoreError(f"{subject}: Great Expectations could not check {exp.describe()}: {message}")
        info = outcome.result or {}
        if exp.row_level:
            indices = info.get("unexpected_index_list") or []
            if quarantine and not outcome.success:
                for i in indices:
                    failed.setdefault(int(i), []).append(exp.describe())
            examples = tuple(_jsonable(v) for v in (info.get("partial_unexpected_list") or [])[:EXAMPLES])
            if exp.column in table.column_names and pa.types.is_integer(table.schema.field(exp.column).type):
                # pandas turns an integer column with nulls into floats: show the values as stored
                examples = tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in examples)
            out.append(ExpectationResult(exp.describe(), bool(outcome.success), True,
                                         int(info.get("unexpected_count") or 0), table.num_rows, examples))
        else:
            observed = info.get("observed_value")
            if exp.kind == "null_fraction":
                observed = (info.get("unexpected_percent") or 0.0) / 100
            out.append(ExpectationResult(exp.describe(), bool(outcome.success), False, None, table.num_rows,
                                         observed=_jsonable(observed)))
    del pa
    return ValidationResult(subject, policy, table.num_rows, out, sorted(failed), failed)


def validate_view(view: FeatureView, visible: pa.Table, window_end: datetime | None) -> ValidationResult:
    """A view's expectations on its rows as users see them (``visible_rows``), under its policy."""
    return validate(visible, view.expectations, subject=f"feature view '{view.name}'", policy=view.on_failure,
                    timestamp_column=view.timestamp_column, window_end=window_end)


def apply_policy(result: ValidationResult, table: pa.Table) -> tuple[pa.Table, pa.Table | None]:
    """The rows to write and the rows to keep aside (quarantine), or ``ValidationError``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if result.success or result.policy == "warn":
        return table, None
    if result.policy == "fail" or result.table_level_failed:
        # A table-level failure cannot be pinned on rows: under quarantine it fails the batch too.
        raise ValidationError(result, result.explain())
    mask = pa.array([False] * table.num_rows)
    if result.failed_rows:
        bad = pa.array(result.failed_rows, pa.int64())
        positions = pa.array(range(table.num_rows), pa.int64())
        mask = pc.is_in(positions, value_set=bad)
    return table.filter(pc.invert(mask)), table.filter(mask)


# -- Great Expectations ---------------------------------------------------------------------------


def _compile(exp: Expectation, timestamp_column: str | None, window_end: datetime | None, table: pa.Table) -> Any:
    gxe = _gx().expectations
    mostly = exp.arg("mostly")
    extra = {} if mostly is None else {"mostly": mostly}
    if exp.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=exp.column, **extra)
    if exp.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=exp.column, min_value=exp.arg("min"),
                                                 max_value=exp.arg("max"), **extra)
    if exp.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=exp.column, value_set=list(exp.arg("values")), **extra)
    if exp.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=exp.column)
    if exp.kind == "regex":
        return gxe.ExpectColumnValuesToMatchRegex(column=exp.column, regex=exp.arg("pattern"), **extra)
    if exp.kind == "row_count_between":
        return gxe.ExpectTableRowCountToBeBetween(min_value=exp.arg("min"), max_value=exp.arg("max"))
    if exp.kind == "null_fraction":
        return gxe.ExpectColumnValuesToNotBeNull(column=exp.column, mostly=1.0 - exp.arg("at_most"))
    if exp.kind == "fresh":
        import pandas as pd

        if timestamp_column is None or window_end is None:
            raise FeatureStoreError(f"{exp.describe()} needs the batch's timestamp column and window end")
        newest_allowed = pd.Timestamp(to_naive_utc(window_end) - timedelta(seconds=exp.arg("max_age_seconds")))
        column_type = table.schema.field(timestamp_column).type if timestamp_column in table.column_names else None
        if getattr(column_type, "tz", None) is not None:  # compare like with like: naive times are UTC
            newest_allowed = newest_allowed.tz_localize("UTC")
        return gxe.ExpectColumnMaxToBeBetween(column=timestamp_column, min_value=newest_allowed)
    raise FeatureStoreError(f"no Great Expectations form for {exp.describe()}")


def _run_suite(table: pa.Table, expectations: list[Any], *, complete: bool) -> list[Any]:
    """Validate a batch with a suite of ``expectations``; the results in the same order."""
    if not expectations:
        return []
    gx = _gx()
    definition = _batch_definition()  # the context must exist before a suite
    frame = table.to_pandas()
    suite = gx.ExpectationSuite(name="batch")
    # A suite keeps one of equivalent expectations (repeated, or not_null(mostly=0.8) and
    # null_fraction(at_most=0.2)): run each distinct one once and give every copy its result.
    first: dict[str, int] = {}
    for i, e in enumerate(expectations):
        key = json.dumps([e.expectation_type, e.configuration.kwargs], sort_keys=True, default=str)
        if key in first:
            continue
        first[key] = i
        e.meta = {**(e.meta or {}), "featurestore_index": i}  # results come back grouped, not in order
        suite.add_expectation(e)
    batch = definition.get_batch(batch_parameters={"dataframe": frame})
    result_format: dict[str, Any] = (
        {"result_format": "COMPLETE", "unexpected_index_column_names": []} if complete
        else {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
    )
    validated = batch.validate(suite, result_format=result_format)
    by_index = {r.expectation_config.meta["featurestore_index"]: r for r in validated.results}
    keys = [json.dumps([e.expectation_type, e.configuration.kwargs], sort_keys=True, default=str) for e in expectations]
    return [by_index[first[key]] for key in keys]


@lru_cache(maxsize=1)
def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network calls from validation
    import great_expectations as gx

    return gx


@lru_cache(maxsize=1)
def _batch_definition() -> Any:
    """One ephemeral context with a pandas data source, reused by every validation."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("featurestore")
    return source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")


def _type_result(table: pa.Table, exp: Expectation) -> ExpectationResult:
    assert exp.column is not None
    actual = table.schema.field(exp.column).type if exp.column in table.column_names else None
    ok = actual is not None and expected_dtype(exp).accepts(actual)
    return ExpectationResult(exp.describe(), ok, False, None, table.num_rows, observed=str(actual))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if value != value else value  # NaN (a pandas null) reads as null
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- checking a view's batches before they are written ---------------------------------------------

AlertHook = Callable[[ValidationResult, dict[str, Any]], None]


@dataclass(frozen=True)
class Checker:
    """Validates the batches a run is about to write, records every outcome in the registry,
    keeps quarantined rows under ``quarantine_root/<view>/`` and raises alerts."""

    registry: Registry
    project: str
    quarantine_root: Path
    alert: AlertHook | None = None

    def check_rows(
        self, view: FeatureView, rows: pa.Table, *, run_id: str | None, window_end: datetime | None, stage: str,
    ) -> pa.Table:
        """The rows of ``rows`` (internal columns included) to write, by the view's policy."""
        if not view.expectations:
            return rows
        visible = visible_rows(view, rows)
        result = validate_view(view, visible, window_end)
        record = {**result.to_dict(), "stage": stage}
        try:
            good, bad = apply_policy(result, rows)
        except ValidationError:
            self.finish(view.name, run_id, result, record)
            raise
        if bad is not None and bad.num_rows:
            record["quarantine"] = str(self._quarantine(view, visible, result, run_id))
            record["quarantined_rows"] = bad.num_rows
        self.finish(view.name, run_id, result, record)
        return good

    def check_sources(
        self, con: duckdb.DuckDBPyConnection, compiler: Compiler, view: FeatureView, start: datetime | None,
        end: datetime, *, run_id: str | None, stage: str,
    ) -> None:
        """Validate the rows of each file source of ``view`` (with expectations) in ``[start, end)``.
        Source rows cannot be set aside one by one: a failure under ``quarantine`` fails the run."""
        for alias, source in view.inputs.items():
            if isinstance(source, str) or not source.expectations:
                continue
            result = self.source_result(con, compiler, view, alias, source, start, end)
            record = {**result.to_dict(), "stage": f"{stage}, source {source.path}"}
            self.finish(view.name, run_id, result, record)
            if not result.success and result.policy == "fail":
                raise ValidationError(result, result.explain())

    def source_result(
        self, con: duckdb.DuckDBPyConnection, compiler: Compiler, view: FeatureView, alias: str, source: FileSource,
        start: datetime | None, end: datetime,
    ) -> ValidationResult:
        """The expectations of one file source on its rows in ``[start, end)``."""
        from sqlglot import exp

        from featurestore.compile import file_table
        from featurestore.offline.store import ts_literal

        event = exp.cast(exp.column(source.timestamp_field, quoted=True), "TIMESTAMP")
        window: list[exp.Expr] = [exp.LT(this=event, expression=ts_literal(to_naive_utc(end)))]
        if start is not None:
            window.append(exp.GTE(this=event.copy(), expression=ts_literal(to_naive_utc(start))))
        query = exp.select(exp.Star()).from_(file_table(con, source, compiler.repo_path).subquery("s")).where(
            exp.and_(*window))
        rows = con.sql(query.sql("duckdb")).to_arrow_table()
        # Source rows cannot be set aside one by one: under quarantine a failure fails the run.
        policy = "fail" if view.on_failure == "quarantine" else view.on_failure
        return validate(rows, source.expectations, subject=f"source {source.path!r} ({alias}) of feature view "
                        f"'{view.name}'", policy=policy, timestamp_column=source.timestamp_field, window_end=end)

    def finish(self, subject: str, run_id: str | None, result: ValidationResult, record: dict[str, Any]) -> None:
        """Record a validation's outcome and, when something failed, raise its alert."""
        self.registry.record_validation(self.project, subject, run_id, record)
        if not result.success and self.alert is not None:
            self.alert(result, {**record, "run_id": run_id})

    def _quarantine(self, view: FeatureView, visible: pa.Table, result: ValidationResult, run_id: str | None) -> Path:
        """Write the failing rows, with the expectations each failed, under the view's quarantine."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        positions = pa.array(result.failed_rows, pa.int64())
        bad = visible.take(positions).append_column(
            "__failed_expectations", pa.array([result.row_failures[i] for i in result.failed_rows],
                                              pa.list_(pa.string())))
        batch = run_id or f"push-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"  # pushes have no run id
        target = self.quarantine_root / view.name / f"{batch}-{len(result.failed_rows)}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        pq.write_table(bad, tmp)
        tmp.rename(target)
        return target


def alert_hook(alerter: Alerter, project: str) -> AlertHook:
    """Turns a failed validation into an alert: what failed, how many rows, where the rows went."""

    def send(result: ValidationResult, record: dict[str, Any]) -> None:
        from featurestore.alerts import Alert

        failed = [r for r in result.results if not r.success]
        quarantined = record.get("quarantined_rows")
        severity: Literal["warning", "error"]
        if result.policy == "fail" or (result.policy == "quarantine" and result.table_level_failed):
            kind, severity, outcome = "validation_failed", "error", "nothing written"
        elif quarantined:
            kind, severity, outcome = "quarantined", "warning", f"{quarantined:,} row(s) quarantined"
        else:
            kind, severity, outcome = "validation_warning", "warning", "written anyway (policy warn)"
        worst = failed[0].explain().removeprefix("FAIL  ") if failed else ""
        message = (f"{len(failed)} of {len(result.results)} expectation(s) failed on {result.rows:,} rows of "
                   f"{result.subject} ({record.get('stage')}): {outcome}; {worst}")
        alerter.send(Alert(
            kind=kind, severity=severity, project=project, subject=result.subject,
            message=" ".join(message.split()), details=record, report=record.get("quarantine"),
            run_id=record.get("run_id"),
        ))

    return send


def visible_rows(view: FeatureView, rows: pa.Table) -> pa.Table:
    """A batch as users see it: keys, value columns and the view's timestamp (and created) columns."""
    import pyarrow as pa

    from featurestore.offline.sources import CREATED_TS, EVENT_TS
    from featurestore.offline.store import stored_columns
    from featurestore.timeutil import arrow_to_naive_utc

    columns: dict[str, Any] = {c: rows.column(c) for c in [*view.join_keys, *stored_columns(view)]}
    columns[view.timestamp_column] = arrow_to_naive_utc(rows.column(EVENT_TS)).cast(pa.timestamp("us", "UTC"))
    if view.created_column and CREATED_TS in rows.column_names:
        columns[view.created_column] = rows.column(CREATED_TS)
    return pa.table(columns)


def read_quarantine(root: Path, view: str) -> pa.Table | None:
    """Every quarantined row of a view, newest batch last (None: nothing quarantined)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((root / view).glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    tables = [pq.read_table(f).append_column("__batch", pa.array([f.stem] * pq.read_metadata(f).num_rows))
              for f in files]
    return pa.concat_tables(tables, promote_options="permissive")


# -- profiling: expectations suggested by the data -----------------------------------------------


def suggest_expectations(view: FeatureView, rows: pa.Table, *, max_categories: int = 20) -> list[Expectation]:
    """Expectations the rows of ``view`` meet today: keys and complete columns not null, others
    with their null fraction (plus headroom), numbers between their min and max, small sets of
    values in that set. A starting point to review, not a verdict."""
    import math

    import polars as pl

    from featurestore.definitions.expectations import Expect

    frame = pl.from_arrow(visible_rows(view, rows))
    assert isinstance(frame, pl.DataFrame)
    found: list[Expectation] = []
    n = frame.height
    for name in frame.columns:
        if name == view.timestamp_column or name == view.created_column:
            continue
        column = frame.get_column(name)
        if column.dtype.is_float():  # Great Expectations (through pandas) counts NaN as missing
            column = column.fill_nan(None)
        nulls = column.null_count()
        if nulls == 0:
            found.append(Expect.not_null(name))
        elif n and nulls < n and name not in view.join_keys:
            share = nulls / n
            found.append(Expect.null_fraction(name, at_most=min(0.999, max(share, math.ceil(share * 150) / 100))))
        values = column.drop_nulls()
        if values.is_empty():
            continue
        if column.dtype.is_numeric() and name not in view.join_keys:
            lo, hi = values.min(), values.max()
            found.append(Expect.between(name, _round_down(lo), _round_up(hi)))
        elif column.dtype in (pl.String, pl.Categorical, pl.Boolean) and values.n_unique() <= max_categories:
            found.append(Expect.in_set(name, sorted(values.unique().to_list())))
    if n:
        found.append(Expect.row_count_between(min=max(1, n // 2)))
    return found


def expectations_code(view: FeatureView, suggested: Sequence[Expectation], note: str) -> str:
    """Suggested expectations as Python the user can review and commit."""
    lines = [f'"""Expectations for feature view {view.name!r}, suggested by `featurestore profile {view.name}`.',
             "", f"{note} Review them, then pass `expectations={view.name}_expectations` to the view.", '"""',
             "", "from featurestore import Expect", "", f"{view.name}_expectations = ["]
    for exp in suggested:
        lines.append(f"    {_code(exp)},")
    lines.append("]")
    return "\n".join(lines) + "\n"


def _code(exp: Expectation) -> str:
    args = [repr(exp.column)] if exp.column is not None else []
    for name, value in exp.args:
        if value is None:
            continue
        args.append(repr(list(value)) if name == "values" else f"{name}={value!r}")
    return f"Expect.{exp.kind}({', '.join(args)})"


def _round_down(value: Any) -> Any:
    import math

    return math.floor(value) if isinstance(value, float) else value


def _round_up(value: Any) -> Any:
    import math

    return math.ceil(value) if isinstance(value, float) else value
