"""What a data scientist needs to judge a trained model: plots, tables and a model card.

All files go to one folder (logged to MLflow under ``report/``):
``calibration_curve.png``, ``gain_lift.png``, ``shap_summary.png``,
``feature_importance.csv``, ``metrics.json`` and ``model_card.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leadscore.csvsafe import write_csv
from leadscore.features.catalog import features_by_name
from training.dormant import backtest_table
from training.evaluate import ECE_BINS, gain_curve, reliability_curve
from training.result import TrainingResult
from training.segments import SEGMENTS

log = logging.getLogger(__name__)

#: Predictors drawn in the plots, with their legend labels.
_CURVES = {
    "model": "LightGBM (calibrated)",
    "model_uncalibrated": "LightGBM (uncalibrated)",
    "logistic_regression": "logistic regression",
    "channel_rate": "channel win rate",
}
_METRIC_COLUMNS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_at_10",
    "capture_at_10",
    "lift_at_20",
)


def write_report(
    result: TrainingResult, out_dir: Path, run_id: str = "", shap_sample: int = 1000
) -> list[Path]:
    """Write every report file of ``result`` into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    test = result.test_rows
    y = test["won"].to_numpy()
    paths = [
        _calibration_plot(y, result.test_predictions, out_dir / "calibration_curve.png"),
        _gain_plot(y, result.test_predictions, out_dir / "gain_lift.png"),
        _shap_plot(result, test, out_dir / "shap_summary.png", shap_sample),
    ]
    importance = feature_importance(result)
    paths.append(out_dir / "feature_importance.csv")
    write_csv(importance, paths[-1])
    paths.append(out_dir / "metrics.json")
    paths[-1].write_text(json.dumps(result.evaluation, indent=2, default=str))
    paths.append(out_dir / "model_card.md")
    paths[-1].write_text(model_card(result, importance, run_id))
    return paths


