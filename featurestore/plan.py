"""Plan: the diff between a repo's definitions and what the registry holds.

One frozen ``Plan`` drives both ``explain()`` (what ``featurestore plan`` prints) and
``apply_plan`` (what ``featurestore apply`` does), so the printed plan cannot differ from what is
applied. Destructive changes (a view's entities, source or schema, or deleting a view) invalidate
stored data and need ``allow_destructive``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions import Definition, FeatureView
from featurestore.definitions.base import fingerprint
from featurestore.errors import PlanError
from featurestore.registry import RegistryTransaction, StoredObject
from featurestore.repo import RepoContents

KIND_ORDER = ("entity", "feature_view", "on_demand_feature_view", "feature_service")
_DESTRUCTIVE_KEYS = {"feature_view": (
    "entities", "source", "sources", "schema", "transformation", "aggregations", "timestamp_field",
    "created_timestamp_column", "upstream_fingerprints", "forward_fill", "ttl_seconds",
)}


@dataclass(frozen=True)
class FieldChange:
    """One changed field of a definition, as a dotted path with old and new values."""

    path: str
    old: Any
    new: Any

    def describe(self) -> str:
        if self.old is None and self.new is not None and self.path.startswith("schema."):
            return f"{self.path}: added ({self.new})"
        if self.new is None and self.old is not None and self.path.startswith("schema."):
            return f"{self.path}: removed (was {self.old})"
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)}"


@dataclass(frozen=True)
class ObjectChange:
    """What happens to one definition."""

    action: str  # create | update | delete | unchanged
    kind: str
    name: str
    old_version: int | None = None
    fields: tuple[FieldChange, ...] = ()
    destructive_reasons: tuple[str, ...] = ()
    data_changed: bool = False
    metadata_changed: bool = False
    definition: Definition | None = field(default=None, compare=False, repr=False)

    @property
    def runs(self) -> str:
        """What computes a created or changed view's rows, in one line."""
        view = self.definition
        if not isinstance(view, FeatureView) or self.action not in ("create", "update") or not self.data_changed:
            return ""
        return describe_rows(view)

    @property
    def destructive(self) -> bool:
        return bool(self.destructive_reasons)


