"""Definitions validate themselves at construction: each rule and each error message pinned here."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from featurestore import (
    Array,
    Bool,
    Bytes,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)
from featurestore.definitions import definition_from_spec
from featurestore.definitions.base import Location
from featurestore.errors import DefinitionError
from featurestore.types import PRIMITIVES, parse_dtype

ROOT = Path(__file__).resolve().parent.parent


def next_line() -> int:
    """The number of the line after the caller's line: where the object under test is built."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


def assert_points_here(err: DefinitionError, line: int) -> None:
    """The error names this test file and the line that built the bad object."""
    assert err.line == line
    assert err.file is not None and err.file.endswith("test_definitions.py")


def src(path: str = "data/events.parquet", **kwargs: Any) -> FileSource:
    return FileSource(path, **kwargs)


def user() -> Entity:
    return Entity("user", join_keys=["user_id"])


def view(**overrides: Any) -> FeatureView:
    """A valid view over user_id with features a (Float64) and b (String)."""
    kwargs: dict[str, Any] = {
        "entities": [user()],
        "source": src(created_timestamp_column="created"),
        "schema": [Field("user_id", Int64), Field("a", Float64), Field("b", String)],
        "ttl": timedelta(days=1),
    }
    kwargs.update(overrides)
    return FeatureView(kwargs.pop("name", "v"), **kwargs)


