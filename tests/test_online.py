"""The online store on a real Valkey server: materialization, reads, push, ttl, removal, faults."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from featurestore.errors import MaterializationError, OnlineStoreError, PushError, RetrievalError
from featurestore.online.codec import HEADER
from featurestore.online.retrieval import FieldStatus
from tests.conftest import BASIC_DEFS, RepoFactory, events, online_config

NOW = datetime.now(UTC).replace(microsecond=0)


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


@pytest.fixture
def online_repo(make_repo: RepoFactory, redis_server: Any, project_name: str) -> Any:
    """A factory of one-view repos (view ``stats``) pointed at the session's server."""

    def factory(rows: list[Any], ttl: str = "timedelta(days=7)", project: str | None = None,
                defs: str | None = None) -> Path:
        return make_repo(
            {"defs.py": defs or BASIC_DEFS.format(ttl=ttl)},
            {"data/events.parquet": events(rows)},
            config=online_config(redis_server, project or project_name),
        )

    return factory


def keys_of(client: Any, project: str, view: str = "stats") -> dict[bytes, bytes]:
    return {k: client.get(k) for k in client.scan_iter(match=f"{project}:{view}:{{*", count=1000)}


def values(store: FeatureStore, ids: list[int], feature: str = "stats:value") -> list[Any]:
    return store.get_online_features([feature], [{"user_id": i} for i in ids]).to_dict()[feature.split(":")[1]]


class TestMaterialize:
    def test_latest_row_per_entity_with_tie_rules(self, online_repo: Any) -> None:
        repo = online_repo([
            (1, ago(hours=5), ago(hours=5), 1.0, "old"),
            (1, ago(hours=1), ago(hours=1), 2.0, "new"),
            # user 2: same event time; the greater created time wins, then the later row
            (2, ago(hours=2), ago(hours=1), 20.0, "late-created"),
            (2, ago(hours=2), ago(hours=2), 21.0, "early-created"),
            (3, ago(hours=3), ago(hours=3), 30.0, "first"),
            (3, ago(hours=3), ago(hours=3), 31.0, "second"),
            (4, ago(hours=2), ago(hours=2), None, None),
        ])
        with FeatureStore(repo) as store:
            store.apply()
            [run] = store.materialize(ago(days=1), NOW + timedelta(seconds=1))
            assert (run.view, run.rows, run.written) == ("stats", 4, 4)
            resp = store.get_online_features(["stats:value", "stats:label"], [{"user_id": i} for i in (1, 2, 3, 4, 5)])
            data = resp.to_dict(include_statuses=True)
            assert data["user_id"] == [1, 2, 3, 4, 5]
            assert data["value"] == [2.0, 20.0, 31.0, None, None]
            assert data["label"] == ["new", "late-created", "second", None, None]
            assert data["value__status"] == ["PRESENT"] * 4 + ["NOT_FOUND"]
            assert resp.event_timestamps["value"] == [ago(hours=1), ago(hours=2), ago(hours=3), ago(hours=2), None]
            frame = resp.to_polars()
            assert frame.schema == {"user_id": pl.Int64, "value": pl.Float64, "label": pl.String}
            [recorded] = store.registry.committed_runs(store.project, "stats", kind="online")
            assert (recorded.rows, recorded.status) == (4, "committed")

    def test_window_is_half_open(self, online_repo: Any) -> None:
        repo = online_repo([
            (1, ago(hours=10), ago(hours=10), 1.0, "a"),
            (1, ago(hours=5), ago(hours=5), 2.0, "b"),  # exactly at the window end: excluded
            (2, ago(hours=10), ago(hours=10), 3.0, "c"),  # exactly at the window start: included
        ])
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(hours=10), ago(hours=5))
            assert values(store, [1, 2]) == [1.0, 3.0]

    def test_rerun_is_a_no_op_and_older_windows_never_overwrite(self, online_repo: Any, redis_client: Any) -> None:
        repo = online_repo([(1, ago(days=3), None, 1.0, "a"), (1, ago(hours=1), None, 2.0, "b"),
                            (2, ago(days=3), None, 5.0, "c")])
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=2), NOW)
            before = keys_of(redis_client, store.project)
            assert len(before) == 1
            store.materialize(ago(days=2), NOW)
            assert keys_of(redis_client, store.project) == before
            store.materialize(ago(days=5), ago(days=2))  # older window: user 1's older row loses
            assert values(store, [1, 2]) == [2.0, 5.0]
            store.materialize(ago(days=5), NOW)
            assert values(store, [1, 2]) == [2.0, 5.0]

    def test_incremental_continues_from_the_last_run(self, online_repo: Any) -> None:
        repo = online_repo([(1, ago(days=3), None, 1.0, "a"), (1, ago(hours=1), None, 2.0, "b")], ttl="timedelta(days=10)")
        with FeatureStore(repo) as store:
            store.apply()
            [first] = store.materialize_incremental(ago(days=1))
            assert first.window_start == ago(days=11) and first.window_end == ago(days=1)
            assert values(store, [1]) == [1.0]
            [second] = store.materialize_incremental(NOW)
            assert second.window_start == ago(days=1) and second.rows == 1
            assert values(store, [1]) == [2.0]
            assert store.materialize_incremental(NOW) == []

    def test_snapshots_and_source_give_the_same_online_values(self, online_repo: Any, redis_client: Any) -> None:
        rows = [(u, ago(hours=h), ago(hours=h - 0.5), float(u * 100 + h), f"l{h}") for u in range(1, 6) for h in (1, 2, 3)]
        repo = online_repo(rows)
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=1), NOW)
            from_source = {k: v[HEADER.size - 4:] for k, v in keys_of(redis_client, store.project).items()}
            redis_client.delete(*keys_of(redis_client, store.project))
            store.materialize_offline(ago(days=1), NOW)
            store.materialize(ago(days=1), NOW)
            from_snapshot = {k: v[HEADER.size - 4:] for k, v in keys_of(redis_client, store.project).items()}
            assert from_snapshot == from_source and len(from_source) == 5
            assert values(store, [1, 5]) == [101.0, 501.0]


