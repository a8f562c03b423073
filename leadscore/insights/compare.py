"""A/B comparison of sales strategies: one deal attribute, its groups against a baseline.

A manager tries a playbook, a script, a campaign or a team split and asks whether it
works. :func:`compare_groups` answers per group of one cut (any cut of
:mod:`leadscore.insights.facts`, custom attributes too) on five metrics
(:data:`COMPARE_METRICS`): the win rate and the cycle length of the deals *closed* in
the window, and the stage conversions of the cohort *created* in it, each against the
baseline group (by default the largest, by deals in the comparison; never UNKNOWN
unless it is the only one).

For each group and metric: the value with the deals behind it (``numerator`` and
``denominator`` as in :func:`~leadscore.insights.funnel.funnel_metrics`; for the cycle
both are the won deals it is the median of), and against the baseline:

* **rates**: the difference (risk difference, in points: 0.05 is 5 points) with
  Newcombe's 95% interval (from the two Wilson intervals: honest on small counts, unlike
  the normal one), Cohen's h as the effect size and the odds ratio (Haldane's 0.5 added
  to every cell when one is 0), and a p-value from Fisher's exact test when a cell of
  the 2x2 table expects fewer than 5 deals, else the two-proportion z-test (Pearson's
  chi-square without continuity correction, the same p);
* **cycle length**: the Hodges-Lehmann shift (median of the differences between a deal
  of the group and one of the baseline; the difference of medians when the two spreads
  have the same shape) with its Mann-Whitney interval (normal approximation), the
  rank-biserial correlation as effect (P(longer) - P(shorter), -1 to 1) and the
  Mann-Whitney U test's p-value.

Each group is one more test against the baseline, so the p-values of a metric are
corrected for the number of groups compared by Holm's method (``p_adjusted``;
``significant`` is ``p_adjusted < 0.05``). The ``overall`` frame asks whether any group
differs at all: Pearson's chi-square across every group for a rate, Kruskal-Wallis for
the cycle.

Below ``min_deals`` deals behind a group's value, the value is shown but nothing is
concluded: no difference, interval, effect or p-value, and ``missing`` says "not enough
deals yet" with the count (the baseline's shortage stops every comparison of the metric).

**Lead quality.** A strategy given the better leads wins more whatever it does. With
``predicted`` (each deal's win probability at creation from the champion model,
:mod:`leadscore.priority.at_creation`), the groups' mean predicted probabilities over
the deals in the comparison are compared the same way (Welch's t-test and interval,
Holm; Welch's ANOVA overall), and a warning names every group whose leads differ from
the baseline's significantly and by at least ``quality_threshold`` (5 points).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from leadscore.features.featurize import normalise_category
from leadscore.insights.facts import (
    ALL,
    DAY_US,
    MIN_DEALS,
    OPPORTUNITY_STAGE,
    QUALIFIED_STAGE,
    SIZE_BAND,
    UNKNOWN,
    Facts,
    Scope,
    to_records,
)
from leadscore.insights.funnel import FUNNEL_METRICS, METRIC_NEEDS

#: What each compared metric is. The funnel's names mean the same thing here.
COMPARE_METRICS: dict[str, str] = {
    "win_rate": "Won among the deals closed in the period.",
    "sales_cycle_days": FUNNEL_METRICS["sales_cycle_days"],
    "lead_to_opportunity": FUNNEL_METRICS["lead_to_opportunity"],
    "opportunity_to_qualified": FUNNEL_METRICS["opportunity_to_qualified"],
    "qualified_to_win": f"Won among the deals created in the period that reached "
    f"'{QUALIFIED_STAGE}' or later and have closed (open ones are not decided yet).",
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "win_rate": ("deals.closed_at",),
    "qualified_to_win": ("deals.created_at", "stage_history"),
    **{m: METRIC_NEEDS[m] for m in COMPARE_METRICS if m in METRIC_NEEDS},
}
#: Two-sided level of every interval and test.
ALPHA = 0.05
_Z = float(stats.norm.ppf(1 - ALPHA / 2))
#: A difference in mean predicted win probability (0.05: 5 points) from which, when it is
#: significant, outcomes may reflect the leads rather than the strategy.
QUALITY_THRESHOLD = 0.05
#: The :attr:`Comparison.overall` metric of the lead-quality check.
PREDICTED = "predicted_win_probability"
#: The words of the minimum sample (the page and the CLI show them).
NOT_ENOUGH = "not enough deals yet"
#: How the p-values are corrected, in words.
CORRECTION = (
    "Holm's method over the groups compared with the baseline, per metric; "
    f"significant: adjusted p < {ALPHA:g}"
)
GROUP_COLUMNS: tuple[str, ...] = (
    "metric",
    "unit",
    "is_baseline",
    "value",
    "numerator",
    "denominator",
    "difference",
    "ci_low",
    "ci_high",
    "effect",
    "effect_measure",
    "odds_ratio",
    "test",
    "p_value",
    "p_adjusted",
    "significant",
    "missing",
)


class Predictions(Protocol):
    """Win probabilities at creation for the lead-quality check, and where they come from
    (:class:`leadscore.priority.at_creation.AtCreation` is one: scoring needs a model,
    which insights never load)."""

    @property
    def probabilities(self) -> pd.Series | None: ...  # by deal_id; None: none computed

    @property
    def model(self) -> Mapping[str, str] | None: ...  # which model gave them: name, version, gate

    @property
    def skipped(self) -> str | None: ...  # why there are none


@dataclass(frozen=True)
class Comparison:
    """The answer of :func:`compare_groups`; :meth:`to_records` makes it JSON."""

    by: str
    start: pd.Timestamp
    end: pd.Timestamp
    #: The group every other is compared with (None: no deals in the period).
    baseline: str | None
    min_deals: int
    #: One row per group and metric: ``<by>`` and :data:`GROUP_COLUMNS`.
    groups: pd.DataFrame
    #: One row per metric: the test across every group with enough deals.
    overall: pd.DataFrame
    #: One row per group: mean predicted win probability at creation, against the
    #: baseline's (None: no predictions given, :attr:`lead_quality_skipped` says why).
    lead_quality: pd.DataFrame | None = None
    warnings: tuple[str, ...] = ()
    lead_quality_skipped: str | None = "no predicted win probabilities given"
    #: Which model gave the predictions (set by whoever loaded it): its ``name``,
    #: ``version`` and ``gate`` standing, for the reader's language to word.
    lead_quality_model: Mapping[str, str] | None = None
    definitions: dict[str, str] = field(default_factory=lambda: dict(COMPARE_METRICS))

    def to_records(self) -> dict[str, Any]:
        """Everything as JSON-ready values, frames as lists of rows (a page section's input)."""
        return {
            "by": self.by,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "baseline": self.baseline,
            "min_deals": self.min_deals,
            "correction": CORRECTION,
            "definitions": self.definitions,
            "groups": to_records(self.groups),
            "overall": to_records(self.overall),
            "lead_quality": None if self.lead_quality is None else to_records(self.lead_quality),
            "lead_quality_model": None
            if self.lead_quality_model is None
            else dict(self.lead_quality_model),
            "lead_quality_skipped": self.lead_quality_skipped,
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------- statistics
def wilson_interval(x: float, n: float, z: float = _Z) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``x / n``."""
    if n <= 0:
        return math.nan, math.nan
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe_interval(x1: float, n1: float, x2: float, n2: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (his method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1)
    l2, u2 = wilson_interval(x2, n2)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def rate_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, str]:
    """p-value of "the two rates are equal" and the test that gave it: Fisher's exact
    when a cell expects fewer than 5 deals (the chi-square's approximation fails
    there), else the two-proportion z-test."""
    table = np.array([[x1, n1 - x1], [x2, n2 - x2]], dtype=np.int64)
    expected = table.sum(axis=1)[:, None] * table.sum(axis=0)[None, :] / table.sum()
    if (expected < 5).any():
        return float(stats.fisher_exact(table).pvalue), "fisher_exact"
    return float(stats.chi2_contingency(table, correction=False).pvalue), "two_proportion_z"


def odds_ratio(x1: int, n1: int, x2: int, n2: int) -> float:
    """Sample odds ratio of group 1 against group 2 (0.5 added to each cell if one is 0)."""
    a, b, c, d = (float(v) for v in (x1, n1 - x1, x2, n2 - x2))
    if min(a, b, c, d) == 0:
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    return (a * d) / (b * c)


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h: the difference of arcsine-transformed proportions (0.2 small, 0.5
    medium, 0.8 large), comparable near 0 and near 1 where points are not."""
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def hodges_lehmann(a: np.ndarray, b: np.ndarray, z: float = _Z) -> tuple[float, float, float]:
    """Shift of ``a`` over ``b``: the median of all differences ``a_i - b_j``, and its
    interval from the Mann-Whitney distribution (normal approximation; NaN when the
    samples are too small for one)."""
    diffs = np.sort((a[:, None] - b[None, :]).ravel())
    n1, n2 = len(a), len(b)
    k = math.floor(n1 * n2 / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    if k < 1:
        return float(np.median(diffs)), math.nan, math.nan
    return float(np.median(diffs)), float(diffs[k - 1]), float(diffs[len(diffs) - k])


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of the p-values (NaN: not tested, left out)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


# ---------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class _Sample:
    """One metric's deals: each deal's group and its outcome (converted, or days)."""

    metric: str
    group: np.ndarray
    outcome: np.ndarray

    @property
    def is_rate(self) -> bool:
        return self.metric != "sales_cycle_days"

    def of(self, group: str) -> np.ndarray:
        return self.outcome[self.group == group]


def _samples(facts: Facts, s: Scope, by: str) -> list[_Sample]:
    """Each metric's deals in the window, by the rules of :data:`COMPARE_METRICS`."""
    d = facts.deals
    label = s.labels[by].to_numpy(dtype=object)
    created = s.bucket(d["created_us"].to_numpy()) == 0
    closed = s.bucket(d["closed_us"].to_numpy()) == 0
    won, lost = d["won"].to_numpy(), d["lost"].to_numpy()
    opp, qual = facts.reached(OPPORTUNITY_STAGE), facts.reached(QUALIFIED_STAGE)
    days = (d["closed_us"] - d["created_us"]).to_numpy() / DAY_US
    rows = {
        "win_rate": (closed, won),
        "sales_cycle_days": (closed & won & ~np.isnan(days), days),
        "lead_to_opportunity": (created, opp),
        "opportunity_to_qualified": (created & opp, qual),
        "qualified_to_win": (created & qual & (won | lost), won),
    }
    return [_Sample(m, label[keep], np.asarray(v)[keep]) for m, (keep, v) in rows.items()]


def _label(by: str, value: str) -> str:
    """A baseline as the manager typed it, as :func:`cut_labels` labels it."""
    if by == SIZE_BAND or by.endswith("_id"):
        return value.strip()
    normal = normalise_category(pd.Series([value], dtype=object)).iloc[0]
    return UNKNOWN if pd.isna(normal) else str(normal)


def compare_groups(
    facts: Facts,
    by: str,
    start: Any,
    end: Any,
    *,
    baseline: str | None = None,
    min_deals: int = MIN_DEALS,
    predicted: pd.Series | None = None,
    quality_threshold: float = QUALITY_THRESHOLD,
    at_creation: Predictions | None = None,
) -> Comparison:
    """The groups of cut ``by`` compared on :data:`COMPARE_METRICS` in ``[start, end)``.

    ``baseline`` is a value of the cut (as typed; normalised as the cut is), by default
    the group with the most deals in the comparison. ``predicted``: win probabilities at
    creation by ``deal_id``, for the lead-quality check (module doc); or ``at_creation``,
    which also says which model gave them, or why there are none. Raises
    :class:`~leadscore.insights.facts.CutUnavailable` for a cut the export lacks and
    ``ValueError`` for a baseline no deal of the window has.
    """
    s = Scope.of(facts, start, end, [by], "period", min_deals)
    (name,) = s.by
    samples = _samples(facts, s, name)
    # Every deal once: a deal counted by several metrics is still one deal.
    deal_groups = _deal_groups(s, name)
    order = _group_order(s, deal_groups.dropna().drop_duplicates())
    base = _baseline(name, baseline, deal_groups, order)
    window = (s.edges[0], s.edges[-1])
    if base is None:
        empty = pd.DataFrame(columns=[name, *GROUP_COLUMNS])
        return Comparison(
            name, *window, None, min_deals, empty, _overall(facts, samples, [], min_deals)
        )
    order = [base, *(g for g in order if g != base)]
    parts = [_metric_rows(facts, x, order, base, min_deals) for x in samples]
    groups = pd.concat(parts, ignore_index=True).rename(columns={"group": name})
    overall = _overall(facts, samples, order, min_deals)
    out = Comparison(name, *window, base, min_deals, groups, overall)
    if at_creation is not None:
        predicted = at_creation.probabilities
        out = replace(out, lead_quality_model=at_creation.model)
        if at_creation.skipped is not None:
            out = replace(out, lead_quality_skipped=at_creation.skipped)
    if predicted is None:
        return out
    quality, warnings, across = lead_quality(
        deal_groups, facts.deals["deal_id"], predicted, order, base, min_deals, quality_threshold
    )
    return replace(
        out,
        overall=pd.concat([overall, across], ignore_index=True),
        lead_quality=quality.rename(columns={"group": name}),
        warnings=warnings,
        lead_quality_skipped=None,
    )


def _compared(s: Scope) -> np.ndarray:
    """Deals a comparison counts: created or closed in the window."""
    d = s.facts.deals
    return (s.bucket(d["created_us"].to_numpy()) == 0) | (s.bucket(d["closed_us"].to_numpy()) == 0)


def compared_deals(facts: Facts, start: Any, end: Any) -> list[str]:
    """The ids of the deals a comparison of ``[start, end)`` counts (those to score for
    the lead-quality check): created or closed in the window."""
    s = Scope.of(facts, start, end, [], "period", MIN_DEALS)
    return facts.deals["deal_id"][_compared(s)].astype(str).tolist()


def _deal_groups(s: Scope, by: str) -> pd.Series:
    """Each deal's group when the comparison counts it (NaN: outside the window)."""
    return s.labels[by].where(_compared(s))


def _group_order(s: Scope, seen: pd.Series) -> list[str]:
    """The groups in the order every insight lists them (size bands by size, UNKNOWN last)."""
    (name,) = s.by
    grid = s.grid(pd.DataFrame({name: seen.to_numpy()}))
    return [g for g in grid[name].tolist() if g != ALL]


def _baseline(by: str, asked: str | None, deal_groups: pd.Series, order: list[str]) -> str | None:
    """The group asked for (as :func:`cut_labels` labels it), else the one with the most
    deals in the comparison, UNKNOWN only when it is the only group."""
    if asked is not None:
        label = _label(by, asked)
        if label not in order:
            raise ValueError(
                f"no deal of the period has {by} {asked!r} (groups: {', '.join(order) or 'none'})"
            )
        return label
    counts = deal_groups.value_counts()
    known = [g for g in order if g != UNKNOWN] or order
    return max(known, key=lambda g: int(counts.get(g, 0)), default=None)


def _short(n: int, min_deals: int, base: str | None = None) -> str:
    """The minimum-sample message: a group's, or the baseline's (``base``) for the others."""
    of = f" in the baseline {base}" if base is not None else ""
    return f"{NOT_ENOUGH}{of}: {n} of the {min_deals} needed"


def _metric_rows(
    facts: Facts, x: _Sample, order: list[str], base: str, min_deals: int
) -> pd.DataFrame:
    """One metric's row per group (``order``, baseline first)."""
    unavailable = facts.missing(_NEEDS[x.metric])
    ref = x.of(base)
    rows: list[dict[str, Any]] = []
    for g in order:
        mine = x.of(g)
        n = len(mine)
        row: dict[str, Any] = {
            "group": g,
            "metric": x.metric,
            "unit": "share" if x.is_rate else "days",
            "is_baseline": g == base,
            "effect_measure": "cohens_h" if x.is_rate else "rank_biserial",
            "missing": None,
        }
        if unavailable:
            row["missing"] = unavailable
        else:
            row["numerator"] = float(mine.sum()) if x.is_rate else float(n)
            row["denominator"] = float(n)
            if n:
                row["value"] = float(mine.mean()) if x.is_rate else float(np.median(mine))
            if n < min_deals:
                row["missing"] = _short(n, min_deals)
            elif len(ref) < min_deals:
                row["missing"] = _short(len(ref), min_deals, base)
            elif g != base:
                row.update(_rate_against(mine, ref) if x.is_rate else _cycle_against(mine, ref))
        rows.append(row)
    return _adjusted(pd.DataFrame(rows).reindex(columns=["group", *GROUP_COLUMNS]), "significant")


def _adjusted(frame: pd.DataFrame, flag: str) -> pd.DataFrame:
    """``frame`` with Holm's ``p_adjusted`` of its ``p_value`` and ``flag``: adjusted p
    below :data:`ALPHA` (None where nothing was tested)."""
    frame["p_adjusted"] = holm(frame["p_value"].to_numpy(dtype=np.float64))
    tested = frame["p_adjusted"].notna().to_numpy()
    below = (frame["p_adjusted"] < ALPHA).to_numpy()
    frame[flag] = np.where(tested, below, None)
    return frame


def _rate_against(mine: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    x1, n1, x2, n2 = int(mine.sum()), len(mine), int(ref.sum()), len(ref)
    low, high = newcombe_interval(x1, n1, x2, n2)
    p, test = rate_test(x1, n1, x2, n2)
    return {
        "difference": x1 / n1 - x2 / n2,
        "ci_low": low,
        "ci_high": high,
        "effect": cohens_h(x1 / n1, x2 / n2),
        "odds_ratio": odds_ratio(x1, n1, x2, n2),
        "test": test,
        "p_value": p,
    }


def _cycle_against(mine: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    shift, low, high = hodges_lehmann(mine, ref)
    result = stats.mannwhitneyu(mine, ref, alternative="two-sided")
    return {
        "difference": shift,
        "ci_low": low,
        "ci_high": high,
        "effect": 2 * float(result.statistic) / (len(mine) * len(ref)) - 1,
        "test": "mann_whitney",
        "p_value": float(result.pvalue),
    }


#: Columns of :attr:`Comparison.overall`.
OVERALL_COLUMNS = ("metric", "test", "groups", "dof", "statistic", "p_value", "missing")


def _overall(
    facts: Facts, samples: list[_Sample], order: list[str], min_deals: int
) -> pd.DataFrame:
    """Per metric, whether any group with enough deals differs from the others."""
    rows = []
    for x in samples:
        enough = [part for part in (x.of(g) for g in order) if len(part) >= min_deals]
        row: dict[str, Any] = {"metric": x.metric, "groups": len(enough), "missing": None}
        unavailable = facts.missing(_NEEDS[x.metric])
        if unavailable:
            row["missing"] = unavailable
        elif len(enough) < 2:
            row["missing"] = f"{NOT_ENOUGH}: fewer than two groups with {min_deals} deals"
        else:
            row["dof"] = len(enough) - 1
            row.update(_across(enough, x.is_rate))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(OVERALL_COLUMNS))


def _across(parts: list[np.ndarray], is_rate: bool) -> dict[str, Any]:
    """Pearson's chi-square (rates) or Kruskal-Wallis (days) across ``parts``; groups that
    are all alike (every deal converted, or none; one duration) differ by nothing: p 1."""
    if is_rate:
        table = np.array([[p.sum(), len(p) - p.sum()] for p in parts], dtype=np.int64)
        if (table.sum(axis=0) == 0).any():
            return {"test": "chi_square", "statistic": 0.0, "p_value": 1.0}
        chi = stats.chi2_contingency(table, correction=False)
        return {
            "test": "chi_square",
            "statistic": float(chi.statistic),
            "p_value": float(chi.pvalue),
        }
    if len(np.unique(np.concatenate(parts))) < 2:
        return {"test": "kruskal_wallis", "statistic": 0.0, "p_value": 1.0}
    kw = stats.kruskal(*parts)
    return {"test": "kruskal_wallis", "statistic": float(kw.statistic), "p_value": float(kw.pvalue)}


# ---------------------------------------------------------------- lead quality
def lead_quality(
    deal_groups: pd.Series,
    deal_ids: pd.Series,
    predicted: pd.Series | Mapping[str, float],
    order: list[str],
    base: str,
    min_deals: int = MIN_DEALS,
    threshold: float = QUALITY_THRESHOLD,
) -> tuple[pd.DataFrame, tuple[str, ...], pd.DataFrame]:
    """Per group, the mean predicted win probability at creation of its deals against the
    baseline's (Welch's t-test and interval, Holm), the warnings it calls for, and the
    :attr:`Comparison.overall` row of Welch's ANOVA across the groups.

    ``deal_groups``: each deal's group (NaN: not in the comparison), positionally with
    ``deal_ids``; ``predicted``: probabilities by deal id (a deal without one is left out).
    """
    p = pd.Series(predicted, dtype=np.float64)
    probs = deal_ids.astype(str).map(p).to_numpy(dtype=np.float64)
    groups = deal_groups.to_numpy(dtype=object)
    scored = ~np.isnan(probs) & pd.notna(groups)
    ref = probs[scored & (groups == base)]
    rows: list[dict[str, Any]] = []
    for g in order:
        mine = probs[scored & (groups == g)]
        row: dict[str, Any] = {
            "group": g,
            "is_baseline": g == base,
            "deals": len(mine),
            "mean_predicted": float(mine.mean()) if len(mine) else math.nan,
            "missing": None,
        }
        if len(mine) < min_deals:
            row["missing"] = _short(len(mine), min_deals)
        elif len(ref) < min_deals:
            row["missing"] = _short(len(ref), min_deals, base)
        elif g != base:
            t = stats.ttest_ind(mine, ref, equal_var=False)
            ci = t.confidence_interval(1 - ALPHA)
            row.update(
                difference=float(mine.mean() - ref.mean()),
                ci_low=float(ci.low),
                ci_high=float(ci.high),
                test="welch_t",
                p_value=float(t.pvalue),
            )
        rows.append(row)
    columns = ["group", "is_baseline", "deals", "mean_predicted", "difference", "ci_low"]
    columns += ["ci_high", "test", "p_value", "p_adjusted", "significant", "differs", "missing"]
    out = _adjusted(pd.DataFrame(rows).reindex(columns=columns), "significant")
    differs = out["significant"].eq(True) & (out["difference"].abs() >= threshold)
    out["differs"] = np.where(out["significant"].notna(), differs, None)
    warnings = tuple(
        f"lead quality differs: the deals of {r['group']} had a mean predicted win probability "
        f"at creation of {r['mean_predicted']:.0%} against {float(ref.mean()):.0%} for {base} "
        f"({r['difference'] * 100:+.1f} points, Holm-adjusted p = {r['p_adjusted']:.3g}); a "
        "difference in outcomes may come from the leads, not the strategy"
        for r in out[differs.to_numpy(dtype=bool)].to_dict(orient="records")
    )
    enough = [probs[scored & (groups == g)] for g in order]
    enough = [e for e in enough if len(e) >= min_deals]
    across: dict[str, Any] = {"metric": PREDICTED, "groups": len(enough), "missing": None}
    if len(enough) < 2:
        across["missing"] = f"{NOT_ENOUGH}: fewer than two groups with {min_deals} scored deals"
    else:
        welch = stats.f_oneway(*enough, equal_var=False)
        across.update(
            test="welch_anova",
            dof=len(enough) - 1,
            statistic=float(welch.statistic),
            p_value=float(welch.pvalue),
        )
    return out, warnings, pd.DataFrame([across]).reindex(columns=list(OVERALL_COLUMNS))
