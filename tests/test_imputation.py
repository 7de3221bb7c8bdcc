"""Imputation declared on a feature service: learned from a saved training set, reused unchanged.

``save_training_set`` learns mean/median/mode (a constant needs nothing) and stores the values with
the set; serving (in process and through a real server), and training sets built later with
``training_set=``, fill missing values with exactly those values, even after the data changed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import Client, FeatureService, FeatureStore, Impute
from featurestore.errors import DefinitionError, RegistryError, RepoError, RetrievalError, UnknownObjectError
from featurestore.online.retrieval import FieldStatus
from featurestore.repo import load_repo
from tests.conftest import RepoFactory, online_config, write_repo
from tests.server_process import ServerProcess

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=1)  # the first training set's instant
PRESENT, NOT_FOUND, OUTSIDE, IMPUTED = (FieldStatus.PRESENT, FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE,
                                        FieldStatus.IMPUTED)

BASE_DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, FileSource, Float64, Impute, Int64, String

user = Entity("user", join_keys=["user_id"])
profile = FeatureView(
    "profile", entities=[user], source=FileSource("data/profile.parquet"),
    schema=[Field("age", Int64), Field("score", Float64), Field("country", String), Field("bonus", Float64),
            Field("visits", Int64)],
    ttl=timedelta(days=10),
)
"""
DEFS = BASE_DEFS + """
model = FeatureService("model", features=[profile], imputation={
    "profile:age": Impute.mean(), "profile:score": Impute.median(), "profile:country": Impute.mode(),
    "profile:bonus": Impute.constant(-1.0),
})
other = FeatureService("other", features=[profile[["age"]]], imputation={"profile:age": Impute.median()})
"""

SCHEMA = {"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "age": pl.Int64, "score": pl.Float64,
          "country": pl.String, "bonus": pl.Float64, "visits": pl.Int64}
V1_AT = NOW - timedelta(hours=5)
V1 = [
    (1, V1_AT, 20, 1.0, "FR", 5.0, 1),
    (2, V1_AT, 31, 3.0, "DE", None, 2),
    (3, V1_AT, None, 2.0, "FR", 1.0, None),
    (4, V1_AT, 40, None, None, 2.0, 4),
    # user 5: no row at all
    (6, V1_AT, 32, 10.0, "DE", 3.0, 6),
    (7, NOW - timedelta(days=20), 99, 99.0, "US", 99.0, 99),  # older than the 10-day ttl
]
V2_AT = NOW - timedelta(minutes=30)
V2 = [  # later rows: the statistics of this data differ from the first training set's
    (1, V2_AT, None, None, None, None, 10),
    (2, V2_AT, 50, 50.0, "JP", 50.0, 20),
]
USERS = [1, 2, 3, 4, 5, 6, 7]

# What the first training set (users 1..7 at T0) learns:
#   age mean of [20, 31, 40, 32] = 30.75 (filled as 31: an Int64 feature), score median of
#   [1, 3, 2, 10] = 2.5, country mode of FR, DE, FR, DE = DE (a tie: the smallest), bonus -1.0.
FITTED_V1 = {
    "profile:age": {"strategy": "mean", "value": 30.75, "rows": 7, "missing": 3},
    "profile:bonus": {"strategy": "constant", "value": -1.0, "rows": 7, "missing": 3},
    "profile:country": {"strategy": "mode", "value": "DE", "rows": 7, "missing": 3},
    "profile:score": {"strategy": "median", "value": 2.5, "rows": 7, "missing": 3},
}
FILLED_V1 = {
    "age": [20, 31, 31, 40, 31, 32, 31],
    "score": [1.0, 3.0, 2.0, 2.5, 2.5, 10.0, 2.5],
    "country": ["FR", "DE", "FR", "DE", "DE", "DE", "DE"],
    "bonus": [5.0, -1.0, 1.0, 2.0, -1.0, 3.0, -1.0],
    "visits": [1, 2, None, 4, None, 6, None],  # not imputed
}


def frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def entity_df(users: list[int], at: datetime) -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "event_timestamp": [at] * len(users)},
                        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})


def columns(out: pl.DataFrame, names: list[str]) -> dict[str, list[Any]]:
    return {n: out.get_column(n).to_list() for n in names}


