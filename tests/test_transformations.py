"""Transformed feature views: SQL over named sources, views on views, Polars functions.

Values are pinned row by row; training sets are compared with online values and with offline
snapshots; fingerprints tell formatting from real changes; and every definition mistake gets a
message that says what is wrong and where.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from featurestore.errors import DefinitionError, RepoError
from featurestore.online.retrieval import FieldStatus
from featurestore.repo import load_repo
from tests.conftest import RepoFactory, online_config, ts

T0 = ts(2026, 1, 10, 12)
US = timedelta(microseconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

TXN_SCHEMA = {"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "created": pl.Datetime("us", "UTC"),
              "amount": pl.Float64}
USER_SCHEMA = {"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "country": pl.String}

TXNS = [
    (1, T0 - DAY, T0 - DAY, 30.0),
    # Two rows at T0 for user 1: the later created one wins (it comes first in the file).
    (1, T0, T0 + 5 * MIN, 10.0),
    (1, T0, T0, 60.0),
    (1, T0 + 2 * HOUR, T0 + 2 * HOUR, 75.0),
    (2, T0 - 2 * HOUR, T0 - 2 * HOUR, 5.0),
    (2, T0 + HOUR, T0 + HOUR, None),
    (3, T0, T0, 40.0),  # user 3 has no users row: the inner joins drop it
]
USERS = [(1, T0 - 30 * DAY, "FR"), (2, T0 - 30 * DAY, "DE"), (4, T0 - 30 * DAY, "US")]


def txns(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TXN_SCHEMA, orient="row")


def users(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=USER_SCHEMA, orient="row")


DATA = {"data/txns.parquet": txns(TXNS), "data/users.parquet": users(USERS)}

ENRICHED_SQL = "SELECT t.user_id, t.ts, t.created, t.amount * 2 AS amount2, u.country FROM t JOIN u USING (user_id)"

DEFS = f'''
from featurestore import Bool, Entity, FeatureView, Field, FileSource, Float64, String

user = Entity("user", join_keys=["user_id"])
txns = FileSource("data/txns.parquet", timestamp_field="ts", created_timestamp_column="created")
users = FileSource("data/users.parquet", timestamp_field="ts")

# Level 1: SQL joining two file sources.
txn_enriched = FeatureView(
    "txn_enriched", entities=[user], sources={{"t": txns, "u": users}},
    sql="{ENRICHED_SQL}",
    schema=[Field("amount2", Float64), Field("country", String)], created_timestamp_column="created",
)

# Level 2: SQL over the level-1 view (a single source is the table `source`).
big_txn = FeatureView(
    "big_txn", entities=[user], source=txn_enriched,
    sql="SELECT user_id, ts, created, amount2 > 100 AS is_big FROM source",
    schema=[Field("is_big", Bool)], timestamp_field="ts", created_timestamp_column="created",
)


# Level 3: a Polars function over the level-2 view.
def size_label(lf):
    return lf.with_columns(pl.when(pl.col("is_big")).then(pl.lit("big")).otherwise(pl.lit("small")).alias("size"))


big_label = FeatureView(
    "big_label", entities=[user], source=big_txn, transform=size_label, timestamp_field="ts",
    created_timestamp_column="created", schema=[Field("size", String)],
)


def triple(lf):
    # amounts become three times larger
    return lf.with_columns((pl.col("amount") * 3).alias("amount3")).select("user_id", "ts", "created", "amount3")


pol = FeatureView("pol", entities=[user], source=txns, transform=triple, created_timestamp_column="created",
                  schema=[Field("amount3", Float64)])


def plus_one(lf):
    return [(pl.col("amount") + 1).alias("amount_plus"), pl.col("amount").is_null().alias("missing")]


pol_exprs = FeatureView("pol_exprs", entities=[user], source=txns, transform=plus_one,
                        created_timestamp_column="created",
                        schema=[Field("amount_plus", Float64), Field("missing", Bool)])


def with_country(t, u):
    codes = u.select("user_id", pl.col("country").str.to_lowercase().alias("cc"))
    return t.join(codes, on="user_id").select("user_id", "ts", "created", "cc")


pol_join = FeatureView("pol_join", entities=[user], sources={{"t": txns, "u": users}}, transform=with_country,
                       created_timestamp_column="created", schema=[Field("cc", String)])
'''

REFS = [
    "txn_enriched:amount2", "txn_enriched:country", "big_txn:is_big", "big_label:size", "pol:amount3",
    "pol_exprs:amount_plus", "pol_exprs:missing", "pol_join:cc",
]
FEATURES = [r.split(":")[1] for r in REFS]

# (user, time) -> amount2, country, is_big, size, amount3, amount_plus, missing, cc
EXPECTED: list[tuple[tuple[int, datetime], tuple[Any, ...]]] = [
    ((1, T0 - DAY - US), (None, None, None, None, None, None, None, None)),  # before any data
    ((1, T0 - HOUR), (60.0, "FR", False, "small", 90.0, 31.0, False, "fr")),
    ((1, T0), (20.0, "FR", False, "small", 30.0, 11.0, False, "fr")),  # the tie at T0: later created wins
    ((1, T0 + 3 * HOUR), (150.0, "FR", True, "big", 225.0, 76.0, False, "fr")),
    ((2, T0), (10.0, "DE", False, "small", 15.0, 6.0, False, "de")),
    ((2, T0 + HOUR), (None, "DE", None, "small", None, None, True, "de")),  # a null amount
    ((3, T0), (None, None, None, None, 120.0, 41.0, False, None)),  # no users row: no joined row
    ((4, T0), (None, None, None, None, None, None, None, None)),  # a user without transactions
    ((5, T0), (None, None, None, None, None, None, None, None)),  # unknown everywhere
]


def entity_df(rows: list[tuple[int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "event_timestamp": [r[1] for r in rows]},
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")},
    )


ENTITY = entity_df([k for k, _ in EXPECTED])


def rows_of(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return list(frame.select(FEATURES).iter_rows())


def edit(root: Path, old: str, new: str) -> None:
    path = root / "defs.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture
def repo(make_repo: RepoFactory) -> Path:
    return make_repo({"defs.py": DEFS}, DATA)


@pytest.fixture
def store(repo: Path) -> FeatureStore:
    store = FeatureStore(repo)
    store.apply()
    return store


class TestValues:
    def test_sql_joins_two_sources(self, store: FeatureStore) -> None:
        out = store.get_historical_features(ENTITY, ["txn_enriched:amount2", "txn_enriched:country"])
        assert out.get_column("amount2").to_list() == [None, 60.0, 20.0, 150.0, 10.0, None, None, None, None]
        assert out.get_column("country").to_list() == [None, "FR", "FR", "FR", "DE", "DE", None, None, None]
        assert out.schema["amount2"] == pl.Float64 and out.schema["country"] == pl.String

    def test_views_on_views(self, store: FeatureStore) -> None:
        # txn_enriched (files) -> big_txn (SQL) -> big_label (Polars): the created time travels
        # through both levels, so user 1's tie at T0 goes to the later created row (amount 10).
        out = store.get_historical_features(ENTITY, ["big_txn:is_big", "big_label:size"])
        assert out.get_column("is_big").to_list() == [None, False, False, True, False, None, None, None, None]
        assert out.get_column("size").to_list() == [None, "small", "small", "big", "small", "small", None, None, None]

    def test_polars_lazyframe_result(self, store: FeatureStore) -> None:
        out = store.get_historical_features(ENTITY, ["pol:amount3"])
        assert out.get_column("amount3").to_list() == [None, 90.0, 30.0, 225.0, 15.0, None, 120.0, None, None]

    def test_polars_list_of_expressions_result(self, store: FeatureStore) -> None:
        out = store.get_historical_features(ENTITY, ["pol_exprs:amount_plus", "pol_exprs:missing"])
        assert out.get_column("amount_plus").to_list() == [None, 31.0, 11.0, 76.0, 6.0, None, 41.0, None, None]
        assert out.get_column("missing").to_list() == [None, False, False, False, False, True, False, None, None]

    def test_polars_function_over_two_sources(self, store: FeatureStore) -> None:
        out = store.get_historical_features(ENTITY, ["pol_join:cc"])
        assert out.get_column("cc").to_list() == [None, "fr", "fr", "fr", "de", "de", None, None, None]

    def test_every_view_row_by_row(self, store: FeatureStore) -> None:
        out = store.get_historical_features(ENTITY, REFS)
        assert rows_of(out) == [v for _, v in EXPECTED]
        # Same answer whatever the join plan.
        for strategy in ("asof", "range"):
            assert rows_of(store.get_historical_features(ENTITY, REFS, join_strategy=strategy)) == [v for _, v in EXPECTED]


class TestOnline:
    def test_training_set_equals_online_values_after_materialize(
        self, make_repo: RepoFactory, redis_server: Any, project_name: str
    ) -> None:
        root = make_repo({"defs.py": DEFS}, DATA, config=online_config(redis_server, project_name))
        end = T0 + DAY
        ids = [1, 2, 3, 4, 5]
        with FeatureStore(root) as store:
            store.apply()
            runs = store.materialize(T0 - 40 * DAY, end)
            assert {r.view: r.rows for r in runs} == {
                "txn_enriched": 2, "big_txn": 2, "big_label": 2, "pol": 3, "pol_exprs": 3, "pol_join": 2,
            }
            resp = store.get_online_features(REFS, [{"user_id": i} for i in ids])
            online = resp.to_dict()
            train = store.get_historical_features(entity_df([(i, end) for i in ids]), REFS)
            for name in FEATURES:
                assert online[name] == train.get_column(name).to_list(), name
            assert [tuple(online[n][i] for n in FEATURES) for i in range(len(ids))] == [
                (150.0, "FR", True, "big", 225.0, 76.0, False, "fr"),
                (None, "DE", None, "small", None, None, True, "de"),
                (None, None, None, None, 120.0, 41.0, False, None),
                (None, None, None, None, None, None, None, None),
                (None, None, None, None, None, None, None, None),
            ]
            present, missing = FieldStatus.PRESENT, FieldStatus.NOT_FOUND
            # User 2's latest row exists with a null amount: present, not missing.
            assert resp.statuses["amount2"] == [present, present, missing, missing, missing]
            assert resp.statuses["amount3"] == [present, present, present, missing, missing]
            assert resp.event_timestamps["is_big"] == [T0 + 2 * HOUR, T0 + HOUR, None, None, None]


class TestOfflineSnapshots:
    def test_snapshots_give_the_training_set_of_the_sources(self, repo: Path, store: FeatureStore) -> None:
        from_sources = store.get_historical_features(ENTITY, REFS)
        assert rows_of(from_sources) == [v for _, v in EXPECTED]

        # A window covering part of the data: snapshots there, the sources elsewhere.
        partial = store.materialize_offline(T0 - 12 * HOUR, T0 + 90 * MIN)
        assert {r.view: r.rows for r in partial} == {
            "txn_enriched": 3, "big_txn": 3, "big_label": 3, "pol": 4, "pol_exprs": 4, "pol_join": 3,
        }
        assert store.get_historical_features(ENTITY, REFS).equals(from_sources)

        # A window covering everything: one row per key and event time (the tie at T0 is resolved).
        full = store.materialize_offline(T0 - 40 * DAY, T0 + DAY)
        assert {r.view: r.rows for r in full} == {
            "txn_enriched": 5, "big_txn": 5, "big_label": 5, "pol": 6, "pol_exprs": 6, "pol_join": 5,
        }
        assert store.get_historical_features(ENTITY, REFS).equals(from_sources)

        # The snapshots are what is read: changing the source's amounts inside the window does not
        # change the training set.
        changed = [(u, t, c, None if a is None else a * 1000) for u, t, c, a in TXNS]
        txns(changed).write_parquet(repo / "data" / "txns.parquet")
        assert store.get_historical_features(ENTITY, REFS).equals(from_sources)

    def test_upstream_change_invalidates_downstream_snapshots(self, repo: Path, store: FeatureStore) -> None:
        """big_txn's rows are computed from txn_enriched's: once txn_enriched's SQL changes,
        big_txn's old snapshot no longer describes big_txn, and the training set must follow the
        new definition (as it does without snapshots)."""
        store.materialize_offline(T0 - 40 * DAY, T0 + DAY)
        edit(repo, "t.amount * 2 AS amount2", "t.amount * 0.5 AS amount2")
        store.apply(allow_destructive=True)
        out = store.get_historical_features(ENTITY, ["txn_enriched:amount2", "big_txn:is_big", "big_label:size"])
        assert out.get_column("amount2").to_list() == [None, 15.0, 5.0, 37.5, 2.5, None, None, None, None]
        # No amount * 0.5 exceeds 100: nothing is big any more.
        assert out.get_column("is_big").to_list() == [None, False, False, False, False, None, None, None, None]
        assert out.get_column("size").to_list() == [None, "small", "small", "small", "small", "small", None, None, None]


class TestFingerprints:
    def change(self, store: FeatureStore, name: str) -> Any:
        return next(c for c in store.plan().changes if c.name == name)

    def test_reformatted_sql_with_comments_is_unchanged(self, repo: Path, store: FeatureStore) -> None:
        edit(repo, f'sql="{ENRICHED_SQL}",', '''sql="""
    -- each transaction with its user's country
    select t.user_id,
           t.ts,   t.created,
           t.amount * 2 as amount2,  /* doubled */
           u.country
    from t
    join u using (user_id)
    """,''')
        assert self.change(store, "txn_enriched").action == "unchanged"
        assert not store.plan().has_changes

    def test_real_sql_change_is_destructive(self, repo: Path, store: FeatureStore) -> None:
        edit(repo, "t.amount * 2 AS amount2", "t.amount * 3 AS amount2")
        change = self.change(store, "txn_enriched")
        assert change.action == "update"
        assert change.data_changed and change.destructive
        assert [f.path for f in change.fields] == ["transformation.sql"]
        assert change.destructive_reasons == ("changes transformation: stored data no longer matches",)

    def test_sql_filter_change_is_destructive(self, repo: Path, store: FeatureStore) -> None:
        edit(repo, "amount2 > 100 AS is_big FROM source", "amount2 > 100 AS is_big FROM source WHERE amount2 > 0")
        change = self.change(store, "big_txn")
        assert change.action == "update" and change.destructive

    def test_polars_comment_change_is_unchanged(self, repo: Path, store: FeatureStore) -> None:
        edit(repo, "    # amounts become three times larger\n",
             "    # tripled, see the pricing notes\n\n    # (and a second comment)\n")
        assert self.change(store, "pol").action == "unchanged"
        assert not store.plan().has_changes

    def test_polars_body_change_is_destructive(self, repo: Path, store: FeatureStore) -> None:
        edit(repo, 'pl.col("amount") * 3', 'pl.col("amount") * 4')
        change = self.change(store, "pol")
        assert change.action == "update"
        assert change.data_changed and change.destructive
        assert [f.path for f in change.fields] == ["transformation.source"]
        store.apply(allow_destructive=True)
        out = store.get_historical_features(ENTITY, ["pol:amount3"])
        assert out.get_column("amount3").to_list() == [None, 120.0, 40.0, 300.0, 20.0, None, 160.0, None, None]


# -- errors -----------------------------------------------------------------------------------------

HEAD = '''from datetime import timedelta
from featurestore import Entity, FeatureView, Field, FileSource, Float64, String
from featurestore.definitions.transformation import Aggregation
user = Entity("user", join_keys=["user_id"])
txns = FileSource("data/txns.parquet", timestamp_field="ts", created_timestamp_column="created")
users = FileSource("data/users.parquet", timestamp_field="ts")
'''
BODY_LINE = HEAD.count("\n") + 1  # the line of the body's first statement
TXN_COLUMNS = "user_id (BIGINT), ts (TIMESTAMP WITH TIME ZONE), created (TIMESTAMP WITH TIME ZONE), amount (DOUBLE)"
USER_COLUMNS = "user_id (BIGINT), ts (TIMESTAMP WITH TIME ZONE), country (VARCHAR)"


def sql_view(sql: str, schema: str = 'Field("amount2", Float64)', inputs: str = "source=txns") -> str:
    return f'v = FeatureView("v", entities=[user], {inputs}, sql={sql!r}, schema=[{schema}])\n'


class TestErrors:
    @pytest.fixture
    def write(self, make_repo: RepoFactory) -> Any:
        def factory(body: str) -> Path:
            return make_repo({"defs.py": HEAD + body}, DATA)

        return factory

    def definition_error(self, root: Path) -> DefinitionError:
        with pytest.raises(DefinitionError) as exc:
            load_repo(root)
        assert exc.value.file is not None and exc.value.file.endswith("defs.py")
        return exc.value

    def problems(self, root: Path) -> list[str]:
        with pytest.raises(RepoError) as exc:
            load_repo(root)
        return exc.value.problems

    def only_problem(self, root: Path) -> str:
        found = self.problems(root)
        assert len(found) == 1, found
        return found[0]

    def prefix(self, root: Path, line: int = BODY_LINE, view: str = "v") -> str:
        return f"{root.resolve() / 'defs.py'}:{line}: feature view '{view}'"

    # -- SQL ----------------------------------------------------------------------------------------

    def test_sql_syntax_error_has_line_and_column(self, write: Any) -> None:
        root = write(sql_view("SELECT user_id, ts,\n  amount +\nFROM source"))
        err = self.definition_error(root)
        assert (err.line, err.field) == (BODY_LINE, "sql")
        assert err.reason.startswith("SQL syntax error at line 3, column 4 of the query near 'FROM'"), err.reason

    @pytest.mark.parametrize(("sql", "kind"), [
        ("DROP TABLE source", "DROP"),
        ("CREATE TABLE x AS SELECT * FROM source", "CREATE"),
        ("ALTER TABLE source ADD COLUMN y INTEGER", "ALTER"),
        ("INSERT INTO source VALUES (1, NULL, NULL, 2.0)", "INSERT"),
        ("DELETE FROM source WHERE amount > 1", "DELETE"),
        ("UPDATE source SET amount = 0", "UPDATE"),
    ])
    def test_ddl_and_dml_are_refused(self, write: Any, sql: str, kind: str) -> None:
        err = self.definition_error(write(sql_view(sql)))
        assert err.field == "sql"
        assert err.reason == (
            f"only queries (SELECT) are allowed in a transformation, got {kind}: a transformation must not "
            "create, change or delete data"
        )

    def test_dml_inside_a_query_is_refused(self, write: Any) -> None:
        err = self.definition_error(write(sql_view("WITH d AS (DELETE FROM source RETURNING *) SELECT * FROM d")))
        assert err.reason == "only queries are allowed in a transformation, found DELETE"

    def test_several_statements_are_refused(self, write: Any) -> None:
        err = self.definition_error(write(sql_view("SELECT * FROM source; DROP TABLE source")))
        assert err.reason == "expected exactly one SELECT statement, found 2"

    def test_unknown_column_lists_the_source_columns(self, write: Any) -> None:
        root = write(sql_view("SELECT user_id, ts,\n  amout * 2 AS amount2 FROM source"))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: the SQL uses unknown column 'amout' (line 2, column 7 of the query); "
            f"the sources have columns source: {TXN_COLUMNS}"
        )

    def test_unknown_qualified_column_lists_the_source_columns(self, write: Any) -> None:
        root = write(sql_view(
            "SELECT t.user_id, t.ts, t.amout * 2 AS amount2 FROM t JOIN u USING (user_id)",
            inputs='sources={"t": txns, "u": users}',
        ))
        msg = self.only_problem(root)
        assert msg.startswith(f"{self.prefix(root)}: the SQL uses unknown column 'amout'"), msg
        assert msg.endswith(f"the sources have columns t: {TXN_COLUMNS}; u: {USER_COLUMNS}"), msg

    @pytest.mark.parametrize("sql", [
        "SELECT * FROM txns",
        "SELECT user_id, ts, amount * 2 AS amount2 FROM txns",
        "SELECT t.user_id, t.ts, t.amount * 2 AS amount2 FROM t JOIN txns USING (user_id)",
    ])
    def test_unknown_table(self, write: Any, sql: str) -> None:
        root = write(sql_view(sql, inputs='sources={"t": txns, "u": users}'))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: the SQL reads unknown table(s) ['txns']; the view's sources are "
            "['t', 'u']"
        )

    def test_unknown_table_with_a_single_source(self, write: Any) -> None:
        root = write(sql_view("SELECT * FROM txns"))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: the SQL reads unknown table(s) ['txns']; the view's sources are "
            "['source'] (a single source=... is the table 'source')"
        )

    def test_declared_field_missing_from_the_output(self, write: Any) -> None:
        root = write(sql_view("SELECT user_id, ts, amount * 2 AS amount2 FROM source",
                              schema='Field("amount2", Float64), Field("amount3", Float64)'))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: schema field 'amount3' is not a column of the transformation's output; "
            "columns: user_id (int64), ts (timestamp[us, tz=UTC]), amount2 (double)"
        )

    def test_declared_type_mismatch(self, write: Any) -> None:
        root = write(sql_view("SELECT user_id, ts, amount * 2 AS amount2 FROM source", schema='Field("amount2", String)'))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: schema field 'amount2' is declared String but the transformation's output "
            "has type double; change the declared type or convert the column"
        )

    def test_output_without_the_timestamp_column(self, write: Any) -> None:
        root = write(sql_view("SELECT user_id, amount * 2 AS amount2 FROM source"))
        assert self.only_problem(root) == (
            f"{self.prefix(root)}: timestamp_field 'ts' is not a column of the transformation's output; "
            "columns: user_id (int64), amount2 (double)"
        )

    # -- aggregations -------------------------------------------------------------------------------

    def test_unknown_aggregation_function(self, write: Any) -> None:
        root = write('v = FeatureView("v", entities=[user], source=txns, schema=[Field("amount", Float64)],\n'
                     '                 aggregations=[Aggregation("amount", "median", timedelta(days=1))])\n')
        err = self.definition_error(root)
        assert (err.obj, err.field) == ("Aggregation('amount', 'median')", "function")
        assert err.reason == (
            "unknown aggregation function 'median'; use one of count, sum, mean, min, max, stddev, last, "
            "approx_count_distinct"
        )

    def test_aggregation_column_not_in_schema(self, write: Any) -> None:
        root = write('v = FeatureView("v", entities=[user], source=txns, schema=[Field("amount", Float64)],\n'
                     '                 aggregations=[Aggregation("amt", "sum", timedelta(days=1))])\n')
        err = self.definition_error(root)
        assert (err.obj, err.field, err.line) == ("feature view 'v'", "aggregations", BODY_LINE)
        assert err.reason == (
            "aggregation 'amt_sum_1d' reads column 'amt', which is not in schema; declare its type, e.g. "
            "Field('amt', Float64)"
        )

    def test_view_reading_an_aggregating_view(self, write: Any) -> None:
        root = write(
            'spend = FeatureView("spend", entities=[user], source=txns, schema=[Field("amount", Float64)],\n'
            '                    aggregations=[Aggregation("amount", "sum", timedelta(days=1))])\n'
            'v = FeatureView("v", entities=[user], source=spend, sql="SELECT * FROM source", timestamp_field="ts",\n'
            '                schema=[Field("amount_sum_1d", Float64)])\n'
        )
        msg = self.only_problem(root)
        assert msg == (
            f"{self.prefix(root, BODY_LINE + 2)}: reads view 'spend', which aggregates: read its source instead "
            "(aggregates depend on the time they are asked for)"
        )

    # -- Polars ---------------------------------------------------------------------------------------

    def test_polars_function_using_a_module_level_name(self, write: Any) -> None:
        root = write(
            "FACTOR = 3\n"
            "def scale(lf):\n"
            '    return lf.with_columns(pl.col("amount") * FACTOR)\n'
            'v = FeatureView("v", entities=[user], source=txns, transform=scale, schema=[Field("amount", Float64)])\n'
        )
        err = self.definition_error(root)
        assert (err.line, err.obj, err.field) == (BODY_LINE + 3, "feature view 'v'", "transform")
        assert err.reason == (
            "function 'scale' must be self-contained, but uses ['FACTOR'] from outside it; import or define "
            "them inside the function (available without import: pl, polars, math, datetime, timedelta, timezone)"
        )

    def test_polars_function_using_an_outside_import(self, write: Any) -> None:
        root = write(
            "import numpy as np\n"
            "def scale(lf):\n"
            '    return lf.with_columns(pl.col("amount") * np.pi)\n'
            'v = FeatureView("v", entities=[user], source=txns, transform=scale, schema=[Field("amount", Float64)])\n'
        )
        assert "but uses ['np'] from outside it" in self.definition_error(root).reason

    def test_polars_function_using_an_enclosing_variable(self, write: Any) -> None:
        root = write(
            "def make():\n"
            "    factor = 3\n"
            "    def scale(lf):\n"
            '        return lf.with_columns(pl.col("amount") * factor)\n'
            '    return FeatureView("v", entities=[user], source=txns, transform=scale, schema=[Field("amount", Float64)])\n'
            "v = make()\n"
        )
        assert self.definition_error(root).reason == (
            "function 'scale' uses variable(s) ['factor'] of an enclosing function; define it at module level "
            "and pass values as constants"
        )

    def test_polars_function_that_fails(self, write: Any) -> None:
        root = write(
            "def scale(lf):\n"
            '    return lf.with_columns(pl.col("nope") * 2)\n'
            'v = FeatureView("v", entities=[user], source=txns, transform=scale, schema=[Field("amount", Float64)])\n'
        )
        msg = self.only_problem(root)
        assert msg.startswith(
            f"{self.prefix(root, BODY_LINE + 2)}: the Polars transformation 'scale' failed: ColumnNotFoundError"
        ), msg
        assert "nope" in msg

    # -- views on views -------------------------------------------------------------------------------

    def test_views_reading_each_other_in_a_cycle(self, write: Any) -> None:
        root = write(
            'a = FeatureView("a", entities=[user], source="b", timestamp_field="ts", schema=[Field("amount", Float64)])\n'
            'b = FeatureView("b", entities=[user], source="a", sql="SELECT * FROM source", timestamp_field="ts",\n'
            '                schema=[Field("amount", Float64)])\n'
        )
        found = self.problems(root)
        assert found and all("views read each other in a cycle: " in p for p in found), found
        assert any(p.endswith("views read each other in a cycle: a -> b -> a") for p in found), found

    def test_cycle_of_three_views(self, write: Any) -> None:
        body = "".join(
            f'{n} = FeatureView("{n}", entities=[user], source="{src}", sql="SELECT * FROM source", '
            f'timestamp_field="ts", schema=[Field("amount", Float64)])\n'
            for n, src in (("a", "c"), ("b", "a"), ("c", "b"))
        )
        root = write(body)
        found = self.problems(root)
        assert found and all("views read each other in a cycle: " in p for p in found), found
        assert any(p.endswith("views read each other in a cycle: a -> c -> b -> a") for p in found), found

    def test_view_reading_itself(self, write: Any) -> None:
        root = write(
            'v = FeatureView("v", entities=[user], source=txns, schema=[Field("amount", Float64)])\n'
            'w = FeatureView("v", entities=[user], source=v, timestamp_field="ts", schema=[Field("amount", Float64)])\n'
        )
        err = self.definition_error(root)
        assert (err.field, err.reason) == ("source", "a feature view cannot read itself")

    def test_unknown_upstream_view(self, write: Any) -> None:
        root = write(
            'known = FeatureView("known", entities=[user], source=txns, schema=[Field("amount", Float64)])\n'
            'v = FeatureView("v", entities=[user], sources={"t": "nope", "k": known},\n'
            '                sql="SELECT * FROM t JOIN k USING (user_id)", timestamp_field="ts",\n'
            '                schema=[Field("amount", Float64)])\n'
        )
        assert self.only_problem(root) == (
            f"{root.resolve() / 'defs.py'}:{BODY_LINE + 1}: feature view 'v' reads unknown feature view 'nope'; "
            "known views: ['known', 'v']"
        )