class TestMaxAge:
    def test_outside_max_age_is_null_with_its_event_time(self, online_repo: Any, redis_client: Any) -> None:
        repo = online_repo([(1, ago(days=2), None, 1.0, "old"), (2, ago(hours=1), None, 2.0, "fresh")],
                           ttl="timedelta(days=1)")
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=3), NOW)
            resp = store.get_online_features(["stats:value"], [{"user_id": 1}, {"user_id": 2}])
            assert resp.to_dict()["value"] == [None, 2.0]
            assert resp.statuses["value"] == [FieldStatus.OUTSIDE_MAX_AGE, FieldStatus.PRESENT]
            assert resp.event_timestamps["value"] == [ago(days=2), ago(hours=1)]
            # Keys expire one ttl after their write.
            ttl_left = redis_client.ttl(f"{store.project}:stats:{{1}}")
            assert 86_000 < ttl_left <= 86_400

    def test_keys_expire_after_the_ttl(self, online_repo: Any, redis_client: Any) -> None:
        import time

        repo = online_repo([(1, ago(days=1), None, 1.0, "x")], ttl="timedelta(seconds=1)")
        with FeatureStore(repo) as store:
            store.apply()
            store.push("stats", events([(7, datetime.now(UTC), None, 7.0, "now")]))
            assert redis_client.exists(f"{store.project}:stats:{{7}}") == 1
            time.sleep(1.3)
            resp = store.get_online_features(["stats:value"], [{"user_id": 7}])
            assert resp.statuses["value"] == [FieldStatus.NOT_FOUND]
            assert redis_client.exists(f"{store.project}:stats:{{7}}") == 0

    def test_no_ttl_means_no_expiry(self, online_repo: Any, redis_client: Any) -> None:
        repo = online_repo([(1, ago(days=400), None, 1.0, "ancient")], ttl="None")
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=500), NOW)
            assert values(store, [1]) == [1.0]
            assert redis_client.ttl(f"{store.project}:stats:{{1}}") == -1