class TestEntity:
    def test_join_key_defaults_to_name(self) -> None:
        e = Entity("user")
        assert e.join_keys == ("user",)
        assert e.keys == ("user",)

    def test_join_keys_list_is_frozen_to_tuple(self) -> None:
        keys = ["user_id", "region"]
        e = Entity("user", join_keys=keys)
        keys.append("other")
        assert e.join_keys == ("user_id", "region")
        assert isinstance(e.join_keys, tuple)

    def test_defaults(self) -> None:
        e = Entity("user")
        assert (e.description, e.owner, dict(e.tags)) == ("", "", {})

    @pytest.mark.parametrize("name", ["_user", "User2", "u", "a" * 63])
    def test_valid_names(self, name: str) -> None:
        assert Entity(name).name == name

    @pytest.mark.parametrize(
        "name",
        ["", "1user", "user-id", "user id", "user;drop", "user'", 'user"', "a" * 64, "usér", "user.id"],
    )
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(DefinitionError, match="is not a valid entity name: use letters, digits and underscores") as exc:
            Entity(name)
        assert exc.value.field == "name"
        assert exc.value.obj == "entity"
        assert exc.value.reason.startswith(repr(name))

    def test_name_longer_than_63_mentions_limit(self) -> None:
        with pytest.raises(DefinitionError, match="at most 63 characters"):
            Entity("a" * 64)

    def test_dunder_names_are_reserved(self) -> None:
        with pytest.raises(DefinitionError, match=r"'__user': names starting with '__' are reserved for internal columns"):
            Entity("__user")

    def test_name_must_be_a_string(self) -> None:
        with pytest.raises(DefinitionError, match="name must be a string, got int"):
            Entity(5)  # type: ignore[arg-type]

    def test_name_with_trailing_newline_is_rejected(self) -> None:
        with pytest.raises(DefinitionError, match="is not a valid entity name"):
            Entity("user\n")

    def test_bad_join_key_name(self) -> None:
        with pytest.raises(DefinitionError, match="'user-id' is not a valid join key name") as exc:
            Entity("user", join_keys=["user-id"])
        assert exc.value.field == "join_keys"
        assert exc.value.obj == "entity 'user'"

    def test_join_key_must_be_a_string(self) -> None:
        with pytest.raises(DefinitionError, match="join_keys must be a string, got int"):
            Entity("user", join_keys=[1])  # type: ignore[list-item]

    def test_duplicate_join_keys(self) -> None:
        with pytest.raises(DefinitionError, match=r"join keys repeat a name: \['id', 'region', 'id'\]") as exc:
            Entity("user", join_keys=["id", "region", "id"])
        assert exc.value.field == "join_keys"

    def test_no_join_keys(self) -> None:
        with pytest.raises(DefinitionError, match="needs at least one join key") as exc:
            Entity("user", join_keys=[])
        assert exc.value.field == "join_keys"
        assert exc.value.obj == "entity 'user'"

    def test_join_keys_as_a_bare_string(self) -> None:
        with pytest.raises(DefinitionError, match="field 'join_keys': must be a list, got str"):
            Entity("user", join_keys="user_id")  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["description", "owner"])
    def test_text_fields_must_be_strings(self, field: str) -> None:
        with pytest.raises(DefinitionError, match=f"entity 'user', field '{field}': must be a string, got int"):
            Entity("user", **{field: 3})

    def test_tags_values_must_be_strings(self) -> None:
        with pytest.raises(DefinitionError, match=r"field 'tags': tag 'team': 1 is not str -> str"):
            Entity("user", tags={"team": 1})  # type: ignore[dict-item]

    def test_tags_keys_must_be_strings(self) -> None:
        with pytest.raises(DefinitionError, match=r"tag 1: 'x' is not str -> str"):
            Entity("user", tags={1: "x"})  # type: ignore[dict-item]

    def test_tags_must_be_a_mapping(self) -> None:
        with pytest.raises(DefinitionError, match="field 'tags': must be a dict of str to str, got list"):
            Entity("user", tags=[("a", "b")])  # type: ignore[arg-type]

    def test_tags_are_sorted_and_read_only(self) -> None:
        tags = {"b": "2", "a": "1"}
        e = Entity("user", tags=tags)
        tags["c"] = "3"
        assert list(e.tags) == ["a", "b"]
        with pytest.raises(TypeError):
            e.tags["c"] = "3"  # type: ignore[index]

    @pytest.mark.parametrize("attr", ["name", "join_keys", "description", "tags"])
    def test_is_immutable(self, attr: str) -> None:
        e = Entity("user")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(e, attr, "x")

    def test_error_names_this_file_and_the_constructing_line(self) -> None:
        line = next_line() + 1  # the Entity(...) call, inside the with block
        with pytest.raises(DefinitionError) as exc:
            Entity("bad-name")
        err = exc.value
        assert_points_here(err, line)
        assert str(err).startswith(f"{err.file}:{err.line}, entity, field 'name': 'bad-name' is not a valid")

    def test_location_is_the_constructing_line(self) -> None:
        line = next_line()
        e = Entity("user")
        assert e.location.file is not None and e.location.file.endswith("test_definitions.py")
        assert e.location.line == line

    def test_error_line_points_at_the_call(self) -> None:
        line = next_line() + 1
        with pytest.raises(DefinitionError) as exc:
            Entity("user", join_keys=[])
        assert_points_here(exc.value, line)

    def test_equality_ignores_location(self) -> None:
        a = Entity("user", join_keys=["user_id"])
        b = Entity("user", join_keys=["user_id"], location=Location("elsewhere.py", 9))
        assert a == b
        assert b.location == Location("elsewhere.py", 9)

    def test_is_hashable(self) -> None:
        assert len({Entity("user"), Entity("user")}) == 1

    def test_spec_round_trip(self) -> None:
        e = Entity("user", join_keys=["a", "b"], description="d", owner="o", tags={"k": "v"})
        back = Entity.from_spec(e.to_spec())
        assert back == e
        assert back.location == Location("<registry>")
        assert e.to_spec() == {"name": "user", "join_keys": ["a", "b"], "description": "d", "owner": "o",
                               "tags": {"k": "v"}}
        assert definition_from_spec("entity", e.to_spec()) == e


