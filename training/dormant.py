"""The dormant-deal backtest: is the win model's number right for dormant deals? (issue 12)

The list scores a dormant deal (open, quiet for :data:`leadscore.config.DORMANT_DAYS`)
with the win model, whose number says "chance to win this deal". A dormant deal has its
own outcome, won within the horizon (:mod:`leadscore.priority.dormant`), and nothing
checked the number against it. This module does, on the win model's own split, so it
costs no new registered model:

* **Rows**: the win frame's snapshots (closed deals, at creation and every 14 days while
  open) that were dormant at their moment, labelled with the dormant outcome as of the
  export's end; censored ones dropped and counted. Deals still open at the export's end
  are in no slice of the win model's time split (it orders deals by close), so, as for
  the win model's own test, they are not in the backtest.
* **Predictors**, on the test slice's dormant snapshots: ``win_model``, the win model as
  trained (its probability read against the dormant outcome); ``dormant_calibration``,
  the same trees through a calibration fitted for the dormant outcome on the validation
  slice's dormant snapshots (:func:`training.calibration.choose_calibration`: Platt,
  isotonic or none, by out-of-fold log loss, folds by deal); ``stage_quiet_rate``, the
  dormant win rate by stage x quiet-time band on the training slice
  (:func:`training.baselines.fit_group_rate`, each snapshot its own unit since a deal's
  snapshots fall in different bands); and, on the synthetic CRM, ``oracle``: the truth's
  ``p_latent``, the probability the deal's outcome was drawn from at creation. It is no
  ceiling here: the generator makes the stage path and the quiet tail depend on the
  outcome itself, so a dormant deal's history tells more than ``p_latent`` does.
* **Per deal** (each test deal once, at its first dormant snapshot) and **per snapshot**,
  with deal-bootstrap 95% intervals (:func:`training.evaluate.with_intervals`).
* **The choice** (:func:`choose_dormant`), per dormant deal: the dormant calibration is
  kept when its log loss beats the win model's with the whole 95% paired interval below
  zero and its ECE is lower too; otherwise the win model's own number stays (a
  correction must earn its place, as the win model's calibration must).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import DORMANT_DAYS, REVIVAL_HORIZON_DAYS
from leadscore.features.catalog import STAGE_LEVELS
from leadscore.model.scoring_model import Calibration, ScoringModel
from leadscore.priority.dormant import (
    CENSORED,
    DormantChoice,
    dormant_outcome,
    is_dormant,
)
from leadscore.priority.health import quiet_days
from leadscore.timeutil import TS
from training.baselines import fit_group_rate
from training.calibration import choose_calibration
from training.evaluate import with_intervals
from training.quality import block_label, signed
from training.result import TrainConfig

log = logging.getLogger(__name__)

#: Predictors of the backtest, in table order (``oracle`` only with a truth).
PREDICTORS = ("win_model", "dormant_calibration", "stage_quiet_rate", "oracle")
#: The two ways to score a dormant deal that the backtest chooses between.
CANDIDATES = ("win_model", "dormant_calibration")
#: Quiet-time bands of the rate baseline, in days (upper bounds; dormancy starts at 30).
QUIET_BANDS = (60.0, 90.0, 180.0, 365.0, np.inf)
#: Fewest dormant deals of each outcome the validation and test slices need (calibration
#: folds by deal, and an interval, need some of each); fewer and nothing is checked.
MIN_DORMANT_DEALS = 10
#: Per-deal and per-snapshot blocks, and how the table names them.
BLOCKS = {"per_deal": "first dormant snapshot", "per_snapshot": "every dormant snapshot"}


def dormant_snapshots(
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    dormant_days: float = DORMANT_DAYS,
    horizon_days: float = REVIVAL_HORIZON_DAYS,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The win frame's dormant snapshots with the dormant outcome in ``won`` (the deal's
    final outcome kept in ``deal_won``), censored ones dropped; and the counts.

    A frame with no ``days_since_last_activity`` at all came from an export without
    activities, where no deal is dormant (:func:`leadscore.priority.dormant.is_dormant`).
    """
    logged = bool(frame["days_since_last_activity"].notna().any())
    dormant = frame[is_dormant(frame, dormant_days, logged)]
    label = dormant_outcome(
        dormant[TS], dormant["closed_at"], dormant["won"].astype(bool), as_of, horizon_days
    )
    known = label != CENSORED
    out = dormant[known].assign(deal_won=dormant["won"][known], won=label[known])
    counts = {
        "snapshots": int(len(dormant)),
        "censored": int((~known).sum()),
        "kept": int(known.sum()),
        "deals": int(out["deal_id"].nunique()),
        "won_within_horizon": int(out["won"].sum()),
    }
    return out, counts


