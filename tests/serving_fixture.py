"""A synthetic CRM, API payloads from it, and a small champion model, for serving tests.

Shared by the serving tests and ``benchmarks/serving_latency.py``: the model is trained
here in seconds (not by ``leadscore train``), then logged and registered with training's
own registry functions, so packaging and serving see exactly the MLflow layout
production has.

The API never gives an open-deal score to a closed deal (issue 12), and the synthetic
CRM's history is mostly closed deals: to have many deals with full histories to score,
payloads and the online store show the deals as they stood while open (status open),
unless a test asks for their real status (``as_exported``, ``closed_in_store``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd

from leadscore.config import FEATURE_SERVICE, Settings
from leadscore.crm.contract import OPEN
from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import CATEGORICAL_FEATURES, MODEL_FEATURES, activity_features
from leadscore.features.featurize import (
    DEAL_STATUS,
    build_feature_sources,
    features_as_of,
    scoring_entities,
)
from leadscore.model.reason_stats import compute_reason_stats
from leadscore.model.scoring_model import ScoringModel
from serving.package import PackagedModel, package_champion
from serving.schemas import SUMMARY_TIMES
from training.calibration import fit_platt
from training.data import in_memory_frame

#: End of the synthetic history; scoring "now" in the tests.
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")


@lru_cache(maxsize=4)
def synthetic_tables(n_deals: int = 1500, seed: int = 7) -> dict[str, pd.DataFrame]:
    """The contract tables of a synthetic CRM whose history ends at :data:`AS_OF`."""
    return generate_crm(n_deals, seed=seed, as_of=AS_OF).tables


def _iso(value: Any) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN/NA become None, numpy numbers plain Python."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _records(df: pd.DataFrame, times: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by deal_id, as JSON-safe dicts (times as ISO 8601)."""
    times = set(times)
    out: dict[str, list[dict[str, Any]]] = {}
    cols = [c for c in df.columns if c != "deal_id"]
    for row in df.itertuples(index=False):
        d = row._asdict()
        out.setdefault(d["deal_id"], []).append(
            {c: _iso(d[c]) if c in times else _clean(d[c]) for c in cols}
        )
    return out


def crm_payloads(
    tables: Mapping[str, pd.DataFrame],
    deal_ids: Iterable[str] | None = None,
    as_exported: bool = False,
) -> list[dict[str, Any]]:
    """Deals as a CRM would send them to ``POST /score`` (JSON-ready dicts).

    Each is sent as it stood while open (status open, no ``closed_at``), to be scored;
    ``as_exported``: with its status and ``closed_at`` as the CRM holds them.
    """
    deals = tables["deals"]
    if deal_ids is not None:
        deals = deals.set_index("deal_id").loc[list(deal_ids)].reset_index()
    wanted = set(deals["deal_id"])
    accounts = tables["accounts"].set_index("account_id")
    titles = tables["contacts"].set_index("contact_id")["title"]
    dc = tables["deal_contacts"][tables["deal_contacts"]["deal_id"].isin(wanted)]
    dc = dc.assign(title=dc["contact_id"].map(titles))[
        ["deal_id", "contact_id", "title", "role", "added_at"]
    ]
    acts = tables["activities"][tables["activities"]["deal_id"].isin(wanted)]
    stages = tables["stage_history"][tables["stage_history"]["deal_id"].isin(wanted)]
    contacts = _records(dc, ["added_at"])
    activities = _records(acts, ["occurred_at"])
    history = _records(stages, ["entered_at"])
    out = []
    for d in deals.itertuples(index=False):
        acc = accounts.loc[d.account_id]
        out.append(
            {
                "deal_id": d.deal_id,
                "account_id": d.account_id,
                "owner_id": _clean(d.owner_id),
                "created_at": _iso(d.created_at),
                "channel": _clean(d.channel),
                "product": _clean(d.product),
                "competitor": _clean(d.competitor),
                "amount": _clean(d.amount),
                "currency": _clean(d.currency),
                "status": d.status if as_exported else OPEN,
                "closed_at": _iso(d.closed_at) if as_exported else None,
                "account": {
                    c: _clean(acc[c])
                    for c in ("industry", "region", "employee_count", "annual_revenue")
                },
                "contacts": contacts.get(d.deal_id, []),
                "activities": activities.get(d.deal_id, []),
                "stage_history": history.get(d.deal_id, []),
            }
        )
    return out


