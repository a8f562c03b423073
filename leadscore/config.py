"""Configuration, read in one place.

Every path and name the product uses comes from :func:`load_settings`, which only
reads environment variables: importing this module creates no folders and sets no
tracking URI. Callers that need a folder create it when they write to it.

This is the only module that touches the process environment (a test keeps it so):
variables are read here, the environment of a process the product starts is built here
(:func:`child_environment`), and :func:`apply_process_env`, called by entry points, is
the one place a variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def datasets_dir() -> Path:
    """The shared real CRM datasets that tests and benchmarks read in place.

    ``../shared/datasets`` beside the checkout, or ``LEADSCORE_DATASETS``. They are never
    copied into the project (their licences and sizes vary; see each SOURCE.md).
    """
    if v := os.environ.get("LEADSCORE_DATASETS"):
        return Path(v)
    return PROJECT_ROOT.parent / "shared" / "datasets"


#: One name everywhere: the registered MLflow model, the BentoML model and the service.
MODEL_NAME = "lead_scorer"
FEATURE_SERVICE = "lead_scoring_v1"
EXPERIMENT = "lead_scoring"
#: The revival model (issue 12, ``docs/revival.md``): which lost deals come back and win.
#: One naming rule: a task's registered model is the win model's name plus ``_`` and the
#: task (:func:`task_model_name`), in the same experiment, with the same aliases.
REVIVAL = "revival"
#: The win model's task (open deals: will it be won?); its registered name is the base
#: name itself. ``promote``, ``rollback`` and ``models`` take one of :data:`TASKS`.
WIN = "win"
TASKS = (WIN, REVIVAL)
REVIVAL_FEATURE_SERVICE = "revival_v1"
#: The small-organisation fallback (``docs/fallback.md``) as a BentoML model: the win
#: model's name plus ``_fallback``. Not an MLflow model: it is fitted on the stored CRM by
#: ``leadscore package`` when no champion exists, and served by ``leadscore serve`` then.
FALLBACK = "fallback"
#: Registry aliases: the newest trained version waits as challenger; serving and
#: ranking load the champion.
CHAMPION, CHALLENGER = "champion", "challenger"
#: Key of the scoring metadata (calibration, categories, reason facts) in an MLmodel file.
METADATA_KEY = MODEL_NAME
#: Variable naming the exact BentoML model tag the service loads (see Settings.bento_model_tag).
MODEL_TAG_ENV = "LEADSCORE_MODEL_TAG"
#: Variable naming the revival model's BentoML tag (Settings.revival_bento_model_tag):
#: `leadscore serve` sets it when a revival champion is packaged, and only then.
REVIVAL_MODEL_TAG_ENV = "LEADSCORE_REVIVAL_MODEL_TAG"
#: Variable of ``ServingConfig.model_reload_seconds`` (0: no hot reload).
MODEL_RELOAD_ENV = "LEADSCORE_MODEL_RELOAD_SECONDS"

# ---------------------------------------------------------------- parameter defaults
# Each default is written once, here: the dataclass or function that uses it and the
# command-line option that overrides it both read it, so changing one changes the
# behaviour and the --help text together. Light on purpose: the CLI imports this module
# to build its options, and must not pay for pandas or MLflow to show --help.

#: Seed of every random choice (synthetic CRM, training); ``LEADSCORE_SEED`` overrides it.
SEED = 42
#: Deals in a synthetic CRM (``leadscore generate``, ``leadscore demo``).
SYNTHETIC_DEALS = 5000
#: Days a synthetic CRM's deals are created over (``leadscore generate --history-days``).
SYNTHETIC_HISTORY_DAYS = 730.0
#: Days between two training snapshots of one deal while it is open.
SNAPSHOT_EVERY_DAYS = 14
#: Training needs this many won and this many lost closed deals; below it ``rank`` scores
#: with the labelled fallback (:mod:`leadscore.model.fallback`, chosen by
#: ``benchmarks/fallback_backtest.py``), which names this minimum in every row.
MIN_CLASS_DEALS = 40
#: Ranking: an open deal without activity for this many days is dormant.
DORMANT_DAYS = 30.0
#: Ranking: deals lost within this many days are listed (by the revival model when one is
#: registered, else by the win model as if re-opened); older losses are left out and
#: counted. ``LEADSCORE_LOST_WINDOW_DAYS`` overrides it.
LOST_WINDOW_DAYS = 180.0
#: Revival of lost deals (``docs/revival.md``, :mod:`leadscore.crm.revival`): a new deal of
#: the account created at most this many days after a loss follows it up (the linking
#: window); ``LEADSCORE_REVIVAL_WINDOW_DAYS`` overrides it.
REVIVAL_WINDOW_DAYS = 730
#: The revival outcome: as of a moment after a loss, revived within this many days and
#: the revival won; ``LEADSCORE_REVIVAL_HORIZON_DAYS`` overrides it.
REVIVAL_HORIZON_DAYS = 365
#: Revival training snapshots: this many days after a loss, then every
#: ``REVIVAL_SNAPSHOT_EVERY_DAYS`` while the deal is not revived, at most
#: ``REVIVAL_SNAPSHOT_MAX_DAYS`` after the loss (the synthetic truth's grid).
REVIVAL_FIRST_SNAPSHOT_DAYS = 7
REVIVAL_SNAPSHOT_EVERY_DAYS = 30
REVIVAL_SNAPSHOT_MAX_DAYS = 730
#: Ranking: deals featurised and scored per batch (memory follows the batch, not the CRM).
RANK_BATCH_SIZE = 10_000
#: Training sets: deals whose snapshots Feast joins point-in-time in one call (memory
#: follows the chunk, not the CRM: ``docs/scaling.md``); 0 joins every snapshot at once.
#: ``LEADSCORE_FEAST_CHUNK_DEALS`` overrides it.
FEAST_CHUNK_DEALS = 20_000
#: Ingest: deals whose rows of the deal-keyed feature sources (the activity source above
#: all) are built and written at a time, a range of deal ids after another, so the build
#: holds one range's rows, not the whole CRM's (``docs/scaling.md``, "Memory of one
#: machine"); 0 builds each source at once. ``LEADSCORE_SOURCE_CHUNK_DEALS`` overrides it.
SOURCE_CHUNK_DEALS = 20_000
#: Memory DuckDB (Feast's local offline store) may hold before it spills to disk: its own
#: default is 80% of the machine. ``LEADSCORE_DUCKDB_MEMORY`` overrides it (DuckDB's units).
DUCKDB_MEMORY = "4GB"
#: Ranking order: ``expected_value`` (probability x amount) or ``probability``.
DEFAULT_RANK_BY: Final = "expected_value"
#: Promotion gate: how much worse than the champion a challenger may be on one test slice.
MAX_AUC_DROP = 0.01
MAX_LOG_LOSS_RISE = 0.01
#: Deals in the table of the managers' page written to a file (``leadscore report``).
REPORT_MAX_ROWS = 1000
#: Deals per page of the served list (``GET /leads/api/leads``), and the most one may ask.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: Languages of the managers' page; ``auto`` follows the browser's Accept-Language.
LANGUAGES: tuple[str, ...] = ("en", "zh")
AUTO_LANGUAGE = "auto"
#: Pipeline forecast (``leadscore forecast``): months ahead, the current one first.
FORECAST_MONTHS = 6
#: Forecast backtest: months after each cut compared with what was won (t+1..t+3), and
#: the number of past month starts it is rebuilt at.
BACKTEST_HORIZON = 3
BACKTEST_CUTS = 12
#: Port of the scoring service.
SERVICE_PORT = 3000
#: Where `leadscore serve` listens by default: this machine only (--host 0.0.0.0 exposes it).
SERVICE_HOST = "127.0.0.1"
#: Redis of the production online store when ``LEADSCORE_REDIS`` is not set.
REDIS = "localhost:6379"
#: Most items in each list inside one deal sent to the API (activities, contacts,
#: stage history); a longer list is a 422 naming the field.
MAX_DEAL_LIST_ITEMS = 10_000
#: Prefix of the variables overriding a risk rule threshold: ``LEADSCORE_HEALTH_MAX_STALLS=4``.
HEALTH_ENV_PREFIX = "LEADSCORE_HEALTH_"


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
    #: BentoML's home (model and Bento stores), per checkout, so that a `leadscore package`
    #: elsewhere on the machine never replaces this checkout's model.
    bentoml_home: Path = PROJECT_ROOT / "bentoml_home"
    #: The BentoML model the service loads; `leadscore serve` sets the champion's exact tag.
    bento_model_tag: str = f"{MODEL_NAME}:latest"
    #: The revival model the service loads beside it; None: none is served, and a lost
    #: deal asked for revival is an error saying so.
    revival_bento_model_tag: str | None = None
    feature_service: str = FEATURE_SERVICE
    experiment: str = EXPERIMENT
    #: Days between two training snapshots of one deal while it is open.
    snapshot_every_days: int = SNAPSHOT_EVERY_DAYS
    #: Revival: the linking window of a follow-up deal and the outcome's horizon, in days.
    revival_window_days: int = REVIVAL_WINDOW_DAYS
    revival_horizon_days: int = REVIVAL_HORIZON_DAYS
    #: Ranking: the age limit of the lost deals listed, in days.
    lost_window_days: float = LOST_WINDOW_DAYS
    #: Deals per point-in-time join of a training set (:data:`FEAST_CHUNK_DEALS`).
    feast_chunk_deals: int = FEAST_CHUNK_DEALS
    #: Deals per range of an ingest's build of the deal-keyed sources (:data:`SOURCE_CHUNK_DEALS`).
    source_chunk_deals: int = SOURCE_CHUNK_DEALS
    #: DuckDB's memory limit in the Feast steps (:data:`DUCKDB_MEMORY`).
    duckdb_memory: str = DUCKDB_MEMORY
    seed: int = SEED
    #: Redis of ``feature_store.redis.yaml`` (``host:port[,db=N][,password=...]``).
    redis: str = REDIS
    #: Spark master of ``--engine spark`` (``LEADSCORE_SPARK_MASTER``): ``local[*]`` runs
    #: on this machine's cores, ``spark://host:7077`` (or ``yarn``, ``k8s://...``) on a cluster.
    spark_master: str = "local[*]"
    #: Memory of the Spark driver (``LEADSCORE_SPARK_DRIVER_MEMORY``), which collects the
    #: feature sources and the ranked rows: about 1 GB per 100,000 activities.
    spark_driver_memory: str = "4g"
    #: Partitions of each Spark SQL shuffle (``LEADSCORE_SPARK_SHUFFLE_PARTITIONS``): Feast's
    #: point-in-time joins and materialization are SQL with several shuffles each, and
    #: Spark's default of 200 tasks per shuffle is for a cluster's gigabytes. Two to three
    #: times the cores Spark has: a cluster of 64 cores wants 128 to 192.
    spark_shuffle_partitions: int = 8
    #: The CRM export ``leadscore retrain`` ingests when given none (``LEADSCORE_EXPORT``):
    #: the folder a scheduled CRM export lands in.
    export_dir: Path | None = None
    #: How much ``leadscore retrain`` lowers its own CPU priority (``os.nice``; 0: not at
    #: all): on a machine it shares with the service, training must not slow the answers.
    retrain_nice: int = 10
    #: Risk rule thresholds from the environment, as ``name=value`` (names lower case).
    health_overrides: tuple[str, ...] = ()
    #: Language of the managers' page: ``auto`` (the browser's), ``en`` or ``zh``.
    language: str = AUTO_LANGUAGE
    #: Teams of reps, as ``(team, (owner, ...))``: the CRM contract has no team column, so
    #: the page's team filter is read from ``LEADSCORE_TEAMS`` (:func:`parse_teams`).
    teams: tuple[tuple[str, tuple[str, ...]], ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def revival_model_name(self) -> str:
        """The registered name of the revival model (:func:`task_model_name`)."""
        return task_model_name(self.model_name, REVIVAL)

    @property
    def fallback_model_name(self) -> str:
        """The BentoML model name of the fallback served with no champion (:data:`FALLBACK`)."""
        return f"{self.model_name}_{FALLBACK}"

    @property
    def feature_data(self) -> Path:
        """Git-ignored data of the Feast repo: stored CRM tables and feature sources."""
        return self.feature_repo / "data"

    @property
    def monitor_dir(self) -> Path:
        """``leadscore monitor``'s latest report (``leadscore.model.drift.LATEST``)."""
        return self.feature_data / "monitor"

    @property
    def served_dir(self) -> Path:
        """The service's log of what it scored (``serving.served_log``)."""
        return self.feature_data / "served"

    @property
    def served_pointer(self) -> Path:
        """The "served champion" pointer (``serving.reload``): the BentoML tags a running
        service should serve, written by ``leadscore package``, ``rollback`` and ``retrain``
        and polled by every worker. Beside the BentoML store whose tags it names, so a
        checkout (or ``BENTOML_HOME``) has its own."""
        return self.bentoml_home / "served_champion.json"

    @property
    def retrain_lock(self) -> Path:
        """The lock file that keeps two ``leadscore retrain`` runs from overlapping."""
        return self.feature_data / "retrain.lock"

    @property
    def crm_dir(self) -> Path:
        """Validated CRM tables as last ingested (the pipeline's system of record)."""
        return self.feature_data / "crm"

    @property
    def sources_dir(self) -> Path:
        """Parquet feature sources the Feast FileSources point at."""
        return self.feature_data / "sources"

    @property
    def duckdb_spill_dir(self) -> Path:
        """Where DuckDB spills what exceeds :attr:`duckdb_memory` (git-ignored)."""
        return self.feature_data / "duckdb_spill"

    @property
    def rejects_dir(self) -> Path:
        return self.feature_data / "rejects"

    @property
    def imports_dir(self) -> Path:
        """Contract exports written by ``leadscore import`` (one folder per source)."""
        return self.feature_data / "imports"