def stage_quiet_key(frame: pd.DataFrame) -> pd.Series:
    """``proposal|90``: the stage and the quiet-time band a snapshot falls in."""
    quiet = quiet_days(frame).to_numpy(dtype=np.float64)
    band = np.minimum(np.searchsorted(np.asarray(QUIET_BANDS), quiet, side="left"), 4)
    upper = np.asarray([f"{b:g}" for b in QUIET_BANDS], dtype=object)[band]
    stage = frame["stage_index"].map(
        lambda i: STAGE_LEVELS.name(int(i)) if pd.notna(i) else "unknown"
    )
    return stage.astype(str) + "|" + pd.Series(upper, index=frame.index)


def first_per_deal(frame: pd.DataFrame) -> np.ndarray:
    """Positions of each deal's first dormant snapshot (the earliest; frames are ordered)."""
    order = np.lexsort(
        (frame["snapshot_index"].to_numpy(), frame["deal_id"].astype(str).to_numpy())
    )
    deals = frame["deal_id"].astype(str).to_numpy()[order]
    return np.sort(order[~pd.Series(deals).duplicated().to_numpy()])


def _oracle(test: pd.DataFrame, truth: pd.DataFrame | None) -> np.ndarray | None:
    """The truth's ``p_latent`` per test row; None without one, or when it lacks a deal."""
    if truth is None or "p_latent" not in truth:
        return None
    p = test["deal_id"].astype(str).map(truth.set_index("deal_id")["p_latent"])
    p = p.to_numpy(dtype=np.float64)
    if np.isnan(p).any():
        log.warning("dormant backtest: the truth lacks %d test deals; no oracle", np.isnan(p).sum())
        return None
    return p


def choose_dormant(per_deal: Mapping[str, Any]) -> tuple[DormantChoice, str]:
    """Which candidate scores dormant deals, and the sentence saying why.

    ``per_deal`` is the backtest's per-deal block: the candidates' metrics with ``ci95``
    and ``dormant_calibration_minus.win_model.log_loss`` (paired difference and
    interval). The dormant calibration wins only with a log loss better beyond the 95%
    interval and a lower ECE; anything less keeps the win model's own number.
    """
    a, b = per_deal["win_model"], per_deal["dormant_calibration"]
    d = per_deal["dormant_calibration_minus"]["win_model"]["log_loss"]

    def ece(m: Mapping[str, Any]) -> str:
        ci = m["ci95"]["ece"]
        return f"{m['ece']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"

    figures = (
        f"per dormant deal, ECE {ece(b)} with the dormant calibration against {ece(a)} for "
        f"the win model; log loss difference {signed(d['difference'])} "
        f"[{signed(d['low'])}, {signed(d['high'])}]"
    )
    if d["high"] is not None and d["high"] < 0 and b["ece"] < a["ece"]:
        return DormantChoice.DORMANT_CALIBRATION, (
            f"dormant calibration kept: better calibrated for a win within the horizon ({figures})"
        )
    return DormantChoice.WIN_MODEL, (
        f"the win model's own number kept: the dormant calibration is not better beyond the "
        f"interval ({figures})"
    )


def backtest_dormant(
    model: ScoringModel,
    parts: Mapping[str, pd.DataFrame],
    config: TrainConfig,
    truth: pd.DataFrame | None = None,
    as_of: pd.Timestamp | None = None,
    dormant_days: float = DORMANT_DAYS,
    horizon_days: float = REVIVAL_HORIZON_DAYS,
    min_deals: int = MIN_DORMANT_DEALS,
) -> tuple[dict[str, Any], Calibration | None]:
    """The backtest (module doc) on the win model's ``parts`` (train, valid, test slices of
    its frame), and the dormant calibration when the backtest keeps it.

    ``as_of`` is the export's end the outcomes are known at (default: the last close in
    the slices, which every closed deal's outcome is known by). The result's ``choice``
    is a :class:`DormantChoice`; ``unchecked`` with a ``reason`` when the validation or
    test slice has fewer than ``min_deals`` (:data:`MIN_DORMANT_DEALS`) dormant deals of an
    outcome.
    """
    if as_of is None:
        as_of = pd.concat([pd.to_datetime(p["closed_at"], utc=True) for p in parts.values()]).max()
    rows, counts = {}, {}
    for name, part in parts.items():
        rows[name], counts[name] = dormant_snapshots(part, as_of, dormant_days, horizon_days)
    out: dict[str, Any] = {
        "definition": {
            "dormant_days": dormant_days,
            "horizon_days": horizon_days,
            "as_of": pd.Timestamp(as_of).isoformat(),
            "outcome": f"won within {horizon_days:g} days of a dormant snapshot",
        },
        "counts": counts,
    }
    short = [
        name
        for name in ("valid", "test")
        if min(_deal_counts(rows[name])) < min_deals or not len(rows["train"])
    ]
    if short:
        out["choice"] = DormantChoice.UNCHECKED.value
        out["sentence"] = (
            f"not checked: fewer than {min_deals} dormant deals of an outcome in the "
            f"{' and '.join(short)} slice"
        )
        log.info("dormant backtest %s", out["sentence"])
        return out, None
    valid, test = rows["valid"], rows["test"]
    fitted = choose_calibration(
        model.raw_score(model.encode(valid)),
        valid["won"].to_numpy(),
        valid["deal_id"].to_numpy(),
        min_isotonic_deals=config.min_isotonic_deals,
    )
    out["calibration"] = {"method": fitted.calibration.method, "reason": fitted.reason}
    raw = model.raw_score(model.encode(test))
    rate = fit_group_rate(
        rows["train"].assign(key=stage_quiet_key(rows["train"])), "key", unit=None
    )
    preds = {
        "win_model": model.calibration(raw),
        "dormant_calibration": fitted.calibration(raw),
        "stage_quiet_rate": rate.predict(pd.DataFrame({"key": stage_quiet_key(test).to_numpy()})),
    }
    oracle = _oracle(test, truth)
    if oracle is not None:
        preds["oracle"] = oracle
    y, deals = test["won"].to_numpy(), test["deal_id"].to_numpy()
    for block, at in (("per_deal", first_per_deal(test)), ("per_snapshot", np.arange(len(test)))):
        m = with_intervals(
            y[at],
            {name: p[at] for name, p in preds.items()},
            deals[at],
            config.bootstrap_resamples,
            config.seed,
            compare=("dormant_calibration", [n for n in preds if n != "dormant_calibration"]),
        )
        won = int(y[at].sum())
        out[block] = {
            "deals": int(len(np.unique(deals[at]))),
            "snapshots": int(len(at)),
            "won": won,
            **{k: v for k, v in m.items() if k != "model_minus_baseline"},
            "dormant_calibration_minus": m["model_minus_baseline"],
        }
    choice, sentence = choose_dormant(out["per_deal"])
    if fitted.calibration == model.calibration:
        sentence += (
            f"; the map fitted on dormant deals is the win model's own "
            f"({model.calibration.method}), so both give the same number"
        )
    out["choice"], out["sentence"] = choice.value, sentence
    log.info("dormant backtest: %s", sentence)
    return out, fitted.calibration if choice is DormantChoice.DORMANT_CALIBRATION else None