FEATURES = ["age", "score", "country", "bonus", "visits"]


@dataclass
class Deployment:
    repo: Path
    store: FeatureStore
    server: ServerProcess
    saved: pl.DataFrame  # what save_training_set returned


@pytest.fixture(scope="module")
def deployed(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """ts1 saved on the first data; then the data changed and was materialized; then one server."""
    root = tmp_path_factory.mktemp("impute")
    project = f"t_impute_{uuid.uuid4().hex[:8]}"
    repo = write_repo(root / "repo", {"defs.py": DEFS}, {"data/profile.parquet": frame(V1)},
                      config=online_config(redis_server, project))
    with FeatureStore(repo) as store:
        store.apply()
        saved = store.save_training_set("ts1", entity_df(USERS, T0), "model")
        frame(V1 + V2).write_parquet(repo / "data" / "profile.parquet")
        store.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
        server = ServerProcess(repo, root / "server.log")
        try:
            yield Deployment(repo, store, server, saved)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def store(deployed: Deployment) -> FeatureStore:
    return deployed.store


ONLINE_USERS = [{"user_id": u} for u in (1, 2, 3, 5, 7)]
# Users 1 (its newest row is all nulls), 2 (new values), 3 (a null age), 5 (not found), 7 (too old).
ONLINE_EXPECTED = {
    "user_id": [1, 2, 3, 5, 7],
    "age": [31, 50, 31, 31, 31],
    "score": [2.5, 50.0, 2.0, 2.5, 2.5],
    "country": ["DE", "JP", "FR", "DE", "DE"],
    "bonus": [-1.0, 50.0, 1.0, -1.0, -1.0],
    "visits": [10, 20, None, None, None],
    "age__status": ["IMPUTED", "PRESENT", "IMPUTED", "IMPUTED", "IMPUTED"],
    "score__status": ["IMPUTED", "PRESENT", "PRESENT", "IMPUTED", "IMPUTED"],
    "country__status": ["IMPUTED", "PRESENT", "PRESENT", "IMPUTED", "IMPUTED"],
    "bonus__status": ["IMPUTED", "PRESENT", "PRESENT", "IMPUTED", "IMPUTED"],
    "visits__status": ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
}


class TestLearning:
    def test_stored_values(self, store: FeatureStore) -> None:
        record = store.get_training_set("ts1")
        assert record["imputation"] == FITTED_V1
        assert record["feature_service"] == "model"
        assert record["rows"] == 7
        assert record["columns"] == ["user_id", "event_timestamp", *FEATURES]
        assert [d["name"] for d in store.list_training_sets()] == ["ts1"]

    def test_returns_the_filled_frame(self, deployed: Deployment) -> None:
        saved = deployed.saved
        assert saved.columns == ["user_id", "event_timestamp", *FEATURES]
        assert saved.get_column("user_id").to_list() == USERS
        assert columns(saved, FEATURES) == FILLED_V1
        assert saved.schema["age"] == pl.Int64 and saved.schema["score"] == pl.Float64


class TestServing:
    def test_online_fills_with_the_stored_values(self, store: FeatureStore) -> None:
        got = store.get_online_features("model", ONLINE_USERS)
        assert got.to_dict(include_statuses=True) == ONLINE_EXPECTED
        assert got.statuses["age"][0] is IMPUTED
        assert all(isinstance(v, int) for v in got.values["age"])  # a rounded mean of an Int64 feature
        assert got.event_timestamps["age"] == [V2_AT, V2_AT, V1_AT, None, NOW - timedelta(days=20)]

    def test_refs_are_not_imputed(self, store: FeatureStore) -> None:
        got = store.get_online_features(["profile:age", "profile:bonus"], ONLINE_USERS)
        assert got.to_dict(include_statuses=True) == {
            "user_id": [1, 2, 3, 5, 7], "age": [None, 50, None, None, None], "bonus": [None, 50.0, 1.0, None, None],
            "age__status": ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
            "bonus__status": ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
        }

    def test_full_feature_names(self, store: FeatureStore) -> None:
        got = store.get_online_features("model", [{"user_id": 1}, {"user_id": 5}], full_feature_names=True)
        assert got.to_dict(include_statuses=True) == {
            "user_id": [1, 5], "profile__age": [31, 31], "profile__score": [2.5, 2.5],
            "profile__country": ["DE", "DE"], "profile__bonus": [-1.0, -1.0], "profile__visits": [10, None],
            "profile__age__status": ["IMPUTED", "IMPUTED"], "profile__score__status": ["IMPUTED", "IMPUTED"],
            "profile__country__status": ["IMPUTED", "IMPUTED"], "profile__bonus__status": ["IMPUTED", "IMPUTED"],
            "profile__visits__status": ["PRESENT", "NOT_FOUND"],
        }

    def test_training_set_option_names_the_set(self, store: FeatureStore) -> None:
        got = store.get_online_features("model", ONLINE_USERS, training_set="ts1")
        assert got.to_dict(include_statuses=True) == ONLINE_EXPECTED

    def test_historical_with_the_stored_values(self, store: FeatureStore) -> None:
        entity = entity_df(USERS, NOW)  # sees the changed data
        raw = store.get_historical_features(entity, "model")
        assert columns(raw, FEATURES) == {
            "age": [None, 50, None, 40, None, 32, None], "score": [None, 50.0, 2.0, None, None, 10.0, None],
            "country": [None, "JP", "FR", None, None, "DE", None], "bonus": [None, 50.0, 1.0, 2.0, None, 3.0, None],
            "visits": [10, 20, None, 4, None, 6, None],
        }
        filled = store.get_historical_features(entity, "model", training_set="ts1")
        assert columns(filled, FEATURES) == {
            "age": [31, 50, 31, 40, 31, 32, 31], "score": [2.5, 50.0, 2.0, 2.5, 2.5, 10.0, 2.5],
            "country": ["DE", "JP", "FR", "DE", "DE", "DE", "DE"], "bonus": [-1.0, 50.0, 1.0, 2.0, -1.0, 3.0, -1.0],
            "visits": [10, 20, None, 4, None, 6, None],
        }
        assert filled.schema["age"] == pl.Int64
        # The first training set rebuilt with its own values is what save_training_set returned.
        again = store.get_historical_features(entity_df(USERS, T0), "model", training_set="ts1")
        assert columns(again, FEATURES) == FILLED_V1

    def test_integer_mean_is_rounded_the_same_offline_and_online(self, store: FeatureStore) -> None:
        offline = store.get_historical_features(entity_df([5], NOW), "model", training_set="ts1")
        online = store.get_online_features("model", [{"user_id": 5}])
        assert offline.get_column("age").to_list() == online.values["age"] == [31]

    def test_a_service_object_and_its_name_fill_alike(self, store: FeatureStore) -> None:
        service = store.get_feature_service("model")
        assert store.get_online_features(service, ONLINE_USERS).to_dict(include_statuses=True) == ONLINE_EXPECTED


class TestRemote:
    def test_client_gets_the_same_imputed_values(self, deployed: Deployment, store: FeatureStore) -> None:
        local = store.get_online_features("model", ONLINE_USERS)
        with Client(deployed.server.target) as client:
            remote = client.get_online_features("model", ONLINE_USERS)
        assert remote.to_dict(include_statuses=True) == ONLINE_EXPECTED
        assert remote.to_dict(include_statuses=True, include_event_timestamps=True) == local.to_dict(
            include_statuses=True, include_event_timestamps=True)
        assert remote.to_polars(include_statuses=True).equals(local.to_polars(include_statuses=True))
        assert remote.dtypes == local.dtypes

    def test_client_event_time_of_an_imputed_missing_value(self, deployed: Deployment) -> None:
        """User 5 has no stored row: its imputed values have no event time, remotely as in process."""
        with Client(deployed.server.target) as client:
            remote = client.get_online_features("model", [{"user_id": 5}])
        assert remote.statuses["age"] == [IMPUTED]
        assert remote.event_timestamps["age"] == [None]

    def test_client_with_refs_is_not_imputed(self, deployed: Deployment) -> None:
        with Client(deployed.server.target) as client:
            remote = client.get_online_features(["profile:age"], [{"user_id": 5}])
        assert remote.to_dict(include_statuses=True) == {"user_id": [5], "age": [None], "age__status": ["NOT_FOUND"]}


# -- a repo of its own per test: these save more training sets --------------------------------------


@pytest.fixture
def fresh(make_repo: RepoFactory, redis_server: Any, project_name: str) -> Iterator[FeatureStore]:
    root = make_repo({"defs.py": DEFS}, {"data/profile.parquet": frame(V1)},
                     config=online_config(redis_server, project_name))
    with FeatureStore(root) as store:
        store.apply()
        yield store


def test_named_older_set_and_the_latest_by_default(fresh: FeatureStore) -> None:
    fresh.save_training_set("ts1", entity_df(USERS, T0), "model")
    frame(V1 + V2).write_parquet(fresh.repo_path / "data" / "profile.parquet")
    second = fresh.save_training_set("ts2", entity_df(USERS, NOW), "model")
    # At NOW: ages [50, 40, 32] (users 2, 4, 6), scores [50, 2, 10] (users 2, 3, 6), countries JP, FR, DE
    # (users 2, 3, 6: a three-way tie, the smallest wins).
    assert fresh.get_training_set("ts2")["imputation"] == {
        "profile:age": {"strategy": "mean", "value": 122 / 3, "rows": 7, "missing": 4},
        "profile:bonus": {"strategy": "constant", "value": -1.0, "rows": 7, "missing": 3},
        "profile:country": {"strategy": "mode", "value": "DE", "rows": 7, "missing": 4},
        "profile:score": {"strategy": "median", "value": 10.0, "rows": 7, "missing": 4},
    }
    assert second.get_column("age").to_list() == [41, 50, 41, 40, 41, 32, 41]
    assert fresh.get_training_set("ts1")["imputation"] == FITTED_V1  # unchanged by the second save
    assert [d["name"] for d in fresh.list_training_sets()] == ["ts1", "ts2"]

    fresh.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
    rows = [{"user_id": 5}]
    latest = fresh.get_online_features("model", rows)
    assert (latest.values["age"], latest.values["score"]) == ([41], [10.0])
    older = fresh.get_online_features("model", rows, training_set="ts1")
    assert (older.values["age"], older.values["score"]) == ([31], [2.5])
    assert older.statuses["age"] == [IMPUTED]
    named = fresh.get_online_features("model", rows, training_set="ts2")
    assert named.to_dict() == latest.to_dict()
    offline = fresh.get_historical_features(entity_df([5], NOW), "model", training_set="ts1")
    assert columns(offline, ["age", "score", "country", "bonus"]) == {
        "age": [31], "score": [2.5], "country": ["DE"], "bonus": [-1.0]}


def test_overwrite_replaces_the_values(fresh: FeatureStore) -> None:
    fresh.save_training_set("ts", entity_df(USERS, T0), "model")
    with pytest.raises(RegistryError) as err:
        fresh.save_training_set("ts", entity_df([1, 2], T0), "model")
    assert str(err.value) == "a training set named 'ts' is already saved; pick another name or pass overwrite=True"
    assert fresh.get_training_set("ts")["imputation"] == FITTED_V1  # the refused save changed nothing
    fresh.save_training_set("ts", entity_df([1, 2], T0), "model", overwrite=True)
    record = fresh.get_training_set("ts")
    assert record["rows"] == 2
    assert record["imputation"]["profile:age"] == {"strategy": "mean", "value": 25.5, "rows": 2, "missing": 0}
    assert [d["name"] for d in fresh.list_training_sets()] == ["ts"]


def test_half_integer_mean_rounds_the_same_offline_and_online(fresh: FeatureStore) -> None:
    """A mean of x.5 for an Int64 feature: offline and online fill the same integer."""
    fresh.save_training_set("half", entity_df([1, 2], T0), "model")  # ages 20 and 31: mean 25.5
    assert fresh.get_training_set("half")["imputation"]["profile:age"]["value"] == 25.5
    fresh.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
    offline = fresh.get_historical_features(entity_df([3, 5], T0), "model", training_set="half")
    online = fresh.get_online_features("model", [{"user_id": 3}, {"user_id": 5}])
    assert offline.get_column("age").to_list() == online.values["age"] == [26, 26]  # round half to even


def test_full_feature_names_when_saving(fresh: FeatureStore) -> None:
    saved = fresh.save_training_set("full", entity_df(USERS, T0), "model", full_feature_names=True)
    assert saved.get_column("profile__age").to_list() == FILLED_V1["age"]
    assert fresh.get_training_set("full")["imputation"] == FITTED_V1


def test_constants_fill_before_any_training_set(fresh: FeatureStore) -> None:
    fresh.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
    got = fresh.get_online_features("model", [{"user_id": 5}])
    assert got.to_dict(include_statuses=True) == {
        "user_id": [5], "age": [None], "score": [None], "country": [None], "bonus": [-1.0], "visits": [None],
        "age__status": ["NOT_FOUND"], "score__status": ["NOT_FOUND"], "country__status": ["NOT_FOUND"],
        "bonus__status": ["IMPUTED"], "visits__status": ["NOT_FOUND"],
    }


# -- errors ---------------------------------------------------------------------------------------


class TestErrors:
    def test_unknown_training_set(self, fresh: FeatureStore) -> None:
        fresh.save_training_set("ts1", entity_df([1, 2], T0), "model")
        message = "unknown training set 'nope'; saved: ['ts1']"
        with pytest.raises(UnknownObjectError) as err:
            fresh.get_training_set("nope")
        assert str(err.value) == message
        with pytest.raises(UnknownObjectError) as err:
            fresh.get_online_features("model", [{"user_id": 1}], training_set="nope")
        assert str(err.value) == message
        with pytest.raises(UnknownObjectError) as err:
            fresh.get_historical_features(entity_df([1], T0), "model", training_set="nope")
        assert str(err.value) == message

    def test_unknown_training_set_when_none_is_saved(self, fresh: FeatureStore) -> None:
        with pytest.raises(UnknownObjectError) as err:
            fresh.get_training_set("nope")
        assert str(err.value) == "unknown training set 'nope'; saved: none"

    def test_training_set_of_another_service(self, fresh: FeatureStore) -> None:
        fresh.save_training_set("other_ts", entity_df(USERS, T0), "other")
        assert fresh.get_training_set("other_ts")["imputation"] == {
            "profile:age": {"strategy": "median", "value": 31.5, "rows": 7, "missing": 3}}
        message = ("training set 'other_ts' was built with 'other', not the feature service 'model': its imputation "
                   "values do not apply")
        with pytest.raises(RetrievalError) as err:
            fresh.get_online_features("model", [{"user_id": 1}], training_set="other_ts")
        assert str(err.value) == message
        with pytest.raises(RetrievalError) as err:
            fresh.get_historical_features(entity_df([1], T0), "model", training_set="other_ts")
        assert str(err.value) == message

    def test_training_set_with_refs(self, fresh: FeatureStore) -> None:
        with pytest.raises(RetrievalError, match="save_training_set needs a feature service"):
            fresh.save_training_set("refs", entity_df([1], T0), ["profile:age"])  # type: ignore[arg-type]
        fresh.save_training_set("ts1", entity_df([1, 2], T0), "model")
        with pytest.raises(RetrievalError, match="training_set= fills a feature service's features: pass the service"):
            fresh.get_historical_features(entity_df([1], T0), ["profile:age"], training_set="ts1")

    def test_imputing_a_ref_the_service_does_not_serve(self, fresh: FeatureStore) -> None:
        service = FeatureService("adhoc", features=[fresh.get_feature_view("profile")[["age"]]],
                                 imputation={"profile:score": Impute.mean()})
        message = "feature service 'adhoc' imputes 'profile:score', which it does not serve"
        with pytest.raises(RetrievalError) as err:
            fresh.save_training_set("adhoc_ts", entity_df([1], T0), service)
        assert str(err.value) == message
        with pytest.raises(RetrievalError) as err:
            fresh.get_online_features(service, [{"user_id": 1}])
        assert str(err.value) == message
        assert fresh.list_training_sets() == []

    def test_all_values_missing(self, fresh: FeatureStore) -> None:
        with pytest.raises(RetrievalError) as err:
            fresh.save_training_set("empty", entity_df([5, 7], T0), "model")
        assert str(err.value) == ("cannot learn the mean of 'profile:age': every value in the training set is "
                                  "missing; use Impute.constant(...)")
        assert fresh.list_training_sets() == []

    def test_bad_name(self, fresh: FeatureStore) -> None:
        with pytest.raises(DefinitionError, match="training set"):
            fresh.save_training_set("bad name!", entity_df([1], T0), "model")


def load_error(make_repo: RepoFactory, service: str) -> str:
    root = make_repo({"defs.py": BASE_DEFS + service}, {"data/profile.parquet": frame(V1)})
    with pytest.raises((RepoError, DefinitionError)) as err:
        load_repo(root)
    return str(err.value)


class TestDefinitionErrors:
    def test_mean_of_a_string_feature(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile], '
                                        'imputation={"profile:country": Impute.mean()})\n')
        assert ("feature service 'bad': mean imputation of 'profile:country' needs a numeric feature, it is String; "
                "use Impute.mode() or Impute.constant(...)") in message
        assert "defs.py" in message

    def test_median_of_a_string_feature(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile], '
                                        'imputation={"profile:country": Impute.median()})\n')
        assert "median imputation of 'profile:country' needs a numeric feature, it is String" in message

    def test_imputing_a_feature_not_served(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile[["age"]]], '
                                        'imputation={"profile:score": Impute.mean()})\n')
        assert "feature service 'bad' imputes 'profile:score', which it does not serve; it serves ['profile:age']" \
            in message

    def test_imputing_an_unknown_feature(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile], '
                                        'imputation={"profile:height": Impute.mean()})\n')
        assert "feature service 'bad' imputes 'profile:height', which it does not serve" in message

    def test_imputing_a_view_not_in_the_service(self, make_repo: RepoFactory) -> None:
        message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile], '
                                        'imputation={"other:x": Impute.mean()})\n')
        assert "imputation of 'other:x': the service has no view 'other'" in message

    def test_impute_objects(self) -> None:
        with pytest.raises(DefinitionError, match="unknown imputation strategy 'max'"):
            Impute("max")
        with pytest.raises(DefinitionError, match=r"Impute.constant\(value\) needs a value that is not None"):
            Impute.constant(None)
        with pytest.raises(DefinitionError, match="a constant must be a bool, number or string, got list"):
            Impute.constant([1])


