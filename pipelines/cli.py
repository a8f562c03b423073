"""`leadscore`: the command line. Each command parses, calls one typed step and prints.

Results go to stdout; logs, warnings and progress bars to stderr (:mod:`pipelines.console`).
Option defaults are the core's (:mod:`leadscore.config`), never restated here. Heavy
modules (pandas, Feast, MLflow) are imported inside the commands, so ``--help`` is quick.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadscore.config import (
    BACKTEST_CUTS,
    BACKTEST_HORIZON,
    CHAMPION,
    DEFAULT_RANK_BY,
    DORMANT_DAYS,
    ENGINES,
    FALLBACK,
    FORECAST_MONTHS,
    LOCAL_ENGINE,
    LOST_WINDOW_DAYS,
    MAX_AUC_DROP,
    MAX_LOG_LOSS_RISE,
    RANK_BATCH_SIZE,
    REPORT_MAX_ROWS,
    SEED,
    SERVICE_HOST,
    SERVICE_PORT,
    SYNTHETIC_DEALS,
    SYNTHETIC_HISTORY_DAYS,
    TASKS,
    WIN,
    Settings,
    load_settings,
    task_model_name,
)
from pipelines.console import Verbosity, configured, working

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    help="Lead scoring: synthetic CRM, point-in-time features on Feast, LightGBM models in MLflow, "
    "a BentoML scoring service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped for the source; markdown joins their lines into paragraphs.
    rich_markup_mode="markdown",
)
features_app = typer.Typer(
    help="Feast feature repo: apply definitions, materialize the online store.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(features_app, name="features")


def _process_defaults() -> None:
    """Apply :func:`~leadscore.config.process_env` to this process, where it starts.

    Before any command imports MLflow (its telemetry switch is read at import) or touches
    a BentoML store (its home is read on first use); a value already set wins.
    """
    from leadscore.config import apply_process_env

    apply_process_env(load_settings())


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Debug logging; show every library notice."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Errors only: no warnings, no progress bars.")
    ] = False,
) -> None:
    """Global options: how much the command shows on stderr (results always go to stdout)."""
    if verbose and quiet:
        raise typer.BadParameter("choose one of --verbose and --quiet", param_hint="--quiet")
    _process_defaults()
    level = Verbosity.VERBOSE if verbose else Verbosity.QUIET if quiet else Verbosity.DEFAULT
    ctx.with_resource(configured(level))


#: ``--engine`` of the Feast steps (apply, materialize, training sets, training).
FeastEngine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Feast here (local: the configured feature_store*.yaml) or on Spark "
        "(spark: features/feature_store.spark.yaml, Feast's Spark offline store and compute "
        "engine at LEADSCORE_SPARK_MASTER, Redis online store).",
    ),
]


def _check_engine(engine: str) -> str:
    """``--engine``'s value, or typer's usage error (exit 2) naming the engines there are."""
    if engine not in ENGINES:
        raise typer.BadParameter(f"must be one of {', '.join(ENGINES)}", param_hint="--engine")
    return engine


def _engine_settings(engine: str) -> Settings:
    """Settings for the Feast steps of ``engine`` (:func:`leadscore.config.engine_settings`)."""
    from leadscore.config import engine_settings

    return engine_settings(load_settings(), _check_engine(engine))


def _when(value: str | None) -> pd.Timestamp | None:
    """A time option in UTC (naive means UTC), or None when not given."""
    if value is None:
        return None
    from leadscore.timeutil import as_utc

    return as_utc(value)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the export to.")],
    deals: Annotated[
        int, typer.Option("--deals", min=1, help="Number of deals.")
    ] = SYNTHETIC_DEALS,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same CRM.")] = SEED,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="End of the simulated history (default now).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    revival: Annotated[
        bool,
        typer.Option(
            "--revival/--no-revival",
            help="Also simulate lost deals coming back (docs/revival.md) and write "
            "revival_truth.parquet.",
        ),
    ] = False,
    history_days: Annotated[
        float,
        typer.Option(
            "--history-days",
            min=30,
            help="Days the deals are created over (1460 gives the revival model known "
            "outcomes to learn from: a revival is known a year after the loss).",
        ),
    ] = SYNTHETIC_HISTORY_DAYS,
) -> None:
    """Write a synthetic CRM export (tables plus truth.parquet, and revival_truth.parquet with
    --revival; the pipeline reads neither)."""
    from leadscore.crm.synth import generate_crm, write_export

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    with working():
        crm = generate_crm(
            deals, seed=seed, as_of=_when(as_of), revival=revival, history_days=history_days
        )
        paths = write_export(crm, out, fmt=fmt)  # type: ignore[arg-type]
    for name, path in paths.items():
        rows = len(crm.tables[name]) if name in crm.tables else len(getattr(crm, name))
        typer.echo(f"{name:15s} {rows:>10,d} rows  {path}")


@app.command()
def ingest(
    export_dir: Annotated[
        Path, typer.Argument(help="Folder with <table>.csv or <table>.parquet files.")
    ],
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Build the feature sources here (local) or on Spark at LEADSCORE_SPARK_MASTER "
            "(spark, default local[*]).",
        ),
    ] = LOCAL_ENGINE,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Build every feature source from all stored rows (by default a re-ingest "
            "rebuilds only the accounts and owners the export's changes reach).",
        ),
    ] = False,
) -> None:
    """Validate a CRM export, merge it into the stored tables and update the feature sources.

    Exits 2 with one message when the export cannot be used (a folder or file that cannot
    be read, a wrong delimiter or encoding, a missing mandatory column, no deal to store):
    nothing is stored then. Rows read = stored + rejected + duplicates, per table.
    """
    from leadscore.crm.ingest import ExportError
    from leadscore.pipeline_state import StateBusyError
    from pipelines.steps import ingest as run_ingest

    _check_engine(engine)
    try:
        with working() as progress:
            summary = run_ingest(
                export_dir, load_settings(), progress=progress, engine=engine, rebuild=rebuild
            )
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except StateBusyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    columns = ("read", "valid", "rejected", "duplicates", "inserted", "updated", "unchanged")
    typer.echo(f"{'table':15s}" + "".join(f" {c:>10s}" for c in columns))
    for table, c in summary.counts.items():
        typer.echo(f"{table:15s}" + "".join(f" {c.get(k, 0):>10,d}" for k in columns))
    read = sum(c.get("read", 0) for c in summary.counts.values())
    stored, rejected, duplicates = (
        sum(c.get(k, 0) for c in summary.counts.values())
        for k in ("valid", "rejected", "duplicates")
    )
    typer.echo(
        f"rows read {read:,d} = stored {stored:,d} + rejected {rejected:,d} "
        f"+ duplicates {duplicates:,d} (identical repeats, stored once)"
    )
    for r in summary.rejects[:20]:
        typer.echo(f"rejected: {r.place}, {r.column}={r.value!r}: {r.reason}", err=True)
    if len(summary.rejects) > 20:
        typer.echo(f"... {len(summary.rejects) - 20} more", err=True)
    typer.echo(f"rejects: {len(summary.rejects)} (see {summary.rejects_file})")
    typer.echo(
        "feature sources: " + ", ".join(f"{k}={v:,d}" for k, v in summary.source_rows.items())
    )
    if summary.deals_rebuilt is None:
        typer.echo(f"feature sources built from all {summary.deals_stored:,d} deals")
    else:
        typer.echo(
            f"feature sources rebuilt for {summary.deals_rebuilt:,d} of {summary.deals_stored:,d}"
            " deals (the accounts and owners this export's changes reach; the profile, stage,"
            f" contact and activity rows of the {summary.own_deals_rebuilt or 0:,d} whose own rows"
            " changed), the rest kept"
        )


@app.command("import")
def import_(
    source: Annotated[
        Path, typer.Argument(help="A CRM export: a folder of CSV/TSV/XLSX files or one file.")
    ],
    mapping: Annotated[
        str,
        typer.Option("--mapping", help="A mapping YAML file, or a preset: salesforce, hubspot."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the contract export (default: <feature data>/imports/<source name>).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write the export and report; check it, store nothing."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import a CRM's own export through a mapping into a contract export, then ingest it.

    The report (also written as import_report.json beside the export, every rejected row
    in import_rejects.csv) shows files, encodings and delimiters, column mapping, value
    maps, dates, outcome rules, duplicates and rejected rows by file and line, and the
    leakage audit of the deals and accounts stored (or, with --dry-run, that would be):
    flagged columns with their evidence, which training leaves out unless the mapping
    keeps them. Exits 2 when the mapping or the source cannot be used.
    """
    from leadscore.crm.importer import audit_import, check_export
    from leadscore.crm.importer.mapping import MappingError, load_mapping
    from leadscore.crm.importer.read import SourceError
    from leadscore.crm.importer.report import (
        build_report,
        contract_rejects,
        report_lines,
        write_report,
    )
    from leadscore.crm.importer.run import ImportFailure, run_import, write_export
    from leadscore.crm.ingest import ExportError
    from leadscore.pipeline_state import StateBusyError
    from pipelines.steps import ingest as run_ingest

    settings = load_settings()
    out = out or settings.imports_dir / source.stem
    try:
        with working() as progress:
            result = run_import(source, load_mapping(mapping))
            write_export(result, out)
            if dry_run:
                checked, counts = check_export(result, out, settings.crm_dir)
            else:
                summary = run_ingest(out, settings, progress=progress)
                checked, counts = contract_rejects(result, summary.rejects), summary.counts
            audit, audited_rows = audit_import(result, out, checked)
    except (MappingError, SourceError, ImportFailure, ExportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except StateBusyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    report = build_report(result, out, checked, counts, dry_run, audit, audited_rows)
    import pandas as pd

    write_report(report, pd.concat([result.rejects, checked], ignore_index=True), out)
    if as_json:
        _print_json(report)
        return
    for line in report_lines(report):
        typer.echo(line)
    typer.echo(
        f"contract export: {out}" + (" (dry run: nothing stored)" if dry_run else " (ingested)")
    )


@app.command()
def contract() -> None:
    """Print the CRM export contract as Markdown (columns, types, required, meaning)."""
    from leadscore.crm.contract import contract_markdown

    typer.echo(contract_markdown())


@features_app.command("apply")
def features_apply(engine: FeastEngine = LOCAL_ENGINE) -> None:
    """Register the feature definitions in features/ (wraps `feast apply`)."""
    from leadscore.features.store import apply_repo

    settings = _engine_settings(engine)
    with working() as progress:
        said = apply_repo(settings, progress)
    typer.echo(said)


@features_app.command("materialize")
def features_materialize(
    end: Annotated[
        str | None, typer.Option("--end", help="Load values up to this time (default now).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Reload all history (new or switched online store).")
    ] = False,
    engine: FeastEngine = LOCAL_ENGINE,
) -> None:
    """Load the latest feature values into the online store (incremental unless --full)."""
    from leadscore.features.store import materialize

    until = _when(end)
    settings = _engine_settings(engine)
    with working() as progress:
        done = materialize(
            settings,
            until.to_pydatetime() if until is not None else None,
            full=full,
            progress=progress,
        )
    typer.echo(f"online store up to date as of {done.isoformat()}")


@app.command("training-set")
def training_set(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    every_days: Annotated[
        int | None, typer.Option("--every-days", min=1, help="Days between snapshots of a deal.")
    ] = None,
    engine: FeastEngine = LOCAL_ENGINE,
) -> None:
    """Build the point-in-time training frame: snapshots of closed deals while they were open."""
    from leadscore.crm.ingest import stored_deals
    from leadscore.features.store import write_training_set

    settings = _engine_settings(engine)
    with working() as progress:
        f = write_training_set(settings, stored_deals(settings.crm_dir), out, every_days, progress)
    typer.echo(
        f"{f.snapshots:,d} snapshots of {f.deals:,d} closed deals, win rate {f.win_rate:.1%}, "
        f"{f.first:%Y-%m-%d} to {f.last:%Y-%m-%d} -> {out}"
    )


@app.command()
def demo(
    deals: Annotated[
        int, typer.Option("--deals", min=500, help="Synthetic deals to generate.")
    ] = SYNTHETIC_DEALS,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same CRM.")] = SEED,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where to write the export.")
    ] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the page and the API when done.")
    ] = True,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = SERVICE_PORT,
) -> None:
    """The main job on synthetic data: generate, ingest, features, train, promote, package, rank, serve."""
    from pipelines.steps import demo as run_demo

    settings = load_settings()
    with working() as progress:
        s = run_demo(settings, workdir or settings.feature_data / "demo", deals, seed, progress)
    ing, t, r = s.ingest, s.training, s.ranking
    typer.echo(f"\nSynthetic CRM: {deals:,d} deals in {s.export_dir}")
    typer.echo("  by status: " + ", ".join(f"{k} {v:,d}" for k, v in s.deals_by_status.items()))
    if ing:
        typer.echo(
            f"Ingest: {len(ing.rejects)} rejected rows; feature sources: "
            + ", ".join(f"{k} {v:,d}" for k, v in ing.source_rows.items())
        )
    typer.echo(f"Online store materialized to {s.materialized_to:%Y-%m-%d %H:%M} UTC")
    test, creation = t.get("test", {}), t.get("at_creation", {})
    typer.echo(
        f"Model {settings.model_name} v{t.get('model_version')} ({', '.join(t.get('aliases', []))}): "
        f"test ROC AUC {test.get('roc_auc', float('nan')):.3f}, log loss {test.get('log_loss', float('nan')):.3f}, "
        f"ECE {test.get('ece', float('nan')):.3f}"
    )
    if creation:
        typer.echo(
            f"  at creation: model ROC AUC {creation['model']['roc_auc']:.3f} vs oracle "
            f"{creation['oracle']['roc_auc']:.3f} (best possible)"
        )
    gate = t.get("gate", {})
    typer.echo(
        f"Baseline gate: {'passed' if gate.get('passed') else 'FAILED'}: {gate.get('sentence')}"
    )
    if s.promotion is not None:
        p = s.promotion
        outcome = (
            "forced by the demo (no champion yet)"
            if p["forced"]
            else "promoted"
            if p["promoted"]
            else "kept the champion"
        )
        why = (
            "the baseline gate above refused it"
            if p["forced"]
            else "; ".join(p["reasons"]) or "gate passed"
        )
        typer.echo(f"Promotion: {outcome} ({why})")
        if p["forced"]:
            from leadscore.model.scoring_model import NOT_BETTER

            typer.echo(f"  served labelled '{NOT_BETTER}' on the page, in rank and GET /model")
    if s.packaged:
        typer.echo(
            f"Packaged for BentoML: {s.packaged.tag} (MLflow version {s.packaged.mlflow_version})"
        )
    if r is not None:
        typer.echo(f"Ranked {len(r.ranked):,d} deals -> {r.paths['csv']}")
    typer.echo("Step times (s): " + ", ".join(f"{k} {v}" for k, v in s.seconds.items()))
    if not serve_after:
        typer.echo(
            "\nNext: `uv run leadscore top --n 20`, or `uv run leadscore serve` for the page and the API."
        )
        return
    top_deal = r.ranked["deal_id"].iloc[0] if r is not None and len(r.ranked) else "D0000001"
    body = '{"deal_ids": ["%s"]}' % top_deal  # noqa: UP031 - JSON braces read better unescaped
    typer.echo(
        f"\nServing on http://localhost:{port}/leads/ (priority list) and http://localhost:{port}/ "
        f"(API docs; spec at /docs.json)."
    )
    typer.echo(
        f"Try:\n  curl -s -X POST http://localhost:{port}/score_ids -H 'Content-Type: application/json' "
        f"-d '{body}'\nCtrl-C stops the server."
    )
    from serving.package import serve as run_server

    run_server(port=port)


