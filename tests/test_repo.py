"""Loading a feature repo: which files are imported, and every whole-repo check with its message."""

from __future__ import annotations

import re
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from featurestore.errors import DefinitionError, RepoError
from featurestore.repo import load_repo, repo_python_files
from tests.conftest import RepoFactory, events, ts

T0 = ts(2026, 1, 10, 12)
EVENTS = {"data/events.parquet": events([(1, T0, T0, 1.0, "a")])}
COLUMNS = (
    "columns: user_id (int64), event_timestamp (timestamp[us, tz=UTC]), created (timestamp[us, tz=UTC]), "
    "value (double), label (large_string)"
)

IMPORTS = "from featurestore import Entity, FeatureService, FeatureView, FeatureViewProjection, Field, FileSource, Float32, Float64, Int32, Int64, String\n"


def defs(body: str) -> str:
    """A definition file: the usual imports, then ``body`` (line 2 is the body's first line)."""
    return IMPORTS + body.strip("\n") + "\n"


USER = 'user = Entity("user", join_keys=["user_id"])\n'


def stats(schema: str = 'Field("value", Float64), Field("label", String)', *, name: str = "stats",
          entities: str = "[user]", source: str = 'FileSource("data/events.parquet", created_timestamp_column="created")') -> str:
    return f'{name} = FeatureView("{name}", entities={entities}, source={source}, schema=[{schema}])\n'


def problems(root: Path) -> list[str]:
    with pytest.raises(RepoError) as exc:
        load_repo(root)
    assert str(exc.value).startswith(f"the feature repo has {len(exc.value.problems)} problem")
    for p in exc.value.problems:
        assert f"  - {p}" in str(exc.value)
    return exc.value.problems


def only_problem(root: Path) -> str:
    found = problems(root)
    assert len(found) == 1, found
    return found[0]


class TestRepoFiles:
    def test_skipped_files_and_folders(self, tmp_path: Path) -> None:
        files = [
            "defs.py",
            "features/more.py",
            "features/deep/deeper.py",
            ".hidden/x.py",
            ".dotfile.py",
            "_private.py",
            "features/_helper.py",
            "_internal/x.py",
            "__pycache__/x.py",
            "test_defs.py",
            "features/test_more.py",
            "conftest.py",
            "tests/x.py",
            "test/x.py",
            "data/x.py",
            "features/data/x.py",
            "venv/x.py",
            "env/x.py",
            "node_modules/x.py",
            "myenv/lib/python3.11/site-packages/x.py",
            "notes.txt",
            "defs.pyc",
        ]
        for f in files:
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / f).write_text("")
        (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
        found = [p.relative_to(tmp_path).as_posix() for p in repo_python_files(tmp_path)]
        # Files of a folder come before its subfolders, each sorted by name.
        assert found == ["defs.py", "features/more.py", "features/deep/deeper.py"]

    def test_virtualenv_folder_with_any_name_is_skipped(self, tmp_path: Path) -> None:
        (tmp_path / "py311" / "lib").mkdir(parents=True)
        (tmp_path / "py311" / "pyvenv.cfg").write_text("")
        (tmp_path / "py311" / "lib" / "x.py").write_text("")
        (tmp_path / "defs.py").write_text("")
        assert repo_python_files(tmp_path) == [tmp_path / "defs.py"]

    def test_skipped_files_are_not_imported(self, make_repo: RepoFactory) -> None:
        boom = "raise RuntimeError('must not be imported')\n"
        root = make_repo(files={
            "defs.py": defs(USER + stats()),
            "_private.py": boom,
            "test_defs.py": boom,
            "conftest.py": boom,
            "tests/check.py": boom,
            "data/gen.py": boom,
            ".venv/x.py": boom,
            "venv2/pyvenv.cfg": "",
            "venv2/lib/x.py": boom,
        }, data=EVENTS)
        contents = load_repo(root)
        assert sorted(contents.feature_views) == ["stats"]

    def test_modules_can_import_each_other(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "entities.py": defs(USER),
            "views.py": "from entities import user\n" + defs(stats()),
            "services.py": "from views import stats\n" + defs('svc = FeatureService("svc", features=[stats[["value"]]])'),
        }, data=EVENTS)
        contents = load_repo(root)
        assert sorted(contents.entities) == ["user"]
        assert sorted(contents.feature_views) == ["stats"]
        assert sorted(contents.feature_services) == ["svc"]
        assert contents.feature_views["stats"].join_keys == ("user_id",)

    def test_modules_in_subfolders_can_import_each_other(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "common/ents.py": defs(USER),
            "views/user_views.py": "from common.ents import user\n" + defs(stats()),
        }, data=EVENTS)
        contents = load_repo(root)
        assert sorted(contents.entities) == ["user"]
        assert contents.feature_views["stats"].location.file is not None
        assert contents.feature_views["stats"].location.file.endswith("user_views.py")

    def test_entity_only_used_inline_is_collected(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(stats(entities='[Entity("user", join_keys=["user_id"])]'))}, data=EVENTS)
        contents = load_repo(root)
        assert list(contents.entities) == ["user"]
        assert contents.entities["user"].join_keys == ("user_id",)

    def test_sys_path_and_modules_are_restored(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"fs_defs_restore.py": defs(USER + stats())}, data=EVENTS)
        before = list(sys.path)
        load_repo(root)
        assert sys.path == before
        assert "fs_defs_restore" not in sys.modules

    def test_edited_file_is_read_again(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats())}, data=EVENTS)
        assert load_repo(root).feature_views["stats"].feature_names == ("value", "label")
        (root / "defs.py").write_text(defs(USER + stats('Field("value", Float64)')))
        assert load_repo(root).feature_views["stats"].feature_names == ("value",)

    def test_package_folder_of_another_repo_is_not_reused(self, make_repo: RepoFactory) -> None:
        first = make_repo(files={"fs_pkg_defs/__init__.py": "", "fs_pkg_defs/ents.py": defs('alpha = Entity("alpha")')})
        second = make_repo(files={"fs_pkg_defs/__init__.py": "", "fs_pkg_defs/ents.py": defs('beta = Entity("beta")')})
        try:
            assert list(load_repo(first, check_sources=False).entities) == ["alpha"]
            assert list(load_repo(second, check_sources=False).entities) == ["beta"]
        finally:
            for mod in [m for m in sys.modules if m == "fs_pkg_defs" or m.startswith("fs_pkg_defs.")]:
                del sys.modules[mod]