#: Where the heavy steps run: ``local`` (this process, the default) or ``spark`` (a Spark
#: session at ``Settings.spark_master``; the same feature and scoring code per key group).
LOCAL_ENGINE = "local"
SPARK_ENGINE = "spark"
ENGINES: tuple[str, ...] = (LOCAL_ENGINE, SPARK_ENGINE)
#: The Feast configuration of ``--engine spark`` (features/): Spark offline store, Spark
#: compute engine, Redis online store, a registry of its own.
SPARK_FEATURE_STORE_YAML = "feature_store.spark.yaml"


def engine_settings(settings: Settings, engine: str) -> Settings:
    """``settings`` for the Feast steps of ``engine``: the Spark engine's point-in-time
    joins and materialization run on Feast's Spark offline store and compute engine,
    configured by :data:`SPARK_FEATURE_STORE_YAML`; the local engine keeps the configured
    file (``LEADSCORE_FEATURE_STORE_YAML``, default the embedded one)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    if engine == LOCAL_ENGINE:
        return settings
    return replace(settings, feature_store_yaml=SPARK_FEATURE_STORE_YAML)


def task_model_name(model_name: str, task: str) -> str:
    """``lead_scorer`` -> ``lead_scorer_revival``: one rule for every model beside the win
    model, so the registry lists them together and serving finds one from the other. The
    win task's model is ``model_name`` itself, so a command taking ``--task`` names either
    model through this one function.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: one of {', '.join(TASKS)}")
    return model_name if task == WIN else f"{model_name}_{task}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from ``LEADSCORE_*`` environment variables, then apply overrides.

    ``LEADSCORE_FEATURE_REPO``, ``LEADSCORE_FEATURE_STORE_YAML``, ``MLFLOW_TRACKING_URI``
    (MLflow's own variable, so the production PostgreSQL backend is chosen by the URI
    alone), ``LEADSCORE_ARTIFACT_ROOT`` (where new experiments keep artifacts),
    ``LEADSCORE_SEED``, ``LEADSCORE_REVIVAL_WINDOW_DAYS``, ``LEADSCORE_REVIVAL_HORIZON_DAYS``
    (days), ``LEADSCORE_LOST_WINDOW_DAYS`` (days; the lost deals ranking lists),
    ``LEADSCORE_FEAST_CHUNK_DEALS`` (deals per point-in-time join of a training set),
    ``LEADSCORE_SOURCE_CHUNK_DEALS`` (deals per range of an ingest's deal-keyed sources),
    ``LEADSCORE_DUCKDB_MEMORY`` (DuckDB's memory limit in the Feast steps), ``BENTOML_HOME`` (BentoML's own variable; default ``bentoml_home/``
    in the project), ``LEADSCORE_MODEL_TAG`` (the BentoML model the service loads),
    ``LEADSCORE_REVIVAL_MODEL_TAG`` (the revival model it loads beside it, if any),
    ``LEADSCORE_REDIS`` (the Redis online store's address), ``LEADSCORE_SPARK_MASTER``
    (where ``--engine spark`` runs, default ``local[*]``), ``LEADSCORE_SPARK_DRIVER_MEMORY``
    (its driver's memory, default ``4g``), ``LEADSCORE_SPARK_SHUFFLE_PARTITIONS`` (tasks
    per Spark SQL shuffle, default 8), ``LEADSCORE_EXPORT`` (the
    export ``leadscore retrain`` ingests by default), ``LEADSCORE_RETRAIN_NICE`` (how
    much it lowers its CPU priority), ``LEADSCORE_LANGUAGE``
    (the managers' page: ``auto``, ``en`` or ``zh``), ``LEADSCORE_TEAMS`` (reps by team,
    :func:`parse_teams`) and ``LEADSCORE_HEALTH_<NAME>`` (risk rule thresholds, e.g.
    ``LEADSCORE_HEALTH_MAX_STALLS=4``).
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
    if v := os.environ.get("LEADSCORE_REVIVAL_WINDOW_DAYS"):
        env["revival_window_days"] = int(v)
    if v := os.environ.get("LEADSCORE_REVIVAL_HORIZON_DAYS"):
        env["revival_horizon_days"] = int(v)
    if v := os.environ.get("LEADSCORE_LOST_WINDOW_DAYS"):
        env["lost_window_days"] = float(v)
    if v := os.environ.get("LEADSCORE_FEAST_CHUNK_DEALS"):
        env["feast_chunk_deals"] = int(v)
    if v := os.environ.get("LEADSCORE_SOURCE_CHUNK_DEALS"):
        env["source_chunk_deals"] = int(v)
    if v := os.environ.get("LEADSCORE_DUCKDB_MEMORY"):
        env["duckdb_memory"] = v
    if v := os.environ.get("BENTOML_HOME"):
        env["bentoml_home"] = Path(v).expanduser().resolve()
    if v := os.environ.get(MODEL_TAG_ENV):
        env["bento_model_tag"] = v
    if v := os.environ.get(REVIVAL_MODEL_TAG_ENV):
        env["revival_bento_model_tag"] = v
    if v := os.environ.get("LEADSCORE_REDIS"):
        env["redis"] = v
    if v := os.environ.get("LEADSCORE_SPARK_MASTER"):
        env["spark_master"] = v
    if v := os.environ.get("LEADSCORE_SPARK_DRIVER_MEMORY"):
        env["spark_driver_memory"] = v
    if v := os.environ.get("LEADSCORE_SPARK_SHUFFLE_PARTITIONS"):
        env["spark_shuffle_partitions"] = int(v)
    if v := os.environ.get("LEADSCORE_EXPORT"):
        env["export_dir"] = Path(v).expanduser().resolve()
    if v := os.environ.get("LEADSCORE_RETRAIN_NICE"):
        env["retrain_nice"] = int(v)
    if v := os.environ.get("LEADSCORE_LANGUAGE"):
        env["language"] = parse_language(v)
    if v := os.environ.get("LEADSCORE_TEAMS"):
        env["teams"] = parse_teams(v)
    env["health_overrides"] = tuple(
        f"{name.removeprefix(HEALTH_ENV_PREFIX).lower()}={value}"
        for name, value in sorted(os.environ.items())
        if name.startswith(HEALTH_ENV_PREFIX)
    )
    env.update(overrides)
    return Settings(**env)  # type: ignore[arg-type]


def parse_language(value: str) -> str:
    """``auto``, ``en`` or ``zh`` (case and a region ignored: ``zh-CN`` is ``zh``)."""
    v = value.strip().lower().replace("_", "-").split("-")[0]
    if v not in (AUTO_LANGUAGE, *LANGUAGES):
        raise ValueError(f"LEADSCORE_LANGUAGE={value!r}: must be auto, en or zh")
    return v


def parse_teams(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Teams from ``north=王芳,李伟;south=张敏``: a team's name, ``=``, its owners (as in
    the CRM's ``owner_id``), teams apart by ``;``. A rep may be in one team only."""
    teams: list[tuple[str, tuple[str, ...]]] = []
    seen: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        name, sep, owners = part.partition("=")
        members = tuple(o.strip() for o in owners.split(",") if o.strip())
        if not sep or not name.strip() or not members:
            raise ValueError(f"LEADSCORE_TEAMS: {part!r} is not team=owner,owner")
        for o in members:
            if o in seen:
                raise ValueError(f"LEADSCORE_TEAMS: {o!r} is in {seen[o]!r} and {name.strip()!r}")
            seen[o] = name.strip()
        teams.append((name.strip(), members))
    return tuple(teams)


def process_env(settings: Settings) -> dict[str, str]:
    """Variables a leadscore process, and every server or build it starts, runs with.

    Usage telemetry off (MLflow decides when ``mlflow`` is first imported; BentoML's is off
    by default, said anyway), BentoML's home at ``settings.bentoml_home`` (BentoML reads
    ``BENTOML_HOME`` once, on first use of its stores), and MLflow's tqdm bar for artifact
    copies off (the commands draw their own progress; a tqdm bar in a log is a line of
    carriage returns). Nothing is set here: the CLI entry applies these at the
    start of a process, ``leadscore serve`` hands them to ``bentoml serve``, and a value
    already in the environment wins over them.
    """
    return {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(settings.bentoml_home),
    }


def apply_process_env(settings: Settings) -> None:
    """Give this process :func:`process_env`'s variables where they are not set already.

    The one place the product sets a process variable, for entry points only (the CLI
    calls it first thing); importing any module of the product sets none.
    """
    for key, value in process_env(settings).items():
        os.environ.setdefault(key, value)


def child_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a process leadscore starts (``feast``, ``bentoml``).

    :func:`process_env`'s defaults, this process's variables over them, ``extra`` over both.
    """
    return {**process_env(settings), **os.environ, **extra}


def feast_environment(settings: Settings) -> dict[str, str]:
    """The variables Feast expands ``${VAR}`` in the repo's YAML with, for leadscore.

    Feast reads them from the process environment and leaves an unset one as written,
    so ``feature_store.redis.yaml`` alone would connect to ``${LEADSCORE_REDIS}``. The
    leadscore steps load the YAML with this mapping instead (and hand it to the ``feast``
    processes they start): the environment, with ``LEADSCORE_REDIS`` and
    ``LEADSCORE_SPARK_MASTER`` as settings have them, and ``LEADSCORE_FEATURE_STORE_YAML``
    naming the file in use, which the repo's ``data_sources.py`` reads to declare its
    sources for that file's offline store (:func:`engine_settings`).
    """
    return child_environment(
        settings,
        LEADSCORE_REDIS=settings.redis,
        LEADSCORE_SPARK_MASTER=settings.spark_master,
        LEADSCORE_FEATURE_STORE_YAML=settings.feature_store_yaml,
    )


#: Test hook (crash-recovery tests and ``benchmarks/crash_recovery.py`` only, never set in
#: normal use): a process whose ``LEADSCORE_TEST_CRASH_AT`` names a step kills itself there.
CRASH_AT_ENV = "LEADSCORE_TEST_CRASH_AT"


def crash_point(step: str) -> None:
    """Test hook: die at once with SIGKILL, as ``kill -9`` would, when ``step`` is the one
    ``LEADSCORE_TEST_CRASH_AT`` names. A no-op otherwise; the steps are listed where they
    are called (``grep crash_point``)."""
    if os.environ.get(CRASH_AT_ENV) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


#: Lowest score of grades A, B and C; D is everything below C.
DEFAULT_GRADE_THRESHOLDS: dict[str, int] = {"A": 60, "B": 40, "C": 20}


def _switch(text: str) -> bool:
    """An on/off setting: off when "0", "false", "no" or "off" (any case), else on."""
    return text.strip().lower() not in ("0", "false", "no", "off")


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


#: Prefix of the environment variables that override :class:`DriftThresholds`.
DRIFT_ENV_PREFIX = "LEADSCORE_DRIFT_"


@dataclass(frozen=True)
class DriftThresholds:
    """Where a change becomes an alert. Defaults: the common PSI reading (0.25: shifted),
    ten points more or fewer missing values, and a new category on 5% of the rows."""

    psi: float = 0.25
    score_psi: float = 0.25
    missing_change: float = 0.10
    new_category_share: float = 0.05
    #: Fewer current rows than this: the comparison says so and raises nothing.
    min_rows: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DriftThresholds:
        """Each field from ``LEADSCORE_DRIFT_<FIELD>`` when set (``..._PSI=0.2``)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(DRIFT_ENV_PREFIX + f.name.upper())
            if raw is not None:
                try:
                    values[f.name] = int(raw) if f.type in (int, "int") else float(raw)
                except ValueError as exc:
                    raise ValueError(
                        f"{DRIFT_ENV_PREFIX}{f.name.upper()}={raw!r}: not a number"
                    ) from exc
        return cls(**values)


@dataclass(frozen=True)
class ServingConfig:
    """Serving policy, read once from the environment when the service starts."""

    grade_thresholds: Mapping[str, int]
    #: Bearer token required on scoring endpoints; None leaves them open.
    api_token: str | None = None
    #: Seconds an account's or owner's track record is reused before asking the store again.
    history_ttl_seconds: float = 300.0
    #: Deadline of one online-store lookup, in seconds; past it the lookup counts as failed.
    store_timeout_seconds: float = 0.3
    #: Requests one worker process handles at once; more get 503 with Retry-After at once.
    max_concurrent_requests: int = 16
    #: Deals one worker process holds at once (in requests admitted, not yet answered).
    max_queued_deals: int = 2000
    #: A request of more deals than this is a batch, scored in chunks of this many deals
    #: that let smaller requests go first; batches have their own budget...
    batch_deals: int = 20
    #: ...of this many at once per worker, so they cannot crowd out single-deal requests.
    max_concurrent_batches: int = 1
    #: Score large batches in a process of their own beside each worker, at the lowest
    #: CPU priority (:mod:`serving.batch_process`); off, the worker scores them in chunks.
    batch_process: bool = True
    #: Largest request body, in bytes; a larger one gets 413 before it is parsed.
    max_body_bytes: int = 20_000_000
    #: Longest a request may expect to wait behind the work in progress (a small one: and
    #: to be served); beyond it, 503 at once. The service's answers are meant to come within a second, even with the online
    #: store down; a request that would only start after that is better retried than held.
    #: The estimate counts every small request ahead at its average time served, so it errs
    #: high: 0.5 s refused requests from 6 concurrent clients on a busy 2-core machine.
    max_queue_delay_seconds: float = 1.0
    #: Keep a row per scored deal (features, probability, model version, time) for drift
    #: and for checking what was served once outcomes arrive; written every this many
    #: seconds. ``LEADSCORE_SERVED_LOG=0`` turns it off.
    served_log: bool = True
    served_log_flush_seconds: float = 5.0
    #: How often each worker re-reads the last drift report for its gauge.
    drift_refresh_seconds: float = 30.0
    #: How often each worker reads the served-champion pointer (``serving.reload``) and
    #: loads a newly packaged champion; 0 turns hot reload off (the service then serves
    #: the model it started with, as ``leadscore serve --alias`` other than champion does).
    model_reload_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServingConfig:
        """``LEADSCORE_GRADE_THRESHOLDS`` ("A=60,B=40,C=20"), ``LEADSCORE_API_TOKEN``,
        ``LEADSCORE_HISTORY_TTL_SECONDS``, ``LEADSCORE_STORE_TIMEOUT_SECONDS``,
        ``LEADSCORE_MAX_CONCURRENT_REQUESTS``, ``LEADSCORE_MAX_QUEUED_DEALS``,
        ``LEADSCORE_BATCH_DEALS``, ``LEADSCORE_MAX_CONCURRENT_BATCHES``, ``LEADSCORE_BATCH_PROCESS``,
        ``LEADSCORE_MAX_BODY_BYTES``, ``LEADSCORE_MAX_QUEUE_DELAY_SECONDS``,
        ``LEADSCORE_SERVED_LOG``, ``LEADSCORE_SERVED_LOG_FLUSH_SECONDS``,
        ``LEADSCORE_DRIFT_REFRESH_SECONDS``, ``LEADSCORE_MODEL_RELOAD_SECONDS``."""
        thresholds = env.get("LEADSCORE_GRADE_THRESHOLDS")
        return cls(
            grade_thresholds=parse_grade_thresholds(thresholds)
            if thresholds
            else DEFAULT_GRADE_THRESHOLDS,
            api_token=env.get("LEADSCORE_API_TOKEN") or None,
            history_ttl_seconds=float(env.get("LEADSCORE_HISTORY_TTL_SECONDS", 300)),
            store_timeout_seconds=float(env.get("LEADSCORE_STORE_TIMEOUT_SECONDS", 0.3)),
            max_concurrent_requests=int(env.get("LEADSCORE_MAX_CONCURRENT_REQUESTS", 16)),
            max_queued_deals=int(env.get("LEADSCORE_MAX_QUEUED_DEALS", 2000)),
            batch_deals=int(env.get("LEADSCORE_BATCH_DEALS", 20)),
            max_concurrent_batches=int(env.get("LEADSCORE_MAX_CONCURRENT_BATCHES", 1)),
            batch_process=_switch(env.get("LEADSCORE_BATCH_PROCESS", "1")),
            max_body_bytes=int(env.get("LEADSCORE_MAX_BODY_BYTES", 20_000_000)),
            max_queue_delay_seconds=float(env.get("LEADSCORE_MAX_QUEUE_DELAY_SECONDS", 1.0)),
            served_log=_switch(env.get("LEADSCORE_SERVED_LOG", "1")),
            served_log_flush_seconds=float(env.get("LEADSCORE_SERVED_LOG_FLUSH_SECONDS", 5.0)),
            drift_refresh_seconds=float(env.get("LEADSCORE_DRIFT_REFRESH_SECONDS", 30.0)),
            model_reload_seconds=float(env.get(MODEL_RELOAD_ENV, 5.0)),
        )
