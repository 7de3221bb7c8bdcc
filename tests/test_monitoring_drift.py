"""Drift from stored statistics, and the HTML report: drift is detected on shifted data and not on
resampled data; the statistics are checked against known values; the page is escaped and parses."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest

from featurestore.monitoring import MonitoringError, Threshold, column_stats, compare, html_report
from featurestore.monitoring.drift import (
    DriftReport,
    chi2_homogeneity,
    chi2_sf,
    js_distance,
    ks_statistic,
    psi,
)
from featurestore.monitoring.stats import ColumnStats

N = 5_000


def numbers(values: np.ndarray) -> ColumnStats:
    return column_stats(pl.DataFrame({"x": values}))["x"]


def categories(rng: np.random.Generator, mix: list[float], n: int = N) -> ColumnStats:
    return column_stats(pl.DataFrame({"c": rng.choice(["a", "b", "c", "d"], p=mix, size=n)}))["c"]


def exact_ks(a: np.ndarray, b: np.ndarray) -> float:
    points = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), points, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


# --- the chi-square distribution, implemented without scipy ---------------------------------------------


@pytest.mark.parametrize(
    ("x", "df", "expected"),
    [
        (3.8414588206941285, 1, 0.05),  # the 95% critical values found in every table
        (11.070497693516355, 5, 0.05),
        (23.20925115895436, 10, 0.01),
        (3.84, 1, 0.05004352124870519),
        (1.0, 1, 0.31731050786291115),  # 2 * (1 - Phi(1))
        (40.0, 20, 0.0049954123083075785),
        (2.0, 2, math.exp(-1.0)),
        (0.0, 3, 1.0),
    ],
)
def test_chi2_sf_known_values(x: float, df: int, expected: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(expected, rel=1e-9)


def test_chi2_sf_matches_the_closed_form_for_even_degrees_of_freedom() -> None:
    # for df = 2k: P(X > x) = exp(-x/2) * sum_{i<k} (x/2)^i / i!
    for k in (1, 2, 5, 20, 60):
        for x in (0.1, 1.0, 7.5, 30.0, 150.0, 400.0):
            expected = math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(k))
            assert chi2_sf(x, 2 * k) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chi2_homogeneity_and_js_distance_known_values() -> None:
    stat, df, p = chi2_homogeneity([30, 20, 50, 0], [25, 30, 40, 5])
    assert (stat, df) == (pytest.approx(8.565656565656566), 3)
    assert p == pytest.approx(0.03565944848599733, rel=1e-9)
    assert chi2_homogeneity([10, 0], [20, 0]) == (0.0, 0, 1.0)
    assert js_distance([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5579230452841438)
    assert js_distance([3, 1], [30, 10]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


# --- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_resampled_numbers_do_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=N), rng.normal(size=N)
    result = compare({"x": numbers(a)}, {"x": numbers(b)})["x"]
    assert result.status == "ok", result
    assert result.value("psi") < 0.05
    assert result.value("ks") < 0.05
    assert result.value("ks") == pytest.approx(exact_ks(a, b), abs=0.01)


@pytest.mark.parametrize("seed", range(3))
def test_mean_shift_of_half_a_standard_deviation_drifts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=N), rng.normal(0.5, 1.0, size=N)
    report = compare({"x": numbers(a)}, {"x": numbers(b)})
    result = report["x"]
    assert report.drifted == ["x"]
    assert "ks" in result.tripped
    # both measure the same shift: PSI about d^2 = 0.25, KS about 2 * Phi(0.25) - 1 = 0.197
    assert result.value("psi") == pytest.approx(0.25, abs=0.05)
    assert result.value("ks") == pytest.approx(exact_ks(a, b), abs=0.01)
    assert result.value("ks") == pytest.approx(0.197, abs=0.03)


def test_moderate_shift_warns_on_psi() -> None:
    rng = np.random.default_rng(0)
    ref, cur = numbers(rng.normal(size=N)), numbers(rng.normal(0.35, 1.0, size=N))
    result = compare({"x": ref}, {"x": cur}, default=Threshold(ks=None))["x"]
    assert 0.1 < result.value("psi") < 0.2
    assert result.status == "warn" and not result.drifted
    assert compare({"x": ref}, {"x": cur}).drifted == ["x"]  # KS alone catches it with the defaults


def test_psi_and_ks_handle_discrete_values_and_new_ranges() -> None:
    ref = numbers(np.repeat([0.0, 1.0, 2.0], [500, 300, 200]))
    same = numbers(np.repeat([0.0, 1.0, 2.0], [1000, 600, 400]))
    moved = numbers(np.repeat([0.0, 1.0, 2.0], [200, 300, 500]))
    beyond = numbers(np.full(1000, 5.0))
    assert psi(ref.sketch, same.sketch) < 0.01
    assert ks_statistic(ref.sketch, same.sketch) < 0.02
    assert ks_statistic(ref.sketch, moved.sketch) == pytest.approx(0.3, abs=0.02)
    assert compare({"x": ref}, {"x": moved}).drifted == ["x"]
    assert ks_statistic(ref.sketch, beyond.sketch) == pytest.approx(1.0)
    assert psi(ref.sketch, beyond.sketch) > 5


# --- categories ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_resampled_category_mix_does_not_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mix = [0.5, 0.3, 0.15, 0.05]
    result = compare({"c": categories(rng, mix)}, {"c": categories(rng, mix)})["c"]
    assert result.status == "ok"
    assert result.value("js") < 0.03
    assert result.value("chi2_pvalue") is not None


def test_changed_category_mix_drifts() -> None:
    rng = np.random.default_rng(7)
    report = compare({"c": categories(rng, [0.5, 0.3, 0.15, 0.05])}, {"c": categories(rng, [0.3, 0.3, 0.25, 0.15])})
    result = report["c"]
    assert report.drifted == ["c"] and result.tripped == ("js",)
    assert result.value("js") > 0.1
    assert result.value("chi2_pvalue") < 1e-10


def test_boolean_rate_change_drifts() -> None:
    rng = np.random.default_rng(3)
    ref = column_stats(pl.DataFrame({"b": rng.random(N) < 0.05}))
    cur = column_stats(pl.DataFrame({"b": rng.random(N) < 0.30}))
    assert compare(ref, cur).drifted == ["b"]
    assert compare(ref, column_stats(pl.DataFrame({"b": rng.random(N) < 0.05}))).drifted == []


def test_long_tails_beyond_the_top_values_do_not_look_like_drift() -> None:
    # 3000 equally rare values: each side lists a different 100 of them
    rng = np.random.default_rng(5)
    ref = column_stats(pl.DataFrame({"c": rng.integers(0, 3000, N).astype(str)}))
    cur = column_stats(pl.DataFrame({"c": rng.integers(0, 3000, N).astype(str)}))
    assert ref["c"].other > 0
    result = compare(ref, cur)["c"]
    assert result.status == "ok" and result.value("js") < 0.05


def test_a_new_category_is_measured_when_the_reference_lists_all_its_values() -> None:
    ref = column_stats(pl.DataFrame({"c": ["a"] * 600 + ["b"] * 400}))
    cur = column_stats(pl.DataFrame({"c": ["a"] * 400 + ["b"] * 300 + ["new"] * 300}))
    result = compare(ref, cur)["c"]
    assert result.drifted and result.value("js") > 0.3


# --- thresholds, missing values, and the report object ---------------------------------------------------


def test_threshold_overrides_per_feature() -> None:
    rng = np.random.default_rng(0)
    ref = {"x": numbers(rng.normal(size=N)), "y": numbers(rng.normal(size=N))}
    cur = {"x": numbers(rng.normal(0.5, 1, size=N)), "y": numbers(rng.normal(0.5, 1, size=N))}
    report = compare(ref, cur, {"x": Threshold(psi=None, ks=0.5)})
    assert report.drifted == ["y"]
    x = report["x"]
    assert x.status == "ok"
    psi_metric = x.metric("psi")
    assert psi_metric is not None and psi_metric.level == "info" and psi_metric.note == "no threshold"
    # the chi-square test decides only when asked to
    rng = np.random.default_rng(1)
    c_ref, c_cur = categories(rng, [0.5, 0.3, 0.15, 0.05]), categories(rng, [0.45, 0.33, 0.16, 0.06])
    assert compare({"c": c_ref}, {"c": c_cur}).drifted == []
    strict = compare({"c": c_ref}, {"c": c_cur}, {"c": Threshold(chi2_pvalue=0.01)})["c"]
    assert strict.tripped == ("chi2_pvalue",)


def test_null_fraction_change_drifts() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=N)
    holes = values.copy()
    holes[: N // 10] = np.nan
    result = compare({"x": numbers(values)}, {"x": numbers(holes)})["x"]
    assert result.tripped == ("null_fraction",)
    assert result.value("null_fraction") == pytest.approx(0.1)


def test_too_few_values_are_measured_but_do_not_decide() -> None:
    rng = np.random.default_rng(0)
    result = compare({"x": numbers(rng.normal(size=50))}, {"x": numbers(rng.normal(3.0, 1, size=50))})["x"]
    assert result.status == "skipped" and not result.drifted
    assert result.value("ks") > 0.5
    assert "fewer than 100" in result.note
    assert compare({"x": numbers(rng.normal(size=50))}, {"x": numbers(rng.normal(3.0, 1, size=50))},
                   default=Threshold(min_count=20)).drifted == ["x"]


def test_missing_features_kind_changes_and_unknown_thresholds() -> None:
    ref = column_stats(pl.DataFrame({"a": [1.0] * 200, "b": ["x"] * 200, "gone": [1] * 200}))
    cur = column_stats(pl.DataFrame({"a": [1.0] * 200, "b": [1.0] * 200, "new": [1] * 200}))
    report = compare(ref, cur)
    assert [f.name for f in report.features] == ["a", "b", "gone", "new"]
    assert report["gone"].status == "skipped" and report["gone"].note == "not in the current data"
    assert report["new"].note == "not in the reference"
    assert report["b"].drifted and report["b"].tripped[0] == "kind"
    with pytest.raises(MonitoringError, match="unknown feature\\(s\\) 'typo'"):
        compare(ref, cur, {"typo": Threshold()})


def test_timestamps_are_compared_on_missing_values_only() -> None:
    ref = column_stats(pl.DataFrame({"t": pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 2), "1m",
                                                             eager=True)}))
    cur = column_stats(pl.DataFrame({"t": pl.datetime_range(pl.datetime(2026, 3, 1), pl.datetime(2026, 3, 2), "1m",
                                                             eager=True)}))
    result = compare(ref, cur)["t"]
    assert result.status == "ok" and [m.name for m in result.metrics] == ["null_fraction"]


def test_threshold_validation_and_round_trip() -> None:
    with pytest.raises(MonitoringError, match="psi must be a number >= 0"):
        Threshold(psi=-1)
    with pytest.raises(MonitoringError, match="psi_warn"):
        Threshold(psi=0.1, psi_warn=0.2)
    with pytest.raises(MonitoringError, match="ks is a fraction"):
        Threshold(ks=2)
    with pytest.raises(MonitoringError, match="unknown threshold field\\(s\\) pis"):
        Threshold.from_dict({"pis": 0.3})
    t = Threshold(psi=0.3, js=None, min_count=10)
    assert Threshold.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_report_dict_round_trip_and_summary() -> None:
    rng = np.random.default_rng(0)
    ref = {"steady": numbers(rng.normal(size=N)), "moved": numbers(rng.normal(size=N))}
    cur = {"steady": numbers(rng.normal(size=N)), "moved": numbers(rng.normal(1.0, 1, size=N))}
    report = compare(ref, cur)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["drifted"] == ["moved"]
    assert data["features"][1]["metrics"]["psi"]["level"] == "drift"
    assert DriftReport.from_dict(data) == report
    lines = report.summary().splitlines()
    assert lines[0].split()[:3] == ["feature", "kind", "status"]
    assert lines[2].startswith("moved") and "DRIFT" in lines[2] and "psi, ks" in lines[2]
    assert lines[3].startswith("steady") and " ok " in lines[3]
    assert lines[-1] == "2 features: 1 drifted, 0 warning, 1 ok, 0 skipped"


# --- the HTML report ----------------------------------------------------------------------------------------


class TagChecker(HTMLParser):
    """Fails on unbalanced tags; records SVGs and text."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svgs += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def drift_inputs() -> tuple[dict[str, ColumnStats], dict[str, ColumnStats]]:
    rng = np.random.default_rng(11)
    evil = "<script>alert('x')</script>"

    def frame(shift: float, mix: list[float]) -> pl.DataFrame:
        return pl.DataFrame({
            "amount": rng.lognormal(3 + shift, 0.5, 2000),
            "country": rng.choice(["US", "DE", evil, "FR"], p=mix, size=2000),
            "flag": rng.random(2000) < 0.1,
            "when": pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1, 0, 33, 19), "1s", eager=True),
            "<b>odd & name</b>": rng.normal(size=2000),
            "blank": pl.Series([None] * 2000, dtype=pl.Float64),
        })

    ref = column_stats(frame(0.0, [0.5, 0.3, 0.1, 0.1]))
    cur = column_stats(frame(0.3, [0.3, 0.3, 0.2, 0.2]).drop("flag"))
    return ref, cur