class TestDuplicates:
    def test_two_views_with_the_same_name(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "a.py": defs(USER + stats()),
            "b.py": "from a import user\n" + defs(stats('Field("value", Float64)')),
        }, data=EVENTS)
        msg = only_problem(root)
        a, b = root.resolve() / "a.py", root.resolve() / "b.py"
        assert msg == (f"feature view name 'stats' is defined twice: at {a}:3 and at {b}:3; "
                       "names must be unique per kind")

    def test_two_entities_with_the_same_name(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "a.py": defs(USER),
            "b.py": defs('customer = Entity("user", join_keys=["customer_id"])'),
        })
        msg = problems(root)[0]
        assert re.fullmatch(r"entity name 'user' is defined twice: at .*a\.py:2 and at .*b\.py:2; names must be unique per kind", msg), msg

    def test_two_services_with_the_same_name(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "a.py": defs(USER + stats() + 'svc = FeatureService("svc", features=[stats])'),
            "b.py": "from a import stats\n" + defs('svc2 = FeatureService("svc", features=[stats[["value"]]])'),
        }, data=EVENTS)
        assert re.fullmatch(r"feature service name 'svc' is defined twice: at .*a\.py:4 and at .*b\.py:3; .*", only_problem(root))

    def test_same_object_imported_into_two_files_is_not_a_duplicate(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={
            "entities.py": defs(USER),
            "views_a.py": "from entities import user\n" + defs(stats()),
            "views_b.py": "from entities import user\nfrom views_a import stats\n" + defs(stats(name="stats2")),
        }, data=EVENTS)
        contents = load_repo(root)
        assert sorted(contents.entities) == ["user"]
        assert sorted(contents.feature_views) == ["stats", "stats2"]

    def test_same_name_for_different_kinds_is_allowed(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(
            'stats_e = Entity("stats", join_keys=["user_id"])\n'
            + stats(entities="[stats_e]") + 'svc = FeatureService("stats", features=[stats])'
        )}, data=EVENTS)
        contents = load_repo(root)
        assert list(contents.entities) == list(contents.feature_views) == list(contents.feature_services) == ["stats"]


