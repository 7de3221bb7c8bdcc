"""On-demand feature views: functions of retrieved features and request values.

One repo, applied and materialized once per module, and served by one real server process:
training sets at an instant E and online lookups after ``materialize(..., E)`` give the same
values, in Polars and Python mode; the remote ``Client`` gives what the in-process store gives;
statuses combine the inputs' statuses; and every mistake has a message that names it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pytest

from featurestore import Client, FeatureStore
from featurestore.errors import DefinitionError, RepoError, RetrievalError
from featurestore.online.retrieval import FieldStatus
from featurestore.remote import messages
from featurestore.remote.client import RemoteError
from featurestore.repo import load_repo
from featurestore.v1 import feature_store_pb2 as pb
from featurestore.v1 import feature_store_pb2_grpc as pb_grpc
from tests.conftest import RepoFactory, online_config, write_repo
from tests.conftest import ts as utc
from tests.server_process import ServerProcess

E = utc(2026, 1, 10, 12)  # the instant of the training sets and of the materialization's end
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PRESENT, NOT_FOUND, OUTSIDE = FieldStatus.PRESENT, FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE

BASE_DEFS = """
from datetime import timedelta
from featurestore import (Bool, Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64,
                          RequestSource, on_demand_feature_view)

user = Entity("user", join_keys=["user_id"])
txn_stats = FeatureView(
    "txn_stats", entities=[user], source=FileSource("data/txn_stats.parquet"),
    schema=[Field("txn_avg", Float64), Field("txn_count", Int64)], ttl=None,
)
limits = FeatureView(
    "limits", entities=[user], source=FileSource("data/limits.parquet"),
    schema=[Field("credit_limit", Float64)], ttl=timedelta(days=1),
)
txn = RequestSource("txn", schema=[Field("amount", Float64)])
"""

DEFS = BASE_DEFS + '''

@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], txn],
                        schema=[Field("amount_ratio", Float64), Field("above_avg", Bool)])
def ratio_pl(df):
    return df.select((pl.col("amount") / pl.col("txn_avg")).alias("amount_ratio"),
                     (pl.col("amount") > pl.col("txn_avg")).alias("above_avg"))


@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], txn],
                        schema=[Field("amount_ratio", Float64), Field("above_avg", Bool)], mode="python")
def ratio_py(row):
    if row["txn_avg"] is None or row["amount"] is None:
        return {"amount_ratio": None, "above_avg": None}
    return {"amount_ratio": row["amount"] / row["txn_avg"], "above_avg": row["amount"] > row["txn_avg"]}


# Every feature of the view as inputs; a list of expressions; an integer output.
@on_demand_feature_view(sources=[txn_stats, txn], schema=[Field("amount_diff", Float64), Field("count_next", Int64)])
def diff_exprs(df):
    return [(pl.col("amount") - pl.col("txn_avg")).alias("amount_diff"), (pl.col("txn_count") + 1).alias("count_next")]


# Two views as inputs, a LazyFrame as result.
@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], limits], schema=[Field("headroom", Float64)])
def headroom(df):
    return df.lazy().select((pl.col("credit_limit") - pl.col("txn_avg")).alias("headroom"))


# Request values only.
@on_demand_feature_view(sources=[txn], schema=[Field("amount_x2", Float64)], mode="python")
def doubled(row):
    return {"amount_x2": None if row["amount"] is None else row["amount"] * 2}


# Broken functions: they fail only when their features are asked for.
@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], txn], schema=[Field("bad_cols", Float64)])
def wrong_columns(df):
    return df.select(pl.col("amount").alias("other"))


@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], txn], schema=[Field("short", Float64)])
def wrong_rows(df):
    return df.head(1).select(pl.col("amount").alias("short"))


@on_demand_feature_view(sources=[txn], schema=[Field("boom", Float64)])
def raising(df):
    raise ValueError("no ratio today")


@on_demand_feature_view(sources=[txn], schema=[Field("inverse", Float64)], mode="python")
def py_raising(row):
    return {"inverse": 1 / (row["amount"] - row["amount"])}


@on_demand_feature_view(sources=[txn], schema=[Field("renamed", Float64)], mode="python")
def py_wrong_keys(row):
    return {"other": row["amount"]}


@on_demand_feature_view(sources=[txn], schema=[Field("not_a_frame", Float64)])
def returns_number(df):
    return 42


fraud = FeatureService("fraud", features=[txn_stats[["txn_count"]], ratio_pl[["amount_ratio"]]])
both_modes = FeatureService("both_modes", features=[ratio_pl, ratio_py])
'''

TXN_SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "txn_avg": pl.Float64,
              "txn_count": pl.Int64}
LIMIT_SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "credit_limit": pl.Float64}
TXN_ROWS = [
    (1, E - 2 * DAY, 10.0, 3),
    (1, E - HOUR, 20.0, 5),
    (2, E - 3 * HOUR, 50.0, 1),
    (3, E - HOUR, None, 2),  # present, with a null average
]  # user 4: no transactions
LIMIT_ROWS = [
    (1, E - 2 * HOUR, 100.0),
    (2, E - 3 * DAY, 500.0),  # older than the 1-day ttl at E
    (4, E - HOUR, 300.0),
]  # user 3: no limit
DATA = {
    "data/txn_stats.parquet": pl.DataFrame(TXN_ROWS, schema=TXN_SCHEMA, orient="row"),
    "data/limits.parquet": pl.DataFrame(LIMIT_ROWS, schema=LIMIT_SCHEMA, orient="row"),
}

USERS = [1, 2, 3, 4]
AMOUNTS = [30.0, 25.0, 10.0, 40.0]
ROWS = [{"user_id": u, "amount": a} for u, a in zip(USERS, AMOUNTS, strict=True)]
# At E: user 1's average is 20, user 2's 50, user 3's null, user 4 has none.
RATIO = [1.5, 0.5, None, None]
ABOVE = [True, False, None, None]


def entity_df(users: list[int], at: list[datetime] | datetime, amounts: list[float | None] | None = None) -> pl.DataFrame:
    times = at if isinstance(at, list) else [at] * len(users)
    data: dict[str, Any] = {"user_id": users, "event_timestamp": times}
    schema: dict[str, Any] = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")}
    if amounts is not None:
        data["amount"] = amounts
        schema["amount"] = pl.Float64
    return pl.DataFrame(data, schema=schema)


AT_E = entity_df(USERS, E, AMOUNTS)


@dataclass
class Deployment:
    repo: Path
    store: FeatureStore
    server: ServerProcess

    def client(self) -> Client:
        return Client(self.server.target)


@pytest.fixture(scope="module")
def deployed(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("odfv")
    project = f"t_odfv_{uuid.uuid4().hex[:8]}"
    repo = write_repo(root / "repo", {"defs.py": DEFS}, DATA, config=online_config(redis_server, project))
    with FeatureStore(repo) as store:
        store.apply()
        runs = store.materialize(E - 30 * DAY, E)
        assert {r.view: r.rows for r in runs} == {"txn_stats": 3, "limits": 3}
        server = ServerProcess(repo, root / "server.log")
        try:
            yield Deployment(repo, store, server)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def store(deployed: Deployment) -> FeatureStore:
    return deployed.store


@pytest.fixture
def client(deployed: Deployment) -> Iterator[Client]:
    with deployed.client() as c:
        yield c


# -- 1. the same values offline and online --------------------------------------------------------


class TestParity:
    def test_polars_mode_offline_at_e(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_E, ["ratio_pl:amount_ratio", "ratio_pl:above_avg"])
        assert out.columns == ["user_id", "event_timestamp", "amount", "amount_ratio", "above_avg"]
        assert out.get_column("amount_ratio").to_list() == RATIO
        assert out.get_column("above_avg").to_list() == ABOVE
        assert out.schema["amount_ratio"] == pl.Float64 and out.schema["above_avg"] == pl.Boolean

    def test_point_in_time_inputs(self, store: FeatureStore) -> None:
        # A day earlier user 1's average was 10 and user 2 had none yet.
        out = store.get_historical_features(
            entity_df([1, 1, 2, 2], [E - DAY, E, E - DAY, E], [30.0, 30.0, 25.0, 25.0]), ["ratio_pl:amount_ratio"])
        assert out.get_column("amount_ratio").to_list() == [3.0, 1.5, None, 0.5]

    def test_python_mode_equals_polars_mode(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_E, "both_modes", full_feature_names=True)
        assert out.columns == ["user_id", "event_timestamp", "amount", "ratio_pl__amount_ratio", "ratio_pl__above_avg",
                               "ratio_py__amount_ratio", "ratio_py__above_avg"]
        assert out.get_column("ratio_py__amount_ratio").to_list() == RATIO
        assert out.get_column("ratio_py__above_avg").to_list() == ABOVE
        assert out.schema["ratio_py__amount_ratio"] == pl.Float64 and out.schema["ratio_py__above_avg"] == pl.Boolean

    def test_online_after_materialize_equals_offline(self, store: FeatureStore) -> None:
        refs = ["ratio_pl:amount_ratio", "ratio_pl:above_avg", "ratio_py:amount_ratio", "ratio_py:above_avg",
                "diff_exprs:amount_diff", "diff_exprs:count_next", "doubled:amount_x2"]
        offline = store.get_historical_features(AT_E, refs, full_feature_names=True)
        online = store.get_online_features(refs, ROWS, full_feature_names=True)
        names = [r.replace(":", "__") for r in refs]
        got = online.to_dict()
        for name in names:
            assert got[name] == offline.get_column(name).to_list(), name
        assert got == {
            "user_id": USERS, "amount": AMOUNTS,
            "ratio_pl__amount_ratio": RATIO, "ratio_pl__above_avg": ABOVE,
            "ratio_py__amount_ratio": RATIO, "ratio_py__above_avg": ABOVE,
            "diff_exprs__amount_diff": [10.0, -25.0, None, None], "diff_exprs__count_next": [6, 2, 3, None],
            "doubled__amount_x2": [60.0, 50.0, 20.0, 80.0],
        }
        assert online.statuses["ratio_pl__amount_ratio"] == [PRESENT, PRESENT, PRESENT, NOT_FOUND]
        assert online.statuses["doubled__amount_x2"] == [PRESENT] * 4  # no stored inputs: nothing missing
        assert online.event_timestamps["ratio_py__amount_ratio"] == [E - HOUR, E - 3 * HOUR, E - HOUR, None]
        assert online.dtypes["diff_exprs__count_next"].name == "Int64"
        assert offline.schema["diff_exprs__count_next"] == pl.Int64

    def test_online_as_a_dict_of_lists(self, store: FeatureStore) -> None:
        got = store.get_online_features(["ratio_py:amount_ratio"], {"user_id": [2, 1], "amount": [100.0, 5.0]})
        assert got.to_dict() == {"user_id": [2, 1], "amount": [100.0, 5.0], "amount_ratio": [2.0, 0.25]}

    def test_a_null_request_value(self, store: FeatureStore) -> None:
        offline = store.get_historical_features(entity_df([1, 2], E, [None, 25.0]), ["ratio_pl:amount_ratio",
                                                                                   "ratio_py:above_avg"])
        online = store.get_online_features(["ratio_pl:amount_ratio", "ratio_py:above_avg"],
                                           [{"user_id": 1, "amount": None}, {"user_id": 2, "amount": 25.0}])
        assert offline.get_column("amount_ratio").to_list() == online.to_dict()["amount_ratio"] == [None, 0.5]
        assert offline.get_column("above_avg").to_list() == online.to_dict()["above_avg"] == [None, False]


class TestRemote:
    REFS = ["ratio_pl:amount_ratio", "ratio_py:above_avg", "diff_exprs:count_next", "txn_stats:txn_count"]

    def test_client_equals_in_process(self, store: FeatureStore, client: Client) -> None:
        local = store.get_online_features(self.REFS, ROWS)
        remote = client.get_online_features(self.REFS, ROWS)
        expected = {"user_id": USERS, "amount": AMOUNTS, "amount_ratio": RATIO, "above_avg": ABOVE,
                    "count_next": [6, 2, 3, None], "txn_count": [5, 1, 2, None]}
        assert local.to_dict() == expected
        assert remote.to_dict(include_statuses=True, include_event_timestamps=True) == local.to_dict(
            include_statuses=True, include_event_timestamps=True)
        assert remote.to_polars().equals(local.to_polars())
        assert remote.dtypes == local.dtypes

    def test_client_with_a_feature_service(self, store: FeatureStore, client: Client) -> None:
        local = store.get_online_features("fraud", ROWS, full_feature_names=True)
        remote = client.get_online_features("fraud", ROWS, full_feature_names=True)
        assert local.to_dict() == {"user_id": USERS, "amount": AMOUNTS, "txn_stats__txn_count": [5, 1, 2, None],
                                   "ratio_pl__amount_ratio": RATIO}
        assert remote.to_dict(include_statuses=True) == local.to_dict(include_statuses=True)

    def test_statuses_and_event_times_of_two_inputs_remote(self, store: FeatureStore, client: Client) -> None:
        """A computed value whose worst input is NOT_FOUND: in process its event time is the newest
        of the inputs' (one input was found); the Client must report the same event time."""
        local = store.get_online_features(["headroom:headroom"], [{"user_id": u} for u in USERS])
        remote = client.get_online_features(["headroom:headroom"], [{"user_id": u} for u in USERS])
        assert remote.to_dict(include_statuses=True, include_event_timestamps=True) == local.to_dict(
            include_statuses=True, include_event_timestamps=True)

    def test_request_data_through_the_stub(self, deployed: Deployment, store: FeatureStore) -> None:
        request = pb.GetOnlineFeaturesRequest()
        request.feature_list.refs.extend(["ratio_pl:amount_ratio", "ratio_py:above_avg"])
        request.entities["user_id"].int64_values.values.extend(USERS)
        request.request_data["amount"].double_values.values.extend(AMOUNTS)
        with grpc.insecure_channel(deployed.server.target) as channel:
            reply = pb_grpc.FeatureStoreServiceStub(channel).GetOnlineFeatures(request, timeout=10)
        assert list(reply.entities) == ["user_id"]  # request values are not echoed as entities
        [ratio, above] = reply.features
        assert (ratio.name, ratio.dtype, above.name, above.dtype) == ("amount_ratio", "Float64", "above_avg", "Bool")
        assert list(ratio.values.double_values.values)[:2] == [1.5, 0.5]
        assert list(ratio.values.nulls) == [False, False, True, True]
        assert list(ratio.statuses) == [pb.FIELD_STATUS_PRESENT] * 3 + [pb.FIELD_STATUS_NOT_FOUND]
        got = messages.online_response_from_pb(reply)
        local = store.get_online_features(["ratio_pl:amount_ratio", "ratio_py:above_avg"], ROWS)
        assert got.values == local.values == {"amount_ratio": RATIO, "above_avg": ABOVE}
        assert got.statuses == local.statuses
        assert got.event_timestamps == local.event_timestamps

    def test_integer_and_null_request_values(self, store: FeatureStore, client: Client) -> None:
        """Integers beside the keys travel as entity columns, a column with nulls as request_data."""
        for amounts, ratios in (([30, 25], [1.5, 0.5]), ([None, 25.0], [None, 0.5]), ([None, None], [None, None])):
            rows = [{"user_id": 1, "amount": amounts[0]}, {"user_id": 2, "amount": amounts[1]}]
            local = store.get_online_features(["ratio_pl:amount_ratio", "ratio_py:above_avg"], rows)
            remote = client.get_online_features(["ratio_pl:amount_ratio", "ratio_py:above_avg"], rows)
            assert local.values["amount_ratio"] == ratios, amounts
            assert remote.to_dict(include_statuses=True) == local.to_dict(include_statuses=True), amounts

    def test_remote_training_set_equals_in_process(self, store: FeatureStore, client: Client) -> None:
        remote = client.get_historical_features(AT_E, "fraud")
        local = store.get_historical_features(AT_E, "fraud")
        assert remote.equals(local)
        assert remote.get_column("amount_ratio").to_list() == RATIO

    def test_remote_errors(self, client: Client) -> None:
        with pytest.raises(RemoteError, match=r"needs request value\(s\) \['amount'\]") as err:
            client.get_online_features(["ratio_pl:amount_ratio"], [{"user_id": 1}])
        assert err.value.code == "INVALID_ARGUMENT"
        with pytest.raises(RemoteError, match=r"on-demand view 'raising' failed: ValueError: no ratio today"):
            client.get_online_features(["raising:boom"], ROWS)