def with_activity_summaries(
    payloads: list[dict[str, Any]], tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp
) -> list[dict[str, Any]]:
    """The payloads with each activity list replaced by the CRM-side summary at ``as_of``.

    The summary is what the feature pipeline itself gives at the moment: the
    ``deal_activity`` view's values and the window counts ``deal_timing`` reads from its
    cumulative counts (the in-memory join, which agrees with Feast); deals without
    activity by then get an empty list instead.
    """
    joined = features_as_of(
        build_feature_sources(tables), scoring_entities(tables["deals"], as_of)
    ).set_index("deal_id")
    latest = joined[joined["n_activities"].notna()]
    columns = [f.name for f in activity_features()] + list(SUMMARY_TIMES)
    out = []
    for p in payloads:
        q = {k: v for k, v in p.items() if k != "activities"}
        if p["deal_id"] in latest.index:
            row = latest.loc[p["deal_id"]]
            q["activity_summary"] = {
                c: None
                if pd.isna(row[c])
                else _iso(row[c])
                if c in SUMMARY_TIMES
                else float(row[c])
                for c in columns
            }
        else:
            q["activities"] = []
        out.append(q)
    return out


@lru_cache(maxsize=1)
def small_champion() -> tuple[ScoringModel, pd.DataFrame]:
    """The tests' model on :func:`synthetic_tables`, trained once per session."""
    return train_small_model(synthetic_tables())


def train_small_model(
    tables: Mapping[str, pd.DataFrame], rounds: int = 80, num_leaves: int = 15, seed: int = 7
) -> tuple[ScoringModel, pd.DataFrame]:
    """A small calibrated booster with reason stats, and the snapshot frame it learnt from."""
    frame = in_memory_frame(tables)
    features = list(MODEL_FEATURES)
    categories = {
        c: sorted(frame[c].dropna().astype(str).unique())
        for c in features
        if c in CATEGORICAL_FEATURES
    }
    model = ScoringModel(booster=None, features=features, categories=categories)  # type: ignore[arg-type]
    X, y = model.encode(frame), frame["won"].to_numpy()
    params = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "num_threads": 1,
        "seed": seed,
        "deterministic": True,
        "verbose": -1,
    }
    data = lgb.Dataset(
        X, label=y, feature_name=features, categorical_feature=model.categorical_indices
    )
    model.booster = lgb.train(params, data, num_boost_round=rounds)
    model = ScoringModel(
        booster=model.booster,
        features=features,
        categories=categories,
        calibration=fit_platt(model.raw_score(X), y),
        reason_stats=compute_reason_stats(frame, features, categories),
        info={"feature_service": FEATURE_SERVICE, "trees": model.booster.current_iteration()},
    )
    return model, frame


#: End of the revival CRM's history (:func:`small_revival`).
REVIVAL_AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@lru_cache(maxsize=1)
def revival_tables() -> dict[str, pd.DataFrame]:
    """A synthetic CRM with revival simulated over four years, ending at :data:`REVIVAL_AS_OF`."""
    from leadscore.crm.synth import REVIVAL_HISTORY_DAYS

    crm = generate_crm(
        3000, seed=5, as_of=REVIVAL_AS_OF, revival=True, history_days=REVIVAL_HISTORY_DAYS
    )
    return crm.tables


@lru_cache(maxsize=1)
def small_revival() -> tuple[ScoringModel, pd.DataFrame]:
    """A revival model trained by training's own pipeline on :func:`revival_tables`'
    in-memory revival frame (seconds), and that frame."""
    from training.result import TrainConfig
    from training.revival import fit_and_evaluate_revival, in_memory_revival_frame

    frame, _ = in_memory_revival_frame(revival_tables(), REVIVAL_AS_OF, 730, 365)
    model = fit_and_evaluate_revival(frame, TrainConfig(bootstrap_resamples=20)).model
    return model, frame


def register_champion(
    model: ScoringModel,
    frame: pd.DataFrame,
    settings: Settings,
    feature_service: str = FEATURE_SERVICE,
) -> str:
    """Log and register the model as training does (as ``settings.model_name``, read from
    ``feature_service``), and make it ``champion``; its version."""
    import mlflow

    from leadscore.config import CHAMPION
    from leadscore.model.registry import mlflow_client
    from training.registry import ensure_experiment, register_model

    client = mlflow_client(settings)
    with mlflow.start_run(experiment_id=ensure_experiment(settings, client)):
        mlflow.set_tag("feast.feature_service", feature_service)
        version = register_model(model, frame.head(5), settings).version
    client.set_model_version_tag(
        settings.model_name, version, "feast.feature_service", feature_service
    )
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    return str(version)


#: The BentoML home of this test session (BentoML reads BENTOML_HOME once per process).
_BENTOML_HOMES: list[Path] = []