class TestEntities:
    def test_string_entity_is_resolved(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("user_id", Int64), Field("value", Float64)', entities='["user"]'))},
                         data=EVENTS)
        contents = load_repo(root)
        v = contents.feature_views["stats"]
        assert v.entities == (contents.entities["user"],)
        assert v.entities[0] is contents.entities["user"]
        assert v.resolved
        assert v.join_keys == ("user_id",)
        assert v.feature_names == ("value",)

    def test_resolved_view_keeps_its_location(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats(entities='["user"]'))}, data=EVENTS)
        v = load_repo(root).feature_views["stats"]
        assert v.location.file is not None and v.location.file.endswith("defs.py")
        assert v.location.line == 3

    def test_unknown_entity_lists_known_entities(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + 'merchant = Entity("merchant")\n' + stats(entities='["usr"]'))},
                         data=EVENTS)
        msg = only_problem(root)
        assert msg == (f"{root.resolve() / 'defs.py'}:4: feature view 'stats' uses unknown entity 'usr'; "
                       "known entities: ['merchant', 'user']")

    def test_unknown_entity_when_there_are_none(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(stats(entities='["user"]'))}, data=EVENTS)
        assert only_problem(root).endswith("feature view 'stats' uses unknown entity 'user'; known entities: none")

    def test_repeated_join_keys_across_entities(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(
            USER + 'account = Entity("account", join_keys=["user_id"])\n' + stats(entities="[user, account]")
        )}, data=EVENTS)
        assert only_problem(root).endswith("feature view 'stats' has repeated join keys ['user_id', 'user_id']")