class TestFileSource:
    @pytest.mark.parametrize(
        ("path", "fmt"),
        [
            ("data/events.csv", "csv"),
            ("data/EVENTS.CSV", "csv"),
            ("data/events.csv.gz", "csv"),
            ("data/*.csv", "csv"),
            ("data/events.parquet", "parquet"),
            ("data/events.pq", "parquet"),
            ("data/events", "parquet"),
            ("data/events/", "parquet"),
            ("data/**/*.parquet", "parquet"),
        ],
    )
    def test_format_is_inferred_from_extension(self, path: str, fmt: str) -> None:
        s = FileSource(path)
        assert s.file_format == fmt
        assert s.format == fmt

    def test_explicit_format_wins(self) -> None:
        assert FileSource("data/events", file_format="csv").format == "csv"
        assert FileSource("data/events.csv", file_format="parquet").format == "parquet"

    @pytest.mark.parametrize("fmt", ["json", "CSV", "xlsx"])
    def test_bad_file_format(self, fmt: str) -> None:
        with pytest.raises(DefinitionError, match=f"unknown file_format '{fmt}'; use one of parquet, csv") as exc:
            FileSource("data/events", file_format=fmt)
        assert exc.value.field == "file_format"
        assert exc.value.obj == "source 'data/events'"

    @pytest.mark.parametrize("path", ["", "   ", None, 5])
    def test_empty_or_non_string_path(self, path: object) -> None:
        with pytest.raises(DefinitionError, match=r"path must be a non-empty string \(a file, a directory or a glob\)") as exc:
            FileSource(path)  # type: ignore[arg-type]
        assert (exc.value.obj, exc.value.field) == ("FileSource", "path")

    def test_defaults(self) -> None:
        s = FileSource("data/events.parquet")
        assert (s.timestamp_field, s.created_timestamp_column, s.name) == ("event_timestamp", None, "")

    def test_created_timestamp_column_must_differ(self) -> None:
        with pytest.raises(DefinitionError, match="created_timestamp_column must differ from timestamp_field") as exc:
            FileSource("data/e.parquet", timestamp_field="ts", created_timestamp_column="ts")
        assert exc.value.field == "created_timestamp_column"

    @pytest.mark.parametrize("field", ["timestamp_field", "created_timestamp_column"])
    @pytest.mark.parametrize("column", ["event ts", "1ts", "ts-x", "__ts", ""])
    def test_bad_column_names(self, field: str, column: str) -> None:
        with pytest.raises(DefinitionError, match=r"is not a valid column name|reserved for internal columns") as exc:
            FileSource("data/e.parquet", **{field: column})
        assert exc.value.field == field
        assert exc.value.obj == "source 'data/e.parquet'"

    def test_bad_source_name(self) -> None:
        with pytest.raises(DefinitionError, match="'my-source' is not a valid source name") as exc:
            FileSource("data/e.parquet", name="my-source")
        assert exc.value.obj == "source 'my-source'"

    def test_text_and_tags_are_checked(self) -> None:
        with pytest.raises(DefinitionError, match="field 'description': must be a string, got int"):
            FileSource("data/e.parquet", description=1)  # type: ignore[arg-type]
        with pytest.raises(DefinitionError, match="field 'tags': tag 'a': 1 is not str -> str"):
            FileSource("data/e.parquet", tags={"a": 1})  # type: ignore[dict-item]

    def test_error_location(self) -> None:
        line = next_line() + 1
        with pytest.raises(DefinitionError) as exc:
            FileSource("")
        assert_points_here(exc.value, line)

    def test_spec_round_trip(self) -> None:
        s = FileSource("data/e.csv", timestamp_field="ts", created_timestamp_column="created", name="ev",
                       description="d", tags={"a": "b"})
        back = FileSource.from_spec(s.to_spec())
        assert back == s
        assert back.to_spec()["file_format"] == "csv"


class TestTypes:
    def test_array_repr(self) -> None:
        assert repr(Array(Float32)) == "Array(Float32)"
        assert repr(Int64) == "Int64"

    def test_types_compare_by_value(self) -> None:
        assert Array(Float32) == Array(Float32)
        assert Array(Float32) != Array(Float64)
        assert Array(Int64) != Int64

    def test_nested_arrays_are_rejected(self) -> None:
        with pytest.raises(TypeError, match=r"nested arrays are not supported: use Array\(<primitive type>\)"):
            Array(Array(Int64))

    @pytest.mark.parametrize("element", [int, "Int64", None])
    def test_array_of_non_type(self, element: object) -> None:
        with pytest.raises(TypeError, match="Array\\(\\) takes a feature type such as Int64, got"):
            Array(element)  # type: ignore[arg-type]

    @pytest.mark.parametrize("dtype", [*PRIMITIVES.values(), *(Array(t) for t in PRIMITIVES.values())], ids=repr)
    def test_parse_dtype_round_trips(self, dtype: Any) -> None:
        assert parse_dtype(repr(dtype)) == dtype

    def test_all_primitives_are_known(self) -> None:
        assert set(PRIMITIVES.values()) == {Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp, Bytes}

    @pytest.mark.parametrize("text", ["int64", "Integer", "", "Array()", "Array(Foo)", "List(Int64)", "Array(Int64", " Int64"])
    def test_parse_dtype_rejects_unknown_names(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"unknown feature type .*; use one of Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp, Bytes or Array"):
            parse_dtype(text)

    def test_parse_dtype_rejects_nested_arrays(self) -> None:
        with pytest.raises(TypeError, match="nested arrays are not supported"):
            parse_dtype("Array(Array(Int64))")


