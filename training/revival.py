"""Train the revival model: of the deals lost, which come back and are won (issue 12).

The win model answers "will this open deal be won?"; scoring a lost deal with it "as if
re-opened" answers a question nobody asked and nobody checked. The revival model is
trained on what lost deals did next (:mod:`leadscore.crm.revival`: re-opened, or
followed by a new deal of the account, and won within the horizon), with the win
model's pipeline wherever the question allows:

* **Entities**: each loss looked at 7 days after it, then every 30 days while it is not
  back (:func:`leadscore.crm.revival.revival_snapshots`), only where the export shows the
  whole horizon (censored snapshots are dropped and counted).
* **Features**: Feast's ``revival_v1`` service (profile, contacts, the account's record,
  the loss and the engagement since it, time since the loss), point in time.
* **Split**: losses ordered by the time of loss, 70/15/15; all snapshots of a loss stay
  in one slice. Internally the frame takes the win model's column names so the same
  split, calibration and bootstrap code runs: ``deal_id`` is the loss (``D0001#0``),
  ``created_at`` and ``closed_at`` its loss time, ``won`` the revival label and
  ``crm_deal_id`` the CRM's deal.
* **Model**: :func:`training.train.fit_scoring_model`, monotone on the revival catalog's
  directions (more engagement since the loss never lowers the probability).
* **Baselines**: logistic regression on the same features, and the revival rate by lost
  reason and time since the loss (what a manager's report of past revivals gives).
* **Per loss** (each loss at most once per moment): its snapshot a week after the loss
  and its snapshot :data:`AGE_DAYS` after it (:func:`loss_rows`: only the losses not
  revived and not censored by then, counted), with deal-bootstrap intervals; against the synthetic
  oracle when the truth is known, and against today's approach (the win model scoring
  the lost deal as if re-opened) when a win model is given.
* **Gate**: at :data:`AGE_DAYS` the model must beat both baselines beyond the interval;
  a week after the loss it may not be worse than either by more than the margins
  (:func:`training.quality.baseline_gate` with this model's words).
"""

from __future__ import annotations

import functools
import json
import logging
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from leadscore.config import (
    CHAMPION,
    REVIVAL_FEATURE_SERVICE,
    REVIVAL_FIRST_SNAPSHOT_DAYS,
    REVIVAL_SNAPSHOT_EVERY_DAYS,
    Settings,
)
from leadscore.crm.ingest import last_recorded_event, load_stored
from leadscore.crm.revival import loss_cycles, revival_snapshots, revivals
from leadscore.features.catalog import revival_catalog
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_column,
    model_frame,
)
from leadscore.features.store import revival_training_parts
from leadscore.model.reason_stats import compute_reason_stats
from leadscore.model.registry import alias_version, load_scoring_model, mlflow_client
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import reopened_sources, without_own_loss
from leadscore.progress import Progress, no_progress
from leadscore.timeutil import TS
from training.baselines import fit_group_rate, fit_logistic_regression
from training.behaviour import checks_of, run_behaviour_checks
from training.data import Column, assemble, check_enough_data, slice_rows
from training.evaluate import binary_metrics, rows_at_age, with_intervals
from training.quality import baseline_gate, signed
from training.result import TrainConfig, TrainingResult
from training.split import SLICES, choose_split, slice_masks
from training.train import fit_scoring_model, log_training_run, version_info

log = logging.getLogger(__name__)

#: The earlier per-loss moment: days after the loss (its first snapshot).
WEEK_DAYS = float(REVIVAL_FIRST_SNAPSHOT_DAYS)
#: The later per-loss moment: days after the loss, a snapshot of the grid (7 + 3 x 30).
AGE_DAYS = 97.0
if (AGE_DAYS - WEEK_DAYS) % REVIVAL_SNAPSHOT_EVERY_DAYS:  # pragma: no cover - a constant
    raise ValueError(f"AGE_DAYS {AGE_DAYS:g} is not on the revival snapshot grid")