# ---- serving commands ----
@app.command()
def package(
    alias: Annotated[
        str, typer.Option("--alias", help="MLflow alias of the version to package.")
    ] = CHAMPION,
    build: Annotated[
        bool,
        typer.Option("--build", help="Then build a deployable Bento with it (bentoml build)."),
    ] = False,
) -> None:
    """Import models:/lead_scorer@champion from MLflow into the project's BentoML store,
    and models:/lead_scorer_revival@champion beside it when one is registered; a running
    `leadscore serve` switches to them within LEADSCORE_MODEL_RELOAD_SECONDS. With no
    champion yet, package the labelled fallback fitted on the stored CRM instead
    (lead_scorer_fallback), which `serve` then serves until a champion replaces it."""
    from serving.package import PackagingError, build_bento, package_served

    settings = load_settings()
    try:
        packaged = package_served(settings, alias)
        win = packaged.win
        if win.mlflow_version == FALLBACK:
            typer.echo(
                f"no '{alias}' version of {settings.model_name}.\nNo champion: packaged the "
                f"fallback instead ({'imported' if win.created else 'already packaged'}): "
                f"{win.model_uri} -> BentoML model {win.tag} in {settings.bentoml_home}; "
                "`serve` answers with it, labelled as a rough prior, until a trained model "
                "is champion"
            )
        for p in (win, packaged.revival):
            if p is not None and p.mlflow_version == FALLBACK:
                continue
            if p is None:
                typer.echo(
                    f"no {settings.revival_model_name}@{alias}: lost deals asked for revival "
                    "get an error (`leadscore train-revival` trains one)"
                )
                continue
            state = "imported" if p.created else "already packaged"
            typer.echo(
                f"{state}: {p.model_uri} = version {p.mlflow_version} (run {p.run_id}, "
                f"feature service {p.feature_service}) -> BentoML model {p.tag} "
                f"in {settings.bentoml_home}"
            )
        if alias == CHAMPION:
            typer.echo(f"running services switch to {win.tag} ({settings.served_pointer})")
        if build:
            typer.echo(f"built Bento {build_bento(settings, alias)} with {win.tag}")
    except PackagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = SERVICE_PORT,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Interface to bind: this machine only by default; --host 0.0.0.0 exposes the "
            "service to the network (set LEADSCORE_API_TOKEN then).",
        ),
    ] = SERVICE_HOST,
    alias: Annotated[
        str, typer.Option("--alias", help="MLflow alias of the packaged version to serve.")
    ] = CHAMPION,
) -> None:
    """Start the scoring service (BentoML) on the packaged champion: POST /score, /score_ids; GET /docs."""
    from serving.package import PackagingError
    from serving.package import serve as run_server

    try:
        run_server(port=port, host=host, settings=load_settings(), alias=alias)
    except PackagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