class TestField:
    @pytest.mark.parametrize(("dtype", "shown"), [(int, "<class 'int'>"), ("Int64", "'Int64'"), (None, "None")])
    def test_bad_dtype(self, dtype: object, shown: str) -> None:
        with pytest.raises(DefinitionError, match=rf"dtype must be a feature type such as Int64 or Array\(Float32\), got {shown}") as exc:
            Field("age", dtype)  # type: ignore[arg-type]
        assert (exc.value.obj, exc.value.field) == ("Field 'age'", "dtype")

    def test_bad_name(self) -> None:
        with pytest.raises(DefinitionError, match="'first name' is not a valid field name") as exc:
            Field("first name", String)
        assert exc.value.obj == "Field"

    def test_error_location(self) -> None:
        line = next_line() + 1
        with pytest.raises(DefinitionError) as exc:
            Field("x", float)  # type: ignore[arg-type]
        assert_points_here(exc.value, line)

    def test_description_and_tags_are_checked(self) -> None:
        with pytest.raises(DefinitionError, match="Field 'x', field 'description': must be a string, got int"):
            Field("x", Int64, description=1)  # type: ignore[arg-type]
        with pytest.raises(DefinitionError, match="Field 'x', field 'tags': must be a dict of str to str, got str"):
            Field("x", Int64, tags="pii")  # type: ignore[arg-type]

    def test_spec_round_trip(self) -> None:
        f = Field("emb", Array(Float32), description="an embedding", tags={"pii": "no"})
        assert f.to_spec() == {"name": "emb", "dtype": "Array(Float32)", "description": "an embedding",
                               "tags": {"pii": "no"}}
        assert Field.from_spec(f.to_spec()) == f

    def test_is_immutable(self) -> None:
        f = Field("x", Int64)
        with pytest.raises(dataclasses.FrozenInstanceError):
            f.dtype = Float64  # type: ignore[misc]