# -- 2. services, naming, hidden inputs and statuses -----------------------------------------------


class TestServiceAndNames:
    def test_service_with_an_on_demand_view(self, store: FeatureStore) -> None:
        offline = store.get_historical_features(AT_E, "fraud")
        assert offline.columns == ["user_id", "event_timestamp", "amount", "txn_count", "amount_ratio"]
        assert offline.get_column("txn_count").to_list() == [5, 1, 2, None]
        assert offline.get_column("amount_ratio").to_list() == RATIO
        online = store.get_online_features("fraud", ROWS)
        assert online.to_dict() == {"user_id": USERS, "amount": AMOUNTS, "txn_count": [5, 1, 2, None],
                                    "amount_ratio": RATIO}

    def test_full_feature_names(self, store: FeatureStore) -> None:
        offline = store.get_historical_features(AT_E, "fraud", full_feature_names=True)
        assert offline.columns == ["user_id", "event_timestamp", "amount", "txn_stats__txn_count",
                                   "ratio_pl__amount_ratio"]
        online = store.get_online_features("fraud", ROWS, full_feature_names=True)
        assert list(online.values) == ["txn_stats__txn_count", "ratio_pl__amount_ratio"]

    def test_same_feature_name_in_two_views_needs_full_names(self, store: FeatureStore) -> None:
        for call in (lambda: store.get_historical_features(AT_E, "both_modes"),
                     lambda: store.get_online_features("both_modes", ROWS)):
            with pytest.raises(RetrievalError, match="feature name 'amount_ratio' comes from both "
                                                     "'ratio_pl:amount_ratio' and 'ratio_py:amount_ratio'"):
                call()

    def test_inputs_not_requested_are_not_in_the_result(self, store: FeatureStore) -> None:
        offline = store.get_historical_features(AT_E, ["diff_exprs:amount_diff"])
        assert offline.columns == ["user_id", "event_timestamp", "amount", "amount_diff"]
        online = store.get_online_features(["diff_exprs:amount_diff"], ROWS)
        assert list(online.values) == ["amount_diff"]
        for table in (online.statuses, online.event_timestamps, online.dtypes):
            assert list(table) == ["amount_diff"]

    def test_an_input_also_requested_is_returned_once(self, store: FeatureStore) -> None:
        refs = ["txn_stats:txn_avg", "ratio_pl:amount_ratio"]
        offline = store.get_historical_features(AT_E, refs)
        assert offline.columns == ["user_id", "event_timestamp", "amount", "txn_avg", "amount_ratio"]
        assert offline.get_column("txn_avg").to_list() == [20.0, 50.0, None, None]
        online = store.get_online_features(refs, ROWS)
        assert online.to_dict() == {"user_id": USERS, "amount": AMOUNTS, "txn_avg": [20.0, 50.0, None, None],
                                    "amount_ratio": RATIO}

    def test_a_projection_of_one_computed_feature(self, store: FeatureStore) -> None:
        out = store.get_historical_features(AT_E, ["ratio_pl:above_avg"])
        assert out.columns == ["user_id", "event_timestamp", "amount", "above_avg"]
        assert out.get_column("above_avg").to_list() == ABOVE