# -- values that must survive the registry and fit the feature's type --------------------------------

TYPED_DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, FileSource, Impute, UnixTimestamp

user = Entity("user", join_keys=["user_id"])
visits = FeatureView("visits", entities=[user], source=FileSource("data/visits.parquet"),
                     schema=[Field("last_seen", UnixTimestamp)], ttl=timedelta(days=10))
seen_model = FeatureService("seen_model", features=[visits], imputation={"visits:last_seen": Impute.mode()})
"""


def test_mode_of_a_timestamp_feature_is_reused_as_a_timestamp(
    make_repo: RepoFactory, redis_server: Any, project_name: str
) -> None:
    """The learned value goes through the registry (JSON): read back, it must still be a timestamp."""
    seen = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    data = pl.DataFrame(
        {"user_id": [1, 2, 3], "event_timestamp": [V1_AT] * 3, "last_seen": [seen, seen, None]},
        schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC")},
    )
    root = make_repo({"defs.py": TYPED_DEFS}, {"data/visits.parquet": data},
                     config=online_config(redis_server, project_name))
    with FeatureStore(root) as store:
        store.apply()
        saved = store.save_training_set("seen_ts", entity_df([1, 2, 3], T0), "seen_model")
        assert saved.get_column("last_seen").to_list() == [seen, seen, seen]
        rebuilt = store.get_historical_features(entity_df([1, 2, 3], T0), "seen_model", training_set="seen_ts")
        assert rebuilt.equals(saved)
        store.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
        online = store.get_online_features("seen_model", [{"user_id": 3}, {"user_id": 4}])
        assert online.values["last_seen"] == [seen, seen]
        assert online.statuses["last_seen"] == [IMPUTED, IMPUTED]


def test_constant_of_the_wrong_type_is_refused_at_load(make_repo: RepoFactory) -> None:
    """A string constant for a Float64 feature: refused when the repo loads, not served as a str
    in a Float64 column online (nor a Polars cast error when saving a training set)."""
    message = load_error(make_repo, 'bad = FeatureService("bad", features=[profile], '
                                    'imputation={"profile:score": Impute.constant("unknown")})\n')
    assert "profile:score" in message and "'unknown'" in message


ODFV_DEFS = BASE_DEFS + """
from featurestore import RequestSource, on_demand_feature_view

