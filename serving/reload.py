"""Hot reload: a running service switches to a newly packaged champion without a restart.

**The pointer.** ``leadscore package`` (and ``rollback`` and ``retrain``, which package)
writes the "served champion" pointer (:mod:`serving.champion_pointer`): the exact BentoML
tags of the champions now.

**The switch.** Every worker polls the pointer every ``ServingConfig.model_reload_seconds``
(a daemon thread, as the drift gauge reads its report). When the tags differ from what
it serves, it loads the new models from the local BentoML store (``bentoml.models.get``
and :func:`serving.package.load_packaged`), builds their explainers, and only then swaps
one reference (:class:`ServedModels`). A request reads that reference once and keeps it
to its end, so requests in flight finish on the old models, the next ones get the new
ones, and no lock is held while scoring. A load that fails (a tag not in this store, a
damaged model) keeps the models served, logs why, counts it in
``leadscore_model_reloads_total{outcome="failed"}``, and is not retried until the pointer
changes again.

Polling rather than an admin endpoint: every worker must switch, and a request reaches
one worker; a file on the machine reaches all of them without a token to manage.
A built Bento (``leadscore package --build``) runs in a container without this store:
it keeps serving the model built into it, and a new champion is rolled out by building
and deploying a new Bento (a rolling restart, ``docs/operations.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leadscore.config import FALLBACK, Settings
from leadscore.crm.attributes import Attribute
from leadscore.features.catalog import revival_catalog
from leadscore.model.explain import Explainer
from leadscore.model.scoring_model import ScoringModel
from serving.champion_pointer import ServedChampion
from serving.fallback import FallbackScorer
from serving.package import is_fallback, load_fallback, load_packaged
from serving.revival import ServedRevival


@dataclass(frozen=True)
class ServedModels:
    """Everything a request reads of the served models, swapped as one reference."""

    #: The win model; with no champion yet, the labelled small-organisation fallback
    #: (:mod:`serving.fallback`), which a packaged champion replaces like any new one.
    model: ScoringModel | FallbackScorer
    #: The MLflow version the win model came from (what every answer reports);
    #: :data:`~leadscore.config.FALLBACK` for the fallback.
    version: str
    bento_tag: str
    #: The MLflow alias it was packaged from (a label of the BentoML model).
    alias: str | None
    explainer: Explainer | FallbackScorer
    #: The custom attributes a deal sent to /score may carry, by name.
    attributes: dict[str, Attribute]
    #: The revival model for lost deals asked for revival; None when none is served.
    revival: ServedRevival | None

    @property
    def revival_tag(self) -> str | None:
        return None if self.revival is None else self.revival.bento_tag


def load_served(
    bento_model: Any,
    revival_bento_model: Any | None,
    settings: Settings,
    grade_thresholds: dict[str, int],
) -> ServedModels:
    """The win model (and revival model) of these BentoML models, ready to answer requests."""
    revival = _revival(revival_bento_model, settings, grade_thresholds)
    if is_fallback(bento_model):
        scorer = FallbackScorer(
            load_fallback(bento_model),
            grade_thresholds,
            bento_model.info.labels.get("feature_service"),
        )
        return ServedModels(
            model=scorer,
            version=FALLBACK,
            bento_tag=str(bento_model.tag),
            alias=None,
            explainer=scorer,
            attributes={},
            revival=revival,
        )
    model, meta = load_packaged(bento_model)
    model.prepare_contributions()
    return ServedModels(
        model=model,
        version=str(meta.get("mlflow_version", bento_model.tag.version)),
        bento_tag=str(bento_model.tag),
        alias=bento_model.info.labels.get("alias"),
        explainer=Explainer(model, grade_thresholds),
        attributes={a.name: a for a in model.attributes},
        revival=revival,
    )


def _revival(
    revival_bento_model: Any | None, settings: Settings, grade_thresholds: dict[str, int]
) -> ServedRevival | None:
    """The served revival model of this BentoML model; None without one."""
    revival = None
    if revival_bento_model is not None:
        revival_model, revival_meta = load_packaged(revival_bento_model)
        revival_model.prepare_contributions()
        revival = ServedRevival(
            revival_model,
            settings.revival_model_name,
            str(revival_meta.get("mlflow_version", revival_bento_model.tag.version)),
            str(revival_bento_model.tag),
            settings.revival_horizon_days,
            Explainer(revival_model, grade_thresholds, catalog=revival_catalog()),
        )
    return revival


def differs(served: ServedModels, pointer: ServedChampion | None) -> bool:
    """Whether ``pointer`` names other models than those served."""
    return pointer is not None and (pointer.tag, pointer.revival_tag) != (
        served.bento_tag,
        served.revival_tag,
    )


def load_pointed(
    pointer: ServedChampion,
    settings: Settings,
    grade_thresholds: dict[str, int],
    get: Callable[[str], Any] | None = None,
) -> ServedModels:
    """The models ``pointer`` names, loaded from the local BentoML store (``get``: by tag,
    ``bentoml.models.get`` by default). Raises whatever loading raises."""
    if get is None:
        import bentoml

        get = bentoml.models.get
    revival = None if pointer.revival_tag is None else get(pointer.revival_tag)
    return load_served(get(pointer.tag), revival, settings, grade_thresholds)
