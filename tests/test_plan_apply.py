"""Plan, apply and the registry: diffs, destructive changes, atomicity, versions, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from featurestore import FeatureStore
from featurestore.errors import PlanError, RegistryError, RepoError
from featurestore.registry import Registry
from tests.conftest import BASIC_DEFS, RepoFactory, events, ts

DATA = {"data/events.parquet": events([(1, ts(2026, 1, 1), None, 1.0, "a")])}


def edit(root: Path, old: str, new: str) -> None:
    path = root / "defs.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture
def applied(make_repo: RepoFactory) -> tuple[Path, FeatureStore]:
    root = make_repo(data=DATA)
    store = FeatureStore(root)
    store.apply()
    return root, store


def test_first_plan_creates_everything(make_repo: RepoFactory) -> None:
    store = FeatureStore(make_repo(data=DATA))
    plan = store.plan()
    assert [(c.action, c.kind, c.name) for c in plan.changes] == [
        ("create", "entity", "user"), ("create", "feature_view", "stats"), ("create", "feature_service", "svc"),
    ]
    assert "+ feature view stats" in plan.explain()
    assert "3 to create, 0 to update, 0 to delete, 0 unchanged." in plan.explain()


def test_apply_twice_is_a_no_op(applied: tuple[Path, FeatureStore]) -> None:
    _, store = applied
    plan = store.apply()
    assert not plan.has_changes
    assert plan.counts() == {"create": 0, "update": 0, "delete": 0, "unchanged": 3}
    assert len(store.registry.history(store.project)) == 1


def test_description_change_is_metadata_only(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    edit(root, 'FeatureView(\n    "stats",', 'FeatureView(\n    "stats",\n    description="new words",')
    plan = store.plan()
    change = next(c for c in plan.changes if c.name == "stats")
    assert change.action == "update"
    assert change.metadata_changed and not change.data_changed and not change.destructive
    assert "(metadata only)" in plan.explain()
    assert [f.describe() for f in change.fields] == ["description: '' -> 'new words'"]
    store.apply()
    obj = store.registry.get_object(store.project, "feature_view", "stats")
    assert obj is not None and obj.version == 2


def test_ttl_change_is_a_data_change_but_not_destructive(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    edit(root, "ttl=None", "ttl=timedelta(days=1)")
    change = next(c for c in store.plan().changes if c.name == "stats")
    assert change.data_changed and not change.destructive
    assert [f.describe() for f in change.fields] == ["ttl_seconds: None -> 86400.0"]
    store.apply()


def test_schema_change_is_destructive_and_refused(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    edit(root, 'Field("label", String)', 'Field("label", String), Field("created_copy", Float64)')
    # created_copy is not in the source: the repo is invalid, nothing is applied.
    with pytest.raises(RepoError, match="'created_copy' is not a column of the source"):
        store.apply()
    assert len(store.registry.history(store.project)) == 1
    edit(root, ', Field("created_copy", Float64)', "")
    # Drop a field: destructive.
    edit(root, ', Field("label", String)', "")
    plan = store.plan()
    change = next(c for c in plan.changes if c.name == "stats")
    assert change.destructive
    assert [f.describe() for f in change.fields] == ["schema.label: removed (was String)"]
    assert "[DESTRUCTIVE]" in plan.explain()
    assert "changes schema" in change.destructive_reasons[0]
    with pytest.raises(PlanError, match=r"(?s)refusing to apply 1 destructive change.*--allow-destructive"):
        store.apply()
    assert store.registry.get_object(store.project, "feature_view", "stats").version == 1  # type: ignore[union-attr]
    store.apply(allow_destructive=True)
    assert store.registry.get_object(store.project, "feature_view", "stats").version == 2  # type: ignore[union-attr]


def test_type_change_shows_field_level_diff(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    edit(root, 'Field("value", Float64)', 'Field("value", Float32)')
    edit(root, "Float64, Int64", "Float32, Float64, Int64")
    change = next(c for c in store.plan().changes if c.name == "stats")
    assert [f.describe() for f in change.fields] == ["schema.value.dtype: 'Float64' -> 'Float32'"]
    assert change.destructive


def test_source_change_is_destructive(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    (root / "data" / "v2").mkdir()
    (root / "data" / "v2" / "events.parquet").write_bytes((root / "data" / "events.parquet").read_bytes())
    edit(root, '"data/events.parquet"', '"data/v2/events.parquet"')
    change = next(c for c in store.plan().changes if c.name == "stats")
    assert change.destructive
    assert [f.path for f in change.fields] == ["source.path"]


def test_delete_view_is_destructive(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    (root / "defs.py").write_text(
        'from featurestore import Entity\nuser = Entity("user", join_keys=["user_id"])\n'
    )
    plan = store.plan()
    assert [(c.action, c.name) for c in plan.changes if c.action != "unchanged"] == [
        ("delete", "stats"), ("delete", "svc"),
    ]
    assert [c.name for c in plan.destructive] == ["stats"]
    with pytest.raises(PlanError):
        store.apply()
    store.apply(allow_destructive=True)
    assert [o.name for o in store.registry.list_objects(store.project)] == ["user"]
    versions = store.registry.object_versions(store.project, "feature_view", "stats")
    assert [v["change"] for v in versions] == ["create", "delete"]


def test_invalid_repo_applies_nothing(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    before = store.registry.list_objects(store.project)
    (root / "more.py").write_text(
        "from featurestore import Entity, FeatureView, Field, FileSource, Float64\n"
        'merchant = Entity("merchant")\n'
        'ok = FeatureView("ok", entities=[merchant], source=FileSource("data/events.parquet"), schema=[Field("value", Float64)])\n'
    )
    with pytest.raises(RepoError, match="join key 'merchant' is not a column of the source"):
        store.apply()
    assert store.registry.list_objects(store.project) == before
    assert len(store.registry.history(store.project)) == 1


def test_history_records_each_apply(applied: tuple[Path, FeatureStore]) -> None:
    root, store = applied
    edit(root, "ttl=None", "ttl=timedelta(hours=5)")
    store.apply()
    history = store.registry.history(store.project)
    assert len(history) == 2
    assert history[0]["summary"]["changes"][0]["fields"] == [{"path": "ttl_seconds", "old": None, "new": 18000.0}]


def test_two_projects_share_one_registry(make_repo: RepoFactory, tmp_path: Path) -> None:
    shared = tmp_path / "shared.db"
    a = FeatureStore(make_repo(data=DATA, config=f"project: alpha\nregistry: {shared}\n"))
    b = FeatureStore(make_repo(data=DATA, config=f"project: beta\nregistry: {shared}\n"))
    a.apply()
    assert b.plan().counts()["create"] == 3
    b.apply()
    assert len(Registry(shared).list_objects("alpha")) == 3
    assert len(Registry(shared).list_objects("beta")) == 3


def _apply_in_process(root: str, ttl_hours: int, barrier: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    store = FeatureStore(root)
    barrier.wait()
    store.apply()


def test_concurrent_applies_do_not_corrupt_the_registry(make_repo: RepoFactory) -> None:
    root = make_repo(data=DATA)
    FeatureStore(root).load()  # warm imports
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_apply_in_process, args=(str(root), i, barrier)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = FeatureStore(root)
    # Exactly one apply created the objects; the others saw them and had nothing to do.
    assert len(store.registry.history(store.project)) == 1
    assert [o.version for o in store.registry.list_objects(store.project)] == [1, 1, 1]
    with sqlite3.connect(store.config.registry_path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_registry_file_that_is_not_sqlite(make_repo: RepoFactory) -> None:
    root = make_repo(data=DATA)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "registry.db").write_text("this is not a database" * 100)
    with pytest.raises(RegistryError, match="not a valid registry database"):
        FeatureStore(root).plan()


def test_registry_from_a_newer_version(make_repo: RepoFactory) -> None:
    root = make_repo(data=DATA)
    store = FeatureStore(root)
    store.apply()
    with sqlite3.connect(store.config.registry_path) as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(RegistryError, match="newer than this featurestore"):
        FeatureStore(root).plan()


def test_registry_rebuilds_definitions(applied: tuple[Path, FeatureStore]) -> None:
    _, store = applied
    loaded = store.load()
    for view in store.list_feature_views():
        assert view.to_spec() == loaded.feature_views[view.name].to_spec()
        assert view.data_fingerprint == loaded.feature_views[view.name].data_fingerprint
    assert store.get_entity("user").join_keys == ("user_id",)
    assert BASIC_DEFS  # the fixture's definitions are what was applied
