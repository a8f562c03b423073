"""The small-organisation fallback: a rough prior where no trained model exists yet.

Below :data:`leadscore.config.MIN_CLASS_DEALS` won or lost deals training refuses (a
LightGBM would learn noise), yet a team still wants its open deals ordered. The fallback
is a stage-conversion prior learnt from the handful of closed deals there are:

* **stage rate**: of the closed deals that were open in a stage, the share won, each deal
  counted by the time it spent there (:func:`stage_weights`: a deal still in ``lead``
  after a month is not the average deal that passed through ``lead``); shrunk toward the
  overall win rate by a Beta prior worth ``prior_deals`` pseudo-deals, so a stage seen in
  3 deals says little and one seen in 100 says almost all. A deal without a known stage
  gets the overall rate.
* **channel adjustment** (``use_channel``): the channel's shrunk win rate as a log-odds
  offset from the overall rate, added to the stage's log-odds. Stage and channel are
  treated as independent (a naive-Bayes step), which is why both are shrunk.

Every parameter is counted from the export; nothing comes from another organisation.
``benchmarks/fallback_backtest.py`` compares the variants with "no score" (the base rate)
and the channel win rate at 50, 100 and 200 closed deals; its table is in
``docs/fallback.md``. The list and the API label every row they score (``fallback (stage
and channel rates, 63 closed deals)``) and say the number is a rough prior until a trained
model takes over; the promotion gate has it as a baseline (fitted on the training slice by
:func:`fit_fallback_on_snapshots`), so a trained model takes over only by beating it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import DEFAULT_GRADE_THRESHOLDS, MIN_CLASS_DEALS
from leadscore.crm.contract import CLOSED_STATUSES, STAGES, WON
from leadscore.features.catalog import STAGE_LEVELS
from leadscore.features.catalog_zh import STAGE_ZH, category_zh
from leadscore.features.featurize import normalise_category
from leadscore.model.explain import Explanation, Reason, grade_of

#: Pseudo-deals of the Beta prior behind every rate: a stage (or channel) seen in this many
#: closed deals sits halfway between its own win rate and the overall one. Ten keeps a
#: 50-deal export's stages from swinging on two or three deals; the backtest shows it.
PRIOR_DEALS = 10.0
#: The stages a deal can be open in (``closed`` is where it ends, not a place to score from).
OPEN_STAGES: tuple[str, ...] = tuple(s for s in STAGES if s != "closed")
_EPS = 1e-6


def _logit(p: float | np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)))


def _shrunk(wins: float, deals: float, prior: float, strength: float) -> float:
    """Posterior mean of a win rate under a Beta prior of mean ``prior`` worth ``strength`` deals."""
    return (wins + strength * prior) / (deals + strength)


@dataclass(frozen=True)
class StageFallback:
    """A fitted fallback (module doc): rates per stage index and log-odds per channel."""

    overall: float
    #: Shrunk win rate by stage index (:data:`leadscore.crm.contract.STAGES` order).
    stage_rates: Mapping[int, float]
    #: Closed deals seen open in each stage (the evidence behind its rate).
    stage_deals: Mapping[int, int]
    #: Log-odds offset per normalised channel (empty without ``use_channel``).
    channel_offsets: Mapping[str, float] = field(default_factory=dict)
    closed_deals: int = 0
    won_deals: int = 0
    prior_deals: float = PRIOR_DEALS
    use_channel: bool = True

    @property
    def lost_deals(self) -> int:
        return self.closed_deals - self.won_deals

    @property
    def name(self) -> str:
        """The list's ``model`` column for rows this fallback scored."""
        what = "stage and channel rates" if self.use_channel else "stage rates"
        return f"fallback ({what}, {self.closed_deals:,} closed deals)"

    def takeover(self, min_class_deals: int = MIN_CLASS_DEALS) -> str:
        """When a trained model takes over, against what the export holds now."""
        return (
            f"a trained model takes over once it can be trained, from {min_class_deals} won and "
            f"{min_class_deals} lost closed deals (now {self.won_deals} won, {self.lost_deals} "
            "lost), and passes the promotion gate"
        )

    def warning(self, min_class_deals: int = MIN_CLASS_DEALS) -> str:
        """The warning every answer the fallback gives carries (the API's ``warnings``)."""
        return (
            f"scored by the {self.name}, a rough prior with no trained model behind it: "
            + self.takeover(min_class_deals)
        )

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as JSON-ready values (:meth:`from_dict` reads them back): how
        ``leadscore package`` stores a fitted fallback for the service to load."""
        return {
            "overall": self.overall,
            "stage_rates": {str(k): v for k, v in sorted(self.stage_rates.items())},
            "stage_deals": {str(k): v for k, v in sorted(self.stage_deals.items())},
            "channel_offsets": dict(sorted(self.channel_offsets.items())),
            "closed_deals": self.closed_deals,
            "won_deals": self.won_deals,
            "prior_deals": self.prior_deals,
            "use_channel": self.use_channel,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageFallback:
        return cls(
            overall=float(data["overall"]),
            stage_rates={int(k): float(v) for k, v in data["stage_rates"].items()},
            stage_deals={int(k): int(v) for k, v in data["stage_deals"].items()},
            channel_offsets={str(k): float(v) for k, v in data["channel_offsets"].items()},
            closed_deals=int(data["closed_deals"]),
            won_deals=int(data["won_deals"]),
            prior_deals=float(data["prior_deals"]),
            use_channel=bool(data["use_channel"]),
        )

    @property
    def fingerprint(self) -> str:
        """A short hash of every parameter: the same fit gives the same one, so packaging
        can tell whether the packaged fallback is the one the stored CRM gives now."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def meaning(self, min_class_deals: int = MIN_CLASS_DEALS) -> str:
        """What the number means, and when a trained model takes over."""
        channel = " and channel" if self.use_channel else ""
        return (
            f"rough prior: the win rate of past deals from this stage{channel}; "
            + self.takeover(min_class_deals)
        )

    def log_odds(self, stage_index: np.ndarray, channel: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per deal: the stage's log-odds and the channel's offset (0 when unknown or off)."""
        stages = pd.to_numeric(pd.Series(stage_index, dtype=object), errors="coerce")
        rates = [
            self.stage_rates.get(int(s), self.overall) if pd.notna(s) else self.overall
            for s in stages
        ]
        stage = _logit(np.asarray(rates, dtype=np.float64))
        if not self.use_channel:
            return stage, np.zeros(len(stage))
        keys = normalise_category(pd.Series(channel, dtype=object))
        offset = keys.map(lambda c: self.channel_offsets.get(c, 0.0) if c is not None else 0.0)
        return stage, offset.to_numpy(dtype=np.float64)

    def predict(self, stage_index: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """Win probability per deal from its current stage index and channel."""
        stage, offset = self.log_odds(stage_index, channel)
        return 1.0 / (1.0 + np.exp(-(stage + offset)))

    def explain(
        self,
        columns: Mapping[str, Sequence[object]],
        grade_thresholds: Mapping[str, int] = DEFAULT_GRADE_THRESHOLDS,
    ) -> list[Explanation]:
        """Probability, score, grade and the stage's and channel's pushes in words, in the
        :class:`~leadscore.model.explain.Explainer`'s shape (``columns``: model inputs)."""
        stages = np.asarray(columns["stage_index"], dtype=object)
        channels = np.asarray(columns["channel"], dtype=object)
        stage, offset = self.log_odds(stages, channels)
        p = 1.0 / (1.0 + np.exp(-(stage + offset)))
        base = float(_logit(self.overall))
        out: list[Explanation] = []
        for i, prob in enumerate(p.tolist()):
            score = int(round(100 * prob))
            reasons = [self._stage_reason(stages[i], float(stage[i]) - base)]
            if self.use_channel and channels[i] is not None and offset[i] != 0.0:
                reasons.append(
                    Reason(
                        feature="channel",
                        label="Channel",
                        value=str(channels[i]),
                        contribution=round(float(offset[i]), 4),
                        text=f"Came in through {channels[i]}",
                        tooltip=f"past {channels[i]} deals against all past deals "
                        f"({self.closed_deals} closed)",
                        text_zh=f"来自{category_zh(str(channels[i]))}渠道",
                        tooltip_zh=f"以往{category_zh(str(channels[i]))}渠道的商机与全部以往商机"
                        f"相比（{self.closed_deals} 个已关闭）",
                    )
                )
            out.append(
                Explanation(
                    probability=float(prob),
                    score=score,
                    grade=grade_of(score, grade_thresholds),
                    positive_reasons=[r for r in reasons if r["contribution"] > 0],
                    negative_reasons=[r for r in reasons if r["contribution"] < 0],
                )
            )
        return out

    def _stage_reason(self, stage_index: object, push: float) -> Reason:
        known = stage_index is not None and not (
            isinstance(stage_index, float) and math.isnan(stage_index)
        )
        s = int(stage_index) if known else -1  # type: ignore[call-overload]
        name = STAGE_LEVELS.name(s) if known else "unknown"
        rate, deals = self.stage_rates.get(s, self.overall), self.stage_deals.get(s, 0)
        return Reason(
            feature="stage_index",
            label="Stage",
            value=name,
            contribution=round(push, 4),
            text=f"In the {name} stage",
            tooltip=f"{rate:.0%} of {deals} past deals from this stage won "
            f"(shrunk toward {self.overall:.0%})"
            if known
            else None,
            text_zh=f"处于{STAGE_ZH.get(s, '未知')}阶段",
            tooltip_zh=f"此阶段的 {deals} 个以往商机中 {rate:.0%} 赢单"
            f"（向整体 {self.overall:.0%} 收缩）"
            if known
            else None,
        )


def stage_weights(deals: pd.DataFrame, stage_history: pd.DataFrame | None) -> pd.DataFrame:
    """(deal_id, stage_index, weight): how much each closed deal counts in each open stage.

    A list scores deals that are open *now*, and a deal open now is in a stage it is spending
    time in: a deal that still sits in ``lead`` after a month is no longer the average deal
    that passed through ``lead`` on its way to a win. So a dated deal counts in a stage by
    the time it spent there while open (from entering it to the next entry or the close),
    as a share of the mean open time of the dated deals: an average deal weighs one in all,
    a long one more, as it is more often among the open deals at any moment. A deal without
    those times (undated exports) counts once in every open stage it entered, and a closed
    deal without stage history once in the open stage ``deals.stage`` names.
    """
    closed = deals[deals["status"].isin(CLOSED_STATUSES)]
    index = {s: i for i, s in enumerate(STAGES) if s in OPEN_STAGES}
    columns = ["deal_id", "stage_index", "weight"]
    parts = []
    sh = pd.DataFrame({"deal_id": pd.Series(dtype=str), "stage": pd.Series(dtype=str)})
    if stage_history is not None and len(stage_history):
        sh = stage_history[
            stage_history["deal_id"].astype(str).isin(set(closed["deal_id"].astype(str)))
        ]
    if len(sh):
        h = pd.DataFrame(
            {
                "deal_id": sh["deal_id"].astype(str).to_numpy(),
                "stage_index": sh["stage"].astype(str).str.lower().map(index).to_numpy(),
                "at": pd.to_datetime(sh["entered_at"], utc=True).to_numpy()
                if "entered_at" in sh
                else pd.NaT,
            }
        )
        times = closed.assign(deal_id=closed["deal_id"].astype(str)).set_index("deal_id")
        h["closed_at"] = (
            pd.to_datetime(
                times["closed_at"]
                if "closed_at" in times
                else pd.Series(pd.NaT, index=times.index),
                utc=True,
            )
            .reindex(h["deal_id"])
            .to_numpy()
        )
        h = h.sort_values(["deal_id", "at"], kind="stable")
        ends = h.groupby("deal_id")["at"].shift(-1).fillna(h["closed_at"])
        days = (ends - h["at"]) / pd.Timedelta(days=1)
        dated = days.notna().groupby(h["deal_id"]).transform("all")
        h["days"] = days.clip(lower=0)
        timed = h[dated.to_numpy() & h["stage_index"].notna().to_numpy()]
        if len(timed):
            per_deal = timed.groupby("deal_id")["days"].sum()
            mean = float(per_deal[per_deal > 0].mean()) if (per_deal > 0).any() else 1.0
            parts.append(timed.assign(weight=timed["days"] / mean)[columns])
        untimed = h[~dated.to_numpy()].dropna(subset=["stage_index"])
        parts.append(
            untimed.drop_duplicates(["deal_id", "stage_index"]).assign(weight=1.0)[columns]
        )
    if "stage" in closed:
        rest = closed[~closed["deal_id"].astype(str).isin(set(sh["deal_id"].astype(str)))]
        parts.append(
            pd.DataFrame(
                {
                    "deal_id": rest["deal_id"].astype(str).to_numpy(),
                    "stage_index": rest["stage"].astype("string").str.lower().map(index).to_numpy(),
                    "weight": 1.0,
                }
            ).dropna()
        )
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(
            {"deal_id": pd.Series(dtype=str), "stage_index": pd.Series(dtype=int), "weight": 0.0}
        )
    out = pd.concat(parts, ignore_index=True)
    out = out[out["weight"] > 0]
    return (
        out.astype({"deal_id": str, "stage_index": int, "weight": float})
        .groupby(["deal_id", "stage_index"], as_index=False)["weight"]
        .sum()
    )


def fit_fallback(
    deals: pd.DataFrame,
    stage_history: pd.DataFrame | None = None,
    prior_deals: float = PRIOR_DEALS,
    use_channel: bool = True,
) -> StageFallback:
    """Fit the fallback on the closed deals of ``deals`` (open ones are ignored).

    The overall rate is itself shrunk toward one half by a single deal each way (Laplace),
    so an export with only wins does not promise certainty.
    """
    closed = deals[deals["status"].isin(CLOSED_STATUSES)]
    if not len(closed):
        raise ValueError("no closed deals: the fallback has nothing to learn from")
    won_by_deal = pd.Series(
        (closed["status"] == WON).to_numpy(dtype=float), index=closed["deal_id"].astype(str)
    )
    channels = closed["channel"] if "channel" in closed else None
    return _fit(
        won_by_deal, channels, stage_weights(closed, stage_history), prior_deals, use_channel
    )


def fit_fallback_on_snapshots(
    frame: pd.DataFrame, prior_deals: float = PRIOR_DEALS, use_channel: bool = True
) -> StageFallback:
    """Fit the fallback on a training frame's snapshots (``deal_id``, ``won``,
    ``stage_index``, ``channel``): the promotion gate's fallback baseline, fitted on the
    training slice only, as the other baselines are (``training.train``).

    Snapshots are taken at a fixed interval while a deal is open, so a deal's snapshots in
    a stage count the time it spent there: each weighs its deal's share of the mean
    snapshots per deal, the time weighting of :func:`stage_weights` on the snapshot grid.
    A deal's outcome and channel are those of its first snapshot.
    """
    if not len(frame):
        raise ValueError("no snapshots: the fallback has nothing to learn from")
    ids = frame["deal_id"].astype(str)
    first = frame.assign(deal_id=ids).groupby("deal_id", sort=False).first()
    won_by_deal = first["won"].astype(float)
    stages = pd.to_numeric(frame["stage_index"], errors="coerce")
    counted = pd.DataFrame({"deal_id": ids.to_numpy(), "stage_index": stages.to_numpy()})
    counts = counted.dropna().groupby(["deal_id", "stage_index"], as_index=False).size()
    mean = float(counts.groupby("deal_id")["size"].sum().mean()) if len(counts) else 1.0
    weights = pd.DataFrame(
        {
            "deal_id": counts["deal_id"],
            "stage_index": counts["stage_index"].astype(int),
            "weight": counts["size"] / mean,
        }
    )
    channels = first["channel"].astype(object) if "channel" in first else None
    return _fit(won_by_deal, channels, weights, prior_deals, use_channel)


def _fit(
    won_by_deal: pd.Series,
    channels: pd.Series | None,
    weights: pd.DataFrame,
    prior_deals: float,
    use_channel: bool,
) -> StageFallback:
    """The fallback from each closed deal's outcome (1.0 won, indexed by deal id), its
    channel (aligned with it) and its (deal_id, stage_index, weight) rows."""
    won, n = float(won_by_deal.sum()), len(won_by_deal)
    overall = _shrunk(won, n, 0.5, 2.0)
    weights = weights.copy()
    weights["won"] = weights["weight"] * won_by_deal.reindex(weights["deal_id"]).to_numpy()
    by_stage = weights.groupby("stage_index").agg(
        won=("won", "sum"), weight=("weight", "sum"), size=("deal_id", "size")
    )
    stage_rates = {
        int(s): _shrunk(float(r["won"]), float(r["weight"]), overall, prior_deals)
        for s, r in by_stage.iterrows()
    }
    offsets: dict[str, float] = {}
    if use_channel and channels is not None:
        keys = normalise_category(channels)
        g = pd.DataFrame({"key": keys.to_numpy(), "won": won_by_deal.to_numpy()}).dropna()
        for key, r in g.groupby("key")["won"].agg(["sum", "size"]).iterrows():
            rate = _shrunk(float(r["sum"]), float(r["size"]), overall, prior_deals)
            offsets[str(key)] = float(_logit(rate) - _logit(overall))
    return StageFallback(
        overall=overall,
        stage_rates=stage_rates,
        stage_deals={int(s): int(r["size"]) for s, r in by_stage.iterrows()},
        channel_offsets=offsets,
        closed_deals=n,
        won_deals=int(won),
        prior_deals=prior_deals,
        use_channel=use_channel,
    )