class TestStatuses:
    def test_not_found_input_gives_none_and_not_found(self, store: FeatureStore) -> None:
        got = store.get_online_features(["ratio_pl:amount_ratio", "ratio_py:amount_ratio"],
                                        [{"user_id": 4, "amount": 40.0}, {"user_id": 99, "amount": 1.0}],
                                        full_feature_names=True)
        for name in ("ratio_pl__amount_ratio", "ratio_py__amount_ratio"):
            assert got.values[name] == [None, None]
            assert got.statuses[name] == [NOT_FOUND, NOT_FOUND]
            assert got.event_timestamps[name] == [None, None]

    def test_present_null_input_is_present(self, store: FeatureStore) -> None:
        got = store.get_online_features(["ratio_pl:amount_ratio"], [{"user_id": 3, "amount": 10.0}])
        assert got.values["amount_ratio"] == [None]
        assert got.statuses["amount_ratio"] == [PRESENT]

    def test_worst_status_of_two_inputs(self, store: FeatureStore) -> None:
        # limits has a 1-day ttl and its rows are from January: every stored limit is too old now.
        got = store.get_online_features(["headroom:headroom", "limits:credit_limit", "txn_stats:txn_avg"],
                                        [{"user_id": u} for u in USERS])
        assert got.statuses["credit_limit"] == [OUTSIDE, OUTSIDE, NOT_FOUND, OUTSIDE]
        assert got.statuses["txn_avg"] == [PRESENT, PRESENT, PRESENT, NOT_FOUND]
        # NOT_FOUND over OUTSIDE_MAX_AGE over PRESENT; the value is None unless all are PRESENT.
        assert got.statuses["headroom"] == [OUTSIDE, OUTSIDE, NOT_FOUND, NOT_FOUND]
        assert got.values["headroom"] == [None, None, None, None]
        # The event time is the newest of the inputs' event times.
        assert got.event_timestamps["headroom"][:2] == [E - HOUR, E - 3 * HOUR]

    def test_headroom_offline_at_e(self, store: FeatureStore) -> None:
        out = store.get_historical_features(entity_df(USERS, E), ["headroom:headroom"])
        # user 1: 100 - 20; user 2: its limit is older than the ttl; user 3: no limit; user 4: no average.
        assert out.get_column("headroom").to_list() == [80.0, None, None, None]