class TestSourceChecks:
    def test_valid_repo_loads(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("user_id", Int64), Field("value", Float64), Field("label", String)'))},
                         data=EVENTS)
        v = load_repo(root).feature_views["stats"]
        assert v.feature_names == ("value", "label")

    def test_compatible_types_are_accepted(self, make_repo: RepoFactory) -> None:
        # Float32 over a double column and Int32 over int64 are narrowed at retrieval; Float64 takes ints.
        schema = 'Field("user_id", Int32), Field("value", Float32), Field("label", String)'
        root = make_repo(files={"defs.py": defs(USER + stats(schema))}, data=EVENTS)
        assert load_repo(root).feature_views["stats"].feature_names == ("value", "label")

    def test_schema_field_missing_from_source(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("valeu", Float64), Field("label", String)'))}, data=EVENTS)
        msg = only_problem(root)
        assert msg == (f"{root.resolve() / 'defs.py'}:3: feature view 'stats': schema field 'valeu' is not a column "
                       f"of the source; {COLUMNS}")

    def test_join_key_missing_from_source(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs('user = Entity("user", join_keys=["customer_id"])\n' + stats())}, data=EVENTS)
        assert only_problem(root).endswith(
            f"feature view 'stats': join key 'customer_id' is not a column of the source; {COLUMNS}"
        )

    def test_timestamp_field_missing_from_source(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats(source='FileSource("data/events.parquet", timestamp_field="ts")'))},
                         data=EVENTS)
        assert only_problem(root).endswith(
            f"feature view 'stats': source timestamp_field 'ts' is not a column of the source; {COLUMNS}"
        )

    def test_created_timestamp_column_missing_from_source(self, make_repo: RepoFactory) -> None:
        source = 'FileSource("data/events.parquet", created_timestamp_column="created_at")'
        root = make_repo(files={"defs.py": defs(USER + stats(source=source))}, data=EVENTS)
        assert only_problem(root).endswith(
            f"source created_timestamp_column 'created_at' is not a column of the source; {COLUMNS}"
        )

    def test_timestamp_column_of_string_type(self, make_repo: RepoFactory) -> None:
        frame = pl.DataFrame({"user_id": [1], "event_timestamp": ["2026-01-10 12:00:00"], "value": [1.0]})
        root = make_repo(files={"defs.py": defs(USER + stats('Field("value", Float64)', source='FileSource("data/events.parquet")'))},
                         data={"data/events.parquet": frame})
        assert only_problem(root).endswith(
            "feature view 'stats': source timestamp_field 'event_timestamp' has type large_string, expected a "
            "timestamp or date; convert it in the source data"
        )

    def test_created_column_of_integer_type(self, make_repo: RepoFactory) -> None:
        frame = pl.DataFrame({"user_id": [1], "event_timestamp": [T0], "created": [5], "value": [1.0]})
        root = make_repo(files={"defs.py": defs(USER + stats('Field("value", Float64)'))}, data={"data/events.parquet": frame})
        assert only_problem(root).endswith(
            "source created_timestamp_column 'created' has type int64, expected a timestamp or date; convert it in the source data"
        )

    def test_date_timestamp_column_is_accepted(self, make_repo: RepoFactory) -> None:
        frame = pl.DataFrame({"user_id": [1], "event_timestamp": [date(2026, 1, 10)], "value": [1.0]})
        root = make_repo(files={"defs.py": defs(USER + stats('Field("value", Float64)', source='FileSource("data/events.parquet")'))},
                         data={"data/events.parquet": frame})
        assert list(load_repo(root).feature_views) == ["stats"]

    def test_declared_type_incompatible_with_join_key_column(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("user_id", String), Field("value", Float64)'))}, data=EVENTS)
        assert only_problem(root).endswith(
            "feature view 'stats': schema field 'user_id' is declared String but the source column has type int64; "
            "change the declared type or convert the column"
        )

    def test_declared_type_incompatible_with_feature_column(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("value", Int64), Field("label", Float64)'))}, data=EVENTS)
        found = problems(root)
        assert [p.split(": ", 2)[2] for p in found] == [
            "schema field 'value' is declared Int64 but the source column has type double; change the declared type or convert the column",
            "schema field 'label' is declared Float64 but the source column has type large_string; change the declared type or convert the column",
        ]

    def test_missing_source_file(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats())})
        msg = only_problem(root)
        defs_file = root.resolve() / "defs.py"
        assert msg.startswith(f"{defs_file}:3: feature view 'stats': source 'data/events.parquet' ({defs_file}:3): ")
        assert f"no parquet files found at {root.resolve() / 'data' / 'events.parquet'}" in msg
        assert msg.endswith("check the path (relative paths start at the repo root) or generate the data first")

    def test_empty_source_directory(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats(source='FileSource("data/events")'))})
        (root / "data" / "events").mkdir(parents=True)
        assert "no parquet files found at" in only_problem(root)

    def test_check_sources_false_skips_source_checks(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("nope", Float64)'))})
        assert list(load_repo(root, check_sources=False).feature_views) == ["stats"]

    def test_several_problems_are_all_reported(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(
            USER
            + stats('Field("valeu", Float64), Field("label", Int64)')
            + stats(name="other", entities='["ghost"]')
            + 'svc = FeatureService("svc", features=[FeatureViewProjection("missing", None)])'
        )}, data=EVENTS)
        found = problems(root)
        assert len(found) >= 4
        joined = "\n".join(found)
        assert "schema field 'valeu' is not a column of the source" in joined
        assert "schema field 'label' is declared Int64" in joined
        assert "uses unknown entity 'ghost'" in joined
        assert "uses unknown feature view 'missing'" in joined


class TestFeatureServices:
    def test_unknown_view(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats() + 'svc = FeatureService("svc", features=[FeatureViewProjection("ghost", None)])')},
                         data=EVENTS)
        assert only_problem(root) == (f"{root.resolve() / 'defs.py'}:4: feature service 'svc' uses unknown feature view "
                                      "'ghost'; known views: ['stats']")

    def test_view_that_is_not_module_level_is_unknown(self, make_repo: RepoFactory) -> None:
        body = USER + "def make():\n    " + stats(name="hidden") + "    return hidden\n" + 'svc = FeatureService("svc", features=[make()])'
        root = make_repo(files={"defs.py": defs(body)}, data=EVENTS)
        assert only_problem(root).endswith("feature service 'svc' uses unknown feature view 'hidden'; known views: none")

    def test_unknown_feature_of_a_view(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats() + 'svc = FeatureService("svc", features=[FeatureViewProjection("stats", ("value", "nope"))])')},
                         data=EVENTS)
        assert only_problem(root).endswith(
            "feature service 'svc' uses unknown feature 'stats:nope'; the view has ['value', 'label']"
        )

    def test_join_key_of_unresolved_view_is_not_a_feature(self, make_repo: RepoFactory) -> None:
        # Before resolution "user_id" looks like a feature, so view[[...]] accepts it; the repo check does not.
        root = make_repo(files={"defs.py": defs(
            USER + stats('Field("user_id", Int64), Field("value", Float64)', entities='["user"]')
            + 'svc = FeatureService("svc", features=[stats[["user_id"]]])'
        )}, data=EVENTS)
        assert only_problem(root).endswith("feature service 'svc' uses unknown feature 'stats:user_id'; the view has ['value']")