#: Baselines and how a sentence names them.
BASELINE_LABELS = {
    "logistic_regression": "logistic regression",
    "reason_time_rate": "the revival rate by lost reason and time since the loss",
}
BASELINES = tuple(BASELINE_LABELS)
#: Time-since-loss bands of the rate baseline, in days (upper bounds).
TIME_BANDS = (30.0, 90.0, 180.0, 365.0, np.inf)
GATE_RULE = (
    "per lost deal at {age} days after the loss, ROC AUC and log loss better than each "
    "baseline beyond the 95% interval; a week after the loss, neither worse than either "
    "baseline by more than {auc:g} ROC AUC or {log_loss:g} log loss"
)
#: The gate when no test loss is still lost and uncensored at :data:`AGE_DAYS` (the latest
#: losses' later snapshots are censored: the horizon reaches past the export's end).
GATE_RULE_WEEK_ONLY = (
    "per lost deal a week after the loss (no test loss is still lost with a known outcome "
    "at {age:g} days), ROC AUC and log loss better than each baseline beyond the 95% interval"
)
#: The revival model's trees: shallower and with bigger leaves than the win model's, since
#: revivals are rare (about one lost deal in fifteen). Chosen by validation log loss on the
#: synthetic CRM (20,000 deals over four years, seed 7), never on its test slice: 31 leaves
#: of 50 rows 0.15325, 15 of 100 0.15395, 7 of 200 0.15144, 4 of 200 0.15039.
TREE_PARAMS: dict[str, Any] = {"num_leaves": 4, "min_data_in_leaf": 200, "num_boost_round": 600}
#: Columns of the internal frame besides the features (see the module doc).
META: tuple[str, ...] = ("deal_id", "crm_deal_id", "account_id", "owner_id", TS)
META += ("snapshot_index", "created_at", "closed_at", "won", "cycle")