# ---- training commands ----
def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


#: Options ``train`` and ``train-revival`` share.
TrainSeed = Annotated[
    int | None, typer.Option("--seed", help=f"Random seed (default LEADSCORE_SEED or {SEED}).")
]
JsonSummary = Annotated[
    bool, typer.Option("--json", help="Print one JSON object (logs go to stderr).")
]


@app.command()
def train(
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            exists=True,
            dir_okay=False,
            help="Generator truth.parquet: compare with the oracle.",
        ),
    ] = None,
    seed: TrainSeed = None,
    as_json: JsonSummary = False,
    keep_flagged: Annotated[
        bool,
        typer.Option(
            "--keep-flagged",
            help="Train with the columns the leakage audit flags (to measure the leak only).",
        ),
    ] = False,
    engine: FeastEngine = LOCAL_ENGINE,
) -> None:
    """Train on the Feast training frame, log to MLflow, register the version as challenger.

    A leakage audit of the stored tables runs first; the columns it flags are left out
    of the model and listed with their evidence."""
    from training.data import InsufficientDataError
    from training.result import TrainConfig
    from training.train import train_from_store

    settings = _engine_settings(engine)
    try:
        with working() as progress:
            config = TrainConfig(
                seed=settings.seed if seed is None else seed, keep_flagged=keep_flagged
            )
            summary = train_from_store(settings, config, truth, progress)
    except (InsufficientDataError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        _print_json(summary)
        return
    t, lr, cr, fb = (
        summary["test"],
        summary["baselines"]["logistic_regression"],
        summary["baselines"]["channel_rate"],
        summary["baselines"]["stage_fallback"],
    )
    typer.echo(
        f"{summary['model_name']} version {summary['model_version']} ({', '.join(summary['aliases'])}), "
        f"run {summary['run_id']}"
    )
    typer.echo(
        f"test: ROC AUC {t['roc_auc']:.3f}, PR AUC {t['pr_auc']:.3f}, log loss {t['log_loss']:.4f}, "
        f"Brier {t['brier']:.4f}, ECE {t['ece']:.4f}, lift@10% {t['lift_at_10']:.2f}"
    )
    typer.echo(
        f"baselines: logistic regression ROC AUC {lr['roc_auc']:.3f} / log loss {lr['log_loss']:.4f}; "
        f"channel rate {cr['roc_auc']:.3f} / {cr['log_loss']:.4f}; "
        f"fallback (stage and channel rates) {fb['roc_auc']:.3f} / {fb['log_loss']:.4f}"
    )
    typer.echo(f"test 95% intervals (deal bootstrap): {_intervals(t)}")
    per_deal = summary["per_deal"]
    for block, label in (
        ("at_creation", "at creation"),
        ("at_age", f"at {per_deal['age_days']:g} days"),
    ):
        b = per_deal[block]
        typer.echo(f"per deal {label} ({b['won']:,} won, {b['lost']:,} lost):")
        typer.echo(f"  model: {_intervals(b['model'])}")
        for name, what in TRAIN_BASELINES:
            typer.echo(f"  {what}: {_intervals(b[name])}")
        for name, what in TRAIN_BASELINES:
            typer.echo(f"  model - {what}: {_differences(b['model_minus_baseline'][name])}")
    diff = per_deal["at_creation"]["model_minus_baseline"]["logistic_regression"]["roc_auc"]
    typer.echo(
        "model - logistic regression, per-deal ROC AUC at creation: "
        f"{_num(diff['difference'], '+.3f')} [{_num(diff['low'], '+.3f')}, {_num(diff['high'], '+.3f')}]"
    )
    if "at_creation" in summary:
        at = summary["at_creation"]
        m, o = at["model"], at["oracle"]
        seen = at.get("oracle_without_rep")
        typer.echo(
            f"at creation: model ROC AUC {m['roc_auc']:.3f} / log loss {m['log_loss']:.4f}; "
            f"oracle {o['roc_auc']:.3f} / {o['log_loss']:.4f}"
            + (
                f"; oracle without the rep's skill (what the features show) "
                f"{seen['roc_auc']:.3f} / {seen['log_loss']:.4f}"
                if seen
                else ""
            )
        )
    typer.echo(f"split: {summary['data']['split']['note']}")
    if summary.get("cross_validation"):
        typer.echo(f"evaluation: {summary['cross_validation']['reason']}")
    typer.echo(
        f"calibration {summary['model']['calibration_reason']}; test ECE "
        f"{t['ece']:.4f} calibrated, {summary['test_uncalibrated']['ece']:.4f} without"
    )
    na = summary["behaviour"].get("not_applicable", [])
    typer.echo(
        f"behaviour checks: {'passed' if summary['behaviour']['passed'] else 'FAILED'}"
        + (f" ({len(na)} not applicable: {', '.join(na)})" if na else "")
    )
    from leadscore.model.scoring_model import NOT_BETTER

    gate = summary["gate"]
    typer.echo(f"baseline gate: {'passed' if gate['passed'] else 'FAILED'}: {gate['sentence']}")
    if not gate["passed"]:
        typer.echo(
            "  `leadscore promote` will refuse this version; `promote --force --note WHY` "
            f"serves it labelled '{NOT_BETTER}' wherever it is shown"
        )
    if "dormant" in summary:
        typer.echo(f"dormant deals: {summary['dormant']['sentence']}")
    if "audit" in summary:
        for line in summary["audit"]["lines"]:
            typer.echo(line)
        left_out = summary["audit"]["excluded_features"]
        if left_out:
            typer.echo(f"  features left out of the model: {', '.join(left_out)}")
    for warning in summary.get("warnings", []):
        typer.echo(f"warning: {warning}")


@app.command("train-revival")
def train_revival(
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            exists=True,
            dir_okay=False,
            help="Generator revival_truth.parquet: compare with the revival oracle.",
        ),
    ] = None,
    seed: TrainSeed = None,
    as_json: JsonSummary = False,
    engine: FeastEngine = LOCAL_ENGINE,
) -> None:
    """Train the revival model (which lost deals come back and are won), log it to MLflow
    and register it as challenger of `lead_scorer_revival` (docs/revival.md).

    Needs `features apply` after an ingest (the revival_v1 feature service). With a win
    model champion registered, its as-if-re-opened score of the same lost deals (what the
    list showed before) is measured beside it."""
    from training.data import InsufficientDataError
    from training.result import TrainConfig
    from training.revival import train_revival_from_store

    settings = _engine_settings(engine)
    try:
        with working() as progress:
            config = TrainConfig(seed=settings.seed if seed is None else seed)
            summary = train_revival_from_store(settings, config, truth, progress)
    except (InsufficientDataError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        _print_json(summary)
        return
    typer.echo(
        f"{summary['model_name']} version {summary['model_version']} "
        f"({', '.join(summary['aliases']) or 'no alias'}), run {summary['run_id']}"
    )
    entities = summary["data"]["entities"]
    typer.echo(
        f"as of {summary['as_of']}: {entities['losses']:,} losses, {entities['kept']:,} snapshots "
        f"with a known outcome ({entities['positive']:,} revived and won), "
        f"{entities['censored']:,} censored (horizon past the export's end)"
    )
    typer.echo(f"per lost deal, test slice ({summary['losses_scored']}):")
    for row in summary["backtest"]:
        ci = (
            f" [{row['low']:.3f}, {row['high']:.3f}]"
            if row["low"] is not None and row["high"] is not None
            else ""
        )
        typer.echo(
            f"  {row['moment']}: {row['predictor']}: ROC AUC {_num(row['roc_auc'], '.3f')}{ci}, "
            f"ECE {_num(row['ece'], '.4f')} ({row['losses']:,} losses)"
        )
    typer.echo(f"behaviour checks: {'passed' if summary['behaviour']['passed'] else 'FAILED'}")
    gate = summary["gate"]
    typer.echo(f"baseline gate: {'passed' if gate['passed'] else 'FAILED'}: {gate['sentence']}")
    if CHAMPION not in summary["aliases"]:
        typer.echo(
            "  `leadscore promote --task revival` makes it champion if it passes the gate; "
            "`--force --note WHY` overrides a refusal and records it"
        )


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


#: The baselines ``train`` prints, in its words (``training.train.BASELINES``).
TRAIN_BASELINES = (
    ("logistic_regression", "logistic regression"),
    ("channel_rate", "channel rate"),
    ("stage_fallback", "fallback (stage and channel rates)"),
)


def _differences(d: dict[str, Any]) -> str:
    """Model minus a baseline: ROC AUC and log loss differences with their paired intervals."""
    return ", ".join(
        f"{label} {_num(d[key]['difference'], '+.3f')} "
        f"[{_num(d[key]['low'], '+.3f')}, {_num(d[key]['high'], '+.3f')}]"
        for key, label in (("roc_auc", "ROC AUC"), ("log_loss", "log loss"))
    )


def _intervals(m: dict[str, Any]) -> str:
    """ROC AUC, log loss and ECE with their 95% intervals, on one line."""
    parts = []
    for key, label, spec in (
        ("roc_auc", "ROC AUC", ".3f"),
        ("log_loss", "log loss", ".4f"),
        ("ece", "ECE", ".4f"),
    ):
        ci = m.get("ci95", {}).get(key, {})
        parts.append(
            f"{label} {_num(m.get(key), spec)} "
            f"[{_num(ci.get('low'), spec)}, {_num(ci.get('high'), spec)}]"
        )
    return ", ".join(parts)


@contextmanager
def _insight_errors() -> Iterator[None]:
    """How the insights commands fail: a cut the export cannot give names ``--by`` (usage
    error, exit 2); a missing export or a value out of reach is one line and exit 1."""
    from leadscore.insights import CutUnavailable

    try:
        yield
    except CutUnavailable as exc:
        raise typer.BadParameter(str(exc), param_hint="--by") from exc
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def forecast(
    months: Annotated[
        int, typer.Option("--months", min=1, help="Months ahead, the current one first.")
    ] = FORECAST_MONTHS,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Cuts, comma-separated: owner (reps), or any cut of `funnel --by`."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Moment of the forecast (default: now, or the export's end)."),
    ] = None,
    run_backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help=f"Also rebuild the forecast at the last {BACKTEST_CUTS} month starts and "
            f"compare months 1-{BACKTEST_HORIZON} with what was won.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The open pipeline's expected revenue (probability x amount) by expected close
    month, per rep and team, the month from a model of time to close learned from past
    wins. Probabilities: the win model's champion, or the stage win rate when there is
    none. ``--backtest`` adds the error against what was won."""
    import pandas as pd

    from leadscore.crm.ingest import load_stored
    from leadscore.insights import deal_facts, to_records
    from leadscore.insights.forecast import (
        backtest,
        backtest_cuts,
        backtest_errors,
        model_probability,
        pipeline_forecast,
        stage_rate_probability,
    )
    from leadscore.model.registry import RegistryError, load_champion
    from leadscore.priority.rank import default_as_of

    settings = load_settings()
    cuts = [c.strip() for c in (by or "").split(",") if c.strip()]
    notes: list[str] = []
    with _insight_errors():
        tables = load_stored(settings.crm_dir)
        facts = deal_facts(tables)
        when = _when(as_of)
        if when is None:
            when, note = default_as_of(settings.crm_dir, pd.Timestamp.now(tz="UTC"))
            notes += [note] if note else []
        probabilities = {"stage_rate": stage_rate_probability(facts)}
        try:
            model, version = load_champion(settings)
            probabilities = {"model": model_probability(model, tables), **probabilities}
            method = "model"
        except RegistryError as exc:
            notes.append(f"probabilities: stage win rates ({exc})")
            method, version = "stage_rate", None
        fc = pipeline_forecast(facts, when, probabilities[method], months, cuts)
        out: dict[str, Any] = {
            "as_of": when.isoformat(),
            "probability": method,
            "model_version": version,
            "notes": notes,
            "months": to_records(fc.months),
            "summary": to_records(fc.summary),
        }
        if run_backtest:
            past = backtest_cuts(facts, when)
            frame = backtest(facts, past, probabilities, BACKTEST_HORIZON)
            out["backtest"] = {
                "note": "the model's probabilities come from a champion trained on outcomes "
                "of these months (optimistic); stage_rate learns only from deals closed "
                "before each cut"
                if method == "model"
                else "stage_rate learns only from deals closed before each cut",
                "months": to_records(frame),
                "errors": to_records(backtest_errors(frame, list(probabilities))),
            }
    if as_json:
        _print_json(out)
        return
    for note in notes:
        typer.echo(note)
    typer.echo(f"# forecast as of {when:%Y-%m-%d %H:%M} UTC ({method})")
    typer.echo(pd.DataFrame(out["months"]).to_string(index=False))
    typer.echo("# summary")
    typer.echo(pd.DataFrame(out["summary"]).to_string(index=False))
    if run_backtest:
        typer.echo(f"# backtest errors by horizon ({out['backtest']['note']})")
        errors = pd.DataFrame(out["backtest"]["errors"])
        typer.echo(errors.to_string(index=False) if len(errors) else "  (no cut with history)")


@app.command()
def funnel(
    start: Annotated[str, typer.Option("--from", help="First day of the period (UTC).")],
    end: Annotated[str, typer.Option("--to", help="Day after the period (UTC, exclusive).")],
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Cuts, comma-separated: owner, channel, industry, size_band, or any text "
            "column of deals or accounts.",
        ),
    ] = None,
    every: Annotated[
        str, typer.Option("--every", help="period (the whole window), week or month.")
    ] = "period",
    min_deals: Annotated[
        int, typer.Option("--min-deals", min=1, help="Fewer deals behind a value: flagged small.")
    ] = 20,
    reps: Annotated[
        bool, typer.Option("--reps", help="The five numbers per rep against the team instead.")
    ] = False,
    trends: Annotated[
        bool, typer.Option("--trends", help="Each metric by month with MoM and YoY change.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The funnel numbers a sales team is run by, from the stored CRM tables: conversion
    rates, win rate, cycle length, won deal size, open pipeline per stage, stage
    durations, where lost deals leave; or the five numbers per rep (``--reps``), or the
    monthly trends (``--trends``). Each value comes with the deals behind it."""
    import pandas as pd

    from leadscore.crm.ingest import load_stored
    from leadscore.insights import (
        FUNNEL_METRICS,
        REP_NUMBERS,
        deal_facts,
        funnel_metrics,
        funnel_trends,
        lost_exits,
        rep_numbers,
        stage_durations,
        to_records,
    )

    if every not in ("period", "week", "month"):
        raise typer.BadParameter("must be period, week or month", param_hint="--every")
    if reps and every == "period":
        every = "week"
    cuts = [c.strip() for c in (by or "").split(",") if c.strip()]
    settings = load_settings()
    window = (_when(start), _when(end))
    with _insight_errors():
        facts = deal_facts(load_stored(settings.crm_dir))
        if reps:
            out = {
                "definitions": REP_NUMBERS,
                "reps": to_records(rep_numbers(facts, *window, every=every)),  # type: ignore[arg-type]
            }
        elif trends:
            out = {
                "definitions": FUNNEL_METRICS,
                "trends": to_records(funnel_trends(facts, *window, by=cuts, min_deals=min_deals)),
            }
        else:
            kwargs = {"by": cuts, "every": every, "min_deals": min_deals}
            out = {
                "definitions": FUNNEL_METRICS,
                "funnel": to_records(funnel_metrics(facts, *window, **kwargs)),  # type: ignore[arg-type]
                "stage_durations": to_records(stage_durations(facts, *window, **kwargs)),  # type: ignore[arg-type]
                "lost_exits": to_records(lost_exits(facts, *window, **kwargs)),  # type: ignore[arg-type]
            }
    if as_json:
        _print_json(out)
        return
    for section, rows in out.items():
        if section == "definitions":
            continue
        typer.echo(f"# {section.replace('_', ' ')}")
        table = pd.DataFrame(rows).dropna(axis=1, how="all")
        typer.echo(table.to_string(index=False) if len(table) else "  (nothing in the period)")


