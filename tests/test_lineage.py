"""Column-level lineage: real repos traced by sqlglot and DuckDB, stored in a real registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

from featurestore.errors import RegistryError, UnknownObjectError
from featurestore.lineage import (
    COLUMN,
    FEATURE,
    POLARS,
    SOURCE,
    LineageEdge,
    LineageNode,
    chain,
    compute_lineage,
    dependents,
)
from featurestore.registry.sqlite import SCHEMA_VERSION, Registry
from featurestore.repo import load_repo
from tests.conftest import RepoFactory, ts

T0 = ts(2026, 1, 10, 12)

DEFS = '''
from datetime import timedelta
from featurestore import Aggregation, Bool, Entity, FeatureView, Field, FileSource, Float64, Int64, String

user = Entity("user", join_keys=["user_id"])
txns = FileSource("data/txns.parquet")
users = FileSource("data/users.parquet")

profile = FeatureView("profile", entities=[user], source=users, schema=[Field("age", Int64), Field("country", String)])
profile_copy = FeatureView("profile_copy", entities=[user], source=profile, schema=[Field("age", Int64)])
clicks = FeatureView("clicks", entities=[user], source=FileSource("data/clicks/*.parquet"),
                     schema=[Field("page", String)])

txn_enriched = FeatureView(
    "txn_enriched", entities=[user], sources={"txns": txns, "users": users},
    sql="""
    WITH j AS (
        SELECT t.user_id, t.amount * 2 AS amount2, u.age, t.event_timestamp
        FROM txns t JOIN users u ON t.user_id = u.user_id
    )
    SELECT user_id, amount2, age + 1 AS age_next, event_timestamp, COUNT(*) OVER (PARTITION BY user_id) AS n
    FROM j
    """,
    schema=[Field("amount2", Float64), Field("age_next", Int64), Field("n", Int64)],
)

big_txn = FeatureView(
    "big_txn", entities=[user], source=txn_enriched,
    sql="SELECT user_id, amount2 > 100 AS is_big, 1 AS one, event_timestamp FROM source",
    schema=[Field("is_big", Bool), Field("one", Int64)],
)

spend = FeatureView(
    "spend", entities=[user], source=txns, schema=[Field("amount", Float64)],
    aggregations=[Aggregation("amount", "sum", timedelta(days=7))],
)

def double(frame):
    return frame.with_columns((pl.col("amount") * 2).alias("double_amount"))

doubled = FeatureView("doubled", entities=[user], source=txns, transform=double,
                      schema=[Field("double_amount", Float64)])
'''

DATA = {
    "data/txns.parquet": pl.DataFrame({"user_id": [1, 2], "amount": [10.0, 200.0], "event_timestamp": [T0, T0]}),
    "data/users.parquet": pl.DataFrame(
        {"user_id": [1, 2], "age": [30, 40], "country": ["a", "b"], "event_timestamp": [T0, T0]}
    ),
    "data/clicks/part-0.parquet": pl.DataFrame({"user_id": [1], "page": ["home"], "event_timestamp": [T0]}),
}


def src(path: str, column: str) -> LineageNode:
    return LineageNode(SOURCE, path, column)


def feat(view: str, column: str) -> LineageNode:
    return LineageNode(FEATURE, view, column)


def col(view: str, column: str) -> LineageNode:
    return LineageNode(COLUMN, view, column)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[LineageEdge]]:
    from tests.conftest import write_repo

    root = write_repo(tmp_path_factory.mktemp("lineage") / "repo", {"defs.py": DEFS}, DATA)
    return root, compute_lineage(load_repo(root).feature_views, root)


def upstream(edges: list[LineageEdge], node: LineageNode) -> dict[LineageNode, str]:
    return {e.upstream: e.detail for e in edges if e.node == node}


def test_chain_of_a_view_on_a_view(repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    assert chain(edges, "big_txn:is_big").render() == (
        "big_txn:is_big\n"
        "└── txn_enriched:amount2   (SQL: source.amount2 > 100)\n"
        "    └── data/txns.parquet : amount   (SQL: t.amount * 2)"
    )
    tree = chain(edges, "txn_enriched:age_next")
    assert tree.render() == "txn_enriched:age_next\n└── data/users.parquet : age   (SQL: j.age + 1)"
    assert tree.sources() == [src("data/users.parquet", "age")]


def test_sql_edges(repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    # A window function reads the partition column; a join key comes from the table it is selected from.
    assert upstream(edges, feat("txn_enriched", "n")) == {
        src("data/txns.parquet", "user_id"): "SQL: COUNT(*) OVER (PARTITION BY j.user_id)"
    }
    assert upstream(edges, col("txn_enriched", "user_id")) == {src("data/txns.parquet", "user_id"): "SQL: t.user_id"}
    assert upstream(edges, col("big_txn", "event_timestamp")) == {
        col("txn_enriched", "event_timestamp"): "SQL: source.event_timestamp"
    }
    # A constant reads no column: it depends on the rows of the view it reads, and so of both sources.
    assert upstream(edges, feat("big_txn", "one")) == {col("txn_enriched", "*"): "SQL: 1 (reads no input column)"}
    assert upstream(edges, col("txn_enriched", "*")) == {
        src("data/txns.parquet", "*"): "", src("data/users.parquet", "*"): ""
    }
    assert chain(edges, "big_txn:one").sources() == [src("data/txns.parquet", "*"), src("data/users.parquet", "*")]


def test_plain_aggregation_and_pass_through_views(repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    assert chain(edges, "spend:amount_sum_7d").render() == (
        "spend:amount_sum_7d\n└── spend:amount   (sum over 7d)\n    └── data/txns.parquet : amount"
    )
    assert chain(edges, "profile_copy:age").render() == (
        "profile_copy:age\n└── profile:age\n    └── data/users.parquet : age"
    )
    assert upstream(edges, col("profile", "event_timestamp")) == {src("data/users.parquet", "event_timestamp"): ""}
    assert upstream(edges, feat("clicks", "page")) == {src("data/clicks/*.parquet", "page"): ""}


def test_polars_depends_on_every_input_column(repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    expected = {src("data/txns.parquet", c): POLARS for c in ("user_id", "amount", "event_timestamp")}
    assert upstream(edges, feat("doubled", "double_amount")) == expected
    assert upstream(edges, col("doubled", "user_id")) == expected
    assert POLARS == "polars: not traced column by column"


def test_dependents_of_a_source(repo: tuple[Path, list[LineageEdge]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, edges = repo
    txns = [
        "big_txn:is_big", "big_txn:one", "doubled:double_amount", "spend:amount_sum_7d", "txn_enriched:amount2",
        "txn_enriched:n",
    ]
    users = ["big_txn:one", "profile:age", "profile:country", "profile_copy:age", "txn_enriched:age_next"]
    for path in ("data/txns.parquet", str(root / "data/txns.parquet"), "./data/../data/txns.parquet"):
        assert dependents(edges, path, root) == txns, path
    assert dependents(edges, str(root / "data" / "users.parquet"), root) == users
    assert dependents(edges, "data/users.parquet") == users  # as written, without the repo root
    monkeypatch.chdir(root.parent)  # relative to the current folder
    assert dependents(edges, "repo/data/users.parquet", root) == users
    # Column level: only what reads that column.
    assert dependents(edges, "data/users.parquet", root, column="age") == [
        "profile:age", "profile_copy:age", "txn_enriched:age_next"
    ]
    assert dependents(edges, "data/txns.parquet", root, column="user_id") == ["doubled:double_amount", "txn_enriched:n"]
    # A file of a glob source, and the glob as written.
    assert dependents(edges, "data/clicks/part-0.parquet", root) == ["clicks:page"]
    assert dependents(edges, "data/clicks/*.parquet") == ["clicks:page"]
    assert dependents(edges, "data/other.parquet", root) == []


def test_unknown_feature(repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    with pytest.raises(UnknownObjectError, match=r"no lineage for 'big_txn:nope'; the view's features are \['is_big', 'one'\]"):
        chain(edges, "big_txn:nope")
    with pytest.raises(UnknownObjectError, match="no lineage for feature view 'nope'"):
        chain(edges, "nope:x")


def test_sql_that_sqlglot_cannot_trace_is_conservative(make_repo: RepoFactory) -> None:
    defs = DEFS.split("txn_enriched = ")[0] + '''
odd = FeatureView("odd", entities=[user], source=txns, sql="SELECT user_id, amount AS a, event_timestamp FROM source",
                  schema=[Field("a", Float64)])
'''
    root = make_repo({"defs.py": defs}, DATA)
    views = load_repo(root).feature_views
    # Pretend a view column that the SQL does not select (sqlglot finds no such column).
    edges = compute_lineage({"odd": views["odd"]}, root)
    assert upstream(edges, feat("odd", "a")) == {src("data/txns.parquet", "amount"): "SQL: source.amount"}
    import dataclasses

    from featurestore import Field, Float64

    renamed = dataclasses.replace(views["odd"], schema=[Field("b", Float64)])
    edges = compute_lineage({"odd": renamed}, root)
    assert set(upstream(edges, feat("odd", "b"))) == {
        src("data/txns.parquet", c) for c in ("user_id", "amount", "event_timestamp")
    }
    assert all(d.startswith("SQL: not traced (Cannot find column 'b'") for d in upstream(edges, feat("odd", "b")).values())


def test_registry_round_trip(tmp_path: Path, repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    registry = Registry(tmp_path / "registry.db")
    assert registry.lineage("p") == []
    with registry.transaction() as tx:
        tx.replace_lineage("p", edges)
        tx.replace_lineage("other", edges[:3])
    assert registry.lineage("p") == edges
    assert chain(Registry(tmp_path / "registry.db").lineage("p"), "big_txn:is_big") == chain(edges, "big_txn:is_big")
    with registry.transaction() as tx:
        tx.replace_lineage("p", edges[5:])
        assert tx.lineage("p") == edges[5:]
    assert registry.lineage("p") == edges[5:]
    assert registry.lineage("other") == edges[:3]
    # A failed transaction leaves the previous lineage.
    with pytest.raises(RuntimeError), registry.transaction() as tx:
        tx.replace_lineage("p", [])
        raise RuntimeError("apply failed")
    assert registry.lineage("p") == edges[5:]


def test_registry_migrates_version_1(tmp_path: Path, repo: tuple[Path, list[LineageEdge]]) -> None:
    _, edges = repo
    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as con:  # a version-1 registry, with its unused lineage placeholder
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        con.execute(
            "CREATE TABLE lineage (project TEXT NOT NULL, feature TEXT NOT NULL, upstream TEXT NOT NULL, "
            "detail TEXT, PRIMARY KEY (project, feature, upstream))"
        )
    registry = Registry(path)
    with registry.transaction() as tx:
        tx.replace_lineage("p", edges)
    assert registry.lineage("p") == edges
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.close()
    with pytest.raises(RegistryError, match="newer than this featurestore"):
        Registry(path).lineage("p")
