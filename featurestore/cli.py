"""The ``featurestore`` command line.

Every verb works on the repo in the current directory, or on the one named by ``--repo PATH``
(accepted before or after the verb). Errors print one clear message and exit with status 1;
usage errors exit with 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from featurestore.errors import FeatureStoreError

F = TypeVar("F", bound=Callable[..., Any])


def _repo_option(func: F) -> F:
    return click.option(
        "--repo", "repo", type=click.Path(file_okay=False), default=None,
        help="Feature repo folder (default: the current directory).",
    )(func)


def _store(ctx: click.Context, repo: str | None) -> Any:
    from featurestore.store import FeatureStore

    store = FeatureStore(repo or ctx.obj.get("repo"))
    ctx.call_on_close(store.close)  # stops the embedded online server this command started
    return store


class _Group(click.Group):
    """Turns project errors into one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatureStoreError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@_repo_option
@click.version_option(package_name="featurestore")
@click.pass_context
def cli(ctx: click.Context, repo: str | None) -> None:
    """Declarative features, point-in-time-correct training sets, offline and online stores."""
    ctx.ensure_object(dict)
    ctx.obj["repo"] = repo


@cli.command()
@_repo_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan(ctx: click.Context, repo: str | None, as_json: bool) -> None:
    """Show what 'apply' would change: creates, updates (field by field) and deletes."""
    store = _store(ctx, repo)
    result = store.plan()
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.explain())


@cli.command()
@_repo_option
@click.option("--allow-destructive", is_flag=True, help="Apply changes that invalidate stored data.")
@click.pass_context
def apply(ctx: click.Context, repo: str | None, allow_destructive: bool) -> None:
    """Validate the repo and apply it to the registry, atomically."""
    store = _store(ctx, repo)
    result = store.apply(allow_destructive=allow_destructive)
    click.echo(result.explain())
    click.echo("Applied." if result.has_changes else "Nothing to apply.")


_KINDS = {
    "entities": "entity", "views": "feature_view", "feature-views": "feature_view",
    "services": "feature_service", "feature-services": "feature_service",
    "on-demand-views": "on_demand_feature_view",
}


@cli.command("ls")
@_repo_option
@click.argument("kind", required=False, type=click.Choice(sorted(_KINDS)))
@click.pass_context
def ls(ctx: click.Context, repo: str | None, kind: str | None) -> None:
    """List applied objects (all kinds, or one of entities, views, on-demand-views, services)."""
    store = _store(ctx, repo)
    objects = store.registry.list_objects(store.project, _KINDS[kind] if kind else None)
    if not objects:
        click.echo("Nothing applied yet: run 'featurestore apply'.")
        return
    rows = [("KIND", "NAME", "VERSION", "DETAIL")]
    for o in objects:
        if o.kind == "feature_view":
            detail = f"{len(o.spec['schema'])} fields, entities {[e['name'] for e in o.spec['entities']]}"
            if o.spec.get("aggregations"):
                detail += f", {len(o.spec['aggregations'])} aggregations"
            if o.spec.get("transformation"):
                detail += f", {o.spec['transformation']['type']} transformation"
        elif o.kind == "on_demand_feature_view":
            inputs = [s["view"] for s in o.spec["sources"] if s["type"] == "view"]
            detail = f"{len(o.spec['schema'])} features from {inputs}, {o.spec['mode']} mode"
        elif o.kind == "entity":
            detail = f"join keys {o.spec['join_keys']}"
        else:
            detail = f"{len(o.spec['features'])} views"
        rows.append((o.kind.replace("_", " "), o.name, f"v{o.version}", detail))
    _table(rows)


@cli.command()
@_repo_option
@click.argument("name")
@click.option("--kind", type=click.Choice(["entity", "feature_view", "on_demand_feature_view", "feature_service"]),
              default=None)
@click.pass_context
def describe(ctx: click.Context, repo: str | None, name: str, kind: str | None) -> None:
    """Show an applied object: spec, version, fingerprints, history and runs."""
    store = _store(ctx, repo)
    click.echo(json.dumps(store.describe(name, kind), indent=2, default=str))