class TestFeatureView:
    def test_valid_view(self) -> None:
        v = view()
        assert v.entity_names == ("user",)
        assert v.join_keys == ("user_id",)
        assert v.feature_names == ("a", "b")
        assert isinstance(v.schema, tuple)
        assert isinstance(v.entities, tuple)
        assert v.resolved

    def test_field_named_like_a_join_key_is_not_a_feature(self) -> None:
        v = view()
        assert [f.name for f in v.schema] == ["user_id", "a", "b"]
        assert [f.name for f in v.features] == ["a", "b"]
        assert v.join_keys == ("user_id",)

    def test_join_keys_of_several_entities_in_order(self) -> None:
        v = view(entities=[user(), Entity("merchant", join_keys=["merchant_id", "region"])])
        assert v.join_keys == ("user_id", "merchant_id", "region")

    def test_string_entities_are_unresolved(self) -> None:
        v = view(entities=["user"])
        assert v.entity_names == ("user",)
        assert not v.resolved
        assert v.join_keys == ()
        assert v.entity_objects == ()

    def test_no_entities(self) -> None:
        with pytest.raises(DefinitionError, match="needs at least one entity") as exc:
            view(entities=[])
        assert (exc.value.obj, exc.value.field) == ("feature view 'v'", "entities")

    def test_bad_entity_item(self) -> None:
        with pytest.raises(DefinitionError, match="entities must be Entity objects or names, got 5"):
            view(entities=[5])

    def test_entity_listed_twice(self) -> None:
        with pytest.raises(DefinitionError, match=r"an entity is listed twice: \['user', 'user'\]"):
            view(entities=[user(), "user"])

    @pytest.mark.parametrize(("source", "shown"), [("data/events.parquet", "'data/events.parquet'"), (None, "None")])
    def test_source_must_be_a_file_source(self, source: object, shown: str) -> None:
        with pytest.raises(DefinitionError, match=rf"source must be a data source such as FileSource\(\.\.\.\), got {shown}") as exc:
            view(source=source)
        assert exc.value.field == "source"

    def test_schema_item_must_be_a_field(self) -> None:
        with pytest.raises(DefinitionError, match=r"schema must be a list of Field\(name, dtype\), got \('a', Int64\)") as exc:
            view(schema=[("a", Int64)])
        assert exc.value.field == "schema"

    def test_schema_must_be_a_list(self) -> None:
        with pytest.raises(DefinitionError, match="field 'schema': must be a list, got Field"):
            view(schema=Field("a", Int64))

    def test_field_declared_twice(self) -> None:
        with pytest.raises(DefinitionError, match="field 'a' is declared twice"):
            view(schema=[Field("a", Int64), Field("b", String), Field("a", Float64)])

    @pytest.mark.parametrize("column", ["event_timestamp", "created"])
    def test_timestamp_column_in_schema(self, column: str) -> None:
        with pytest.raises(DefinitionError, match=f"'{column}' is the source's timestamp column, not a feature; remove it from schema") as exc:
            view(schema=[Field("a", Int64), Field(column, UnixTimestamp)])
        assert exc.value.field == "schema"

    @pytest.mark.parametrize(("ttl", "shown"), [(timedelta(0), "0:00:00"), (timedelta(seconds=-1), "-1 day, 23:59:59")])
    def test_ttl_must_be_positive(self, ttl: timedelta, shown: str) -> None:
        with pytest.raises(DefinitionError, match=f"ttl must be positive, got {shown}; use ttl=None for values that never expire") as exc:
            view(ttl=ttl)
        assert exc.value.field == "ttl"

    @pytest.mark.parametrize(("ttl", "shown"), [(0, "0"), (3600, "3600"), ("1d", "'1d'"), (True, "True")])
    def test_ttl_must_be_a_timedelta(self, ttl: object, shown: str) -> None:
        with pytest.raises(DefinitionError, match=f"ttl must be a datetime.timedelta or None \\(no limit\\), got {shown}$"):
            view(ttl=ttl)

    def test_ttl_none_is_allowed(self) -> None:
        assert view(ttl=None).ttl is None

    @pytest.mark.parametrize("online", [1, "yes", None])
    def test_online_must_be_bool(self, online: object) -> None:
        with pytest.raises(DefinitionError, match=f"online must be True or False, got {online!r}") as exc:
            view(online=online)
        assert exc.value.field == "online"

    def test_bad_name(self) -> None:
        with pytest.raises(DefinitionError, match="'user stats' is not a valid feature view name") as exc:
            view(name="user stats")
        assert exc.value.obj == "FeatureView"

    def test_text_and_tags_are_checked(self) -> None:
        with pytest.raises(DefinitionError, match="feature view 'v', field 'owner': must be a string, got list"):
            view(owner=["me"])
        with pytest.raises(DefinitionError, match="feature view 'v', field 'tags': tag 'a': None is not str -> str"):
            view(tags={"a": None})

    def test_error_location(self) -> None:
        line = next_line() + 1
        with pytest.raises(DefinitionError) as exc:
            FeatureView("v", entities=[], source=src())
        assert_points_here(exc.value, line)
        assert str(exc.value) == f"{exc.value.file}:{line}, feature view 'v', field 'entities': needs at least one entity"

    def test_is_immutable(self) -> None:
        v = view()
        with pytest.raises(dataclasses.FrozenInstanceError):
            v.ttl = None  # type: ignore[misc]

    def test_projection(self) -> None:
        v = view()
        assert v[["a"]] == FeatureViewProjection("v", ("a",))
        assert v[["b", "a"]] == FeatureViewProjection("v", ("b", "a"))
        assert v["a"] == FeatureViewProjection("v", ("a",))  # type: ignore[index]

    def test_projection_of_unknown_feature(self) -> None:
        v = view()
        with pytest.raises(DefinitionError, match=r"unknown feature\(s\) \['nope'\]; 'v' has \['a', 'b'\]") as exc:
            v[["a", "nope"]]
        assert exc.value.obj == "feature view 'v'"

    def test_join_key_cannot_be_projected(self) -> None:
        with pytest.raises(DefinitionError, match=r"unknown feature\(s\) \['user_id'\]"):
            view()[["user_id"]]

    def test_empty_projection_is_rejected(self) -> None:
        with pytest.raises(DefinitionError):
            view()[[]]

    def test_projection_with_repeated_feature_is_rejected(self) -> None:
        with pytest.raises(DefinitionError):
            view()[["a", "a"]]

    @pytest.mark.parametrize(
        "overrides",
        [
            {},
            {"ttl": None, "online": False},
            {"description": "d", "owner": "o", "tags": {"team": "risk"}},
            {"entities": ["user"]},
            {"source": src("data/e.csv", timestamp_field="ts", name="events", description="src")},
            {"schema": [Field("emb", Array(Float32), description="embedding", tags={"k": "v"})]},
            {"ttl": timedelta(hours=1, microseconds=500)},
        ],
        ids=["basic", "no-ttl", "metadata", "string-entity", "csv-source", "array-field", "fractional-ttl"],
    )
    def test_spec_round_trip(self, overrides: dict[str, Any]) -> None:
        v = view(**overrides)
        back = FeatureView.from_spec(v.to_spec())
        assert back.to_spec() == v.to_spec()
        assert back.data_fingerprint == v.data_fingerprint
        assert back.metadata_fingerprint == v.metadata_fingerprint
        assert back.ttl == v.ttl
        assert back.join_keys == v.join_keys
        assert back.location == Location("<registry>")
        assert definition_from_spec("feature_view", v.to_spec()).to_spec() == v.to_spec()

    def test_spec_content(self) -> None:
        spec = view().to_spec()
        assert spec["entities"] == [{"name": "user", "join_keys": ["user_id"]}]
        assert spec["ttl_seconds"] == 86400.0
        assert spec["schema"][1] == {"name": "a", "dtype": "Float64", "description": "", "tags": {}}
        assert view(entities=["user"]).to_spec()["entities"] == [{"name": "user"}]


