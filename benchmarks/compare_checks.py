"""Correctness checks of ``run.py --compare feast``: do the two systems return the same values?

* Training sets: both sorted by ``row_id`` (Feast does not keep the entity rows' order), compared
  cell by cell, floats to 1e-9 relative.
* Online: the values of a sample of users (random known users, unknown users, and users whose
  latest row in a view is an exact tie) as stored after materialization.

Every differing cell is classified by looking at the data: the source rows of the cell's entity
that the point-in-time rule selects (``ts - ttl <= event <= ts``, newest event, then newest
created timestamp; online: the newest row of the data window), and whether that choice is an exact
tie, sits on a ttl boundary, or involves a null. Each class names the documented rule behind it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

REL_TOL = 1e-9
EXAMPLES = 5
CLASSES = {
    "tie": ("exact tie on (event timestamp, created timestamp), both values among the tied rows: this project "
            "keeps the row ingested last (README, Semantics); Feast's DuckDB offline store ranks rows with "
            "ROW_NUMBER() OVER (ORDER BY event DESC, created DESC), which leaves exact ties in an arbitrary order"),
    "ttl_boundary": ("a source row exactly at the entity row's time or at time - ttl: both systems document both ends "
                     "as inclusive (Feast: event <= ts and event + ttl >= ts), so one side disagrees with its docs"),
    "null": "one side returns null where the other returns a value",
    "unexplained": "no documented semantic difference explains it",
}
TTL_AT_READ = ("this project applies a view's ttl when serving: a value older than the ttl at request time is None "
               "with status OUTSIDE_MAX_AGE (README, Online store); Feast's get_online_features does not check the ttl "
               "and returns the stored value")


def _source(view: dict[str, Any]) -> pl.DataFrame:
    """A view's source rows with UTC timestamps (naive ones are UTC on both sides)."""
    ts, created = view["timestamp_field"], view["created_timestamp_column"]
    keys = view["join_keys"]
    cols = [*keys, ts, *([created] if created else []), *view["features"]]
    df = pl.read_parquet(view["path"], columns=cols).with_row_index("_ingest")

    def utc(col: str) -> pl.Expr:
        c = pl.col(col)
        dtype = df.schema[col]
        return (c.dt.replace_time_zone("UTC") if getattr(dtype, "time_zone", None) is None
                else c.dt.convert_time_zone("UTC")).dt.cast_time_unit("us")

    df = df.with_columns(utc(ts).alias("_ev"),
                         (utc(created) if created else pl.lit(None, pl.Datetime("us", "UTC"))).alias("_cr"))
    return df


def data_facts(facts: dict[str, Any], window: tuple[datetime, datetime]) -> None:
    """Add to ``facts`` what the checks and the keys check need: entities with a row in the window."""
    ids = []
    for view in facts["views"].values():
        df = _source(view)
        ids.append(df.filter((pl.col("_ev") >= window[0]) & (pl.col("_ev") < window[1]))[view["join_keys"][0]])
    facts["entities_in_window"] = int(pl.concat(ids).n_unique()) if ids else 0


def _not_equal(a: pl.Expr, b: pl.Expr, float_like: bool) -> pl.Expr:
    same = a.eq_missing(b)
    if float_like:
        scale = pl.max_horizontal(pl.lit(1.0), a.abs(), b.abs())
        same = same | ((a - b).abs() <= REL_TOL * scale).fill_null(False)
    return ~same


def _is_float(dtype: pl.DataType) -> bool:
    return dtype in (pl.Float32, pl.Float64)