@cli.command()
@_repo_option
@click.argument("start")
@click.argument("end")
@click.option("--views", "-v", multiple=True, help="Only these views (repeat the option). Default: all.")
@click.option("--offline", is_flag=True, help="Snapshot the rows into the Parquet offline store instead.")
@click.pass_context
def materialize(
    ctx: click.Context, repo: str | None, start: str, end: str, views: tuple[str, ...], offline: bool
) -> None:
    """Write each view's latest row per entity with event time in [START, END) to the online store.

    START and END are ISO dates or timestamps (naive ones are UTC). With --offline, snapshot every
    row of the window into the Parquet offline store instead.
    """
    start_ts, end_ts = _timestamp(start, "START"), _timestamp(end, "END")
    store = _store(ctx, repo)
    began = time.monotonic()
    if offline:
        targets = store._select_views(list(views) or None)
        with click.progressbar(targets, label="Materializing", item_show_func=lambda v: v.name if v else "",
                               file=sys.stderr) as bar:
            results = []
            for view in bar:
                results.extend(store.materialize_offline(start_ts, end_ts, [view.name]))
        rows = [("VIEW", "RUN", "ROWS", "SECONDS")]
        for r in results:
            rows.append((r.view, r.run_id, str(r.rows), f"{r.seconds:.2f}"))
        _table(rows)
        click.echo(f"Materialized {len(results)} view(s) in {time.monotonic() - began:.2f}s.")
        return
    with _ProgressBars() as bars:
        online = store.materialize(start_ts, end_ts, list(views) or None, progress=bars.view)
    _online_summary(online, time.monotonic() - began)


@cli.command("materialize-incremental")
@_repo_option
@click.argument("end")
@click.option("--views", "-v", multiple=True, help="Only these views (repeat the option). Default: all.")
@click.pass_context
def materialize_incremental(ctx: click.Context, repo: str | None, end: str, views: tuple[str, ...]) -> None:
    """Materialize online from where each view's last run ended (first run: END - ttl) up to END."""
    end_ts = _timestamp(end, "END")
    store = _store(ctx, repo)
    began = time.monotonic()
    with _ProgressBars() as bars:
        online = store.materialize_incremental(end_ts, list(views) or None, progress=bars.view)
    _online_summary(online, time.monotonic() - began)


def _timestamp(text: str, name: str) -> Any:
    from featurestore.timeutil import to_utc

    try:
        return to_utc(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _online_summary(results: Sequence[Any], seconds: float) -> None:
    if not results:
        click.echo("Nothing to materialize: every view is up to date.")
        return
    rows = [("VIEW", "RUN", "WINDOW", "ENTITIES", "WRITTEN", "SECONDS")]
    for r in results:
        start = r.window_start.isoformat() if r.window_start else "-inf"
        rows.append((r.view, r.run_id, f"{start} .. {r.window_end.isoformat()}", str(r.rows), str(r.written),
                     f"{r.seconds:.2f}"))
    _table(rows)
    click.echo(f"Materialized {len(results)} view(s) online in {seconds:.2f}s.")


class _ProgressBars:
    """One progress bar per view, fed by materialization's per-batch callback."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> _ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def view(self, name: str, rows: int) -> Callable[[int], None] | None:
        self._close()
        if rows == 0:
            return None
        self._bar = click.progressbar(length=max(rows, 1), label=f"{name:<24}", file=sys.stderr, show_pos=True)
        self._bar.__enter__()
        return self._bar.update


@cli.command("compile")
@_repo_option
@click.argument("view")
@click.option("--dialect", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="spark: the same plan transpiled by sqlglot, with a portable point-in-time join.")
@click.pass_context
def compile_command(ctx: click.Context, repo: str | None, view: str, dialect: str) -> None:
    """Print a view's compiled SQL (or Polars plan) and its training-set join, from the repo's files."""
    from featurestore.compile import compile_view

    store = _store(ctx, repo)
    contents = store.load()
    found = contents.feature_views.get(view)
    if found is None:
        raise click.ClickException(f"no feature view {view!r} in the repo; views: {sorted(contents.feature_views)}")
    compiled = compile_view(found, contents.feature_views.__getitem__, store.repo_path, dialect=dialect)
    click.echo(compiled.explain())


@cli.command()
@_repo_option
@click.argument("feature", required=False)
@click.option("--source", default=None, help="List the features that depend on this source path.")
@click.option("--column", default=None, help="With --source: only features that read this column.")
@click.pass_context
def lineage(ctx: click.Context, repo: str | None, feature: str | None, source: str | None, column: str | None) -> None:
    """Column lineage: 'view:feature' down to source files and columns, or --source PATH's dependents."""
    if bool(feature) == bool(source):
        raise click.UsageError("pass either a feature ref 'view:feature' or --source PATH")
    store = _store(ctx, repo)
    if source:
        found = store.lineage(source=source, column=column)
        if not found:
            click.echo(f"No applied feature depends on {source}{f' column {column}' if column else ''}.")
        for ref in found:
            click.echo(ref)
        return
    click.echo(store.lineage(feature).render())


@cli.command("validate")
@_repo_option
@click.argument("view")
@click.option("--start", default=None, help="First event time checked (default: the beginning).")
@click.option("--end", default=None, help="End of the window, exclusive (default: now).")
@click.pass_context
def validate_command(ctx: click.Context, repo: str | None, view: str, start: str | None, end: str | None) -> None:
    """Check a view's rows (and its sources') against their expectations, writing nothing."""
    store = _store(ctx, repo)
    results = store.validate(view, _timestamp(start, "--start") if start else None,
                             _timestamp(end, "--end") if end else None)
    for result in results:
        click.echo(result.explain())
    if not all(r.success for r in results):
        sys.exit(1)


@cli.command()
@_repo_option
@click.argument("view")
@click.option("--start", default=None, help="First event time profiled (default: the beginning).")
@click.option("--end", default=None, help="End of the window, exclusive (default: now).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the suggested expectations to this Python file instead of printing them.")
@click.pass_context
def profile(ctx: click.Context, repo: str | None, view: str, start: str | None, end: str | None,
            output: str | None) -> None:
    """Suggest expectations for a view from its data (ranges, null rates, value sets), as Python."""
    store = _store(ctx, repo)
    code = store.profile(view, _timestamp(start, "--start") if start else None,
                         _timestamp(end, "--end") if end else None)
    if output:
        Path(output).write_text(code)
        click.echo(f"Wrote suggested expectations to {output}; review them and pass them to the view.")
    else:
        click.echo(code, nl=False)


@cli.command()
@_repo_option
@click.argument("view")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Rows to print.")
@click.pass_context
def quarantine(ctx: click.Context, repo: str | None, view: str, limit: int) -> None:
    """Print the rows of a view set aside by the quarantine policy, with the expectations they failed."""
    import polars as pl

    from featurestore.validation import read_quarantine

    store = _store(ctx, repo)
    table = read_quarantine(store.quarantine_path, view)
    if table is None:
        click.echo(f"No quarantined rows for {view}.")
        return
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    click.echo(f"{frame.height} quarantined row(s) of {view} in {store.quarantine_path / view}:")
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80):
        click.echo(frame.tail(limit))