class TestPush:
    def test_newest_wins_whatever_the_push_order(self, online_repo: Any) -> None:
        repo = online_repo([(1, ago(days=1), None, 0.0, "src")])
        with FeatureStore(repo) as store:
            store.apply()
            assert store.push("stats", events([(1, ago(hours=1), ago(hours=1), 2.0, "newer")])) == 1
            store.push("stats", events([(1, ago(hours=2), ago(hours=1), 1.0, "older")]))  # late: ignored
            assert values(store, [1]) == [2.0]
            store.push("stats", events([(1, ago(hours=1), ago(hours=2), 3.0, "older-created")]))  # ignored
            assert values(store, [1]) == [2.0]
            store.push("stats", events([(1, ago(hours=1), ago(minutes=30), 4.0, "newer-created")]))
            assert values(store, [1]) == [4.0]
            store.push("stats", events([(1, ago(hours=1), ago(minutes=30), 5.0, "same-version")]))  # push order
            assert values(store, [1]) == [5.0]
            # Within one push, later rows win ties and newer rows win whatever their position.
            store.push("stats", events([
                (2, ago(minutes=5), None, 1.0, "a"), (2, ago(minutes=9), None, 9.0, "b"),
                (3, ago(minutes=5), None, 1.0, "a"), (3, ago(minutes=5), None, 2.0, "b"),
            ]))
            assert values(store, [2, 3]) == [1.0, 2.0]
            store.materialize(ago(days=2), NOW)  # the source's older row never overwrites a push
            assert values(store, [1]) == [5.0]

    def test_offline_push_is_seen_by_training_sets(self, online_repo: Any) -> None:
        repo = online_repo([(1, ago(hours=5), ago(hours=5), 1.0, "src")])
        with FeatureStore(repo) as store:
            store.apply()
            store.push("stats", events([(1, ago(hours=5), ago(hours=5), 9.0, "pushed-tie"),
                                        (2, ago(hours=4), None, 2.0, "new-user")]), to="offline")
            entity = pl.DataFrame({"user_id": [1, 2, 1], "event_timestamp": [ago(hours=1), ago(hours=1), ago(hours=6)]})
            train = store.get_historical_features(entity, ["stats:value"])
            assert train.get_column("value").to_list() == [9.0, 2.0, None]
            assert values(store, [1]) == [None]  # offline only: nothing online yet
            store.materialize(ago(days=1), NOW)
            assert values(store, [1, 2]) == [9.0, 2.0]
            store.push("stats", events([(1, ago(hours=3), None, 3.0, "both")]), to="online_and_offline")
            assert values(store, [1]) == [3.0]
            assert store.get_historical_features(entity, ["stats:value"]).get_column("value").to_list() == [3.0, 2.0, None]

    def test_push_errors(self, online_repo: Any) -> None:
        repo = online_repo([(1, ago(hours=5), None, 1.0, "src")])
        with FeatureStore(repo) as store:
            store.apply()
            good = events([(1, ago(hours=1), None, 1.0, "x")])
            with pytest.raises(PushError, match=r"missing column\(s\) \['label'\]"):
                store.push("stats", good.drop("label"))
            with pytest.raises(PushError, match="column 'value' is large_string, but the feature is declared Float64"):
                store.push("stats", good.with_columns(pl.col("value").cast(pl.String)))
            with pytest.raises(PushError, match=r"join key 'user_id' has 1 null value\(s\)"):
                store.push("stats", good.with_columns(pl.lit(None, pl.Int64).alias("user_id")))
            with pytest.raises(PushError, match="'event_timestamp' must be a timestamp column"):
                store.push("stats", good.with_columns(pl.lit("yesterday").alias("event_timestamp")))
            with pytest.raises(RetrievalError, match=r"push\(to=\.\.\.\) must be one of online, offline, online_and_offline"):
                store.push("stats", good, to="redis")
            with pytest.raises(RetrievalError, match="unknown feature view 'nope'"):
                store.push("nope", good)
            assert values(store, [1]) == [None]  # nothing was half-written