def serving_environment(base: Path) -> tuple[Settings, dict[str, str]]:
    """Settings and environment for a private MLflow store, BentoML home and Feast repo under ``base``.

    Set the environment before anything touches the BentoML model store: BentoML reads
    ``BENTOML_HOME`` once per process, so every call in one test session gets the BentoML
    home of the first (each module's champion is packaged beside the others', found by
    its own MLflow run), and a server started with this environment finds what the
    session packaged.
    """
    from tests.conftest import isolated

    if not _BENTOML_HOMES:
        _BENTOML_HOMES.append(base / "bentoml")
    # The settings name the BentoML home the CLI and the service use: the served-champion
    # pointer every service polls lives there, and `prepare_champion` writes it. Built
    # before the environment is set, the settings named the checkout's own
    # `bentoml_home/`, which all test workers share, while the service read the process's
    # home, where an earlier module's `leadscore package` of a fallback had left its
    # pointer: the service then switched to that fallback mid-module.
    settings = dataclasses.replace(isolated(base), bentoml_home=_BENTOML_HOMES[0])
    env = {
        "BENTOML_HOME": str(_BENTOML_HOMES[0]),
        "BENTOML_DO_NOT_TRACK": "true",
        "LEADSCORE_FEATURE_REPO": str(settings.feature_repo),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "OMP_NUM_THREADS": "1",
        # No batch process beside each worker of a test's server: it would load a second
        # copy of the service at every start (seconds of CPU each, on CI's two cores), and
        # a batch would be scored in chunks or by it depending on when it got ready.
        # tests/code/test_batch_process.py covers it; benchmarks/reliability.py turns it on.
        "LEADSCORE_BATCH_PROCESS": "0",
        # The online store's production deadline, 0.3 s, is missed by a healthy SQLite or
        # Redis store on CI's two busy cores (three test workers, Spark, servers), and a
        # missed deadline is a 503: tests of the deadline itself set their own.
        "LEADSCORE_STORE_TIMEOUT_SECONDS": "10",
    }
    return settings, env


def prepare_champion(
    settings: Settings,
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel,
    frame: pd.DataFrame,
    store_deals: Iterable[str] | None = None,
    closed_in_store: Iterable[str] = (),
) -> PackagedModel:
    """Register the model as champion, package it for BentoML, fill the Feast online store.

    The store holds the features of ``store_deals`` (default: every deal) as of
    :data:`AS_OF`, each deal open (as :func:`crm_payloads` sends it) but those of
    ``closed_in_store``, which keep their status; every feature, track records included,
    is the real CRM's.
    """
    from leadscore.features.featurize import write_sources
    from leadscore.features.store import apply_repo, materialize

    register_champion(model, frame, settings)
    packaged = package_champion(settings)
    if store_deals is not None:
        ids = set(store_deals)
        tables = {
            k: (v[v["deal_id"].isin(ids)] if "deal_id" in v else v) for k, v in tables.items()
        }
    sources = build_feature_sources(tables)
    sources["deal_profile"] = seen_open(sources["deal_profile"], set(closed_in_store))
    write_sources(sources, settings.sources_dir)
    apply_repo(settings)
    materialize(settings, AS_OF.to_pydatetime())
    return packaged


def seen_open(profile: pd.DataFrame, closed: set[str]) -> pd.DataFrame:
    """The ``deal_profile`` source with every deal but ``closed`` open at every moment.

    A closed deal's close is its second row (the first is its creation); only
    :data:`DEAL_STATUS` tells them apart, so dropping it changes no feature.
    """
    keep = profile["deal_id"].isin(closed)
    out = profile[keep | ~profile["deal_id"].duplicated()].copy()
    out.loc[~out["deal_id"].isin(closed), DEAL_STATUS] = OPEN
    return out.reset_index(drop=True)


@contextmanager
def running_server(
    cmd: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    timeout: float = 300,
    log: Path | None = None,
) -> Iterator[None]:
    """Run a server in its own process group until the block ends, once ``ready_url`` answers 200.

    A server that exits while starting raises with the tail of its stderr; one that is
    not ready in ``timeout`` seconds raises TimeoutError. The whole process group is
    stopped at the end (``bentoml serve`` runs its workers as children). With ``log``
    its stderr goes to that file, for a test to read what the server logged while it
    ran (a pipe nobody reads would block a server that logs much once it is full).
    """
    err = open(log, "wb") if log is not None else None  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if err is None else err,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                if log is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                else:
                    tail = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{cmd[0]} exited: {tail}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd[0]} not ready after {timeout} s")
            time.sleep(0.5)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if err is not None:
            err.close()


@contextmanager
def leadscore_serve(
    env: Mapping[str, str], timeout: float = 300, **variables: str
) -> Iterator[str]:
    """``leadscore serve`` (one worker, on a free port of 127.0.0.1) with ``env`` and
    ``variables`` on top of this process's environment, until the block ends; its URL,
    once ``/readyz`` answers."""
    import sys

    from tests.conftest import free_port

    leadscore = str(Path(sys.executable).with_name("leadscore"))
    server_env = {
        **os.environ,
        **env,
        "BENTOML_CONFIG_OPTIONS": "services.lead_scorer.workers=1",
        **variables,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [leadscore, "serve", "--port", str(port), "--host", "127.0.0.1"]
    with running_server(cmd, server_env, f"{url}/readyz", timeout=timeout):
        yield url
