"""The small-organisation fallback as the served model (no champion yet; ``docs/fallback.md``).

``leadscore package`` saves the fallback fitted on the stored CRM as its own BentoML model
when no champion exists (:func:`serving.package.package_fallback`), and ``leadscore serve``
starts the service on it. The service then scores with :class:`FallbackScorer` instead of a
packaged booster and its :class:`~leadscore.model.explain.Explainer`: this module gives the
fallback the few attributes and methods of those two that the service reads, so the service
has one branch where it loads its model and none where it scores.

Every open deal it scores is answered with the fallback's probability, score and grade, its
own reasons (the stage's and the channel's pushes, :meth:`StageFallback.explain`, in the
same Reason shape), a ``model`` field naming it (``fallback (stage and channel rates, 63
closed deals)``) and a warning that it is a rough prior, with the minimum at which a trained
model takes over. ``GET /model`` says the same (``fallback`` and ``warning``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadscore.config import MIN_CLASS_DEALS
from leadscore.features.featurize import normalise_category
from leadscore.model.explain import Explanation, ScoreWarning
from leadscore.model.fallback import StageFallback
from leadscore.model.scoring_model import Columns

#: The model inputs the fallback reads (the rest of a deal's features are ignored).
FALLBACK_FEATURES = ("stage_index", "channel")


@dataclass
class FallbackScorer:
    """A fitted fallback, as the service uses a packaged model and its explainer.

    ``features``, ``attributes``, ``info`` and ``gate_warning`` are what the service reads
    of a :class:`~leadscore.model.scoring_model.ScoringModel`; :meth:`explain` and
    :meth:`unseen_category_warnings` what it calls on an Explainer.
    """

    fallback: StageFallback
    grade_thresholds: Mapping[str, int]
    feature_service: str | None = None
    min_class_deals: int = MIN_CLASS_DEALS
    features: list[str] = field(default_factory=lambda: list(FALLBACK_FEATURES))
    #: Custom attributes: the fallback reads none, so /score accepts none.
    attributes: tuple[Any, ...] = ()

    @property
    def info(self) -> dict[str, Any]:
        """No quality summary: nothing was trained or tested (``GET /model``'s note says so)."""
        return {"feature_service": self.feature_service}

    #: ``GET /model``'s ``quality_note``: why there is no quality summary.
    quality_note = (
        "no quality summary: the fallback is counted from the stored CRM, not trained and "
        "tested; docs/fallback.md has its backtest"
    )

    @property
    def gate_warning(self) -> str:
        """``GET /model``'s ``warning``: the same words as every scored deal's."""
        return self.fallback.warning(self.min_class_deals)

    def facts(self) -> dict[str, Any]:
        """``GET /model``'s ``fallback``: what scores, on what, and when a model takes over."""
        return {
            "model": self.fallback.name,
            "meaning": self.fallback.meaning(self.min_class_deals),
            "closed_deals": self.fallback.closed_deals,
            "won_deals": self.fallback.won_deals,
            "lost_deals": self.fallback.lost_deals,
            "min_class_deals": self.min_class_deals,
        }

    def explain(self, columns: Columns) -> list[Explanation]:
        """Probability, score, grade and reasons per deal, each labelled with the fallback's
        name (the result's ``model`` field)."""
        explained = self.fallback.explain(columns, self.grade_thresholds)
        return [{**e, "model": self.fallback.name} for e in explained]  # type: ignore[typeddict-unknown-key]

    def unseen_category_warnings(self, columns: Columns) -> list[list[ScoreWarning]]:
        """Per deal: that it was scored by the fallback, a rough prior, and until when;
        and that its channel was never seen closed, when so (it then counts as average)."""
        rough: ScoreWarning = {
            "field": None,
            "message": self.fallback.warning(self.min_class_deals),
        }
        keys = normalise_category(pd.Series(list(columns["channel"]), dtype=object))
        out: list[list[ScoreWarning]] = []
        for raw, key in zip(columns["channel"], keys, strict=True):
            warnings = [rough]
            unseen = key is not None and key not in self.fallback.channel_offsets
            if self.fallback.use_channel and unseen:
                warnings.append(
                    {
                        "field": "channel",
                        "message": f"no closed deal came in through {raw!s}: scored as the "
                        "average channel",
                    }
                )
            out.append(warnings)
        return out