_OptionalFrom = Annotated[
    str | None, typer.Option("--from", help="First day of the period (UTC); default: all.")
]
_OptionalTo = Annotated[
    str | None, typer.Option("--to", help="Day after the period (UTC, exclusive); default: all.")
]


@app.command()
def strengths(
    start: _OptionalFrom = None,
    end: _OptionalTo = None,
    min_deals: Annotated[
        int,
        typer.Option("--min-deals", min=1, help="Fewer closed deals on either side: not flagged."),
    ] = 10,
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Only cells better or worse than the team.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Each rep's strengths and weaknesses: the stages and deal types (channel, size band,
    industry, product) where the rep converts better or worse than the rest of the team,
    on deals closed in the period, with the deals behind each and a 95% interval."""
    from leadscore.crm.ingest import load_stored
    from leadscore.insights import deal_facts, rep_strengths

    settings = load_settings()
    with _insight_errors():
        facts = deal_facts(load_stored(settings.crm_dir, ["deals", "accounts", "stage_history"]))
        rows = rep_strengths(facts, _when(start), _when(end), min_deals)
    if flagged:
        rows = [r for r in rows if r.verdict in ("better", "worse")]
    if as_json:
        _print_json({"strengths": [r.to_dict() for r in rows]})
        return
    for r in rows:
        typer.echo(r.label)


@app.command()
def channels(
    start: _OptionalFrom = None,
    end: _OptionalTo = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Each lead source's leads against the won customers: one similarity (the mean over
    industry, size band, region, seniority reached and custom attributes of 1 - total
    variation distance), the attributes that differ most, and the deals behind it."""
    from leadscore.crm.ingest import load_stored
    from leadscore.insights import channel_quality

    settings = load_settings()
    with _insight_errors():
        tables = load_stored(settings.crm_dir, ["deals", "accounts", "contacts", "deal_contacts"])
        rows = channel_quality(tables, _when(start), _when(end))
    if as_json:
        _print_json({"channels": [r.to_dict() for r in rows]})
        return
    for r in rows:
        typer.echo(r.label)