class TestIsolationAndRemoval:
    def test_two_projects_share_a_server(self, online_repo: Any, redis_client: Any, project_name: str) -> None:
        a = online_repo([(1, ago(hours=1), None, 1.0, "a")], project=project_name + "_a")
        b = online_repo([(1, ago(hours=1), None, 2.0, "b")], project=project_name + "_b")
        with FeatureStore(a) as store_a, FeatureStore(b) as store_b:
            store_a.apply()
            store_b.apply()
            store_a.materialize(ago(days=1), NOW)
            store_b.materialize(ago(days=1), NOW)
            assert values(store_a, [1]) == [1.0] and values(store_b, [1]) == [2.0]
            (a / "defs.py").write_text("")  # project a deletes its view
            store_a.apply(allow_destructive=True)
            assert keys_of(redis_client, store_a.project) == {}
            assert values(store_b, [1]) == [2.0]

    def test_deleting_a_view_removes_only_its_keys_without_keys_command(
        self, online_repo: Any, redis_client: Any
    ) -> None:
        other = (
            "other = FeatureView('other', entities=[user], source=FileSource('data/events.parquet'), "
            "schema=[Field('value', Float64)], ttl=None)\n"
        )
        defs = BASIC_DEFS.format(ttl="None") + other
        repo = online_repo([(u, ago(hours=1), None, float(u), "x") for u in range(1, 2501)], defs=defs)
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=1), NOW)
            assert len(keys_of(redis_client, store.project, "stats")) == 2500
            assert len(keys_of(redis_client, store.project, "other")) == 2500
            redis_client.config_resetstat()
            (repo / "defs.py").write_text(
                "from featurestore import Entity, FeatureView, Field, FileSource, Float64\n"
                "user = Entity('user', join_keys=['user_id'])\n" + other
            )
            plan = store.apply(allow_destructive=True)
            assert {c.name for c in plan.changes if c.action == "delete"} == {"stats", "svc"}
            stats = redis_client.info("commandstats")
            assert "cmdstat_keys" not in stats and stats["cmdstat_scan"]["calls"] >= 1
            assert keys_of(redis_client, store.project, "stats") == {}
            assert len(keys_of(redis_client, store.project, "other")) == 2500
            assert store.get_online_features(["other:value"], [{"user_id": 7}]).to_dict()["value"] == [7.0]

    def test_a_schema_change_drops_the_old_values(self, online_repo: Any, redis_client: Any) -> None:
        repo = online_repo([(1, ago(hours=1), None, 1.0, "x")])
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(ago(days=1), NOW)
            assert len(keys_of(redis_client, store.project)) == 1
            defs = BASIC_DEFS.format(ttl="timedelta(days=7)").replace('Field("value", Float64)', 'Field("value", Float32)')
            (repo / "defs.py").write_text(defs.replace("Float64, Int64", "Float32, Float64, Int64"))
            plan = store.apply(allow_destructive=True)
            assert [c.name for c in plan.destructive] == ["stats"]
            assert keys_of(redis_client, store.project) == {}
            resp = store.get_online_features(["stats:value"], [{"user_id": 1}])
            assert resp.statuses["value"] == [FieldStatus.NOT_FOUND]
            store.materialize(ago(days=1), NOW)
            assert values(store, [1]) == [1.0]


