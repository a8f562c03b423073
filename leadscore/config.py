"""Configuration, read in one place.

Every path and name the product uses comes from :func:`load_settings`, which only
reads environment variables: importing this module creates no folders and sets no
tracking URI. Callers that need a folder create it when they write to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: One name everywhere: the registered MLflow model, the BentoML model and the service.
MODEL_NAME = "lead_scorer"
FEATURE_SERVICE = "lead_scoring_v1"
EXPERIMENT = "lead_scoring"
#: Registry aliases: the newest trained version waits as challenger; serving and
#: ranking load the champion.
CHAMPION, CHALLENGER = "champion", "challenger"
#: Key of the scoring metadata (calibration, categories, reason facts) in an MLmodel file.
METADATA_KEY = MODEL_NAME


@dataclass(frozen=True)
class Settings:
    """Where things live and how the pipeline behaves; immutable once read."""

    root: Path = PROJECT_ROOT
    feature_repo: Path = PROJECT_ROOT / "features"
    #: Feast config file inside the repo; ``feature_store.redis.yaml`` selects Redis.
    feature_store_yaml: str = "feature_store.yaml"
    tracking_uri: str = f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    artifact_root: Path = PROJECT_ROOT / "mlruns" / "artifacts"
    model_name: str = MODEL_NAME
    feature_service: str = FEATURE_SERVICE
    experiment: str = EXPERIMENT
    #: Days between two training snapshots of one deal while it is open.
    snapshot_every_days: int = 14
    seed: int = 42
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def feature_data(self) -> Path:
        """Git-ignored data of the Feast repo: stored CRM tables and feature sources."""
        return self.feature_repo / "data"

    @property
    def crm_dir(self) -> Path:
        """Validated CRM tables as last ingested (the pipeline's system of record)."""
        return self.feature_data / "crm"

    @property
    def sources_dir(self) -> Path:
        """Parquet feature sources the Feast FileSources point at."""
        return self.feature_data / "sources"

    @property
    def rejects_dir(self) -> Path:
        return self.feature_data / "rejects"


def load_settings(**overrides: object) -> Settings:
    """Read settings from ``LEADSCORE_*`` environment variables, then apply overrides.

    ``LEADSCORE_FEATURE_REPO``, ``LEADSCORE_FEATURE_STORE_YAML``, ``MLFLOW_TRACKING_URI``
    (MLflow's own variable, so the production PostgreSQL backend is chosen by the URI
    alone), ``LEADSCORE_ARTIFACT_ROOT`` (where new experiments keep artifacts) and
    ``LEADSCORE_SEED``.
    """
    env: dict[str, object] = {}
    if v := os.environ.get("LEADSCORE_FEATURE_REPO"):
        env["feature_repo"] = Path(v).resolve()
    if v := os.environ.get("LEADSCORE_FEATURE_STORE_YAML"):
        env["feature_store_yaml"] = v
    if v := os.environ.get("MLFLOW_TRACKING_URI"):
        env["tracking_uri"] = v
    if v := os.environ.get("LEADSCORE_ARTIFACT_ROOT"):
        env["artifact_root"] = Path(v).resolve()
    if v := os.environ.get("LEADSCORE_SEED"):
        env["seed"] = int(v)
    env.update(overrides)
    return Settings(**env)  # type: ignore[arg-type]


#: Lowest score of grades A, B and C; D is everything below C.
DEFAULT_GRADE_THRESHOLDS: dict[str, int] = {"A": 60, "B": 40, "C": 20}


def parse_grade_thresholds(text: str) -> dict[str, int]:
    """``"A=60,B=40,C=20"`` -> {"A": 60, "B": 40, "C": 20}; strictly decreasing, within 0-100."""
    out: dict[str, int] = {}
    for part in text.split(","):
        grade, _, value = part.partition("=")
        out[grade.strip().upper()] = int(value)
    if list(out) != ["A", "B", "C"]:
        raise ValueError(f"grade thresholds must give A, B and C in that order, got {text!r}")
    a, b, c = out.values()
    if not 100 >= a > b > c >= 0:
        raise ValueError(f"grade thresholds must decrease within 0-100, got {text!r}")
    return out


@dataclass(frozen=True)
class ServingConfig:
    """Serving policy, read once from the environment when the service starts."""

    grade_thresholds: Mapping[str, int]
    #: Bearer token required on scoring endpoints; None leaves them open.
    api_token: str | None = None
    #: Seconds an account's or owner's track record is reused before asking the store again.
    history_ttl_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServingConfig:
        """``LEADSCORE_GRADE_THRESHOLDS`` ("A=60,B=40,C=20"), ``LEADSCORE_API_TOKEN``,
        ``LEADSCORE_HISTORY_TTL_SECONDS``."""
        thresholds = env.get("LEADSCORE_GRADE_THRESHOLDS")
        return cls(
            grade_thresholds=parse_grade_thresholds(thresholds)
            if thresholds
            else DEFAULT_GRADE_THRESHOLDS,
            api_token=env.get("LEADSCORE_API_TOKEN") or None,
            history_ttl_seconds=float(env.get("LEADSCORE_HISTORY_TTL_SECONDS", 300)),
        )