def _diff_cells(left: pl.DataFrame, right: pl.DataFrame, key: str, features: dict[str, str]) -> pl.DataFrame:
    """Long table of the cells that differ: key, view, feature, ours, feast (values as text)."""
    joined = left.join(right, on=key, how="inner", suffix="__feast")
    parts = []
    for feature, view in features.items():
        a, b = pl.col(feature), pl.col(f"{feature}__feast")
        la, lb = joined.schema[feature], joined.schema[f"{feature}__feast"]
        if la != lb:  # e.g. ints that came back as floats: compare as floats
            a, b = a.cast(pl.Float64), b.cast(pl.Float64)
        float_like = _is_float(la) or _is_float(lb)
        parts.append(joined.filter(_not_equal(a, b, float_like)).select(
            pl.col(key), pl.lit(view).alias("view"), pl.lit(feature).alias("feature"),
            pl.col(feature).cast(pl.String).alias("ours"), pl.col(f"{feature}__feast").cast(pl.String).alias("feast")))
    schema = {key: left.schema[key], "view": pl.String, "feature": pl.String, "ours": pl.String, "feast": pl.String}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _classify(diffs: pl.DataFrame, chosen: pl.DataFrame, key: str, boundary: pl.DataFrame | None) -> pl.DataFrame:
    """Add ``class`` and ``expected`` to each differing cell, from the rows the rule selects.

    ``chosen``: per key, view and feature, the values of the rows tied for newest (``tied`` list,
    values as text) and their count ``n_tied``; ``boundary``: keys (with view) having a source row
    exactly on a window edge."""
    d = diffs.join(chosen, on=[key, "view", "feature"], how="left")
    if boundary is not None and boundary.height:
        d = d.join(boundary.with_columns(pl.lit(True).alias("_edge")), on=[key, "view"], how="left")
    else:
        d = d.with_columns(pl.lit(None, pl.Boolean).alias("_edge"))
    n = pl.col("n_tied").fill_null(0)
    tied = pl.col("tied")
    ours_in = tied.list.contains(pl.col("ours"), nulls_equal=True).fill_null(False)
    feast_in = tied.list.contains(pl.col("feast"), nulls_equal=True).fill_null(False)
    expected = pl.when(n == 1).then(tied.list.first()).otherwise(None)
    cls = (pl.when((n > 1) & ours_in & feast_in).then(pl.lit("tie"))
           .when(pl.col("_edge").fill_null(False)).then(pl.lit("ttl_boundary"))
           .when(pl.col("ours").is_null() != pl.col("feast").is_null()).then(pl.lit("null"))
           .otherwise(pl.lit("unexplained")))
    matches = (pl.when(n == 0).then(pl.lit("no source row selected"))
               .when(n > 1).then(pl.lit("tied rows"))
               .when(pl.col("ours").eq_missing(expected)).then(pl.lit("ours"))
               .when(pl.col("feast").eq_missing(expected)).then(pl.lit("feast"))
               .otherwise(pl.lit("neither")))
    return d.with_columns(cls.alias("class"), expected.alias("expected"), matches.alias("matches_data"),
                          n.alias("n_tied"))


def _summarise(classified: pl.DataFrame, key: str, cells: int) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": cells, "differing_cells": classified.height,
                           "differing_keys": classified[key].n_unique() if classified.height else 0,
                           "by_class": {}, "examples": {}}
    for cls in CLASSES:
        part = classified.filter(pl.col("class") == cls)
        if not part.height:
            continue
        out["by_class"][cls] = {
            "cells": part.height,
            "meaning": CLASSES[cls],
            "by_feature": dict(part.group_by("feature").len().sort("len", descending=True).iter_rows()),
            "matches_data": dict(part.group_by("matches_data").len().iter_rows()),
        }
        out["examples"][cls] = part.head(EXAMPLES).select(
            key, "view", "feature", "ours", "feast", "expected", "n_tied", "tied").to_dicts()
    out["explained"] = "unexplained" not in out["by_class"] and "ttl_boundary" not in out["by_class"] \
        and "null" not in out["by_class"]
    return out