class TestConsistency:
    def test_online_values_equal_training_set_values_at_the_same_instant(self, online_repo: Any) -> None:
        rng = random.Random(7)
        rows = []
        for u in range(300):
            for _ in range(rng.randint(0, 6)):
                event = NOW - timedelta(seconds=rng.randint(1, 10 * 86_400))
                created = event + timedelta(seconds=rng.choice([0, 0, 5, 60]))
                rows.append((u, event, created, rng.choice([None, round(rng.uniform(0, 100), 3)]),
                             rng.choice(["a", "b", None])))
        # Exact ties on (event, created) for a few users: ingestion order decides.
        for u in range(0, 300, 37):
            rows.append((u, NOW - timedelta(hours=1), NOW - timedelta(hours=1), 1.0, "tie-1"))
            rows.append((u, NOW - timedelta(hours=1), NOW - timedelta(hours=1), 2.0, "tie-2"))
        repo = online_repo(rows, ttl="timedelta(days=3)")
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
            ids = rng.sample(range(320), 120)
            online = store.get_online_features(["stats:value", "stats:label"], [{"user_id": i} for i in ids])
            entity = pl.DataFrame({"user_id": ids, "event_timestamp": [NOW] * len(ids)},
                                  schema={"user_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})
            offline = store.get_historical_features(entity, ["stats:value", "stats:label"])
            assert online.to_dict()["value"] == offline.get_column("value").to_list()
            assert online.to_dict()["label"] == offline.get_column("label").to_list()
            present = sum(s == FieldStatus.PRESENT for s in online.statuses["value"])
            outside = sum(s == FieldStatus.OUTSIDE_MAX_AGE for s in online.statuses["value"])
            assert present > 30 and outside > 5  # the sample exercises both


class TestErrors:
    def test_request_errors(self, online_repo: Any) -> None:
        defs = BASIC_DEFS.format(ttl="None") + (
            "hidden = FeatureView('hidden', entities=[user], source=FileSource('data/events.parquet'), "
            "schema=[Field('value', Float64)], online=False)\n"
        )
        repo = online_repo([(1, ago(hours=1), None, 1.0, "x")], defs=defs)
        with FeatureStore(repo) as store:
            store.apply()
            with pytest.raises(RetrievalError, match=r"entity_rows lack join key\(s\) \['user_id'\]"):
                store.get_online_features(["stats:value"], [{"id": 1}])
            with pytest.raises(RetrievalError, match=r"entity_rows\[1\]: join key 'user_id' .* must be an integer or a string, got float"):
                store.get_online_features(["stats:value"], [{"user_id": 1}, {"user_id": 1.5}])
            with pytest.raises(RetrievalError, match="'hidden' has online=False"):
                store.get_online_features(["hidden:value"], [{"user_id": 1}])
            with pytest.raises(RetrievalError, match="has no feature 'nope'"):
                store.get_online_features(["stats:nope"], [{"user_id": 1}])
            with pytest.raises(RetrievalError, match="entity_rows must be a list of dicts"):
                store.get_online_features(["stats:value"], 42)
            with pytest.raises(RetrievalError, match="different lengths"):
                store.get_online_features(["stats:value"], {"user_id": [1, 2], "x": [1]})
            with pytest.raises(RetrievalError, match=r"\['hidden'\] have online=False"):
                store.materialize(ago(days=1), NOW, views=["hidden"])
            with pytest.raises(MaterializationError, match="must be after start"):
                store.materialize(NOW, ago(days=1))
            assert store.get_online_features("svc", {"user_id": [1]}).to_dict()["value"] == [None]

    def test_unreachable_server(self, make_repo: RepoFactory, project_name: str) -> None:
        import socket

        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        repo = make_repo(
            {"defs.py": BASIC_DEFS.format(ttl="None")}, {"data/events.parquet": events([(1, ago(hours=1), None, 1.0, "x")])},
            config=f"project: {project_name}\nonline_store:\n  url: redis://:hunter2@127.0.0.1:{port}/0\n",
        )
        with FeatureStore(repo) as store:
            store.apply()
            with pytest.raises(MaterializationError) as info:
                store.materialize(ago(days=1), NOW)
            message = str(info.value)
            assert info.value.transient and "hunter2" not in message and f"redis://:***@127.0.0.1:{port}/0" in message
            [run] = store.registry.runs(store.project, "stats")
            assert run.status == "failed" and "ConnectionError" in (run.message or "")
            with pytest.raises(OnlineStoreError, match="cannot read from the online store") as read_info:
                store.get_online_features(["stats:value"], [{"user_id": 1}])
            assert read_info.value.transient


class TestFaults:
    def test_redis_killed_mid_materialization_then_rerun_converges(
        self, make_repo: RepoFactory, redis_server: Any, redis_client: Any, project_name: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import featurestore.materialize as materialize_module
        from featurestore.online import embedded

        monkeypatch.setattr(materialize_module, "BATCH_ROWS", 500)
        rows = [(u, ago(hours=1 + u % 5), None, float(u), f"l{u % 3}") for u in range(6000)]
        data = {"data/events.parquet": events(rows)}
        defs = {"defs.py": BASIC_DEFS.format(ttl="timedelta(days=7)")}
        # The reference: an uninterrupted run on the session's server.
        reference = make_repo(defs, data, config=online_config(redis_server, project_name + "_ref"))
        with FeatureStore(reference) as store:
            store.apply()
            store.materialize(ago(days=1), NOW)
        expected = {k.split(b":", 2)[2]: v for k, v in keys_of(redis_client, project_name + "_ref").items()}
        assert len(expected) == 6000

        # The victim: its own server, killed after the first batch.
        server = embedded.EmbeddedServer(tmp_path / "victim")
        server._open()
        try:
            monkeypatch.setenv("FS_TEST_ONLINE_URL", server.url)
            repo = make_repo(defs, data, config=f"project: {project_name}\nonline_store:\n  url: ${{FS_TEST_ONLINE_URL}}\n")
            batches = []

            def progress(view: str, total: int) -> Any:
                def on_batch(n: int) -> None:
                    batches.append(n)
                    if len(batches) == 1:
                        server.kill()
                return on_batch

            with FeatureStore(repo) as store:
                store.apply()
                with pytest.raises(MaterializationError) as info:
                    store.materialize(ago(days=1), NOW, progress=progress)
                assert info.value.transient and "cannot write to the online store" in str(info.value)
                [failed] = store.registry.runs(store.project, "stats")
                assert failed.status == "failed" and "ConnectionError" in (failed.message or "")

            server.stop()
            server._open()  # back, on a new port: the repo's URL comes from the environment
            monkeypatch.setenv("FS_TEST_ONLINE_URL", server.url)
            with FeatureStore(repo) as store:
                [run] = store.materialize(ago(days=1), NOW)
                assert run.rows == 6000
                import redis

                client = redis.Redis(**server.connection_kwargs())
                got = {k.split(b":", 2)[2]: v for k, v in keys_of(client, project_name).items()}
                client.close()
                assert got == expected
                statuses = [r.status for r in store.registry.runs(store.project, "stats")]
                assert statuses == ["failed", "committed"]
        finally:
            server.stop()


def test_writes_survive_a_script_flush_mid_run(online_repo: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server forgetting the Lua script (SCRIPT FLUSH, a restart) between batches costs a reload, not the run."""
    import featurestore.materialize as materialize_module

    monkeypatch.setattr(materialize_module, "BATCH_ROWS", 700)
    repo = online_repo([(u, ago(hours=1), None, float(u), "x") for u in range(5000)])
    with FeatureStore(repo) as store:
        store.apply()
        # Keys already stored: every slice of the run goes through the script.
        store.push("stats", events([(u, ago(hours=2), None, -1.0, "old") for u in range(5000)]))

        def progress(view: str, total: int) -> Any:
            return lambda n: redis_client.script_flush()

        [run] = store.materialize(ago(days=1), NOW, progress=progress)
        assert (run.rows, run.written) == (5000, 5000)
        assert values(store, [0, 2500, 4999]) == [0.0, 2500.0, 4999.0]


class TestWritePaths:
    """``write(distinct=True)`` tries each slice as one set-if-none-exist command and falls back to
    the newest-wins script for slices holding a stored key; the result is newest-wins either way."""

    @staticmethod
    def value(event_us: int, created_us: int, payload: bytes) -> bytes:
        return HEADER.pack(event_us, created_us, b"test") + payload

    @staticmethod
    def batches(rows: list[tuple[bytes, bytes]], size: int) -> list[tuple[Any, Any]]:
        import pyarrow as pa

        return [(pa.array([k for k, _ in rows[a:a + size]], pa.binary()), pa.array([v for _, v in rows[a:a + size]], pa.binary()))
                for a in range(0, len(rows), size)]

    @staticmethod
    def calls(client: Any) -> dict[str, int]:
        stats = client.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "msetex", "msetnx")}

    @pytest.fixture
    def online(self, online_repo: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
        import featurestore.online.redis as redis_module

        monkeypatch.setattr(redis_module, "CALL_KEYS", 10)  # many slices from few rows
        with FeatureStore(online_repo([(1, ago(hours=1), None, 1.0, "a")])) as store:
            yield store.online_store, store.project

    def test_new_keys_are_set_without_the_script_and_expire(self, online: Any, redis_client: Any) -> None:
        store, project = online
        rows = [(f"{project}:w:{{{i}}}".encode(), self.value(1_000 + i, 0, b"v%d" % i)) for i in range(95)]
        redis_client.config_resetstat()
        assert store.write(self.batches(rows, 40), 3600, distinct=True) == 95
        assert self.calls(redis_client) == {"evalsha": 0, "msetex": 10, "msetnx": 0}
        assert redis_client.mget([k for k, _ in rows]) == [v for _, v in rows]
        assert 3590 <= redis_client.ttl(rows[0][0]) <= 3600 and 3590 <= redis_client.ttl(rows[-1][0]) <= 3600

    def test_without_ttl_keys_never_expire(self, online: Any, redis_client: Any) -> None:
        store, project = online
        rows = [(f"{project}:w:{{{i}}}".encode(), self.value(1, 0, b"x")) for i in range(25)]
        assert store.write(self.batches(rows, 25), None, distinct=True) == 25
        assert redis_client.ttl(rows[0][0]) == -1 and redis_client.get(rows[24][0]) == rows[24][1]

    def test_slices_holding_stored_keys_go_through_newest_wins(self, online: Any, redis_client: Any) -> None:
        """Random stored versions, older, newer and tied, under a distinct write of many slices: the
        result equals newest-wins key by key (ties go to the write), whichever command wrote it."""
        store, project = online
        rng = random.Random(7)
        keys = [f"{project}:w:{{{i}}}".encode() for i in range(400)]
        stored: dict[bytes, bytes] = {}
        for k in rng.sample(keys[:300], 60):  # the last 100 keys are never stored: all-new slices
            stored[k] = self.value(rng.randrange(5), rng.randrange(3), b"old")
        assert store.write(self.batches(list(stored.items()), 1000), 3600) == 60
        new = {k: self.value(rng.randrange(5), rng.randrange(3), b"new") for k in keys}
        redis_client.config_resetstat()
        written = store.write(self.batches(list(new.items()), 70), 3600, distinct=True)
        expected = {k: v if k not in stored or v[:16] >= stored[k][:16] else stored[k] for k, v in new.items()}
        assert dict(zip(keys, redis_client.mget(keys), strict=True)) == expected
        assert written == sum(1 for k in keys if expected[k] is new[k])
        calls = self.calls(redis_client)
        assert calls["msetex"] >= 10 + calls["evalsha"]  # all-new slices in one command; the others tried first

    def test_a_store_holding_the_keys_stops_trying_after_a_few_failures(self, online: Any, redis_client: Any) -> None:
        import featurestore.online.redis as redis_module

        store, project = online
        rows = [(f"{project}:w:{{{i}}}".encode(), self.value(1, 0, b"a")) for i in range(500)]
        store.write(self.batches(rows, 500), 3600, distinct=True)
        redis_client.config_resetstat()
        newer = [(k, self.value(2, 0, b"b")) for k, _ in rows]
        assert store.write(self.batches(newer, 500), 3600, distinct=True) == 500
        calls = self.calls(redis_client)
        assert calls["evalsha"] == 50  # every slice written by the script
        # Slices in flight when the tries stop were tried too; from then on, only the script.
        assert redis_module.NX_TRIES < calls["msetex"] - 50 <= redis_module.NX_TRIES + redis_module.IN_FLIGHT
        assert redis_client.get(rows[-1][0]) == newer[-1][1]

    def test_writes_that_may_repeat_keys_always_use_the_script_in_order(self, online: Any, redis_client: Any) -> None:
        """A push may hold a key twice, in different batches: tied rows keep their write order."""
        store, project = online
        key = f"{project}:w:{{1}}".encode()
        rows = [(key, self.value(5, 5, b"first")), (f"{project}:w:{{2}}".encode(), self.value(1, 1, b"x")),
                (key, self.value(5, 5, b"second"))]
        redis_client.config_resetstat()
        assert store.write(self.batches(rows, 1), 3600) == 3
        assert self.calls(redis_client) == {"evalsha": 3, "msetex": 3, "msetnx": 0}  # MSETEX inside the script
        assert redis_client.get(key) == self.value(5, 5, b"second")

    def test_servers_without_msetex(self, online: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Older servers: keys that never expire are tried with MSETNX, expiring ones go to the script."""
        import featurestore.online.redis as redis_module

        monkeypatch.setattr(redis_module, "_has_command", lambda client, name: False)
        store, project = online
        lasting = [(f"{project}:w:{{{i}}}".encode(), self.value(1, 0, b"l")) for i in range(20)]
        expiring = [(f"{project}:x:{{{i}}}".encode(), self.value(1, 0, b"e")) for i in range(20)]
        redis_client.config_resetstat()
        assert store.write(self.batches(lasting, 20), None, distinct=True) == 20
        assert self.calls(redis_client) == {"evalsha": 0, "msetex": 0, "msetnx": 2}
        assert store.write(self.batches(expiring, 20), 60, distinct=True) == 20
        assert self.calls(redis_client)["evalsha"] == 2
        assert redis_client.ttl(lasting[0][0]) == -1 and 50 <= redis_client.ttl(expiring[0][0]) <= 60
        assert redis_client.mget([k for k, _ in lasting + expiring]) == [v for _, v in lasting + expiring]