@cli.command()
@_repo_option
@click.argument("view")
@click.option("--training-set", default=None, help="Reference: a saved training set's statistics.")
@click.option("--baseline", nargs=2, default=None, metavar="START END", help="Reference: a window of the view's rows.")
@click.option("--current", nargs=2, default=None, metavar="START END",
              help="Compare this window (default: the view's last materialization run).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML report (default: data/reports/drift-VIEW-TIME.html in the repo).")
@click.option("--fail-on-drift", is_flag=True, help="Exit with status 1 when a feature drifted.")
@click.pass_context
def monitor(
    ctx: click.Context, repo: str | None, view: str, training_set: str | None, baseline: tuple[str, str] | None,
    current: tuple[str, str] | None, html_path: str | None, fail_on_drift: bool,
) -> None:
    """Compare a view's distributions with a reference (PSI, KS, Jensen-Shannon); print and write a report."""
    from featurestore.monitoring.monitor import monitor as run_monitor

    if bool(training_set) == bool(baseline):
        raise click.UsageError("pass a reference: --training-set NAME or --baseline START END")
    store = _store(ctx, repo)

    def window(pair: tuple[str, str] | None, name: str) -> tuple[Any, Any] | None:
        return None if not pair else (_timestamp(pair[0], name), _timestamp(pair[1], name))

    result = run_monitor(store, view, training_set=training_set, baseline=window(baseline, "--baseline"),
                         current=window(current, "--current"), html_path=Path(html_path) if html_path else None)
    click.echo(result.summary())
    if fail_on_drift and result.drifted:
        sys.exit(1)


@cli.command()
@_repo_option
@click.option("--since", default=None, help="First request time compared (default: the first logged).")
@click.option("--until", default=None, help="End of the window, exclusive (default: everything logged).")
@click.option("--features", "-f", multiple=True,
              help="Only this feature: a 'view:feature' ref or an output name (repeatable). Default: all.")