def compare_training_sets(ours_path: Path, feast_path: Path, entity_file: Path,
                          facts: dict[str, Any]) -> dict[str, Any]:
    features = {f: name for name, v in facts["views"].items() for f in v["features"]}
    ours = pl.read_parquet(ours_path).sort("row_id")
    feast = pl.read_parquet(feast_path).sort("row_id")
    missing = {"ours": [f for f in features if f not in ours.columns],
               "feast": [f for f in features if f not in feast.columns]}
    if missing["ours"] or missing["feast"]:
        return {"error": f"feature columns missing: {missing}", "explained": False}
    out: dict[str, Any] = {
        "rows_ours": ours.height, "rows_feast": feast.height,
        "row_ids_equal": ours["row_id"].equals(feast["row_id"]),
        "columns_ours": ours.columns, "columns_feast": feast.columns,
    }
    cols = ["row_id", *features]
    diffs = _diff_cells(ours.select(cols), feast.select(cols), "row_id", features)
    entities = pl.read_parquet(entity_file, columns=["row_id", "user_id", "event_timestamp"]).with_columns(
        pl.col("event_timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias("_ts"))
    chosen_parts, edge_parts = [], []
    for name, view in facts["views"].items():
        rows = diffs.filter(pl.col("view") == name).select("row_id").unique()
        if not rows.height:
            continue
        key = view["join_keys"][0]
        src = _source(view)
        cand = rows.join(entities, on="row_id").join(src, left_on="user_id", right_on=key)
        ttl = view["ttl_seconds"]
        in_window = pl.col("_ev") <= pl.col("_ts")
        edge = pl.col("_ev") == pl.col("_ts")
        if ttl:
            lower = pl.col("_ts") - timedelta(seconds=ttl)
            in_window = in_window & (pl.col("_ev") >= lower)
            edge = edge | (pl.col("_ev") == lower)
        edge_parts.append(cand.filter(edge).select("row_id").unique().with_columns(pl.lit(name).alias("view")))
        cand = cand.filter(in_window)
        chosen_parts.append(_tied(cand, "row_id", name, view["features"]))
    chosen = pl.concat(chosen_parts) if chosen_parts else None
    edges = pl.concat(edge_parts) if edge_parts else None
    if diffs.height and chosen is not None:
        classified = _classify(diffs, chosen, "row_id", edges)
    else:
        classified = diffs.with_columns(pl.lit("unexplained").alias("class"))
    out.update(_summarise(classified, "row_id", min(ours.height, feast.height) * len(features)))
    if not out["row_ids_equal"]:
        out["explained"] = False
    return out


def _tied(cand: pl.DataFrame, key: str, view: str, features: list[str]) -> pl.DataFrame:
    """Per key and feature: the values (as text) of the rows tied for newest (event, created)."""
    best = cand.group_by(key).agg(pl.col("_ev").max())
    best = cand.join(best, on=[key, "_ev"]).group_by(key).agg(pl.col("_cr").max(), pl.col("_ev").first())
    tied = cand.join(best, on=[key, "_ev", "_cr"], nulls_equal=True)
    parts = []
    for f in features:
        parts.append(tied.group_by(key).agg(pl.col(f).cast(pl.String).alias("tied"), pl.len().alias("n_tied"))
                     .with_columns(pl.lit(view).alias("view"), pl.lit(f).alias("feature")))
    return pl.concat(parts).select(key, "view", "feature", "tied", pl.col("n_tied").cast(pl.Int64))


def _latest(facts: dict[str, Any], window: tuple[datetime, datetime], users: list[int]) -> pl.DataFrame:
    """Online: per user, view and feature, the values of the rows tied for newest in the window."""
    parts = []
    wanted = pl.DataFrame({"user_id": users}, schema={"user_id": pl.Int64}).unique()
    for name, view in facts["views"].items():
        src = _source(view).rename({view["join_keys"][0]: "user_id"})
        cand = src.join(wanted, on="user_id").filter((pl.col("_ev") >= window[0]) & (pl.col("_ev") < window[1]))
        parts.append(_tied(cand, "user_id", name, view["features"]))
    return pl.concat(parts)


def online_sample_users(facts: dict[str, Any], users: int, n: int, seed: int) -> list[int]:
    """Random known users, 2% unknown ones, and users whose newest row in a view is an exact tie."""
    rng = np.random.default_rng(seed + 100)
    known = rng.choice(users, size=min(n, users), replace=False).tolist()
    unknown = (users + rng.integers(0, users, max(1, n // 50))).tolist()
    ties: list[int] = []
    for view in facts["views"].values():
        src = _source(view)
        key = view["join_keys"][0]
        newest = src.sort([key, "_ev", "_cr"]).group_by(key).agg(pl.col("_ev").last(), pl.col("_cr").last())
        tied = src.join(newest, on=[key, "_ev", "_cr"]).group_by(key).len().filter(pl.col("len") > 1)
        ties += tied[key].head(25).to_list()
    return sorted(set(known) | set(unknown) | set(ties))


def compare_online(ours: dict[str, Any], feast: dict[str, Any], users: list[int], facts: dict[str, Any],
                   window: tuple[datetime, datetime]) -> dict[str, Any]:
    features = {f: name for name, v in facts["views"].items() for f in v["features"]}
    left = pl.DataFrame({"user_id": users, **{f: ours["values"][f] for f in features}}, strict=False)
    right = pl.DataFrame({"user_id": users, **{f: feast[f] for f in features}}, strict=False)
    diffs = _diff_cells(left, right, "user_id", features)
    chosen = _latest(facts, window, users)
    classified = _classify(diffs, chosen, "user_id", None) if diffs.height else \
        diffs.with_columns(pl.lit("unexplained").alias("class"))
    out = _summarise(classified, "user_id", len(users) * len(features))
    out["users"] = len(users)
    # Not a difference of stored values: what each system serves now, with the ttl at request time.
    ttl_cells = 0
    stale = 0
    for f, view in features.items():
        if not facts["views"][view]["ttl_seconds"]:
            continue
        for status, value in zip(ours["statuses_now"][f], feast[f], strict=True):
            if status == "OUTSIDE_MAX_AGE":
                ttl_cells += 1
                stale += value is not None
    present = sum(v is not None for f in features for v in ours["values"][f])
    out["values_present"] = present
    out["ttl_at_read_time"] = {"cells_outside_max_age_ours": ttl_cells, "of_which_feast_returns_a_value": stale,
                               "meaning": TTL_AT_READ}
    return out


def all_explained(checks: dict[str, Any]) -> bool:
    return all(c.get("explained", True) for k, c in checks.items() if isinstance(c, dict) and k != "feast_keys") \
        and checks.get("feast_keys", {}).get("ok", True)


def format_checks(checks: dict[str, Any]) -> list[str]:
    """Terminal and Markdown lines: the outcome of each check, the classes and examples."""
    lines: list[str] = []
    for name, title in (("training_set", "training sets"), ("online", "online values")):
        c = checks.get(name)
        if not c:
            continue
        if "error" in c:
            lines.append(f"{title}: ERROR {c['error']}")
            continue
        head = f"{title}: {c['cells']:,} cells compared"
        if name == "training_set":
            head += (f" ({c['rows_ours']:,} rows; row ids {'equal' if c['row_ids_equal'] else 'DIFFER'} after "
                     "sorting by row_id)")
        else:
            head += f" ({c['users']:,} users x {c['cells'] // max(1, c['users'])} features, as stored)"
        if not c["differing_cells"]:
            lines.append(head + ": all equal")
        else:
            unit = "row" if name == "training_set" else "user"
            lines.append(head + f": {c['differing_cells']:,} differ in {c['differing_keys']:,} "
                         f"{unit}{'s' if c['differing_keys'] != 1 else ''}, "
                         + ("all explained by documented semantics" if c["explained"] else "NOT ALL EXPLAINED"))
        for cls, info in c["by_class"].items():
            feats = ", ".join(f"{f} {n}" for f, n in list(info["by_feature"].items())[:6])
            lines.append(f"  {cls}: {info['cells']:,} cells ({feats}); which side matches the data: "
                         + ", ".join(f"{k} {v}" for k, v in info["matches_data"].items()))
            lines.append(f"    {info['meaning']}")
            for ex in c["examples"].get(cls, [])[:3]:
                key = "row_id" if "row_id" in ex else "user_id"
                lines.append(f"    e.g. {key} {ex[key]} {ex['view']}.{ex['feature']}: ours {ex['ours']!s}, "
                             f"Feast {ex['feast']!s}; {ex['n_tied']} tied row(s) with values {ex['tied']}")
        ttl = c.get("ttl_at_read_time")
        if ttl and ttl["cells_outside_max_age_ours"]:
            lines.append(f"  served now (not a difference of stored values): {ttl['cells_outside_max_age_ours']:,} "
                         f"cells of the ttl'd views are OUTSIDE_MAX_AGE for ours (the data ends "
                         f"2026-04-01), Feast returns a value for {ttl['of_which_feast_returns_a_value']:,} of them "
                         "(the others are nulls in the data):")
            lines.append(f"    {ttl['meaning']}")
    k = checks.get("feast_keys")
    if k:
        lines.append(f"Feast's keys after materialize: {k['keys']:,} (entities with a row in the window: "
                     f"{k['expected']:,}): {'as expected' if k['ok'] else 'MISMATCH'}")
    return lines