class TestImportErrors:
    def test_syntax_error(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + "x = (\n\ndef broken(:\n")})
        with pytest.raises(DefinitionError, match="syntax error") as exc:
            load_repo(root)
        err = exc.value
        assert err.file == str(root.resolve() / "defs.py")
        assert err.line is not None and err.line >= 3
        assert str(err).startswith(f"{err.file}:{err.line}: syntax error: ")

    def test_syntax_error_line(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": "x = 1\ny = 2\nz = = 3\n"})
        with pytest.raises(DefinitionError) as exc:
            load_repo(root)
        assert (exc.value.file, exc.value.line) == (str(root.resolve() / "defs.py"), 3)
        assert str(exc.value) == f"{root.resolve() / 'defs.py'}:3: syntax error: invalid syntax"

    def test_syntax_error_in_imported_module_names_that_module(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"a_views.py": "import z_helpers\n", "z_helpers.py": "x = 1\ny = 2\nz = = 3\n"})
        with pytest.raises(DefinitionError) as exc:
            load_repo(root)
        assert (exc.value.file, exc.value.line) == (str(root.resolve() / "z_helpers.py"), 3)

    def test_exception_while_importing(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + "rate = 1 / 0\n")})
        with pytest.raises(DefinitionError) as exc:
            load_repo(root)
        err = exc.value
        assert (err.file, err.line) == (str(root.resolve() / "defs.py"), 3)
        assert str(err) == f"{err.file}:3: importing the file failed: ZeroDivisionError: division by zero"
        assert isinstance(err.__cause__, ZeroDivisionError)

    def test_missing_import(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": "import fs_no_such_module_xyz\n"})
        with pytest.raises(DefinitionError, match=r"defs\.py:1: importing the file failed: ModuleNotFoundError: No module named 'fs_no_such_module_xyz'"):
            load_repo(root)

    def test_definition_error_in_repo_file_points_at_its_line(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + 'bad = Entity("bad-name")\n')})
        with pytest.raises(DefinitionError, match="'bad-name' is not a valid entity name") as exc:
            load_repo(root)
        assert exc.value.file is not None and exc.value.file.endswith("defs.py")
        assert exc.value.line == 3


class TestCsvSources:
    CSV_SOURCE = 'FileSource("data/events.csv", created_timestamp_column="created")'

    def test_csv_source_loads(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats(source=self.CSV_SOURCE))},
                         data={"data/events.csv": events([(1, T0, T0, 1.0, "a")])})
        v = load_repo(root).feature_views["stats"]
        assert v.source is not None and v.source.format == "csv"
        assert v.feature_names == ("value", "label")

    def test_csv_schema_is_checked(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats('Field("value", Float64), Field("label", Int64), Field("nope", String)', source=self.CSV_SOURCE))},
                         data={"data/events.csv": events([(1, T0, T0, 1.0, "a")])})
        found = problems(root)
        assert len(found) == 2
        assert found[0].endswith("schema field 'label' is declared Int64 but the source column has type string; "
                                 "change the declared type or convert the column")
        assert found[1].endswith(
            "schema field 'nope' is not a column of the source; columns: user_id (int64), event_timestamp "
            "(timestamp[ns, tz=UTC]), created (timestamp[ns, tz=UTC]), value (double), label (string)"
        )

    def test_missing_csv_file(self, make_repo: RepoFactory) -> None:
        root = make_repo(files={"defs.py": defs(USER + stats(source=self.CSV_SOURCE))})
        assert "no csv files found at" in only_problem(root)
