"""Compiled SQL pinned by golden files, its Spark form, and proof the printed plans compute the
same training set as the engine does.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_compile.py``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
import sqlglot

from featurestore import FeatureStore
from featurestore.compile import compile_view
from featurestore.repo import load_repo

GOLDEN = Path(__file__).parent / "golden" / "compile"
T0 = datetime(2026, 1, 1)

DEFS = '''
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, Field, FileSource, Float64, String, Bool

user = Entity("user", join_keys=["user_id"])
txns = FileSource("data/txns.parquet", timestamp_field="ts", created_timestamp_column="created")
users = FileSource("data/users.parquet", timestamp_field="ts")

profile = FeatureView("profile", entities=[user], source=users, schema=[Field("country", String)],
                      ttl=timedelta(days=30))

enriched = FeatureView(
    "enriched", entities=[user], sources={"t": txns, "u": users},
    sql="""
        SELECT t.user_id, t.ts, t.created, t.amount * 2 AS amount2, u.country  -- doubled
        FROM t JOIN u USING (user_id)
        WHERE t.amount IS NOT NULL
    """,
    schema=[Field("amount2", Float64), Field("country", String)], created_timestamp_column="created",
    ttl=timedelta(days=7),
)

big = FeatureView("big", entities=[user], source=enriched, timestamp_field="ts",
                  sql="SELECT user_id, ts, amount2 > 100 AS is_big FROM source", schema=[Field("is_big", Bool)])

spend = FeatureView(
    "spend", entities=[user], source=txns, schema=[Field("amount", Float64)],
    aggregations=[Aggregation("amount", "sum", timedelta(days=7)), Aggregation("amount", "count", timedelta(days=1)),
                  Aggregation("amount", "last", timedelta(days=7))],
)
'''
VIEWS = ("profile", "enriched", "big", "spend")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compile") / "repo"
    (root / "data").mkdir(parents=True)
    (root / "featurestore.yaml").write_text("project: compiled\n")
    (root / "defs.py").write_text(DEFS)
    day = timedelta(days=1)
    pl.DataFrame({
        "user_id": [1, 1, 1, 2, 2, 2, 3],
        "amount": [10.0, 200.0, 30.0, 5.0, None, 7.0, 1.0],
        "ts": [T0, T0 + day, T0 + 3 * day, T0, T0 + 2 * day, T0 + 2 * day, T0 + day],
        "created": [T0, T0 + day, T0 + 3 * day, T0, T0 + 2 * day, T0 + 3 * day, T0],
    }).write_parquet(root / "data" / "txns.parquet")
    pl.DataFrame({"user_id": [1, 2, 3], "country": ["FR", "DE", "NL"], "ts": [T0, T0, T0 + 2 * day]}).write_parquet(
        root / "data" / "users.parquet")
    return root


def _compiled(repo: Path, view: str, dialect: str, *, portable: bool | None = None) -> str:
    contents = load_repo(repo)
    return compile_view(contents.feature_views[view], contents.feature_views.__getitem__, repo, dialect=dialect,
                        portable=portable).explain()


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
@pytest.mark.parametrize("view", VIEWS)
def test_compiled_sql_matches_golden_file(repo: Path, view: str, dialect: str) -> None:
    text = _compiled(repo, view, dialect) + "\n"
    golden = GOLDEN / f"{view}.{dialect}.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()


@pytest.mark.parametrize("view", VIEWS)
def test_spark_form_has_no_asof_join_and_parses_as_spark(repo: Path, view: str) -> None:
    text = _compiled(repo, view, "spark")
    assert "ASOF" not in text.upper()
    statements = [s for s in sqlglot.parse(text, read="spark") if s is not None]
    assert len(statements) == 2  # the rows query and the training-set join
    assert "READ_PARQUET" not in text.upper()  # file sources are tables the Spark job registers
    # The same trees, printed for DuckDB, differ only by dialect: re-reading the Spark text as
    # Spark and writing DuckDB gives SQL DuckDB can bind.
    duck = sqlglot.transpile(text, read="spark", write="duckdb")
    assert len(duck) == 2


def test_formatting_and_comments_do_not_change_the_compiled_tree(repo: Path) -> None:
    from featurestore.definitions.transformation import SqlTransformation

    a = SqlTransformation("SELECT t.user_id, t.amount * 2 AS x -- note\nFROM t")
    b = SqlTransformation("select t.user_id,\n   t.amount*2 as x /* other */ from t")
    assert a.normalized == b.normalized == "SELECT t.user_id, t.amount * 2 AS x FROM t"


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("portable", [False, True])
def test_printed_training_join_computes_the_engines_training_set(
    repo: Path, view: str, portable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the printed DuckDB query (ASOF form, and the portable form Spark gets) by hand on an
    entity table, and compare with get_historical_features."""
    day = timedelta(days=1)
    entity = pl.DataFrame({
        "user_id": [1, 1, 2, 2, 3, 4, 1],
        "event_timestamp": [T0 + 4 * day, T0 + day, T0 + 2 * day, T0 + 9 * day, T0 + 3 * day, T0, T0 - day],
    })
    store = FeatureStore(repo)
    store.apply()
    features = [f"{view}:{f.name}" for f in store.get_feature_view(view).features]
    expected = store.get_historical_features(entity, features).drop("user_id", "event_timestamp")

    contents = load_repo(repo)
    compiled = compile_view(contents.feature_views[view], contents.feature_views.__getitem__, repo,
                            dialect="duckdb", portable=portable)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    probe = entity.with_row_index("__row_id").select(
        "user_id", pl.col("event_timestamp").alias("__ts"), pl.col("__row_id").cast(pl.Int64))
    con.register("__entity_rows", probe.to_arrow())
    if portable:  # the tables a Spark job would register from the files
        for name, path in compiled.tables.items():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{repo / path}')")
    monkeypatch.chdir(repo)  # printed paths are relative to the repo
    got = con.sql(compiled.training_sql).pl()
    assert got.columns == expected.columns
    assert got.cast(expected.schema).equals(expected), f"{got}\n{expected}"


def test_cli_compile_prints_the_sql_and_refuses_unknown_views(repo: Path) -> None:
    from click.testing import CliRunner

    from featurestore.cli import cli

    result = CliRunner().invoke(cli, ["--repo", str(repo), "compile", "enriched", "--dialect", "spark"], obj={})
    assert result.exit_code == 0, result.output
    assert "--   enriched__t = data/txns.parquet" in result.output
    assert "ROW_NUMBER() OVER" in result.output
    result = CliRunner().invoke(cli, ["--repo", str(repo), "compile", "nope"], obj={})
    assert result.exit_code != 0
    assert "no feature view 'nope' in the repo; views: ['big', 'enriched', 'profile', 'spend']" in result.output