def feature_importance(result: TrainingResult) -> pd.DataFrame:
    """Total split gain per feature (and its share), with split counts, most important first."""
    booster = result.model.booster
    gain = booster.feature_importance("gain")
    df = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": gain,
            "gain_share": gain / max(gain.sum(), 1e-12),
            "splits": booster.feature_importance("split"),
        }
    )
    return df.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def _calibration_plot(y: np.ndarray, preds: dict[str, np.ndarray], path: Path) -> Path:
    fig = Figure(figsize=(6.5, 7))
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for key in ("model", "model_uncalibrated", "logistic_regression"):
        curve = reliability_curve(y, preds[key])
        ax.plot(curve["mean_p"], curve["win_rate"], marker="o", label=_CURVES[key])
    ax.set_ylabel("share of snapshots won")
    ax.set_title(f"Calibration on the test slice ({ECE_BINS} equal-width bins)")
    ax.legend(loc="upper left")
    hist.hist(preds["model"], bins=np.linspace(0, 1, 41), color="tab:blue")
    hist.set_xlabel("predicted win probability")
    hist.set_ylabel("snapshots")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _gain_plot(y: np.ndarray, preds: dict[str, np.ndarray], path: Path) -> Path:
    fig = Figure(figsize=(11, 4.5))
    gain_ax, lift_ax = fig.subplots(1, 2)
    gain_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random order")
    lift_ax.axhline(1.0, color="grey", linestyle=":", label="random order")
    for key in ("model", "logistic_regression", "channel_rate"):
        g = gain_curve(y, preds[key])
        share, gain = np.asarray(g["share"]), np.asarray(g["gain"])
        gain_ax.plot(share, gain, label=_CURVES[key])
        lift_ax.plot(share[1:], gain[1:] / share[1:], label=_CURVES[key])
    gain_ax.set(
        xlabel="share of snapshots worked, best scores first",
        ylabel="share of wins found",
        title="Cumulative gain (test slice)",
    )
    lift_ax.set(
        xlabel="share of snapshots worked, best scores first",
        ylabel="lift (win rate / overall)",
        title="Lift (test slice)",
    )
    gain_ax.legend(loc="lower right")
    lift_ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _shap_plot(result: TrainingResult, test: pd.DataFrame, path: Path, sample: int) -> Path:
    """SHAP beeswarm of a seeded test sample, from LightGBM's own TreeSHAP (log-odds).

    LightGBM computes the values (``pred_contrib``, what serving uses for reasons);
    the shap package only draws them. Categorical features show their category codes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    rng = np.random.default_rng(result.config.seed)
    rows = np.sort(rng.choice(len(test), size=min(sample, len(test)), replace=False))
    X = result.model.encode(test.iloc[rows])
    contrib = result.model.contributions(X)
    explanation = shap.Explanation(
        values=contrib[:, :-1],
        base_values=contrib[:, -1],
        data=X,
        feature_names=result.model.features,
    )
    shap.plots.beeswarm(explanation, max_display=20, show=False)
    fig = plt.gcf()
    fig.axes[0].set_title(f"SHAP values (log-odds) on {len(rows)} test snapshots")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ---------------------------------------------------------------- model card
def model_card(result: TrainingResult, importance: pd.DataFrame, run_id: str = "") -> str:
    """The model card in Markdown: data, features, metrics against baselines and oracle, limits."""
    ev, info, cfg = result.evaluation, result.model.info, result.config
    data = ev["data"]
    lines = [
        "# lead_scorer model card",
        "",
        "Calibrated probability that an open CRM deal will be won, given what is known about it at the "
        "moment of scoring. Trained by `leadscore train`"
        + (f" (MLflow run `{run_id}`)." if run_id else "."),
        "",
    ]
    if ev.get("warnings"):
        lines += ["## Warnings", "", *(f"- {w}." for w in ev["warnings"]), ""]
    lines += [
        "## Data",
        "",
        f"- Feature service: `{data['feature_service']}` (Feast, point-in-time joins).",
        f"- Window: first snapshot {data['window']['first_snapshot']}, deals closed "
        f"{data['window']['first_close']} to {data['window']['last_close']}.",
        "- Rows are snapshots of closed deals while they were open (at creation, then every "
        "few days until they closed), labelled with the final outcome.",
        f"- Training data fingerprint (SHA-256): `{info['fingerprint']}`.",
        "",
        "| slice | closed up to | won deals | lost deals | snapshots |",
        "|---|---|---:|---:|---:|",
    ]
    for name, end in (("train", "train_end"), ("valid", "valid_end"), ("test", "test_end")):
        d = data["deals"][name]
        lines.append(
            f"| {name} | {data['split'].get(end, 'random')} | {d['won']:,} | {d['lost']:,} | {data['snapshots'][name]:,} |"
        )
    lines += [
        "",
        f"Split: {data['split'].get('note', 'split by close time')}. "
        + (
            "Each outcome's deals are shuffled with the seed and cut into the slices, so test "
            "metrics say how the model ranks deals like those it learnt from, not how it does on "
            "later ones"
            if data["split"].get("method") == "random"
            else "The model learns from the earliest closed deals, validation (early stopping, "
            "calibration) uses the next slice and the test slice is the most recently closed"
        )
        + "; a deal's snapshots never span two slices.",
        "",
        *_audit_section(ev),
        "## Model",
        "",
        f"- LightGBM binary classifier, {ev['model']['trees']} trees (early stopping, at most "
        f"{cfg.num_boost_round}), {cfg.num_leaves} leaves, learning rate {cfg.learning_rate}, seed {cfg.seed}.",
        f"- Calibration: {ev['model']['calibration_reason']}.",
        "- Monotone constraints: "
        + ", ".join(f"`{k}` {'+' if v > 0 else '-'}" for k, v in sorted(cfg.monotone.items()))
        + ".",
        "- Categorical features keep the category list of the training slice; an unseen value is scored "
        "as missing.",
        "",
        "## Test metrics",
        "",
        _metrics_table(
            {
                "LightGBM (calibrated)": ev["test"],
                "LightGBM (uncalibrated)": ev["test_uncalibrated"],
                **_baseline_rows(ev["baselines"]),
            }
        ),
        "",
        f"ECE: expected calibration error over {ECE_BINS} equal-width probability bins. Lift at 10%: win "
        "rate of the top 10% of snapshots by score over the overall win rate; capture: share of all wins "
        "in that top 10%.",
        "",
        "With 95% intervals:",
        "",
        _interval_table(
            {
                "LightGBM (calibrated)": ev["test"],
                **_baseline_rows(ev["baselines"]),
            }
        ),
    ]
    if "per_deal" in ev:
        lines += _per_deal_section(ev)
    if "segments" in ev:
        lines += _segment_section(ev)
    if "segment_models" in ev:
        lines += _segment_model_section(ev["segment_models"])
    if "dormant" in ev:
        lines += _dormant_section(ev)
    if "at_creation" in ev:
        ac = ev["at_creation"]
        lines += [
            "",
            f"## At creation, against the oracle ({ac['deals']:,} test deals)",
            "",
            "Creation-time snapshots of the test deals. The oracle is the synthetic generator's "
            "`p_at_creation`, the best calibrated score possible from what is known at creation.",
            "",
            _metrics_table(
                {
                    "oracle (p_at_creation)": ac["oracle"],
                    "LightGBM": ac["model"],
                    "logistic regression": ac["logistic_regression"],
                    "channel win rate": ac["channel_rate"],
                }
            ),
        ]
    lines += [
        "",
        "## By channel (test slice, LightGBM)",
        "",
        _metrics_table(
            ev["test"]["by_channel"], ("n", "win_rate", "roc_auc", "log_loss", "ece", "lift_at_10")
        ),
    ]
    lines += [
        "",
        "## Behaviour checks (test sample)",
        "",
        "| check | rows | violations | rate | passed |",
        "|---|---:|---:|---:|---|",
    ]
    for c in ev["behaviour"]["checks"].values():
        rate = "-" if c["violation_rate"] is None else f"{c['violation_rate']:.2%}"
        status = c.get("status", "passed" if c["passed"] else "failed")
        verdict = {"passed": "yes", "failed": "NO"}.get(status, status)
        lines.append(
            f"| {c['description']} | {c['rows']:,} | {c['violations']} | {rate} | {verdict} |"
        )
    top = importance.head(15)
    lines += [
        "",
        "## Features",
        "",
        "Most important by total split gain (all "
        f"{len(result.model.features)} features in `feature_importance.csv`):",
        "",
        "| feature | gain share | description |",
        "|---|---:|---|",
    ]
    catalog = features_by_name(result.model.attributes)
    for row in top.itertuples():
        feat = catalog.get(row.feature)
        lines.append(
            f"| `{row.feature}` | {row.gain_share:.1%} | {feat.description if feat else ''} |"
        )
    lines += [
        "",
        "## Known limitations",
        "",
        "- CRM exports carry the *current* values of deal fields such as amount, competitor and product; "
        "they are taken as known at creation. If reps update them as a deal progresses (or after it "
        "closes), training sees later information than serving will, and test metrics are optimistic.",
        "- Only closed deals train the model. Deals open for a long time are under-represented in the "
        "most recent slices, and a shift in the funnel shows up in the metrics only once deals close.",
        "- A deal contributes one snapshot per interval while open, so long deals weigh more; "
        "probabilities are calibrated for snapshots of open deals, the population that gets scored.",
        "- Metrics come from one time split; the newest slice may differ from the months ahead "
        "(seasonality, new products or channels). Watch calibration after release.",
        "- Categories not seen in the training slice (a new channel or competitor) are scored as missing.",
        "- The MLflow pyfunc flavour returns the *uncalibrated* booster output on encoded inputs; load "
        "the model with `leadscore.model.registry.load_scoring_model` to get served probabilities.",
    ]
    return "\n".join(lines) + "\n"


def _audit_section(ev: dict[str, Any]) -> list[str]:
    """The leakage audit: each flagged column with its evidence, excluded or kept and why."""
    audit = ev.get("audit")
    if audit is None:
        return []
    lines = [
        "## Leakage audit",
        "",
        "Every input column of the stored deals and accounts was checked for signs that it is "
        "known only after the outcome (present only for closed or open deals, constant within "
        "one outcome, a date after close, a single-column ROC AUC of 0.95 or more, a name "
        "that speaks of the outcome or the finished sales process).",
        "",
    ]
    if audit["findings"]:
        lines += ["| column | rule | evidence | decision |", "|---|---|---|---|"]
        for f in audit["findings"]:
            decision = f"kept: {f['kept']}" if f["kept"] else "excluded"
            lines.append(
                f"| `{f['table']}.{f['column']}` | {f['rule']} | {f['evidence']} | {decision} |"
            )
        left_out = ", ".join(f"`{f}`" for f in audit["excluded_features"]) or "none"
        lines += ["", f"Features left out of the model: {left_out}."]
    else:
        lines.append("No column was flagged.")
    lines += [f"- Not judged: {s}." for s in audit["not_judged"]]
    return [*lines, ""]


def _dormant_section(ev: dict[str, Any]) -> list[str]:
    """The dormant-deal backtest (:mod:`training.dormant`): its choice and, when it ran,
    the table of open and dormant deals side by side."""
    dormant = ev["dormant"]
    definition = dormant["definition"]
    lines = [
        "",
        "## Dormant deals",
        "",
        f"Open deals quiet for {definition['dormant_days']:g} days; outcome: "
        f"{definition['outcome']}. Choice: {dormant['sentence']}.",
    ]
    if "per_deal" in dormant:
        lines += ["", backtest_table(dormant, ev["per_deal"])]
    return lines


#: The baselines in the model card's tables, in order (``training.train.BASELINES``).
BASELINE_NAMES = {
    "logistic_regression": "logistic regression",
    "channel_rate": "channel win rate",
    "stage_fallback": "fallback (stage and channel rates)",
}


def _baseline_rows(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The baselines' entries of an evaluation block, by their names in the card (an
    evaluation from before a baseline existed has no row for it)."""
    return {label: metrics[name] for name, label in BASELINE_NAMES.items() if name in metrics}