@click.option("--threshold", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="Mismatch rate above which a feature raises a skew alert and the exit status is 1.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def skew(ctx: click.Context, repo: str | None, since: str | None, until: str | None, features: tuple[str, ...],
         threshold: float, as_json: bool) -> None:
    """Replay the served vectors logged by 'serve --log-sample' through the point-in-time join and
    print the mismatch rate of each feature (training/serving skew)."""
    from featurestore.alerts import alerter_from_config
    from featurestore.skew import skew_report

    store = _store(ctx, repo)
    report = skew_report(
        store, since=_timestamp(since, "--since") if since else None,
        until=_timestamp(until, "--until") if until else None, features=list(features) or None,
        threshold=threshold, alerter=alerter_from_config(store.config),
    )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
    if report.over_threshold:
        sys.exit(1)


@cli.command("get-online-features")
@_repo_option
@click.option("--features", "-f", multiple=True, help="A 'view:feature' ref (repeatable).")
@click.option("--service", "-s", default=None, help="A feature service name instead of --features.")
@click.option("--entity", "-e", "entities", multiple=True, required=True,
              help="Entity keys as KEY=VALUE[,KEY=VALUE] (repeat for more entities); values are JSON "
                   "literals where they parse (1, \"1\"), else strings.")
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@click.option("--json", "as_json", is_flag=True, help="Print values, statuses and event times as JSON.")
@click.pass_context
def get_online_features(
    ctx: click.Context, repo: str | None, features: tuple[str, ...], service: str | None,
    entities: tuple[str, ...], full_feature_names: bool, as_json: bool,
) -> None:
    """Look up the online feature values of some entities."""
    if bool(features) == bool(service):
        raise click.UsageError("pass either --features (one or more) or --service")
    rows = [_entity_arg(text) for text in entities]
    store = _store(ctx, repo)
    response = store.get_online_features(service or list(features), rows, full_feature_names=full_feature_names)
    if as_json:
        data = response.to_dict(include_statuses=True, include_event_timestamps=True)
        click.echo(json.dumps(data, indent=2, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
        return
    data = response.to_dict()
    keys = list(response.entity_columns)
    table = [("ENTITY", "FEATURE", "VALUE", "STATUS", "EVENT TIME")]
    for i in range(len(response)):
        entity = ",".join(f"{k}={data[k][i]}" for k in keys)
        for name in response.values:
            stamp = response.event_timestamps[name][i]
            table.append((entity, name, "" if data[name][i] is None else str(data[name][i]),
                          response.statuses[name][i].value, "" if stamp is None else stamp.isoformat()))
    _table(table)


def _entity_arg(text: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, raw = part.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE, such as user_id=42", param_hint="--entity")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        row[name.strip()] = value
    return row


@cli.command()
@_repo_option
@click.argument("view")
@click.argument("data_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "to", type=click.Choice(["online", "offline", "online_and_offline"]), default="online",
              show_default=True, help="Which store(s) receive the rows.")
@click.pass_context
def push(ctx: click.Context, repo: str | None, view: str, data_file: str, to: str) -> None:
    """Push the rows of a Parquet or CSV file to a feature view, newest-wins."""
    data = _read_rows(data_file)
    store = _store(ctx, repo)
    count = store.push(view, data, to=to)
    click.echo(f"Pushed {count} row(s) to {view} ({to}).")


@cli.command()
@_repo_option
@click.option("--view", default=None, help="Only runs of this view.")
@click.pass_context
def runs(ctx: click.Context, repo: str | None, view: str | None) -> None:
    """List materialization runs recorded in the registry."""
    store = _store(ctx, repo)
    found = store.offline_runs(view)
    if not found:
        click.echo("No runs recorded.")
        return
    rows = [("RUN", "VIEW", "KIND", "WINDOW", "STATUS", "ROWS", "MESSAGE")]
    for r in found:
        rows.append((r.run_id, r.view, r.kind, f"{r.window_start} .. {r.window_end}", r.status,
                     "" if r.rows is None else str(r.rows), (r.message or "")[:60]))
    _table(rows)


@cli.command("training-set")
@_repo_option
@click.argument("entity_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--features", "-f", multiple=True, help="A 'view:feature' ref (repeatable).")
@click.option("--service", "-s", default=None, help="A feature service name instead of --features.")
@click.option("--timestamp-column", default="event_timestamp", show_default=True)
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write Parquet (.parquet) or CSV (.csv) here; default: print the first rows.")
@click.option("--save", "save_as", default=None,
              help="With --service: save the set under this name and learn the service's imputation values.")
@click.option("--overwrite", is_flag=True, help="With --save: replace a saved set of the same name.")
@click.pass_context
def training_set(
    ctx: click.Context, repo: str | None, entity_file: str, features: tuple[str, ...], service: str | None,
    timestamp_column: str, full_feature_names: bool, output: str | None, save_as: str | None, overwrite: bool,
) -> None:
    """Build a point-in-time-correct training set from an entity file (Parquet or CSV)."""
    import polars as pl

    if bool(features) == bool(service):
        raise click.UsageError("pass either --features (one or more) or --service")
    if save_as and not service:
        raise click.UsageError("--save needs --service: a saved training set belongs to a feature service")
    entity = _read_rows(entity_file)
    store = _store(ctx, repo)
    if save_as:
        assert service is not None
        result = store.save_training_set(
            save_as, entity, service, timestamp_column=timestamp_column, full_feature_names=full_feature_names,
            overwrite=overwrite,
        )
        fitted = store.get_training_set(save_as)["imputation"]
        click.echo(f"Saved training set {save_as!r} ({result.height} rows) for feature service {service!r}.")
        for ref, info in fitted.items():
            click.echo(f"  impute {ref}: {info['strategy']} = {info['value']!r} ({info['missing']} missing)")
    else:
        result = store.get_historical_features(
            entity, service or list(features), full_feature_names=full_feature_names,
            timestamp_column=timestamp_column,
        )
    if output:
        if output.endswith(".csv"):
            result.write_csv(output)
        else:
            result.write_parquet(output)
        click.echo(f"Wrote {result.height} rows x {result.width} columns to {output}")
    else:
        with pl.Config(tbl_cols=-1, tbl_width_chars=160):
            click.echo(result.head(10))


@cli.command()
@_repo_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=6566, show_default=True, type=int, help="Port to bind (0: any free port).")
@click.option("--token-env", default="FEATURESTORE_SERVER_TOKEN", show_default=True,
              help="Environment variable holding the bearer token; when set, calls must send it.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="PEM certificate for TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="PEM private key for TLS.")
@click.option("--max-concurrency", default=256, show_default=True, type=click.IntRange(1),
              help="Calls handled at once; more get RESOURCE_EXHAUSTED.")
@click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port (/metrics).")
@click.option("--registry-refresh", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between checks of the registry for newly applied definitions.")
@click.option("--drain-seconds", default=10.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM, how long calls in flight may take to finish.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="debug logs every call.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Server processes sharing the port (one Python event loop each); try the number of cores.")
@click.option("--reuse-port", is_flag=True, hidden=True, help="Bind with SO_REUSEPORT (used by --workers).")
@click.option("--log-sample", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of GetOnlineFeatures calls whose served vectors are logged to the offline store "
                   "for 'featurestore skew' (0: off, unless $FEATURESTORE_SERVER_LOG_SAMPLE is set).")
@click.pass_context
def serve(
    ctx: click.Context, repo: str | None, host: str, port: int, token_env: str, tls_cert: str | None,
    tls_key: str | None, max_concurrency: int, metrics_port: int | None, registry_refresh: float,
    drain_seconds: float, log_level: str, workers: int, reuse_port: bool, log_sample: float,
) -> None:
    """Run the gRPC feature server until SIGTERM or Ctrl-C."""
    import os
    from pathlib import Path

    try:
        from featurestore_server.app import ServerOptions, configure_logging, event_loop_runner
        from featurestore_server.app import serve as run_server
    except ImportError as exc:
        raise click.ClickException(
            f"the feature server needs the grpc extra: pip install 'featurestore[grpc]' ({exc})"
        ) from None
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    options = ServerOptions(
        host=host, port=port, token=os.environ.get(token_env) or None,
        tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None,
        max_concurrency=max_concurrency, metrics_port=metrics_port, registry_refresh=registry_refresh,
        drain_seconds=drain_seconds, workers=workers, reuse_port=reuse_port, log_level=log_level,
        log_sample=log_sample,
    )
    configure_logging(log_level)

    def ready(bound: int) -> None:
        click.echo(f"Serving {repo or ctx.obj.get('repo') or '.'} on {host}:{bound}", err=False)
        sys.stdout.flush()

    with event_loop_runner() as runner:
        runner.run(run_server(repo or ctx.obj.get("repo"), options, on_ready=ready))
    # Calls cut off by the drain may leave a worker thread in a long query: do not wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _read_rows(path: str) -> Any:
    """A Parquet or CSV file (``.csv``; dates parsed) as a Polars frame."""
    import polars as pl

    return pl.read_csv(path, try_parse_dates=True) if path.endswith(".csv") else pl.read_parquet(path)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