# -- 3. errors ------------------------------------------------------------------------------------


class TestRetrievalErrors:
    def test_missing_request_column_offline(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            store.get_historical_features(entity_df(USERS, E), ["ratio_pl:amount_ratio"])
        assert str(err.value) == (
            "on-demand view 'ratio_pl' needs request value(s) ['amount']: pass them as columns of entity_df "
            "(training sets) or as keys of entity_rows (online)")

    def test_missing_request_key_online(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match=r"on-demand view 'ratio_py' needs request value\(s\) \['amount'\]"):
            store.get_online_features(["ratio_py:amount_ratio"], [{"user_id": 1}])
        with pytest.raises(RetrievalError, match=r"on-demand view 'doubled' needs request value\(s\) \['amount'\]"):
            store.get_online_features(["doubled:amount_x2"], {"user_id": [1, 2]})

    def test_wrong_columns(self, store: FeatureStore) -> None:
        message = ("on-demand view 'wrong_columns' returned columns ['other'] and 4 rows; it must return "
                   "['bad_cols'] for each of the 4 rows")
        with pytest.raises(RetrievalError) as err:
            store.get_historical_features(AT_E, ["wrong_columns:bad_cols"])
        assert str(err.value) == message
        with pytest.raises(RetrievalError) as err:
            store.get_online_features(["wrong_columns:bad_cols"], ROWS)
        assert str(err.value) == message

    def test_wrong_row_count(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            store.get_historical_features(AT_E, ["wrong_rows:short"])
        assert str(err.value) == ("on-demand view 'wrong_rows' returned columns ['short'] and 1 rows; it must "
                                  "return ['short'] for each of the 4 rows")
        with pytest.raises(RetrievalError, match=r"returned columns \['short'\] and 1 rows.*each of the 2 rows"):
            store.get_online_features(["wrong_rows:short"], ROWS[:2])

    def test_function_raising(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            store.get_historical_features(AT_E, ["raising:boom"])
        assert str(err.value) == "on-demand view 'raising' failed: ValueError: no ratio today"
        assert isinstance(err.value.__cause__, ValueError)
        with pytest.raises(RetrievalError, match="on-demand view 'py_raising' failed: ZeroDivisionError"):
            store.get_online_features(["py_raising:inverse"], ROWS)

    def test_function_returning_something_else(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            store.get_online_features(["returns_number:not_a_frame"], ROWS)
        assert str(err.value) == ("on-demand view 'returns_number' failed: TypeError: returned int; expected a "
                                  "DataFrame or a list of expressions")

    def test_python_mode_returning_the_wrong_keys(self, store: FeatureStore) -> None:
        """A Python-mode function that returns keys other than its schema is an error, as a Polars
        function returning the wrong columns is; it must not silently become nulls."""
        for call in (lambda: store.get_historical_features(AT_E, ["py_wrong_keys:renamed"]),
                     lambda: store.get_online_features(["py_wrong_keys:renamed"], ROWS)):
            with pytest.raises(RetrievalError, match="py_wrong_keys"):
                call()

    def test_unknown_computed_feature(self, store: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            store.get_online_features(["ratio_pl:nope"], ROWS)
        assert str(err.value) == ("feature ref 'ratio_pl:nope': view 'ratio_pl' has no feature 'nope'; its features: "
                                  "['amount_ratio', 'above_avg']")

    def test_request_value_already_a_feature_column(self, store: FeatureStore) -> None:
        frame = AT_E.with_columns(pl.lit(1.0).alias("amount_ratio"))
        with pytest.raises(RetrievalError, match=r"entity_df already has column\(s\) \['amount_ratio'\]"):
            store.get_historical_features(frame, ["ratio_pl:amount_ratio"])


# -- 4. definition errors: each repo is loaded, never applied ----------------------------------------


def load_error(make_repo: RepoFactory, extra: str) -> str:
    root = make_repo({"defs.py": BASE_DEFS + extra}, DATA)
    with pytest.raises((RepoError, DefinitionError)) as err:
        load_repo(root)
    return str(err.value)


class TestDefinitionErrors:
    def test_unknown_view(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''
from featurestore import FeatureViewProjection


@on_demand_feature_view(sources=[FeatureViewProjection("ghost", ("x",)), txn], schema=[Field("y", Float64)])
def reads_ghost(df):
    return df.select(pl.col("x").alias("y"))
''')
        assert "on-demand view 'reads_ghost' reads unknown feature view 'ghost'; known views: ['limits', 'txn_stats']" \
            in message
        assert "defs.py" in message

    def test_unknown_feature(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''
from featurestore import FeatureViewProjection


@on_demand_feature_view(sources=[FeatureViewProjection("txn_stats", ("txn_max",)), txn],
                        schema=[Field("y", Float64)])
def reads_max(df):
    return df.select(pl.col("txn_max").alias("y"))
''')
        assert ("on-demand view 'reads_max' reads unknown feature(s) ['txn_max'] of 'txn_stats'; it has "
                "['txn_avg', 'txn_count']") in message

    def test_unknown_feature_in_a_projection(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''

@on_demand_feature_view(sources=[txn_stats[["txn_max"]], txn], schema=[Field("y", Float64)])
def reads_max(df):
    return df.select(pl.col("txn_max").alias("y"))
''')
        assert "txn_max" in message and "txn_stats" in message

    def test_function_not_self_contained(self, make_repo: RepoFactory) -> None:
        with pytest.raises(DefinitionError) as err:
            load_repo(make_repo({"defs.py": BASE_DEFS + '''
FACTOR = 2


@on_demand_feature_view(sources=[txn], schema=[Field("scaled", Float64)])
def scaled(df):
    return df.select((pl.col("amount") * FACTOR).alias("scaled"))
'''}, DATA))
        assert "function 'scaled' must be self-contained, but uses ['FACTOR'] from outside it" in str(err.value)
        assert err.value.obj == "on-demand feature view 'scaled'" and err.value.field == "function"
        assert err.value.file is not None and err.value.file.endswith("defs.py")

    def test_function_using_an_enclosing_variable(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''

def make(factor):
    def scaled(df):
        return df.select((pl.col("amount") * factor).alias("scaled"))
    return scaled


scaled = on_demand_feature_view(sources=[txn], schema=[Field("scaled", Float64)])(make(3))
''')
        assert "function 'scaled' uses variable(s) ['factor'] of an enclosing function" in message

    def test_two_sources_give_the_same_input_name(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''
other = FeatureView(
    "other", entities=[user], source=FileSource("data/txn_stats.parquet"),
    schema=[Field("txn_avg", Float64)], ttl=None,
)


@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], other], schema=[Field("y", Float64)])
def twice(df):
    return df.select(pl.col("txn_avg").alias("y"))
''')
        assert "input name(s) ['txn_avg'] come from more than one source" in message
        assert "feature view 'twice', field 'sources'" in message

    def test_request_field_named_like_an_input_feature(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''
clash = RequestSource("clash", schema=[Field("txn_avg", Float64)])


@on_demand_feature_view(sources=[txn_stats[["txn_avg"]], clash], schema=[Field("y", Float64)])
def twice(df):
    return df.select(pl.col("txn_avg").alias("y"))
''')
        assert "input name(s) ['txn_avg'] come from more than one source" in message

    def test_on_demand_view_named_like_a_feature_view(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''

@on_demand_feature_view(sources=[txn], schema=[Field("y", Float64)], name="limits")
def limits_again(df):
    return df.select(pl.col("amount").alias("y"))
''')
        assert "on-demand view 'limits' has the name of a feature view" in message

    def test_unknown_mode(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, '''

@on_demand_feature_view(sources=[txn], schema=[Field("y", Float64)], mode="pandas")
def pandas_mode(df):
    return df
''')
        assert "mode must be one of polars, python, got 'pandas'" in message

    def test_a_lambda(self) -> None:
        from featurestore import Field, Float64, OnDemandFeatureView, RequestSource

        txn = RequestSource("txn", schema=[Field("amount", Float64)])
        with pytest.raises(DefinitionError, match="must be a named function"):
            OnDemandFeatureView("lam", sources=[txn], schema=[Field("y", Float64)], function=lambda df: df)


def test_an_on_demand_view_added_after_materialization_is_served(
    make_repo: RepoFactory, redis_server: Any, project_name: str
) -> None:
    """A second repo: an on-demand view added after materialization is served at once (it stores nothing)."""
    root = make_repo({"defs.py": BASE_DEFS}, DATA, config=online_config(redis_server, project_name))
    with FeatureStore(root) as store:
        store.apply()
        store.materialize(E - 30 * DAY, E)
        (root / "defs.py").write_text(BASE_DEFS + '''

@on_demand_feature_view(sources=[txn_stats[["txn_count"]], txn], schema=[Field("per_txn", Float64)], mode="python")
def per_txn(row):
    return {"per_txn": row["amount"] / row["txn_count"]}
''')
        store.apply()
        got = store.get_online_features(["per_txn:per_txn"], [{"user_id": 1, "amount": 10.0}])
        assert got.to_dict(include_statuses=True) == {"user_id": [1], "amount": [10.0], "per_txn": [2.0],
                                                      "per_txn__status": ["PRESENT"]}
        offline = store.get_historical_features(entity_df([1], E, [10.0]), ["per_txn:per_txn"])
        assert offline.get_column("per_txn").to_list() == [2.0]
