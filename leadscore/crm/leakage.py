"""The leakage audit: input columns that look known only after a deal's outcome.

A CRM export holds each field's *last* value. A field filled in when a deal is won or
lost (a loss reason, a final discount, days spent in the last stage) looks like a
superb predictor in training and is useless, or worse, on an open deal. Nothing in an
export says when a value was written, so the audit looks for the traces such fields
leave in the stored tables, on every import and every training run:

* ``only_closed`` / ``only_open``: present (non-missing) for nearly every closed deal
  and nearly no open one, or the reverse: the field is filled in at the outcome;
* ``constant_within_outcome``: one value (missing counts as a value) for nearly every
  deal of one outcome while the other outcome varies: zero for every lost deal;
* ``after_close_time``: a date that lies on or after the day of ``closed_at`` for most
  closed deals;
* ``single_column_auc``: the column alone separates won from lost closed deals with a
  ROC AUC of 0.95 or more. Numbers are ranked as they are; a category is scored by its
  win rate *out of fold* (learned on the other folds), so a column of unique ids,
  whose every value is unseen out of fold, scores 0.5 instead of a memorised 1.0;
* ``decisive_values``: values of a category that (nearly) decide the outcome, won 95%
  or 5% of the time or less, cover a quarter of the closed deals: a sales team's status
  note, whose AUC alone can stay under 0.95 because a third of the deals have none;
* ``named_after_outcome``: an extra column whose name speaks of the outcome or of the
  finished sales process (close, won/lost, elapsed days, days in stage, stage changes,
  total days). Tables of closed deals only, without dates (a flat win/loss table),
  leave the value rules nothing to compare, yet summaries of the finished sales cycle
  are the classic leak there; contract columns have fixed, known names and are exempt.

With too few closed deals of either outcome, or no open deal, the rules that need them
say they could not judge (:attr:`LeakageAudit.not_judged`); a thin table never passes
silently. Ids (``deal_id``, ``account_id``), ``status``, ``created_at`` (the time axis)
and ``closed_at`` (the outcome's own time) are not audited, nor attributes declared
``after_close`` (never features). A flagged column is excluded from training unless its
:class:`~leadscore.crm.attributes.Attribute` says ``keep`` with a written reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from leadscore.crm.attributes import Attribute
from leadscore.crm.contract import ACCOUNTS, CLOSED_STATUSES, DEALS, OPEN, WON

#: Columns that are not features: keys, the outcome and its time, the time axis.
NOT_AUDITED: dict[str, frozenset[str]] = {
    "deals": frozenset({"deal_id", "account_id", "status", "closed_at", "created_at"}),
    "accounts": frozenset({"account_id"}),
}
#: The model features each contract column feeds (``excluded_features``). Columns of the
#: contract missing here feed none (``stage``: stage features come from stage_history;
#: ``currency``; ``accounts.created_at``). A test keeps every name in the feature catalog.
FEATURES_OF_COLUMN: dict[tuple[str, str], tuple[str, ...]] = {
    ("deals", "amount"): ("amount", "log_amount"),
    ("deals", "channel"): ("channel",),
    ("deals", "product"): ("product",),
    ("deals", "competitor"): ("competitor",),
    ("deals", "owner_id"): ("owner_prior_won", "owner_prior_closed", "owner_prior_win_rate"),
    ("accounts", "industry"): ("industry",),
    ("accounts", "region"): ("region",),
    ("accounts", "employee_count"): ("employee_count",),
    ("accounts", "annual_revenue"): ("annual_revenue",),
}

#: Fewest won and fewest lost deals (with a value, for the AUC) before outcome rules judge.
MIN_OUTCOME_DEALS = 30
#: Fewest open and fewest closed deals before the presence rules judge.
MIN_PRESENCE_DEALS = 30
#: Presence rules: present for at least this share of one group, at most 1 - it of the other.
PRESENT_SHARE = 0.98
#: Constant within an outcome: one value for at least this share of that outcome's deals ...
CONSTANT_SHARE = 0.98
#: ... and for at most this share of the other outcome's deals.
OTHER_SHARE_MAX = 0.80
#: After close: share of closed deals with the date on or after the day they closed.
AFTER_CLOSE_SHARE = 0.5
#: Text values that must parse as dates for a text column to count as datetime-like.
DATE_PARSE_SHARE = 0.95
#: Single-column ROC AUC (either direction) at or above which a column is flagged.
AUC_MAX = 0.95
#: Folds of the out-of-fold category win rate, its smoothing weight (deals of prior) and seed.
AUC_FOLDS = 5
AUC_PRIOR_WEIGHT = 10.0
AUC_SEED = 0

#: A value *decides* the outcome when deals with it (at least DECISIVE_MIN_DEALS) win at
#: most DECISIVE_RATE or at least 1 - DECISIVE_RATE of the time, with 95% confidence
#: (the Wilson bound of the rate, not the rate itself); a categorical column
#: whose deciding values cover DECISIVE_SHARE of the closed deals is flagged. A sales
#: team's status note ("Will revert after reading the email": 97% won; "Ringing": 3%) is
#: written while and after the outcome is settled; honest categories (a lead source, an
#: industry) shift the odds without deciding them for a quarter of all deals.
DECISIVE_RATE = 0.05
DECISIVE_MIN_DEALS = 20
DECISIVE_SHARE = 0.25

#: Words that speak of the outcome or the finished sales process, and how they read.
_OUTCOME_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), meaning)
    for pattern, meaning in (
        (r"\bclos(e|ed|es|ing|ure)\b", "the close"),
        (r"\b(won|lost|loss|losses|outcome|result)\b", "the outcome"),
        (r"\belapsed\b", "time elapsed"),
        (r"\b(days?|time|duration) in (the )?(sales )?stage\b", "time spent in a stage"),
        (r"\bstage (change|changes|count|duration|age)\b", "stage changes"),
        # "total days" / "total time to close", not "total time spent on the website".
        (
            r"\btotal (days|duration)\b|\btotal time (in|to|through|until)\b",
            "the total length of the sales cycle",
        ),
        (r"\b(sales )?cycle (length|days|time)\b", "the length of the sales cycle"),
        (r"(成交|赢单|输单|丢单|结单|关单|成单|关闭|结果)", "the outcome"),
    )
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Finding:
    """One column flagged by one rule, with the numbers that flagged it."""

    table: str
    column: str
    #: "only_closed" | "only_open" | "constant_within_outcome" | "after_close_time"
    #: | "single_column_auc" | "decisive_values" | "named_after_outcome"
    rule: str
    #: One plain sentence with the numbers.
    evidence: str


@dataclass(frozen=True)
class LeakageAudit:
    """What the audit flagged, what the mapping keeps anyway, and what it could not judge."""

    findings: tuple[Finding, ...]
    #: Column -> the mapping's written reason to keep it (``Attribute.keep``).
    kept: Mapping[str, str] = field(default_factory=dict)
    #: Sentences naming the rules that could not be applied, and why.
    not_judged: tuple[str, ...] = ()
    #: Table -> columns audited.
    audited: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def flagged(self) -> list[str]:
        """Flagged columns, each once, in the order of their first finding."""
        return list(dict.fromkeys(f.column for f in self.findings))

    def excluded(self) -> frozenset[str]:
        """Flagged columns not kept: they must not feed the model."""
        return frozenset(c for c in self.flagged() if c not in self.kept)

    def keeping_all(self, reason: str) -> LeakageAudit:
        """The same audit with every flagged column kept for ``reason`` (mapping reasons win)."""
        return replace(self, kept={c: reason for c in self.flagged()} | dict(self.kept))

    def to_dict(self) -> dict[str, Any]:
        """The audit as JSON: findings, kept reasons, excluded columns, report lines."""
        return {
            "findings": [
                {
                    "table": f.table,
                    "column": f.column,
                    "rule": f.rule,
                    "evidence": f.evidence,
                    "kept": self.kept.get(f.column),
                }
                for f in self.findings
            ],
            "excluded_columns": sorted(self.excluded()),
            "kept": dict(self.kept),
            "not_judged": list(self.not_judged),
            "audited": {t: list(cs) for t, cs in self.audited.items()},
            "lines": self.lines(),
        }

    def lines(self) -> list[str]:
        """The audit in words, one line per flagged column, for reports and the CLI."""
        n = sum(len(cs) for cs in self.audited.values())
        flagged = self.flagged()
        out = [
            f"leakage audit: {n} column{'s' if n != 1 else ''} checked, {len(flagged)} flagged"
            + (f", {len(self.excluded())} excluded from training" if flagged else "")
        ]
        for column in flagged:
            found = [f for f in self.findings if f.column == column]
            verdict = (
                f"kept: {self.kept[column]}" if column in self.kept else "excluded from training"
            )
            out.append(f"  {found[0].table}.{column} ({verdict}):")
            out += [f"    [{f.rule}] {f.evidence}" for f in found]
        out += [f"  not judged: {s}" for s in self.not_judged]
        return out


# ---------------------------------------------------------------- statistics
def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``y`` (0/1) with ties at half credit (Mann-Whitney)."""
    ranks = pd.Series(score).rank(method="average").to_numpy()
    pos = y.astype(bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def out_of_fold_rate(
    y: np.ndarray,
    keys: pd.Series,
    folds: int = AUC_FOLDS,
    prior_weight: float = AUC_PRIOR_WEIGHT,
    seed: int = AUC_SEED,
) -> np.ndarray:
    """Each row's category win rate learned on the other folds, smoothed toward their rate.

    A category absent from the other folds gets the overall rate: a unique value
    carries no information out of fold, which is exactly what keeps ids from flagging.
    The prior is the rate of all rows, the same for every fold: a per-fold prior (the
    other folds' rate) moves against the held-out fold's own rate and would rank unseen
    values below 0.5 by itself.
    """
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    codes = pd.factorize(keys.to_numpy(), use_na_sentinel=False)[0]
    n = codes.max() + 1 if len(codes) else 0
    total_won = np.bincount(codes, weights=y, minlength=n)
    total_all = np.bincount(codes, minlength=n).astype(float)
    out = np.empty(len(y))
    prior = y.mean() if len(y) else 0.5
    for k in range(folds):
        held = fold == k
        won = total_won - np.bincount(codes[held], weights=y[held], minlength=n)
        seen = total_all - np.bincount(codes[held], minlength=n)
        out[held] = ((won + prior_weight * prior) / (seen + prior_weight))[codes[held]]
    return out


def _pct(share: float) -> str:
    return f"{share:.0%}" if 0.01 <= share <= 0.99 or share in (0.0, 1.0) else f"{share:.1%}"


def _shown(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _datetimes(values: pd.Series) -> pd.Series | None:
    """``values`` as UTC times when the column is datetime-like, else ``None``."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values):
        return None
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty or text.str.fullmatch(r"[-+]?\d+(\.\d*)?").mean() > 0.5:
        return None
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    if parsed.notna().mean() < DATE_PARSE_SHARE:
        return None
    return pd.to_datetime(
        values.astype("string").str.strip(), errors="coerce", utc=True, format="mixed"
    )


# ---------------------------------------------------------------- rules
@dataclass(frozen=True)
class _Column:
    """One audited column aligned with the deals: values, kind and name words."""

    table: str
    name: str
    values: pd.Series
    numeric: bool
    #: Name, label and source column, for the name rule; empty for contract columns.
    words: tuple[str, ...] = ()


def _present(values: pd.Series) -> np.ndarray:
    present = values.notna().to_numpy()
    if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_datetime64_any_dtype(
        values
    ):
        present &= values.astype("string").str.strip().fillna("").ne("").to_numpy()
    return present


def _presence(col: _Column, closed: np.ndarray, open_: np.ndarray) -> list[Finding]:
    present = _present(col.values)
    p_closed, p_open = present[closed].mean(), present[open_].mean()
    for rule, here, there, where, other in (
        ("only_closed", p_closed, p_open, "closed", "open"),
        ("only_open", p_open, p_closed, "open", "closed"),
    ):
        if here >= PRESENT_SHARE and there <= 1 - PRESENT_SHARE:
            n_here = int(closed.sum() if where == "closed" else open_.sum())
            n_there = int(open_.sum() if where == "closed" else closed.sum())
            return [
                Finding(
                    col.table,
                    col.name,
                    rule,
                    f"present for {_pct(here)} of {n_here:,} {where} deals but only {_pct(there)} "
                    f"of {n_there:,} {other} deals: it is filled in when the deal "
                    + ("closes." if where == "closed" else "is open and cleared at the close."),
                )
            ]
    return []


def _constant(col: _Column, y: np.ndarray) -> list[Finding]:
    present = _present(col.values)
    codes, uniques = pd.factorize(col.values.where(present), use_na_sentinel=True)
    codes = np.where(codes < 0, len(uniques), codes)  # missing: one more value
    for outcome, word, other in ((0, "lost", "won"), (1, "won", "lost")):
        mine, theirs = codes[y == outcome], codes[y != outcome]
        counts = np.bincount(mine, minlength=len(uniques) + 1)
        top = int(counts.argmax())
        share = counts[top] / len(mine)
        if share < CONSTANT_SHARE:
            continue
        other_share = float((theirs == top).mean())
        if other_share <= OTHER_SHARE_MAX:
            value = _shown(uniques[top]) if top < len(uniques) else "missing"
            return [
                Finding(
                    col.table,
                    col.name,
                    "constant_within_outcome",
                    f"{value} for {_pct(share)} of {len(mine):,} {word} deals but for only "
                    f"{_pct(other_share)} of {len(theirs):,} {other} deals.",
                )
            ]
    return []


def _after_close(col: _Column, times: pd.Series, closed_at: pd.Series) -> list[Finding]:
    both = times.notna() & closed_at.notna()
    n = int(both.sum())
    if n < MIN_OUTCOME_DEALS:
        return []
    after = times[both].dt.normalize() >= closed_at[both].dt.normalize()
    share = float(after.mean())
    if share <= AFTER_CLOSE_SHARE:
        return []
    return [
        Finding(
            col.table,
            col.name,
            "after_close_time",
            f"on or after the day the deal closed for {_pct(share)} of {n:,} closed deals with "
            "both dates.",
        )
    ]


def _wilson(rate: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial rates (vectorised): (low, high)."""
    n = np.maximum(n.astype(np.float64), 1.0)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _decisive(col: _Column, y: np.ndarray) -> list[Finding]:
    """Categories whose deals (nearly) all won or all lost, covering many closed deals."""
    if col.numeric or not len(y):
        return []
    present = _present(col.values)
    keys = col.values.astype("string").str.strip().to_numpy(dtype=object)[present]
    stats = (
        pd.DataFrame({"value": keys, "won": y[present]})
        .groupby("value")["won"]
        .agg(["size", "mean"])
    )
    # Decisive with 95% confidence (Wilson bounds), not by the luck of a small sample:
    # 3 wins in 99 deals (3%) may well be an honest 8%.
    low, high = _wilson(stats["mean"].to_numpy(), stats["size"].to_numpy())
    deciding = stats[
        (stats["size"] >= DECISIVE_MIN_DEALS)
        & ((high <= DECISIVE_RATE) | (low >= 1 - DECISIVE_RATE))
    ]
    share = float(deciding["size"].sum()) / len(y)
    if share < DECISIVE_SHARE:
        return []
    examples = "; ".join(
        f"{_shown(value)} won {_pct(row['mean'])} of {int(row['size']):,}"
        for value, row in deciding.sort_values("size", ascending=False).head(3).iterrows()
    )
    return [
        Finding(
            col.table,
            col.name,
            "decisive_values",
            f"{len(deciding):,} of its values nearly decide the outcome (won at most "
            f"{_pct(DECISIVE_RATE)} or at least {_pct(1 - DECISIVE_RATE)} of the time, with 95% "
            "confidence) and cover "
            f"{_pct(share)} of {len(y):,} closed deals: {examples}.",
        )
    ]


def _single_auc(col: _Column, y: np.ndarray) -> tuple[float, str] | None:
    """The column's ROC AUC alone (either direction) and how it was scored, in words;
    ``None`` with too few won or lost deals that have a value."""
    if col.numeric:
        values = pd.to_numeric(col.values, errors="coerce").to_numpy(np.float64)
        known = ~np.isnan(values)
        yk = y[known]
        if min(yk.sum(), len(yk) - yk.sum()) < MIN_OUTCOME_DEALS:
            return None
        auc = rank_auc(yk, values[known])
        how = f"ranked by its value on {int(known.sum()):,} closed deals"
    else:
        keys = col.values.astype("string").str.strip().fillna("(missing)")
        auc = rank_auc(y, out_of_fold_rate(y, keys))
        how = (
            f"scored by its out-of-fold win rate per value ({keys.nunique():,} values) on "
            f"{len(y):,} closed deals"
        )
    return max(auc, 1 - auc), how


def _auc(col: _Column, scored: tuple[float, str] | None) -> list[Finding]:
    if scored is None or scored[0] < AUC_MAX:
        return []
    return [
        Finding(
            col.table,
            col.name,
            "single_column_auc",
            f"alone, {scored[1]}, it separates won from lost with ROC AUC {scored[0]:.3f} "
            f"(flagged from {AUC_MAX:.2f}).",
        )
    ]


def _named(
    col: _Column, closed_only: bool, dated: bool, scored: tuple[float, str] | None
) -> list[Finding]:
    for text in col.words:
        words = _CAMEL.sub(" ", text).lower()
        plain = " ".join(re.sub(r"[^0-9a-z\u4e00-\u9fff]+", " ", words).split())
        for pattern, meaning in _OUTCOME_WORDS:
            hit = pattern.search(plain)
            if not hit:
                continue
            limits = [
                what
                for what, lacking in (("no open deal", closed_only), ("no dates", not dated))
                if lacking
            ]
            context = (
                f"; with {' and '.join(limits)} in the table its values cannot be checked "
                "against the outcome's time"
                if limits
                else ""
            )
            alone = (
                f"; alone it separates won from lost with ROC AUC {scored[0]:.3f}" if scored else ""
            )
            return [
                Finding(
                    col.table,
                    col.name,
                    "named_after_outcome",
                    f"its name {text!r} speaks of {meaning} ({hit.group(0)!r}), known only once "
                    f"the deal is over{context}{alone}.",
                )
            ]
    return []


# ---------------------------------------------------------------- the audit
def _columns(
    tables: Mapping[str, pd.DataFrame], attributes: Sequence[Attribute]
) -> tuple[list[_Column], pd.Series]:
    """Every audited column aligned with the deals rows, and which deals have an account."""
    deals = tables["deals"].reset_index(drop=True)
    declared: dict[tuple[str, str], Attribute] = {(a.table, a.name): a for a in attributes}
    contract = {"deals": set(DEALS.column_names), "accounts": set(ACCOUNTS.column_names)}
    numeric_contract = {
        c.name for t in (DEALS, ACCOUNTS) for c in t.columns if c.type in ("int", "float")
    }
    has_account = pd.Series(False, index=deals.index)
    frames = {"deals": deals}
    accounts = tables.get("accounts")
    if accounts is not None and "account_id" in deals:
        joined = deals[["account_id"]].merge(
            accounts.drop_duplicates("account_id"), on="account_id", how="left", indicator=True
        )
        has_account = pd.Series(joined.pop("_merge").eq("both").to_numpy(), index=deals.index)
        frames["accounts"] = joined.set_index(deals.index)
    out = []
    for table, frame in frames.items():
        for name in frame.columns:
            attribute = declared.get((table, name))
            if name in NOT_AUDITED[table] or (attribute and not attribute.is_feature):
                continue
            values = frame[name]
            if attribute is not None:
                numeric = attribute.kind == "numeric"
                words = tuple(w for w in (attribute.source, attribute.label, name) if w)
            elif name in contract[table]:
                numeric, words = name in numeric_contract, ()
            else:  # an undeclared extra column: numeric when every value reads as a number
                parsed = pd.to_numeric(values, errors="coerce")
                numeric = bool(parsed.notna().sum() == _present(values).sum())
                words = (name,)
            out.append(_Column(table, name, values, numeric, words))
    return out, has_account


def audit_tables(
    tables: Mapping[str, pd.DataFrame], attributes: Sequence[Attribute] = ()
) -> LeakageAudit:
    """Audit the stored ``deals`` (and ``accounts``, joined to deals) for leaked columns.

    ``tables`` maps table names to stored frames; only ``deals`` is required.
    ``attributes`` are the declared custom attributes (their kind, label, source and
    ``keep``); undeclared extra columns are audited too, numeric when all their values
    are numbers.
    """
    deals = tables["deals"].reset_index(drop=True)
    status = deals["status"].astype("string").str.strip().str.lower().fillna("")
    closed = status.isin(CLOSED_STATUSES).to_numpy()
    open_ = status.eq(OPEN).to_numpy()
    y_all = status.eq(WON).to_numpy(np.float64)
    won, lost = int((closed & (y_all == 1)).sum()), int((closed & (y_all == 0)).sum())
    closed_at = (
        _datetimes(deals["closed_at"])
        if "closed_at" in deals
        else pd.Series(pd.NaT, index=deals.index, dtype="datetime64[ns, UTC]")
    )
    assert closed_at is not None
    dated = bool(closed_at[closed].notna().any())
    columns, has_account = _columns(tables, attributes)

    not_judged = []
    judge_outcome = min(won, lost) >= MIN_OUTCOME_DEALS
    if not judge_outcome:
        not_judged.append(
            f"only {won:,} won and {lost:,} lost deals (each needs {MIN_OUTCOME_DEALS}): "
            "constant-within-outcome and single-column AUC were not checked"
        )
    judge_presence = min(int(closed.sum()), int(open_.sum())) >= MIN_PRESENCE_DEALS
    if not judge_presence:
        not_judged.append(
            f"{int(open_.sum()):,} open and {int(closed.sum()):,} closed deals (each needs "
            f"{MIN_PRESENCE_DEALS}): presence only for closed or only for open deals was not checked"
        )
    if not dated:
        not_judged.append("no closed deal has a closed_at: dates after close were not checked")

    findings: list[Finding] = []
    for col in columns:
        rows = has_account.to_numpy() if col.table == "accounts" else np.ones(len(deals), bool)
        found: list[Finding] = []
        scored = None
        if judge_presence:
            found += _presence(col, closed & rows, open_ & rows)
        if judge_outcome:
            on_closed = closed & rows
            sub = _Column(col.table, col.name, col.values[on_closed], col.numeric, col.words)
            found += _constant(sub, y_all[on_closed])
            scored = _single_auc(sub, y_all[on_closed])
            if not found:  # a column constant within an outcome has a trivially high AUC
                found += _auc(sub, scored)
            if not found:
                found += _decisive(sub, y_all[on_closed])
        if dated and not col.numeric:
            times = _datetimes(col.values)
            if times is not None:
                found += _after_close(col, times[closed & rows], closed_at[closed & rows])
        found += _named(col, closed_only=not open_.any(), dated=dated, scored=scored)
        findings += found
    kept = {
        a.name: a.keep
        for a in attributes
        if a.keep and any(f.column == a.name and f.table == a.table for f in findings)
    }
    audited: dict[str, list[str]] = {}
    for col in columns:
        audited.setdefault(col.table, []).append(col.name)
    return LeakageAudit(
        tuple(findings), kept, tuple(not_judged), {t: tuple(cs) for t, cs in audited.items()}
    )


def excluded_features(
    audit: LeakageAudit, features: Sequence[str], attributes: Sequence[Attribute] = ()
) -> list[str]:
    """The model features, among ``features``, fed by a column the audit excludes.

    A contract column feeds the features of :data:`FEATURES_OF_COLUMN`; an attribute
    feeds the feature named after it (:attr:`Attribute.feature`).
    """
    excluded = audit.excluded()
    tables = {(f.table, f.column) for f in audit.findings if f.column in excluded}
    fed: set[str] = set()
    for key in tables:
        fed.update(FEATURES_OF_COLUMN.get(key, ()))
    fed.update(a.feature for a in attributes if (a.table, a.name) in tables)
    return [f for f in features if f in fed]
