"""Each deal's win probability at its creation: the quality of the lead, before anyone worked it.

An A/B comparison (:mod:`leadscore.insights.compare`) must tell a strategy that wins from
one that was handed better leads. The win model's probability at the moment a deal was
created sees only what was known then (the account, the channel, the contacts already
on it, the account's and owner's track records until then), so it measures the lead,
not what the strategy did with it. It is the score training's first snapshot of a deal
gets (:func:`leadscore.features.featurize.snapshot_entities`, snapshot 0), computed the
same way ranking scores: the stored tables' feature sources, joined point in time
(:func:`~leadscore.features.featurize.features_as_of`) at each deal's ``created_at``.

Here rather than in insights: insights read the CRM and its features only, and scoring
needs a model. :func:`champion_at_creation` loads the champion from the registry as
:func:`leadscore.priority.rank.revival_champion` does, and says why when there is none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import RANK_BATCH_SIZE, Settings
from leadscore.features.featurize import (
    TS,
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import batches, own_views, track_records
from leadscore.timeutil import as_utc

log = logging.getLogger(__name__)


def scored_at_creation(
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel,
    deal_ids: Iterable[str] | None = None,
    batch_size: int = RANK_BATCH_SIZE,
) -> pd.DataFrame:
    """Each deal's model features at its ``created_at`` and the win ``model``'s calibrated
    ``probability`` then, indexed by ``deal_id``: what the model saw of a new lead.

    ``tables``: the stored CRM; ``deal_ids``: the deals to score (default every one). A
    deal without ``created_at`` has no moment of creation and is left out. Deals go
    through ``batch_size`` at a time, as in ranking, so memory follows the batch; track
    records come from every deal.
    """
    deals = tables["deals"]
    if deal_ids is not None:
        deals = deals[deals["deal_id"].astype(str).isin(set(deal_ids))]
    empty = pd.DataFrame({"probability": pd.Series(dtype=np.float64)}).rename_axis("deal_id")
    if "created_at" not in deals:
        return empty
    deals = deals[deals["created_at"].notna()]
    records = track_records(tables["deals"])
    parts = []
    for part, part_tables in batches(tables, deals, batch_size):
        sources = {
            **build_feature_sources(
                part_tables, attributes=model.attributes, views=own_views(records)
            ),
            **records,
        }
        # One moment per deal: its own creation, to the microsecond (snapshot 0's).
        entities = scoring_entities(part, pd.Timestamp(0, tz="UTC"))
        entities[TS] = as_utc(part["created_at"]).reset_index(drop=True)
        rows = model_frame(features_as_of(sources, entities), model.attributes)
        rows["probability"] = model.probability(model.encode(rows))
        parts.append(rows.set_axis(entities["deal_id"].to_numpy()))
    if not parts:
        return empty
    return pd.concat(parts).rename_axis("deal_id")


def probabilities_at_creation(
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel,
    deal_ids: Iterable[str] | None = None,
    batch_size: int = RANK_BATCH_SIZE,
) -> pd.Series:
    """The win ``model``'s calibrated probability of each deal at its ``created_at``
    (:func:`scored_at_creation`), indexed by ``deal_id``."""
    return scored_at_creation(tables, model, deal_ids, batch_size)["probability"]


@dataclass(frozen=True)
class AtCreation:
    """The champion's probabilities at creation, or why there are none."""

    #: Probabilities by ``deal_id`` (None: no champion).
    probabilities: pd.Series | None
    #: Which model gave them (:func:`model_facts`): its ``name``, ``version`` and
    #: ``gate`` (``passed``, ``not_better``: made champion by force, ``unchecked``:
    #: trained before the gate existed), which the page words in its language.
    model: Mapping[str, str] | None = None
    #: Why they were not computed.
    skipped: str | None = None


def champion_at_creation(
    settings: Settings, tables: Mapping[str, pd.DataFrame], deal_ids: Iterable[str]
) -> AtCreation:
    """:func:`probabilities_at_creation` of ``deal_ids`` by the win model's champion
    (``models:/<model_name>@champion``); without one, the reason and no probabilities."""
    from leadscore.model.registry import RegistryError, load_champion

    try:
        model, version = load_champion(settings)
    except RegistryError as exc:
        log.info("no probabilities at creation: %s", exc)
        return AtCreation(None, skipped=f"skipped: {exc}")
    return AtCreation(
        probabilities_at_creation(tables, model, deal_ids),
        model_facts(settings.model_name, version, model),
    )


def model_facts(name: str, version: str, model: ScoringModel) -> dict[str, str]:
    """Which model scored: name, version and how it stands against the baselines (words
    in no language: the page and the command say it in theirs)."""
    gate = model.gate
    # As ScoringModel.gate_warning tells them apart: a gate without checks never ran.
    standing = "passed" if gate["passed"] else "not_better" if gate.get("checks") else "unchecked"
    return {"name": name, "version": str(version), "gate": standing}