def loss_rows(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Positions of the per-loss rows: ``at_creation`` each loss's snapshot at
    :data:`WEEK_DAYS` after it, ``at_age`` its snapshot at :data:`AGE_DAYS`.

    A loss has a row at a moment only when it is neither revived nor censored then: a
    loss revived at day 40 has no row at 97 days. Scoring it at its last snapshot before
    the revival instead (as the per-deal rows once did, the win model's too) chose
    earlier rows exactly for the losses that came back early, a row set that depends on
    the outcome (on the synthetic CRM those rows' realised rate was 0.33 to 0.45 against
    the observable oracle's 0.13 to 0.16), and flattered neither model nor oracle honestly.
    """
    return {"at_creation": rows_at_age(frame, WEEK_DAYS), "at_age": rows_at_age(frame, AGE_DAYS)}


def moment(block: str, age: float) -> str:
    """The words of a per-loss block: ``a week after the loss`` or ``at 97 days after it``."""
    return "a week after the loss" if block == "at_creation" else f"at {age:g} days after the loss"


# ---------------------------------------------------------------- entities and frames
def revival_entities(
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp,
    window_days: int,
    horizon_days: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The labelled snapshots of every loss in ``tables`` whose outcome ``as_of`` knows,
    in the internal frame's names (module doc), and the counts of what was kept.

    Censored snapshots (the horizon reaches past ``as_of``, or the revival is still
    open) are dropped here and counted in ``censored``.
    """
    deals = tables["deals"]
    losses = revivals(loss_cycles(deals, tables.get("stage_history")), deals, window_days)
    snaps = revival_snapshots(losses, as_of, horizon_days=horizon_days)
    kept = snaps[~snaps["censored"].to_numpy()].reset_index(drop=True)
    index = kept.groupby(["deal_id", "cycle"], sort=False).cumcount().astype(np.int32)
    entities = pd.DataFrame(
        {
            "deal_id": kept["deal_id"].to_numpy(),
            "account_id": kept["account_id"].to_numpy(),
            "owner_id": kept["owner_id"].to_numpy(),
            TS: kept[TS].to_numpy(),
            "snapshot_index": index.to_numpy(),
            "created_at": kept["lost_at"].to_numpy(),
            "closed_at": kept["lost_at"].to_numpy(),
            "won": kept["revived_and_won"].astype(np.int8).to_numpy(),
            "cycle": kept["cycle"].to_numpy(),
        }
    )
    counts = {
        "losses": int(len(losses)),
        "snapshots": int(len(snaps)),
        "censored": int(snaps["censored"].sum()),
        "kept": int(len(kept)),
        "positive": int(kept["revived_and_won"].sum()),
    }
    return entities, counts


def as_loss_frame(joined: pd.DataFrame) -> pd.DataFrame:
    """Feature rows joined to :func:`revival_entities` -> the internal frame: ``deal_id``
    names the loss, the CRM's id moves to ``crm_deal_id``, features in catalog order, rows
    ordered by (closed_at, deal_id, snapshot_index). :func:`loss_frame_from_parts` with
    ``joined`` as its one part."""
    return loss_frame_from_parts(joined, [(np.arange(len(joined)), joined)])


def loss_frame_from_parts(
    entities: pd.DataFrame, parts: Iterable[tuple[np.ndarray, pd.DataFrame]]
) -> pd.DataFrame:
    """:func:`as_loss_frame` of the rows ``parts`` hold, built as the parts come.

    ``entities``: every row's ``deal_id``, ``cycle``, ``closed_at`` and ``snapshot_index``
    (:func:`revival_entities`), which give the order before any part; each part is some
    of the rows with their positions in ``entities`` (a chunk of a Feast join:
    :func:`leadscore.features.store.revival_training_parts`), typed and written into its
    rows of the result as it comes (:func:`training.data.assemble`), so the chunks and
    their concatenation are never held at once.
    """
    keys = {  # by position, as the parts' positions count
        "closed_at": _utc(entities, "closed_at").reset_index(drop=True),
        "deal_id": _loss_id(entities),
        "snapshot_index": entities["snapshot_index"].reset_index(drop=True),
    }
    order = pd.DataFrame(keys, copy=False).sort_values(list(keys), kind="stable").index.to_numpy()
    times = (TS, "created_at", "closed_at")
    columns = [
        Column("deal_id", _loss_id),
        Column("crm_deal_id", _crm_id),
        *(
            Column(c, functools.partial(_utc, name=c) if c in times else operator.itemgetter(c))
            for c in META[2:]
        ),
        *(
            Column(f.name, functools.partial(model_column, feature=f), f.kind != "categorical")
            for f in revival_catalog()
        ),
    ]
    return assemble(parts, order, columns, keys=keys)


def _crm_id(rows: pd.DataFrame) -> pd.Series:
    """The CRM's deal id of each row, as text."""
    return rows["deal_id"].astype(str)


def _loss_id(rows: pd.DataFrame) -> pd.Series:
    """The loss each row is of: the CRM's deal id and the loss cycle (``D0001#0``)."""
    return pd.Series((_crm_id(rows) + "#" + rows["cycle"].astype(str)).to_numpy(), copy=False)


def _utc(rows: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_datetime(rows[name], utc=True)


def in_memory_revival_frame(
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp,
    window_days: int,
    horizon_days: int,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The Feast revival frame's content, computed in memory (``features_as_of``): the
    tests' and benchmarks' frame, value-equal to the store's (a test proves it)."""
    entities, counts = revival_entities(tables, as_of, window_days, horizon_days)
    sources = build_feature_sources(dict(tables), revival_window_days=window_days)
    feats = features_as_of(sources, entities)
    return as_loss_frame(feats), counts


# ---------------------------------------------------------------- baselines
def reason_time_key(frame: pd.DataFrame) -> pd.Series:
    """``price|90`` : the lost reason and the time-since-loss band a snapshot falls in."""
    days = frame["days_since_loss"].to_numpy(dtype=np.float64)
    band = np.searchsorted(np.asarray(TIME_BANDS), days, side="left")
    upper = np.asarray([f"{b:g}" for b in TIME_BANDS], dtype=object)[np.minimum(band, 4)]
    reason = frame["lost_reason"].astype(object).where(frame["lost_reason"].notna(), "unknown")
    return reason.astype(str) + "|" + pd.Series(upper, index=frame.index)


def _rate_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The smoothed revival rate of each reason x time band, per snapshot: a loss's
    snapshots fall in different bands, so each counts in its own (a row is its own
    unit, unlike the win model's channel rate, which counts each deal once)."""
    rate = fit_group_rate(train.assign(key=reason_time_key(train)), "key", unit=None)
    return rate.predict(pd.DataFrame({"key": reason_time_key(test).to_numpy()}))


# ---------------------------------------------------------------- today's approach
def reopened_win_probability(
    win_model: ScoringModel, tables: Mapping[str, pd.DataFrame], rows: pd.DataFrame
) -> np.ndarray:
    """What the product did before the revival model: the win model's probability of each
    lost deal as if re-opened at the snapshot (its ``closed`` stage entries dropped, its
    own loss out of the account's and owner's records), as the ranked list computed it."""
    entities = pd.DataFrame(
        {
            "deal_id": rows["crm_deal_id"].to_numpy(),
            "account_id": rows["account_id"].to_numpy(),
            "owner_id": rows["owner_id"].to_numpy(),
            TS: rows[TS].to_numpy(),
        }
    )
    sources = build_feature_sources(dict(tables))
    reopened = reopened_sources(tables, sources, sorted(set(entities["deal_id"])))
    feats = without_own_loss(features_as_of(reopened, entities))
    return win_model.probability(win_model.encode(model_frame(feats, win_model.attributes)))


# ---------------------------------------------------------------- fit and evaluate
def fit_and_evaluate_revival(
    frame: pd.DataFrame,
    config: TrainConfig | None = None,
    truth: pd.DataFrame | None = None,
    today: np.ndarray | None = None,
    counts: Mapping[str, int] | None = None,
) -> TrainingResult:
    """Split losses by time, train, calibrate, evaluate per loss against the baselines, the
    oracle (``truth``: the synthetic ``revival_truth``) and today's approach (``today``:
    the win model's as-if-re-opened probability of every row of ``frame``).

    Raises :class:`training.data.InsufficientDataError` with fewer than
    ``config.min_class_deals`` revived-and-won or other losses.
    """
    config = config or TrainConfig()
    catalog = revival_catalog()
    config = replace(
        config, monotone={f.name: f.monotone for f in catalog if f.monotone}, **TREE_PARAMS
    )
    check_enough_data(frame, config.min_class_deals, where="lost deals to train on")
    bounds = choose_split(frame, config.fractions, config.seed)
    masks = slice_masks(frame, bounds)
    # A slice is a run of rows of the frame ordered by loss time: a view, not a copy.
    parts = {name: slice_rows(frame, masks[name]) for name in SLICES}
    for name, part in parts.items():
        check_enough_data(
            part, max(1, config.min_class_deals // 10), where=f"lost deals in the {name} slice"
        )
    features = [f.name for f in catalog]
    categorical = [f.name for f in catalog if f.kind == "categorical"]
    with threadpool_limits(limits=config.num_threads):
        fitted = fit_scoring_model(parts["train"], parts["valid"], features, categorical, config)
        model = fitted.model
        model.reason_stats = compute_reason_stats(parts["train"], features, model.categories)
        test = parts["test"]
        numeric = [f for f in features if f not in categorical]
        lr = fit_logistic_regression(parts["train"], numeric, categorical)
        X = model.encode(test)
        preds: dict[str, np.ndarray] = {
            "model": model.probability(X),
            "logistic_regression": lr.predict(test),
            "reason_time_rate": _rate_baseline(parts["train"], test),
        }
    extra: dict[str, np.ndarray] = {}
    if today is not None:
        extra["today"] = np.asarray(today, dtype=np.float64)[masks["test"]]
    if truth is not None:
        extra["oracle"] = _oracle(test, truth, "p_revival")
        if "p_revival_observable" in truth:
            extra["oracle_observable"] = _oracle(test, truth, "p_revival_observable")
    per_loss = _per_loss(test, preds, extra, config)
    gate = baseline_gate(
        per_loss,
        config.gate_creation_margin_auc,
        config.gate_creation_margin_log_loss,
        BASELINE_LABELS,
        moment,
        GATE_RULE,
        GATE_RULE_WEEK_ONLY.format(age=AGE_DAYS),
    )
    behaviour = run_behaviour_checks(
        model, test, sample=config.behaviour_sample, seed=config.seed, checks=checks_of(catalog)
    )
    model.info = {
        **version_info(
            REVIVAL_FEATURE_SERVICE, frame, bounds, parts, config, fitted, _window(frame)
        ),
        "task": "revival",
        "outcome": "revived (re-opened or followed up) and won within the horizon",
        "gate": gate,
    }
    evaluation: dict[str, Any] = {
        "data": {
            "feature_service": REVIVAL_FEATURE_SERVICE,
            "split": bounds.to_dict(),
            "losses": model.info["deals"],
            "snapshots": {name: int(len(p)) for name, p in parts.items()},
            "entities": dict(counts or {}),
        },
        "model": {"trees": fitted.best_iteration, "calibration": model.calibration.method},
        "test": binary_metrics(test["won"].to_numpy(), preds["model"]),
        "per_deal": per_loss,
        "gate": gate,
        "behaviour": behaviour.to_dict(),
    }
    log.info("revival gate: %s", gate["sentence"])
    return TrainingResult(
        model, frame, bounds, masks, preds, evaluation, behaviour, fitted.calibration, config
    )


def _window(frame: pd.DataFrame) -> dict[str, str]:
    """First snapshot and first/last loss of the frame, ISO 8601 in UTC."""
    return {
        "first_snapshot": frame[TS].min().isoformat(),
        "first_close": frame["closed_at"].min().isoformat(),
        "last_close": frame["closed_at"].max().isoformat(),
    }


def _oracle(test: pd.DataFrame, truth: pd.DataFrame, column: str) -> np.ndarray:
    """The synthetic oracle's ``column`` of each test row (NaN where the truth has none):
    ``p_revival`` knows the latent state; ``p_revival_observable`` only what the export
    shows, plus the lost deal's hidden quality (the ceiling a model can approach)."""
    key = truth.assign(**{TS: pd.to_datetime(truth["as_of"], utc=True)}).set_index(["deal_id", TS])[
        column
    ]
    key = key[~key.index.duplicated()]
    index = pd.MultiIndex.from_arrays(
        [test["crm_deal_id"].astype(str), pd.to_datetime(test[TS], utc=True)]
    )
    return key.reindex(index).to_numpy(dtype=np.float64)


def _per_loss(
    test: pd.DataFrame,
    preds: Mapping[str, np.ndarray],
    extra: Mapping[str, np.ndarray],
    config: TrainConfig,
) -> dict[str, Any]:
    """Model and baselines on one row per test loss still lost and uncensored a week after
    it (``at_creation``) and at :data:`AGE_DAYS` (``at_age``, :func:`loss_rows`), with
    paired intervals, ``losses`` the test losses in all; the oracle and today's
    approach on the same rows where known (``others``: metrics, and the model on the rows
    they cover)."""
    y_all, loss_all = test["won"].to_numpy(), test["deal_id"].to_numpy()
    out: dict[str, Any] = {
        "age_days": AGE_DAYS,
        "moments": {},
        "losses": int(pd.Series(loss_all).nunique()),
    }
    for block, rows in loss_rows(test).items():
        y = y_all[rows]
        won = int(y.sum())
        out["moments"][block] = moment(block, AGE_DAYS)
        out[block] = {
            "deals": int(len(rows)),
            "won": won,
            "lost": int(len(rows)) - won,
            **with_intervals(
                y,
                {name: preds[name][rows] for name in ("model", *BASELINES)},
                loss_all[rows],
                config.bootstrap_resamples,
                config.seed,
                compare=("model", BASELINES),
            ),
        }
        for name, p in extra.items():
            p = p[rows]
            known = ~np.isnan(p)
            if not known.any():
                continue
            compared = with_intervals(
                y[known],
                {"model": preds["model"][rows][known], name: p[known]},
                loss_all[rows][known],
                config.bootstrap_resamples,
                config.seed,
                compare=("model", (name,)),
            )
            out[block][name] = {**compared[name], "deals": int(known.sum())}
            out[block][f"model_minus_{name}"] = compared["model_minus_baseline"][name]
    return out


def backtest_rows(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-loss figures as table rows: predictor, moment, losses, ROC AUC with its
    interval, ECE; what the closing note and ``train-revival`` print. A moment no test
    loss reaches still lost and uncensored has no rows (:func:`sample_words` says so)."""
    rows = []
    per = evaluation["per_deal"]
    for block in ("at_creation", "at_age"):
        b = per.get(block) or {}
        if not b.get("deals"):
            continue
        for name in ("model", *BASELINES, "oracle_observable", "oracle", "today"):
            m = b.get(name)
            if not m:
                continue
            ci = m.get("ci95", {}).get("roc_auc", {})
            rows.append(
                {
                    "moment": per["moments"][block],
                    "predictor": name,
                    "losses": int(m.get("deals", b["deals"])),
                    "roc_auc": m.get("roc_auc"),
                    "low": ci.get("low"),
                    "high": ci.get("high"),
                    "ece": m.get("ece"),
                }
            )
    return rows


def backtest_table(evaluation: Mapping[str, Any]) -> str:
    """:func:`backtest_rows` as a Markdown table."""
    lines = ["| moment | predictor | losses | ROC AUC [95%] | ECE |", "|---|---|---:|---|---:|"]
    for r in backtest_rows(evaluation):
        auc = (
            "undefined"
            if r["roc_auc"] is None
            else f"{r['roc_auc']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"
            if r["low"] is not None
            else f"{r['roc_auc']:.3f}"
        )
        lines.append(
            f"| {r['moment']} | {r['predictor']} | {r['losses']:,} | {auc} | {r['ece']:.4f} |"
        )
    return "\n".join(lines)


def sample_words(evaluation: Mapping[str, Any]) -> str:
    """``1,427 test losses; a week after the loss 1,427, at 97 days after the loss 352 (the
    other 1,075 revived or censored before then)``: the sample behind each moment."""
    per = evaluation["per_deal"]
    total = int(per.get("losses", 0))
    parts = []
    for block in ("at_creation", "at_age"):
        n = int((per.get(block) or {}).get("deals", 0))
        parts.append(
            f"{per['moments'].get(block, block)} {n:,} (the other {total - n:,} revived or "
            "censored before then)"
            if n < total
            else f"{per['moments'].get(block, block)} {n:,}"
        )
    return f"{total:,} test losses; " + ", ".join(parts)


def difference_words(evaluation: Mapping[str, Any], other: str) -> list[str]:
    """``a week after the loss: model minus oracle −0.012 [−0.030, +0.006]`` per moment."""
    out = []
    per = evaluation["per_deal"]
    for block in ("at_creation", "at_age"):
        d = (per.get(block) or {}).get(f"model_minus_{other}", {}).get("roc_auc")
        if d and d.get("difference") is not None and d.get("low") is not None:
            out.append(
                f"{per['moments'][block]}: ROC AUC model minus {other} {signed(d['difference'])} "
                f"[{signed(d['low'])}, {signed(d['high'])}]"
            )
    return out


# ---------------------------------------------------------------- with Feast and MLflow
def write_revival_report(result: TrainingResult, out: Path, run_id: str) -> None:
    """The run's report files: the evaluation as JSON and the backtest table in Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result.evaluation, indent=2, default=str))
    gate = result.evaluation["gate"]
    (out / "model_card.md").write_text(
        "\n".join(
            [
                f"# Revival model (run {run_id})",
                "",
                "Outcome: " + str(result.model.info["outcome"]) + ".",
                "",
                f"Gate: {'PASSED' if gate['passed'] else 'FAILED'}: {gate['sentence']}",
                "",
                f"Rule: {gate['rule']}.",
                "",
                "Losses scored: " + sample_words(result.evaluation) + ".",
                "",
                backtest_table(result.evaluation),
                "",
            ]
        )
    )


def stored_as_of(settings: Settings) -> pd.Timestamp:
    """The export's clock: its last recorded event (labels are known up to it), or now."""
    last = last_recorded_event(settings.crm_dir)
    now = pd.Timestamp.now(tz="UTC")
    return now if last is None else min(last, now)


def train_revival_from_store(
    settings: Settings,
    config: TrainConfig | None = None,
    truth_path: Path | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Train the revival model on the stored CRM through Feast's ``revival_v1``, compare it
    with today's approach (the win model's champion scoring lost deals as if re-opened,
    when one is registered) and the oracle (``truth_path``: ``revival_truth.parquet``),
    log it to MLflow and register it as ``settings.revival_model_name`` (challenger; the
    first version champion when it passes the gate and the behaviour checks).
    """
    losses = stored_losses(settings, (config or TrainConfig()).min_class_deals, progress)
    tables, as_of, counts, frame = losses.tables, losses.as_of, losses.counts, losses.frame
    truth = pd.read_parquet(truth_path) if truth_path else None
    today = None
    client = mlflow_client(settings)
    if alias_version(client, settings.model_name, CHAMPION) is not None:
        win = load_scoring_model(f"models:/{settings.model_name}@{CHAMPION}", settings)
        today = reopened_win_probability(win, tables, frame)
    # The stored tables (every activity) are not needed past today's approach: let go of
    # them before training rather than hold them to its end.
    del losses, tables
    result = fit_and_evaluate_revival(frame, config, truth, today, counts)
    named = replace(settings, model_name=settings.revival_model_name)
    summary = log_training_run(named, result, write_revival_report)
    summary["backtest"] = backtest_rows(result.evaluation)
    summary["losses_scored"] = sample_words(result.evaluation)
    summary["as_of"] = as_of.isoformat()
    return summary


# ---------------------------------------------------------------- the stored frame
@dataclass(frozen=True)
class StoredLosses:
    """The stored CRM's losses as the revival model sees them, through Feast."""

    tables: Mapping[str, pd.DataFrame]
    #: The export's clock (:func:`stored_as_of`): outcomes are known up to it.
    as_of: pd.Timestamp
    #: :func:`revival_entities`' counts of what was kept.
    counts: dict[str, int]
    #: The internal loss frame (:func:`as_loss_frame`) of ``revival_v1``'s features.
    frame: pd.DataFrame


def stored_losses(
    settings: Settings, min_class_deals: int = 0, progress: Progress = no_progress
) -> StoredLosses:
    """The revival frame of the stored CRM through Feast's ``revival_v1``, as of the
    export's clock: what ``train-revival`` trains on and ``promote --task revival``
    rebuilds a challenger's test slice from, by this one function so the two agree.

    With ``min_class_deals``, raises :class:`training.data.InsufficientDataError` before
    the (slower) Feast join when the losses hold fewer revived-and-won or other deals.
    """
    tables = load_stored(settings.crm_dir)
    as_of = stored_as_of(settings)
    entities, counts = revival_entities(
        tables, as_of, settings.revival_window_days, settings.revival_horizon_days
    )
    log.info("revival snapshots: %s", counts)
    if min_class_deals:
        check_enough_data(entities, min_class_deals, "lost deals to train on")
    # The joined rows go into the loss frame a chunk at a time: no raw frame is kept.
    parts = revival_training_parts(settings, entities, progress).parts
    frame = loss_frame_from_parts(entities, parts)
    log.info("revival frame: %d snapshots of %d losses", len(frame), frame["deal_id"].nunique())
    return StoredLosses(tables, as_of, counts, frame)


__all__: Sequence[str] = (
    "AGE_DAYS",
    "BASELINES",
    "as_loss_frame",
    "backtest_rows",
    "backtest_table",
    "difference_words",
    "fit_and_evaluate_revival",
    "in_memory_revival_frame",
    "loss_frame_from_parts",
    "loss_rows",
    "reopened_win_probability",
    "revival_entities",
    "sample_words",
    "stored_losses",
    "train_revival_from_store",
)