def _per_deal_section(ev: dict[str, Any]) -> list[str]:
    """Per-deal blocks with intervals, and the model's margin over each baseline."""
    pd_, iv = ev["per_deal"], ev.get("intervals", {})
    lines = [
        "",
        "## Per deal (test deals, one row each)",
        "",
        "Snapshot metrics weigh long deals more, and reward reading a deal's age when the label "
        "depends on it. Here every test deal counts once: scored at creation, and at "
        f"{pd_['age_days']:g} days, only the deals still open then (their last snapshot at or "
        "before then; a deal closed younger is left out there, so that the rows do not depend "
        "on when the outcome came). Intervals: 95%, from "
        f"{iv.get('resamples', '?')} bootstrap resamples of deals.",
    ]
    for block, title in (
        ("at_creation", "At creation"),
        ("at_age", f"At {pd_['age_days']:g} days"),
    ):
        b = pd_[block]
        rows = {"LightGBM (calibrated)": b["model"], **_baseline_rows(b)}
        lines += [
            "",
            f"### {title} ({b['won']:,} won, {b['lost']:,} lost deals)",
            "",
            _interval_table(rows),
            "",
            "| LightGBM minus | ROC AUC | log loss |",
            "|---|---:|---:|",
        ]
        for name, label in BASELINE_NAMES.items():
            if name not in b["model_minus_baseline"]:
                continue
            d = b["model_minus_baseline"][name]
            lines.append(
                f"| {label} | {_with_interval(d['roc_auc'], 'difference', '+.4f')} | "
                f"{_with_interval(d['log_loss'], 'difference', '+.4f')} |"
            )
    lines += [
        "",
        "A difference whose interval excludes 0 is a margin the data supports (higher ROC AUC, "
        "lower log loss is better).",
    ]
    return lines