class TestFingerprints:
    def test_fingerprint_is_short_hex(self) -> None:
        fp = view().data_fingerprint
        assert len(fp) == 16
        int(fp, 16)

    def test_same_definition_same_fingerprints(self) -> None:
        assert view().data_fingerprint == view().data_fingerprint
        assert view().metadata_fingerprint == view().metadata_fingerprint

    @pytest.mark.parametrize(
        "overrides",
        [{"description": "new"}, {"owner": "someone"}, {"tags": {"team": "x"}}],
        ids=["description", "owner", "tags"],
    )
    def test_metadata_changes_only_metadata_fingerprint(self, overrides: dict[str, Any]) -> None:
        base, changed = view(), view(**overrides)
        assert changed.data_fingerprint == base.data_fingerprint
        assert changed.metadata_fingerprint != base.metadata_fingerprint

    @pytest.mark.parametrize(
        "overrides",
        [
            {"ttl": timedelta(days=2)},
            {"ttl": None},
            {"schema": [Field("user_id", Int64), Field("a", Float32), Field("b", String)]},
            {"schema": [Field("user_id", Int64), Field("a", Float64)]},
            {"online": False},
            {"source": src("data/other.parquet", created_timestamp_column="created")},
            {"entities": [Entity("user", join_keys=["uid"])]},
        ],
        ids=["ttl", "ttl-none", "dtype", "dropped-field", "online", "source-path", "join-key"],
    )
    def test_data_changes_change_data_fingerprint(self, overrides: dict[str, Any]) -> None:
        base, changed = view(), view(**overrides)
        assert changed.data_fingerprint != base.data_fingerprint
        assert changed.metadata_fingerprint == base.metadata_fingerprint

    def test_tag_order_does_not_matter(self) -> None:
        a = view(tags={"x": "1", "y": "2"})
        b = view(tags={"y": "2", "x": "1"})
        assert a.metadata_fingerprint == b.metadata_fingerprint

    def test_field_description_is_not_a_data_change(self) -> None:
        base = view()
        described = view(schema=[Field("user_id", Int64), Field("a", Float64, description="avg"), Field("b", String)])
        assert described.data_fingerprint == base.data_fingerprint
        assert described.storage_spec() == base.storage_spec()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"schema": [Field("user_id", Int64), Field("a", Float64, description="avg"), Field("b", String)]},
            {"schema": [Field("user_id", Int64), Field("a", Float64, tags={"pii": "no"}), Field("b", String)]},
            {"source": src(created_timestamp_column="created", description="raw events")},
        ],
        ids=["field-description", "field-tags", "source-description"],
    )
    def test_nested_metadata_change_changes_metadata_fingerprint(self, overrides: dict[str, Any]) -> None:
        base, changed = view(), view(**overrides)
        assert changed.data_fingerprint == base.data_fingerprint
        assert changed.metadata_fingerprint != base.metadata_fingerprint

    def test_entity_fingerprints(self) -> None:
        base = Entity("user", join_keys=["user_id"])
        described = Entity("user", join_keys=["user_id"], description="a customer", owner="me")
        rekeyed = Entity("user", join_keys=["uid"])
        assert described.data_fingerprint == base.data_fingerprint
        assert described.metadata_fingerprint != base.metadata_fingerprint
        assert rekeyed.data_fingerprint != base.data_fingerprint
        assert rekeyed.metadata_fingerprint == base.metadata_fingerprint

    def test_service_fingerprints(self) -> None:
        v = view()
        base = FeatureService("svc", features=[v])
        described = FeatureService("svc", features=[v], description="model v1")
        narrowed = FeatureService("svc", features=[v[["a"]]])
        assert described.data_fingerprint == base.data_fingerprint
        assert described.metadata_fingerprint != base.metadata_fingerprint
        assert narrowed.data_fingerprint != base.data_fingerprint