txn = RequestSource("txn", schema=[Field("amount", Float64)])


@on_demand_feature_view(sources=[profile[["score"]], txn], schema=[Field("ratio", Float64)])
def ratio(df):
    return df.select((pl.col("amount") / pl.col("score")).alias("ratio"))


scored = FeatureService("scored", features=[profile[["score"]], ratio],
                        imputation={"profile:score": Impute.median(), "ratio:ratio": Impute.median()})
"""


def test_an_on_demand_feature_is_imputed_alike_offline_and_online(
    make_repo: RepoFactory, redis_server: Any, project_name: str
) -> None:
    root = make_repo({"defs.py": ODFV_DEFS}, {"data/profile.parquet": frame(V1)},
                     config=online_config(redis_server, project_name))
    with FeatureStore(root) as store:
        store.apply()
        entity = entity_df(USERS, T0).with_columns(pl.lit(6.0).alias("amount"))
        saved = store.save_training_set("scored_ts", entity, "scored")
        # Ratios 6 / [1, 3, 2, 10] = [6, 2, 3, 0.6]: median 2.5; the scores' median is 2.5 too.
        assert store.get_training_set("scored_ts")["imputation"] == {
            "profile:score": {"strategy": "median", "value": 2.5, "rows": 7, "missing": 3},
            "ratio:ratio": {"strategy": "median", "value": 2.5, "rows": 7, "missing": 3},
        }
        assert saved.get_column("ratio").to_list() == [6.0, 2.0, 3.0, 2.5, 2.5, 0.6, 2.5]
        store.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
        rows = [{"user_id": 4, "amount": 6.0}, {"user_id": 5, "amount": 6.0}, {"user_id": 6, "amount": 5.0}]
        online = store.get_online_features("scored", rows)
        assert online.to_dict(include_statuses=True) == {
            "user_id": [4, 5, 6], "amount": [6.0, 6.0, 5.0], "score": [2.5, 2.5, 10.0], "ratio": [2.5, 2.5, 0.5],
            "score__status": ["IMPUTED", "IMPUTED", "PRESENT"], "ratio__status": ["IMPUTED", "IMPUTED", "PRESENT"],
        }
        offline = store.get_historical_features(
            pl.DataFrame({"user_id": [4, 5, 6], "event_timestamp": [NOW] * 3, "amount": [6.0, 6.0, 5.0]},
                         schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"),
                                 "amount": pl.Float64}),
            "scored", training_set="scored_ts")
        assert columns(offline, ["score", "ratio"]) == {"score": online.values["score"], "ratio": online.values["ratio"]}


def test_server_serves_a_newly_saved_training_set_without_restart(
    make_repo: RepoFactory, redis_server: Any, project_name: str, tmp_path: Path
) -> None:
    root = make_repo({"defs.py": DEFS}, {"data/profile.parquet": frame(V1)},
                     config=online_config(redis_server, project_name))
    with FeatureStore(root) as store:
        store.apply()
        store.save_training_set("ts1", entity_df(USERS, T0), "model")
        store.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
        server = ServerProcess(root, tmp_path / "server.log")
        try:
            with Client(server.target) as client:
                first = client.get_online_features("model", [{"user_id": 5}])
                assert (first.values["age"], first.values["score"]) == ([31], [2.5])
                store.save_training_set("ts_small", entity_df([1, 2], T0), "model")  # age 25.5, score 2.0
                deadline = time.monotonic() + 10
                while True:
                    got = client.get_online_features("model", [{"user_id": 5}])
                    if got.values["score"] == [2.0] or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert (got.values["age"], got.values["score"]) == ([26], [2.0])
                assert got.to_dict(include_statuses=True) == store.get_online_features(
                    "model", [{"user_id": 5}]).to_dict(include_statuses=True)
        finally:
            server.stop()