def _segment_section(ev: dict[str, Any]) -> list[str]:
    """One table per segment (:mod:`training.segments`): the model's per-deal ROC AUC and
    ECE there, and its ROC AUC margin over each baseline."""
    segments = ev["segments"]
    labels = BASELINE_NAMES
    lines = [
        "",
        "## Per segment (test deals, one row each)",
        "",
        f"Each test deal at {segments['age_days']:g} days, in its channel, size band (employees), "
        "industry and stage. Intervals: 95%, deal bootstrap. A segment with fewer than "
        f"{segments['min_class_deals']} won or lost deals shows its counts only.",
    ]
    for segment in SEGMENTS:
        name = segment.replace("_", " ")
        lines += ["", f"### By {name}", ""]
        lines.append(
            f"| {name} | deals | win rate | ROC AUC | ECE |"
            + "".join(f" ROC AUC minus {label} |" for label in labels.values())
        )
        lines.append("|---|---:|---:|---:|---:|" + "---:|" * len(labels))
        for e in segments.get(segment, []):
            head = f"| {e['value']} | {e['deals']:,} | {e['win_rate']:.1%} |"
            if "missing" in e:
                lines.append(f"{head} {e['missing']} |" + " |" * (1 + len(labels)))
                continue
            m, ci = e["model"], e["model"]["ci95"]
            auc = _with_interval({"v": m["roc_auc"], **ci["roc_auc"]}, spec=".3f")
            ece = _with_interval({"v": m["ece"], **ci["ece"]}, spec=".4f")
            margins = "".join(
                f" {_with_interval(e['model_minus_baseline'][b]['roc_auc'], 'difference', '+.3f')} |"
                for b in labels
            )
            lines.append(f"{head} {auc} | {ece} |{margins}")
    return lines