class TestFeatureService:
    def test_projections(self) -> None:
        v1 = view(name="v1")
        v2 = view(name="v2")
        svc = FeatureService("svc", features=[v1, v2[["b"]]])
        assert svc.projections == (FeatureViewProjection("v1", None), FeatureViewProjection("v2", ("b",)))
        assert svc.features == svc.projections
        assert svc.to_spec()["features"] == [{"view": "v1", "features": None}, {"view": "v2", "features": ["b"]}]

    def test_empty_features(self) -> None:
        with pytest.raises(DefinitionError, match="needs at least one feature view or projection") as exc:
            FeatureService("svc", features=[])
        assert (exc.value.obj, exc.value.field) == ("feature service 'svc'", "features")

    def test_features_default_is_empty(self) -> None:
        with pytest.raises(DefinitionError, match="needs at least one feature view or projection"):
            FeatureService("svc")

    @pytest.mark.parametrize(("item", "shown"), [("v:a", "'v:a'"), (5, "5")])
    def test_non_view_item(self, item: object, shown: str) -> None:
        with pytest.raises(DefinitionError, match=rf"features must be feature views or view\[\[\.\.\.\]\] projections, got {shown}"):
            FeatureService("svc", features=[view(), item])

    def test_entity_is_not_a_feature(self) -> None:
        with pytest.raises(DefinitionError, match="features must be feature views"):
            FeatureService("svc", features=[user()])

    def test_features_must_be_a_list(self) -> None:
        with pytest.raises(DefinitionError, match="field 'features': must be a list, got FeatureView"):
            FeatureService("svc", features=view())  # type: ignore[arg-type]

    def test_same_view_twice(self) -> None:
        v = view()
        with pytest.raises(DefinitionError, match=r"a feature view is listed twice: \['v', 'v'\]"):
            FeatureService("svc", features=[v, v[["a"]]])

    def test_bad_name(self) -> None:
        with pytest.raises(DefinitionError, match="'fraud-v1' is not a valid feature service name") as exc:
            FeatureService("fraud-v1", features=[view()])
        assert exc.value.obj == "FeatureService"

    def test_text_fields_are_checked(self) -> None:
        with pytest.raises(DefinitionError, match="feature service 'svc', field 'description': must be a string, got int"):
            FeatureService("svc", features=[view()], description=1)  # type: ignore[arg-type]

    def test_error_location(self) -> None:
        line = next_line() + 1
        with pytest.raises(DefinitionError) as exc:
            FeatureService("svc", features=[])
        assert_points_here(exc.value, line)

    def test_spec_round_trip(self) -> None:
        v = view()
        svc = FeatureService("svc", features=[v[["a"]]], description="d", owner="o", tags={"m": "1"})
        back = FeatureService.from_spec(svc.to_spec())
        assert back == svc
        assert back.data_fingerprint == svc.data_fingerprint
        assert back.metadata_fingerprint == svc.metadata_fingerprint
        assert definition_from_spec("feature_service", svc.to_spec()) == svc


def test_import_featurestore_is_light() -> None:
    code = ("import featurestore, sys; "
            "print(sorted(m for m in ('duckdb','polars','pyarrow','sqlglot','pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