@app.command()
def compare(
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="The attribute whose groups are compared: playbook, campaign, team, "
            "channel, owner... any text column of deals or accounts.",
        ),
    ],
    start: Annotated[str, typer.Option("--from", help="First day of the period (UTC).")],
    end: Annotated[str, typer.Option("--to", help="Day after the period (UTC, exclusive).")],
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline", help="The group the others are compared with (default: the largest)."
        ),
    ] = None,
    min_deals: Annotated[
        int,
        typer.Option(
            "--min-deals", min=1, help="Fewer deals behind a group's value: not enough deals yet."
        ),
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A/B comparison of sales strategies from the stored CRM tables: each group of one
    attribute against the baseline on win rate, cycle length and stage conversion, with
    the difference, its 95% interval, an effect size and a Holm-corrected p-value. With a
    champion model, also whether the groups were given leads of different quality (their
    win probabilities at creation)."""

    from leadscore.crm.ingest import load_stored
    from leadscore.insights import compare_groups, compared_deals, deal_facts
    from leadscore.priority.at_creation import champion_at_creation

    settings = load_settings()
    window = (_when(start), _when(end))
    with _insight_errors():
        tables = load_stored(settings.crm_dir)
        facts = deal_facts(tables)
        scored = champion_at_creation(settings, tables, compared_deals(facts, *window))
        result = compare_groups(
            facts, by.strip(), *window, baseline=baseline, min_deals=min_deals, at_creation=scored
        )
    if as_json:
        _print_json(result.to_records())
        return
    for line in _comparison_lines(result.to_records()):
        typer.echo(line)


def _comparison_lines(out: dict[str, Any]) -> list[str]:
    """``leadscore compare``'s answer as text: per metric a table of groups, then the
    lead-quality check and its warnings."""
    import pandas as pd

    by, base = out["by"], out["baseline"]
    lines = [f"# {by}: {out['from'][:10]} to {out['to'][:10]}, baseline {base}"]
    if base is None:
        return [*lines, "  (no deals created or closed in the period)"]
    lines.append(f"p adjusted: {out['correction']}")
    overall = {r["metric"]: r for r in out["overall"]}

    def points(v: float | None, share: bool) -> str:
        return "" if v is None else f"{v * 100:+.1f} pts" if share else f"{v:+.1f} d"

    def value(v: float | None, share: bool) -> str:
        return "n/a" if v is None else f"{v:.0%}" if share else f"{v:.1f} d"

    def p(v: float | None) -> str:
        return "" if v is None else f"{v:.3g}"

    for metric, definition in out["definitions"].items():
        rows = [r for r in out["groups"] if r["metric"] == metric]
        share = not rows or rows[0]["unit"] == "share"
        table = pd.DataFrame(
            {
                by: [r[by] for r in rows],
                "deals": [_num(r["denominator"], ".0f") for r in rows],
                "value": [value(r["value"], share) for r in rows],
                "difference": [
                    "baseline" if r["is_baseline"] else points(r["difference"], share) for r in rows
                ],
                "95% interval": [
                    ""
                    if r["ci_low"] is None
                    else f"[{points(r['ci_low'], share)}, {points(r['ci_high'], share)}]"
                    for r in rows
                ],
                "effect": [
                    "" if r["effect"] is None else f"{r['effect_measure']} {r['effect']:+.2f}"
                    for r in rows
                ],
                "p (Holm)": [p(r["p_adjusted"]) for r in rows],
                "note": [r["missing"] or "" for r in rows],
            }
        )
        lines.append(f"## {metric}: {definition}")
        lines.append(table.to_string(index=False))
        o = overall[metric]
        lines.append(
            f"  across groups: {o['missing']}"
            if o["missing"]
            else f"  across groups: {o['test']} p = {o['p_value']:.3g} ({o['groups']} groups)"
        )
    quality = out["lead_quality"]
    if quality is None:
        return [*lines, f"## lead quality: {out['lead_quality_skipped']}"]
    from leadscore.priority.report import model_label

    lines.append(
        "## lead quality: mean win probability at creation, "
        + model_label(out["lead_quality_model"])
    )
    table = pd.DataFrame(
        {
            by: [r[by] for r in quality],
            "deals": [r["deals"] for r in quality],
            "mean": [value(r["mean_predicted"], True) for r in quality],
            "difference": [
                "baseline" if r["is_baseline"] else points(r["difference"], True) for r in quality
            ],
            "p (Holm)": [p(r["p_adjusted"]) for r in quality],
            "note": [r["missing"] or "" for r in quality],
        }
    )
    lines.append(table.to_string(index=False))
    return lines + ([f"warning: {w}" for w in out["warnings"]] or ["  no group's leads differ"])


def _check_task(value: str) -> str:
    if value not in TASKS:
        raise typer.BadParameter(f"must be one of {', '.join(TASKS)}")
    return value


#: The option ``promote``, ``rollback`` and ``models`` share: which task's model.
TaskOption = Annotated[
    str,
    typer.Option(
        "--task",
        callback=_check_task,
        help=f"Which model: {' or '.join(TASKS)} (lead_scorer, lead_scorer_revival).",
    ),
]


def _named(task: str, name: str) -> str:
    """The prefix naming a model other than the win model in a message (the win model's
    messages stay as they were)."""
    return "" if task == WIN else f"{name} "


@app.command()
def monitor(
    days: Annotated[
        float, typer.Option("--days", min=1, help="New deals: created in this many days.")
    ] = 30.0,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="End of the window (default: the export's).")
    ] = None,
    served: Annotated[
        bool,
        typer.Option(
            "--served",
            help="Compare what the service scored in the window instead of new deals at "
            "creation, and check the served probabilities on the deals closed since.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare new deals with those the champion trained on, at creation: PSI per feature
    and for the score, missing values, new categories. Exit code 3 when a threshold
    (LEADSCORE_DRIFT_PSI, _SCORE_PSI, _MISSING_CHANGE, _NEW_CATEGORY_SHARE, _MIN_ROWS) is
    crossed, so a scheduler sees it; the report is kept in features/data/monitor/latest.json.

    The statistics are this project's few lines of numpy (leadscore/model/drift.py), not
    Evidently: see docs/architecture.md for the comparison."""
    from training.monitor import monitor_stored, write_monitor

    settings = load_settings()
    try:
        with working():
            monitored = monitor_stored(settings, days, _when(as_of), served=served)
    except (LookupError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = write_monitor(monitored, settings.monitor_dir)
    report = monitored.report
    if as_json:
        _print_json(monitored.to_dict())
    else:
        typer.echo(
            f"champion version {monitored.model_version}: {report.current_rows:,} "
            f"{monitored.current_window} against {report.reference_rows:,} "
            f"{monitored.reference_window}"
        )
        if report.score is not None:
            typer.echo(f"score PSI {report.score['psi']:.3f}")
        for row in report.features[:10]:
            typer.echo(
                f"  {row['feature']}: PSI {row['psi']:.3f}, missing "
                f"{row['missing_reference']:.0%} -> {row['missing_current']:.0%}"
                + (f", new values {sorted(row['new_categories'])}" if row["new_categories"] else "")
            )
        if report.current_rows < report.thresholds.min_rows:
            typer.echo(f"fewer than {report.thresholds.min_rows} new deals: figures only, no alert")
        realised = monitored.realised
        if realised is not None:
            m = realised.get("metrics")
            typer.echo(
                f"served: {realised['served_deals']:,} deals, {realised['closed_since']:,} closed "
                f"since ({realised['won']:,} won): "
                + (
                    f"{_intervals(m)}; mean probability {m['mean_p']:.3f} against a win rate "
                    f"of {m['win_rate']:.3f}"
                    if m
                    else realised["missing"]
                )
            )
        for alert in report.alerts:
            typer.echo(f"ALERT {alert}")
        typer.echo(f"{'drift' if report.alerted else 'no drift'}; report in {path}")
    if report.alerted:
        raise typer.Exit(3)


#: The gate's tolerances, options of ``promote`` and ``retrain``.
MaxAucDrop = Annotated[
    float, typer.Option("--max-auc-drop", help="Allowed ROC AUC drop vs champion.")
]
MaxLogLossRise = Annotated[
    float, typer.Option("--max-log-loss-rise", help="Allowed log loss rise vs champion.")
]


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option("--version", help="Version to promote (default: challenger).")
    ] = None,
    max_auc_drop: MaxAucDrop = MAX_AUC_DROP,
    max_log_loss_rise: MaxLogLossRise = MAX_LOG_LOSS_RISE,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate fails (recorded).")
    ] = False,
    note: Annotated[str, typer.Option("--note", help="Why; stored on the version.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    task: TaskOption = WIN,
) -> None:
    """Make the challenger champion if it is not worse on the same test slice and behaves
    (`--task revival`: the revival model's)."""
    from leadscore.model.registry import RegistryError
    from training.data import InsufficientDataError
    from training.registry import Tolerance, promote_from_store

    settings = load_settings()
    named = _named(task, task_model_name(settings.model_name, task))
    try:
        with working():
            decision = promote_from_store(
                settings,
                task=task,
                version=version,
                tolerance=Tolerance(max_auc_drop, max_log_loss_rise),
                force=force,
                note=note,
            )
    except (RegistryError, InsufficientDataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        _print_json(decision.to_dict())
    else:
        ch, cm = decision.challenger_metrics, decision.champion_metrics
        sliced = decision.test_slice
        units = "deals closed" if task == WIN else "losses"
        typer.echo(
            f"{named}test slice: {sliced['deals']:,} {units} after {sliced['valid_end']}"
            if "valid_end" in sliced
            else f"{named}test slice: {sliced['deals']:,} deals ({sliced['note']})"
        )
        typer.echo(
            f"challenger {decision.challenger}: ROC AUC {_num(ch['roc_auc'], '.4f')}, "
            f"log loss {_num(ch['log_loss'], '.4f')}"
        )
        if cm is not None:
            typer.echo(
                f"champion {decision.champion_before}: ROC AUC {_num(cm['roc_auc'], '.4f')}, "
                f"log loss {_num(cm['log_loss'], '.4f')}"
            )
        for reason in decision.reasons:
            typer.echo(f"gate: {reason}")
        outcome = (
            "promoted (forced)"
            if decision.forced
            else "promoted"
            if decision.promoted
            else "NOT promoted"
        )
        typer.echo(f"{named}version {decision.challenger} {outcome}")
        if decision.forced and not decision.baseline_gate.get("passed"):
            from leadscore.model.scoring_model import NOT_BETTER

            typer.echo(
                f"warning: {NOT_BETTER}: rank, the page and GET /model say so while it is served"
            )
    if not decision.promoted:
        raise typer.Exit(1)


@app.command()
def rollback(
    note: Annotated[str, typer.Option("--note", help="Why; stored on the version.")] = "",
    task: TaskOption = WIN,
) -> None:
    """Put champion back on the previous champion (`--task revival`: the revival model's),
    package it again and point a running service at it (it switches back within
    LEADSCORE_MODEL_RELOAD_SECONDS)."""
    from leadscore.model.registry import RegistryError
    from pipelines.retrain import RetrainBusy, rollback_served
    from serving.package import PackagingError

    settings = load_settings()
    try:
        r = rollback_served(settings, note, task)
    except (RegistryError, PackagingError, RetrainBusy) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    named = _named(task, task_model_name(settings.model_name, task))
    typer.echo(f"{named}champion rolled back from version {r.from_version} to {r.to_version}")
    if r.packaged is None:
        typer.echo(
            f"error: the rollback is recorded in MLflow, but packaging failed, so running "
            f"services still serve what they served: {r.packaging_error}; fix it and run "
            "`leadscore package`",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"running services switch to {r.packaged.win.tag} ({settings.served_pointer})")


@app.command()
def retrain(
    export_dir: Annotated[
        Path | None,
        typer.Argument(help="The CRM export to ingest (default: LEADSCORE_EXPORT)."),
    ] = None,
    max_auc_drop: MaxAucDrop = MAX_AUC_DROP,
    max_log_loss_rise: MaxLogLossRise = MAX_LOG_LOSS_RISE,
    seed: TrainSeed = None,
    task: TaskOption = WIN,
    engine: FeastEngine = LOCAL_ENGINE,
) -> None:
    """The retraining loop, for cron: ingest the export, refresh the feature store, train,
    promote through the gate (never forced), package, and point a running service at the
    new champion (it switches without a restart). `--task revival`: the revival model's
    loop (train-revival, promote --task revival). `--engine spark`: the feature sources,
    materialization and training set on Spark, as `ingest`, `features materialize` and
    `train` run with it.

    Exit 0: promoted and served; 1: refused by the gate (the reasons and figures are
    printed), nothing served changed; 2: the export or its data cannot be used; 75:
    another retrain is running (nothing done). Each run is an MLflow run `retrain`, the
    training run its child."""
    from leadscore.crm.ingest import ExportError
    from leadscore.model.registry import RegistryError
    from leadscore.pipeline_state import StateBusyError
    from pipelines.retrain import BAD_INPUT, BUSY, RetrainBusy, lower_priority
    from pipelines.retrain import retrain as run_retrain
    from serving.package import PackagingError
    from training.data import InsufficientDataError
    from training.registry import Tolerance
    from training.result import TrainConfig

    _check_engine(engine)
    settings = load_settings()
    lower_priority(settings)
    export = export_dir or settings.export_dir
    if export is None:
        typer.echo("error: give the export folder, or set LEADSCORE_EXPORT", err=True)
        raise typer.Exit(BAD_INPUT)
    try:
        with working() as progress:
            outcome = run_retrain(
                settings,
                export,
                Tolerance(max_auc_drop, max_log_loss_rise),
                TrainConfig(seed=settings.seed if seed is None else seed),
                progress,
                task,
                engine,
            )
    except RetrainBusy as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BUSY) from exc
    except (ExportError, InsufficientDataError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(BAD_INPUT) from exc
    except (StateBusyError, RegistryError, PackagingError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    decision = outcome.decision
    named = _named(task, task_model_name(settings.model_name, task))
    typer.echo(f"{named}retrain run {outcome.run_id}: trained version {outcome.version}")
    if decision is not None:
        sliced = decision.test_slice
        ch, cm = decision.challenger_metrics, decision.champion_metrics
        units = "deals" if task == WIN else "losses"
        typer.echo(
            f"gate on {sliced['deals']:,} {units} of the challenger's test slice: challenger "
            f"{decision.challenger} ROC AUC {_num(ch['roc_auc'], '.4f')}, log loss "
            f"{_num(ch['log_loss'], '.4f')}"
            + (
                f"; champion {decision.champion_before} ROC AUC {_num(cm['roc_auc'], '.4f')}, "
                f"log loss {_num(cm['log_loss'], '.4f')}"
                if cm is not None
                else ""
            )
        )
        for reason in decision.reasons:
            typer.echo(f"gate: {reason}")
    if outcome.packaged is not None:
        typer.echo(
            f"version {outcome.champion_after} promoted (champion was "
            f"{outcome.champion_before or 'none'}); serving {outcome.served_tag}"
        )
    else:
        typer.echo(
            f"version {outcome.version} NOT promoted; champion stays "
            f"{outcome.champion_after or 'none'}, nothing served changed"
        )
    typer.echo("steps (s): " + ", ".join(f"{k} {v:g}" for k, v in outcome.seconds.items()))
    raise typer.Exit(outcome.exit_code)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    task: TaskOption = WIN,
) -> None:
    """List registered versions with aliases and headline test metrics (`--task revival`:
    the revival model's)."""
    from training.registry import list_versions

    settings = load_settings()
    with working():
        versions = list_versions(settings, task)
    if as_json:
        _print_json(versions)
        return
    if task != WIN:
        typer.echo(task_model_name(settings.model_name, task))
    typer.echo(
        f"{'version':>7}  {'aliases':20s} {'created':25s} {'ROC AUC':>7} {'log loss':>8} {'ECE':>6}  notes"
    )
    for v in versions:
        m = v["metrics"]
        notes = "forced" if v["tags"].get("promotion.forced") == "true" else ""
        notes += " rolled back" if "rollback.at" in v["tags"] else ""
        notes += " not better than baseline" if m.get("gate.passed") == 0.0 else ""
        typer.echo(
            f"{v['version']:>7}  {','.join(v['aliases']) or '-':20s} {v['created']:25s} "
            f"{m.get('test.roc_auc', float('nan')):>7.4f} {m.get('test.log_loss', float('nan')):>8.4f} "
            f"{m.get('test.ece', float('nan')):>6.4f}  {notes.strip()}"
        )


# ---- manager commands ----
_OwnerOpt = Annotated[
    list[str] | None, typer.Option("--owner", help="Only this owner's deals (repeatable).")
]
_ChannelOpt = Annotated[
    list[str] | None, typer.Option("--channel", help="Only deals from this channel (repeatable).")
]
_SegmentOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--segment",
        help="Only accounts of this size band (small: under 100 employees, mid-market: 100-999, "
        "enterprise: 1,000+, unknown) or this industry (repeatable).",
    ),
]
_GroupOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        help="Only deals of this priority group: active, dormant, 'recently lost' (repeatable).",
    ),
]
_SourceOpt = Annotated[
    Path | None,
    typer.Option(
        "--from", help="Folder of the ranked list (default: rankings/ in the feature repo's data)."
    ),
]