def _segment_model_section(block: dict[str, Any]) -> list[str]:
    """Every segment model tried (:func:`training.segments.fit_segment_models`): its
    decision, the segment's deals and the paired differences with the global model."""
    lines = ["", "## Segment models", ""]
    if "skipped" in block:
        return [*lines, f"None tried: {block['skipped']}."]
    kept = block["kept"]
    lines += [
        f"Tried per channel, size band, industry and open stage, each grown from the global "
        f"model on the segment's training deals; kept when, on the segment's test deals at "
        f"{block['age_days']:g} days, its ROC AUC gain's 95% interval is above 0 and neither "
        "log loss nor ECE is worse beyond its interval. A deal in a kept segment is scored, "
        "and its reasons given, by that segment's model (the first in this order: "
        f"{', '.join(kept) if kept else 'none kept'}); every other deal by the global model. "
        "The test deals chose the kept models, so the routed figures below lean optimistic; "
        "the figures above are the global model's.",
        "",
        "| segment | decision | test deals won/lost | ROC AUC segment model | ROC AUC global "
        "| ROC AUC gain | log loss difference | ECE difference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in block["candidates"]:
        test = c["deals"]["test"]
        head = f"| {c['segment']} | {c['decision']} | {test['won']}/{test['lost']} |"
        if c["decision"] == "skipped":
            lines.append(f"{head} {c['reason']} | | | | |")
            continue
        d = c["segment_minus_global"]
        lines.append(
            f"{head} {_fmt(c['segment_model']['roc_auc'])} | {_fmt(c['global_model']['roc_auc'])} | "
            f"{_with_interval(d['roc_auc'], 'difference', '+.3f')} | "
            f"{_with_interval(d['log_loss'], 'difference', '+.4f')} | "
            f"{_with_interval(d['ece'], 'difference', '+.4f')} |"
        )
    routed = block.get("routed")
    if routed:
        d = routed["routed_minus_global"]
        lines += [
            "",
            f"Routed minus global on all {routed['deals']:,} test deals: ROC AUC "
            f"{_with_interval(d['roc_auc'], 'difference', '+.4f')}, log loss "
            f"{_with_interval(d['log_loss'], 'difference', '+.4f')}, ECE "
            f"{_with_interval(d['ece'], 'difference', '+.4f')}.",
        ]
    return lines


def _interval_table(rows: dict[str, dict[str, Any]]) -> str:
    """ROC AUC, log loss and ECE with intervals, and the other headline metrics."""
    head = "| | ROC AUC | PR AUC | log loss | Brier | ECE | lift_at_10 |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    body = []
    for name, m in rows.items():
        ci = m.get("ci95", {})
        body.append(
            f"| {name} | {_with_interval({**ci.get('roc_auc', {}), 'v': m.get('roc_auc')})} | "
            f"{_fmt(m.get('pr_auc'))} | "
            f"{_with_interval({**ci.get('log_loss', {}), 'v': m.get('log_loss')})} | "
            f"{_fmt(m.get('brier'))} | {_with_interval({**ci.get('ece', {}), 'v': m.get('ece')})} | "
            f"{_fmt(m.get('lift_at_10'))} |"
        )
    return "\n".join([head, sep, *body])


def _with_interval(d: dict[str, Any], key: str = "v", spec: str = ".4f") -> str:
    """``0.6441 [0.6206, 0.6678]``; n/a for a missing value, no brackets without an interval."""
    value, low, high = d.get(key), d.get("low"), d.get("high")
    if value is None:
        return "n/a"
    text = format(value, spec)
    if low is None or high is None:
        return text
    return f"{text} [{format(low, spec)}, {format(high, spec)}]"


def _metrics_table(
    rows: dict[str, dict[str, Any]], columns: tuple[str, ...] = _METRIC_COLUMNS
) -> str:
    head = "| | " + " | ".join(columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    body = [
        f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |"
        for name, m in rows.items()
    ]
    return "\n".join([head, sep, *body])


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4f}"