def dormant_summary(dormant: Mapping[str, Any]) -> dict[str, Any]:
    """What the model carries of the backtest (``ScoringModel.info["dormant"]``): the
    choice, its sentence and the definition, so the list can say what a dormant row's
    number means."""
    definition = dormant["definition"]
    return {
        "choice": dormant["choice"],
        "sentence": dormant["sentence"],
        "dormant_days": definition["dormant_days"],
        "horizon_days": definition["horizon_days"],
    }


def _deal_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """Deals whose first dormant snapshot was won within the horizon, and the others."""
    if not len(rows):
        return 0, 0
    first = rows.iloc[first_per_deal(rows)]
    won = int(first["won"].sum())
    return won, len(first) - won


def _table_row(group: str, moment: str, name: str, m: Mapping[str, Any], n: str) -> str:
    """One Markdown row: ROC AUC and ECE with their 95% intervals, and log loss."""
    ci = m.get("ci95", {})

    def with_ci(key: str, digits: int) -> str:
        v, c = m.get(key), ci.get(key, {})
        if v is None:
            return "undefined"
        if c.get("low") is None:
            return f"{v:.{digits}f}"
        return f"{v:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"

    return (
        f"| {group} | {moment} | {name} | {n} | {with_ci('roc_auc', 3)} | {with_ci('ece', 4)} "
        f"| {m['log_loss']:.4f} |"
    )


def backtest_table(
    dormant: Mapping[str, Any],
    open_per_deal: Mapping[str, Any],
    lost_per_deal: Mapping[str, Any] | None = None,
) -> str:
    """Open, dormant (and lost) deals side by side as a Markdown table: the win model's own
    per-deal figures on every test deal (``open_per_deal``: the evaluation's ``per_deal``),
    the dormant backtest per deal and per snapshot, and the revival model's per-loss
    figures (``lost_per_deal``: :func:`training.revival.fit_and_evaluate_revival`'s)."""
    lines = [
        "| deals | moment | predictor | deals (snapshots) | ROC AUC [95%] | ECE [95%] | log loss |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for block in ("at_creation", "at_age"):
        b = open_per_deal.get(block) or {}
        moment = block_label(block, open_per_deal["age_days"])
        for name in ("model", "logistic_regression", "channel_rate"):
            if name in b:
                lines.append(_table_row("open", moment, name, b[name], f"{b['deals']:,}"))
    for block, moment in BLOCKS.items():
        b = dormant.get(block) or {}
        for name in PREDICTORS:
            if name in b:
                n = f"{b['deals']:,} ({b['snapshots']:,})"
                lines.append(_table_row("dormant", moment, name, b[name], n))
    lost = lost_per_deal or {}
    for block in ("at_creation", "at_age"):
        b = lost.get(block) or {}
        for name, m in b.items():
            if isinstance(m, Mapping) and "ci95" in m:
                n = f"{int(m.get('deals', b['deals'])):,}"
                lines.append(_table_row("lost", lost["moments"][block], name, m, n))
    return "\n".join(lines)