def _filters(
    owner: list[str] | None,
    channel: list[str] | None,
    segment: list[str] | None,
    group: list[str] | None,
):
    from leadscore.priority.rank import Filters

    try:
        return Filters(
            tuple(owner or ()), tuple(channel or ()), tuple(segment or ()), tuple(group or ())
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--group") from exc


@app.command()
def rank(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the ranked list and its score history "
            "(default: rankings/ in the feature repo's data).",
        ),
    ] = None,
    by: Annotated[
        str, typer.Option("--by", help="expected_value (probability x amount) or probability.")
    ] = DEFAULT_RANK_BY,
    top_n: Annotated[
        int | None, typer.Option("--top", min=1, help="Keep the best N deals in the list.")
    ] = None,
    owner: _OwnerOpt = None,
    channel: _ChannelOpt = None,
    segment: _SegmentOpt = None,
    group: _GroupOpt = None,
    dormant_days: Annotated[
        float,
        typer.Option(
            "--dormant-days", min=1, help="An open deal without activity this long is dormant."
        ),
    ] = DORMANT_DAYS,
    lost_days: Annotated[
        float,
        typer.Option(
            "--lost-days",
            min=0,
            help="List deals lost within this many days (by the revival model when one is "
            "registered); when not given, LEADSCORE_LOST_WINDOW_DAYS or this default.",
        ),
    ] = LOST_WINDOW_DAYS,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Deals featurised and scored per batch.")
    ] = RANK_BATCH_SIZE,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="Risk rule threshold NAME=VALUE (repeatable): max_stalls, max_reply_hours, "
            "follow_up_days, activity_ratio, economic_buyer_stage; env LEADSCORE_HEALTH_<NAME>.",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Moment of ranking (default now).")
    ] = None,
    alias: Annotated[
        str, typer.Option("--alias", help="MLflow alias of the model to rank with.")
    ] = CHAMPION,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Score here (local) or on Spark at LEADSCORE_SPARK_MASTER (spark); "
            "the same list either way.",
        ),
    ] = LOCAL_ENGINE,
) -> None:
    """Score open, dormant and recently lost deals with the champion and write the ranked list."""
    from click.core import ParameterSource

    from leadscore.config import ServingConfig
    from leadscore.model.fallback import StageFallback
    from leadscore.model.registry import RegistryError
    from leadscore.priority.health import HealthThresholds
    from leadscore.priority.rank import (
        PRIORITY_GROUPS,
        RANK_BY,
        RankConfig,
        RankingError,
        ranking_model,
        rankings_dir,
        run_rank,
    )

    if by not in RANK_BY:
        raise typer.BadParameter(f"must be one of {', '.join(RANK_BY)}", param_hint="--by")
    _check_engine(engine)
    settings = load_settings()
    try:
        health = HealthThresholds().with_overrides([*settings.health_overrides, *(threshold or [])])
    except ValueError as exc:
        raise typer.BadParameter(
            f"{exc} (from --threshold or LEADSCORE_HEALTH_<NAME>)", param_hint="--threshold"
        ) from exc
    config = RankConfig(
        dormant_days,
        # The setting (LEADSCORE_LOST_WINDOW_DAYS) unless --lost-days is given.
        lost_days
        if ctx.get_parameter_source("lost_days") is not ParameterSource.DEFAULT
        else settings.lost_window_days,
        batch_size,
        health=health,
        grade_thresholds=ServingConfig.from_env().grade_thresholds,
    )
    filters = _filters(owner, channel, segment, group)
    try:
        with working() as progress:
            model, version = ranking_model(settings, alias)
            result = run_rank(
                settings,
                model,
                version,
                out or rankings_dir(settings),
                config,
                filters,
                by,  # type: ignore[arg-type]
                top_n,
                _when(as_of),
                progress,
                engine=engine,
            )
    except (RankingError, RegistryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if isinstance(model, StageFallback):
        typer.echo(
            f"warning: no champion of {settings.model_name}: scored by {model.name}, a rough "
            f"prior; {model.takeover()}"
        )
    elif model.gate_warning:
        typer.echo(f"warning: {model.gate_warning}")
    counts = ", ".join(f"{result.scored.get(g, 0):,} {g}" for g in PRIORITY_GROUPS)
    if result.as_of_note:
        typer.echo(result.as_of_note)
    scorer = (
        model.name
        if isinstance(model, StageFallback)
        else f"{settings.model_name} version {result.model_version}"
    )
    typer.echo(f"scored {sum(result.scored.values()):,} deals ({counts}) with {scorer}")
    typer.echo(
        f"lost deals scored by {settings.revival_model_name} version {result.revival_version}"
        if result.revival_version is not None
        else f"lost deals scored as if re-opened: no champion of {settings.revival_model_name}"
    )
    typer.echo(
        f"{result.lost_left_out:,} lost deals older than {result.lost_window_days:g} days "
        "are not listed"
    )
    typer.echo(
        f"ranked list ({len(result.ranked):,} deals by {by}): {result.paths['parquet']} and .csv"
    )
    typer.echo(f"score history: {result.paths['history']}")


@app.command()
def top(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of deals to show.")] = 20,
    source: _SourceOpt = None,
    owner: _OwnerOpt = None,
    channel: _ChannelOpt = None,
    segment: _SegmentOpt = None,
    group: _GroupOpt = None,
) -> None:
    """Print the best deals of the last ranked list, with reasons (+/-) and risk flags (!)."""
    from leadscore.priority.rank import RankingError, rankings_dir, read_ranked
    from leadscore.priority.report import text_table

    try:
        ranked = read_ranked(source or rankings_dir(load_settings()))
    except RankingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(text_table(_filters(owner, channel, segment, group).apply(ranked).head(n)))


@app.command()
def timeline(
    deal_id: Annotated[str, typer.Argument(help="The deal's id in the CRM.")],
    source: _SourceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One deal's events in time order: stage changes, activities, contacts, and its score
    history with what moved it (reasons that appeared or went between scores)."""
    from leadscore.priority.rank import HISTORY_DIR, rankings_dir
    from leadscore.priority.timeline import UnknownDeal, stored_timeline

    settings = load_settings()
    history = (source or rankings_dir(settings)) / HISTORY_DIR
    try:
        found = stored_timeline(settings.crm_dir, history, deal_id)
    except UnknownDeal as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        _print_json(found.to_dict())
        return
    for event in found.events:
        when = event.at.strftime("%Y-%m-%d %H:%M") if event.at is not None else "undated"
        typer.echo(f"{when}  {event.kind:<8}  {event.text}")


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
    source: _SourceOpt = None,
    max_rows: Annotated[
        int, typer.Option("--max-rows", min=1, help="Deals embedded in the file.")
    ] = REPORT_MAX_ROWS,
    lang: Annotated[
        str | None,
        typer.Option("--lang", help="en or zh (default: LEADSCORE_LANGUAGE; auto: en)."),
    ] = None,
) -> None:
    """Write the managers' page as one file: the funnel metrics, trends, forecast, reps'
    numbers and an A/B comparison, the CRM charts, the top ranked deals (paged in the
    file; the service at /leads pages through all of them) with reasons, risk flags and
    next steps, and the model panel."""
    from leadscore.crm.ingest import last_recorded_event, load_stored
    from leadscore.insights import compared_deals, deal_facts
    from leadscore.insights.overview import managers_overview, window
    from leadscore.priority.at_creation import champion_at_creation
    from leadscore.priority.rank import RankingError, rankings_dir, read_ranked
    from leadscore.priority.report import open_probability, ranking_moment, write_report

    settings = load_settings()
    folder = source or rankings_dir(settings)
    try:
        ranked = read_ranked(folder)
        tables = load_stored(settings.crm_dir)
        facts = deal_facts(tables)
        moment = ranking_moment(ranked, last_recorded_event(settings.crm_dir))
        # The A/B section's lead-quality check: the champion's probabilities at creation.
        scored = champion_at_creation(settings, tables, compared_deals(facts, *window(moment)))
        overview = managers_overview(facts, moment, open_probability(ranked), scored, tables)
        path = write_report(
            out, folder, settings.crm_dir, max_rows, settings=settings, lang=lang, overview=overview
        )
    except RankingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"report: {path}")