@dataclass(frozen=True)
class Plan:
    """The full diff for one project."""

    project: str
    changes: tuple[ObjectChange, ...]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    @property
    def destructive(self) -> tuple[ObjectChange, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for c in self.changes:
            out[c.action] += 1
        return out

    def explain(self) -> str:
        """Human-readable plan, as ``featurestore plan`` prints it."""
        lines = [f"Plan for project '{self.project}':"]
        symbols = {"create": "+", "update": "~", "delete": "-"}
        for c in self.changes:
            if c.action == "unchanged":
                continue
            label = c.kind.replace("_", " ")
            version = f" (v{c.old_version} -> v{c.old_version + 1})" if c.action == "update" and c.old_version else ""
            tag = "  [DESTRUCTIVE]" if c.destructive else ""
            kind_of_change = ""
            if c.action == "update":
                kind_of_change = "  (metadata only)" if not c.data_changed else ""
            lines.append(f"  {symbols[c.action]} {label} {c.name}{version}{kind_of_change}{tag}")
            if c.runs:
                lines.append(f"      runs: {c.runs}")
            for fc in c.fields:
                lines.append(f"      {fc.describe()}")
            for reason in c.destructive_reasons:
                lines.append(f"      ! {reason}")
        n = self.counts()
        if not self.has_changes:
            lines.append("  No changes: the registry matches the repo.")
        lines.append(
            f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete, "
            f"{n['unchanged']} unchanged."
        )
        if self.destructive:
            lines.append(
                f"{len(self.destructive)} destructive change(s): apply with --allow-destructive "
                "(stored data of those views will no longer be used; re-run materialization)."
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "changes": [
                {
                    "action": c.action, "kind": c.kind, "name": c.name,
                    "fields": [{"path": f.path, "old": f.old, "new": f.new} for f in c.fields],
                    "destructive": list(c.destructive_reasons),
                    "data_changed": c.data_changed, "metadata_changed": c.metadata_changed,
                    **({"runs": c.runs} if c.runs else {}),
                }
                for c in self.changes if c.action != "unchanged"
            ],
        }


def describe_rows(view: FeatureView) -> str:
    """``SQL over t=data/txns.parquet, u=users_view; aggregates sum(amount) 7d``: what runs."""
    from featurestore.definitions import FileSource
    from featurestore.definitions.transformation import UserFunction, window_label

    inputs = ", ".join(
        f"{alias}={src.path}" if isinstance(src, FileSource) else f"{alias}=view {src}"
        for alias, src in view.inputs.items()
    )
    transformation = view.transformation
    if transformation is None:
        text = f"reads {inputs.split('=', 1)[1]}"
    elif isinstance(transformation, UserFunction):
        text = f"Polars function {transformation.name}() over {inputs}"
    else:
        text = f"DuckDB SQL over {inputs}"
    if view.aggregations:
        aggs = ", ".join(f"{a.function}({a.column}) {window_label(a.window)}" for a in view.aggregations)
        text += f"; aggregates {aggs}"
    if transformation is not None:
        text += f" ('featurestore compile {view.name}' prints it)"
    return text


def storage_fingerprint(definition: Definition) -> str | None:
    if isinstance(definition, FeatureView):
        return fingerprint(definition.storage_spec())
    return None


def make_plan(project: str, current: list[StoredObject], desired: RepoContents) -> Plan:
    """Diff registry state against the repo's definitions."""
    stored = {(o.kind, o.name): o for o in current}
    wanted = {(d.kind, d.name): d for d in desired.all()}
    changes: list[ObjectChange] = []
    for key in sorted(set(stored) | set(wanted), key=lambda k: (KIND_ORDER.index(k[0]), k[1])):
        kind, name = key
        old, new = stored.get(key), wanted.get(key)
        if old is None and new is not None:
            changes.append(ObjectChange("create", kind, name, data_changed=True, definition=new))
        elif new is None and old is not None:
            dropped = ("deleting a feature view removes its stored data",) if kind == "feature_view" else ()
            changes.append(ObjectChange("delete", kind, name, old_version=old.version, destructive_reasons=dropped))
        elif old is not None and new is not None:
            data_changed = old.data_fingerprint != new.data_fingerprint
            meta_changed = old.metadata_fingerprint != new.metadata_fingerprint
            if not data_changed and not meta_changed:
                changes.append(ObjectChange("unchanged", kind, name, old_version=old.version, definition=new))
                continue
            fields = tuple(diff_specs(old.spec, new.to_spec()))
            reasons: tuple[str, ...] = ()
            if kind in _DESTRUCTIVE_KEYS and old.storage_fingerprint != storage_fingerprint(new):
                touched = sorted({f.path.split(".")[0] for f in fields} & set(_DESTRUCTIVE_KEYS[kind]))
                named = [("a view it reads" if t == "upstream_fingerprints" else t) for t in touched]
                reasons = (f"changes {', '.join(named) or 'stored data'}: stored data no longer matches",)
            changes.append(ObjectChange(
                "update", kind, name, old_version=old.version, fields=fields,
                destructive_reasons=reasons, data_changed=data_changed, metadata_changed=meta_changed,
                definition=new,
            ))
    return Plan(project, tuple(changes))


def diff_specs(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Field-level differences between two specs. Lists of named items are matched by name."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(FieldChange(sub, None, new[k]))
            elif k not in new:
                out.append(FieldChange(sub, old[k], None))
            else:
                out.extend(diff_specs(old[k], new[k], sub))
        return out
    if _named_list(old) and _named_list(new):
        olds = {i["name"]: i for i in old}
        news = {i["name"]: i for i in new}
        out = []
        for n in list(olds) + [n for n in news if n not in olds]:
            sub = f"{path}.{n}"
            if n not in news:
                out.append(FieldChange(sub, _brief(olds[n]), None))
            elif n not in olds:
                out.append(FieldChange(sub, None, _brief(news[n])))
            else:
                out.extend(diff_specs(olds[n], news[n], sub))
        if not out and [i["name"] for i in old] != [i["name"] for i in new]:
            out.append(FieldChange(f"{path} order", [i["name"] for i in old], [i["name"] for i in new]))
        return out
    return [] if old == new else [FieldChange(path, old, new)]


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


def _brief(item: dict[str, Any]) -> Any:
    return item.get("dtype") or item.get("join_keys") or item.get("features") or item["name"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def apply_plan(tx: RegistryTransaction, plan: Plan, *, allow_destructive: bool) -> int | None:
    """Write a plan inside a registry transaction. Returns the apply id (None: nothing to do)."""
    if plan.destructive and not allow_destructive:
        listing = "\n".join(
            f"  - {c.kind.replace('_', ' ')} {c.name}: {'; '.join(c.destructive_reasons)}"
            for c in plan.destructive
        )
        raise PlanError(
            f"refusing to apply {len(plan.destructive)} destructive change(s):\n{listing}\n"
            "Review them with 'featurestore plan', then run 'featurestore apply --allow-destructive'."
        )
    if not plan.has_changes:
        return None
    apply_id = tx.new_apply(plan.project, plan.to_dict())
    for c in plan.changes:
        if c.action in ("create", "update"):
            assert c.definition is not None
            tx.put_object(
                plan.project, apply_id, kind=c.kind, name=c.name, spec=c.definition.to_spec(),
                data_fingerprint=c.definition.data_fingerprint,
                metadata_fingerprint=c.definition.metadata_fingerprint,
                storage_fingerprint=storage_fingerprint(c.definition),
            )
        elif c.action == "delete":
            tx.delete_object(plan.project, apply_id, kind=c.kind, name=c.name)
    return apply_id