def test_html_report_has_one_plot_per_feature_and_parses() -> None:
    ref, cur = drift_inputs()
    report = compare(ref, cur)
    page = html_report(report, ref, cur, "fraud_v1 & friends", reference_label="training set",
                       current_label="last week")
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    assert checker.svgs == len(report.features) == 6
    assert page.count("<svg") == 6
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>fraud_v1 &amp; friends</title>" in page
    # self-contained: no scripts, no external files
    assert "<script" not in page
    for needle in ("src=", "http://", "https://", "@import", "url("):
        assert needle not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # drifted features come first, in the summary and in the cards
    first = report.ordered()[0]
    assert first.drifted
    assert page.index('id="f0"') < page.index(f"<h3>{first.name}</h3>")


def test_html_report_escapes_data() -> None:
    ref, cur = drift_inputs()
    page = html_report(compare(ref, cur), ref, cur, "<i>title</i>")
    assert "<script>" not in page and "alert(" not in page.replace("alert(&#x27;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>odd" not in page and "&lt;b&gt;odd &amp; name&lt;/b&gt;" in page
    assert "<i>title</i>" not in page
    text = "".join(_texts(page))
    assert "<script>alert('x')</script>" in text  # shown to the reader as text


def test_html_report_plots_both_sides() -> None:
    ref, cur = drift_inputs()
    page = html_report(compare(ref, cur), ref, cur, "t")
    assert page.count('class="ref-fill"') >= 2 and page.count('class="cur-fill"') >= 2  # histograms
    assert page.count('class="ref-bar"') >= 4 and page.count('class="cur-bar"') >= 4  # category bars
    assert "no values to plot" in page  # the all-null column
    assert "current data has no column" in page  # the dropped column


def _texts(page: str) -> list[str]:
    checker = TagChecker()
    checker.feed(page)
    return checker.text


def test_an_all_null_column_read_without_a_type_is_not_a_kind_change() -> None:
    ref = column_stats(pl.DataFrame({"a": [1.0, 2.0] * 100}))
    cur = column_stats(pl.DataFrame({"a": pl.Series([None] * 200)}))
    assert cur["a"].kind == "other"
    result = compare(ref, cur)["a"]
    assert result.tripped == ("null_fraction",)
    assert result.value("null_fraction") == 1.0
