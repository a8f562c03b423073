"""`leadscore`: the command line. Each command parses, calls one typed step and prints."""

from __future__ import annotations

import json
import logging

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from leadscore.config import load_settings

app = typer.Typer(
    help="Lead scoring: synthetic CRM, point-in-time features on Feast, LightGBM models in MLflow, "
    "a BentoML scoring service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="Feast feature repo: apply definitions, materialize the online store.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("feast", "alembic", "urllib3", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _utc(value: str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the export to.")],
    deals: Annotated[int, typer.Option("--deals", min=1, help="Number of deals.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same CRM.")] = 42,
    as_of: Annotated[str | None, typer.Option("--as-of", help="End of the simulated history (default now).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write a synthetic CRM export (tables plus truth.parquet, which the pipeline never reads)."""
    from leadscore.synth import generate_crm, write_export

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    crm = generate_crm(deals, seed=seed, as_of=_utc(as_of))
    paths = write_export(crm, out, fmt=fmt)  # type: ignore[arg-type]
    for name, path in paths.items():
        rows = len(crm.tables[name]) if name in crm.tables else len(crm.truth)
        typer.echo(f"{name:15s} {rows:>10,d} rows  {path}")


@app.command()
def ingest(
    export_dir: Annotated[Path, typer.Argument(help="Folder with <table>.csv or <table>.parquet files.")],
) -> None:
    """Validate a CRM export, merge it into the stored tables and rebuild the feature sources."""
    from pipelines.steps import ingest as run_ingest

    summary = run_ingest(export_dir, load_settings())
    typer.echo(f"{'table':15s} {'read':>9s} {'valid':>9s} {'rejected':>9s} {'inserted':>9s} {'updated':>9s}")
    for table, c in summary.counts.items():
        typer.echo(
            f"{table:15s} {c.get('read', 0):>9,d} {c.get('valid', 0):>9,d} {c.get('rejected', 0):>9,d} "
            f"{c.get('inserted', 0):>9,d} {c.get('updated', 0):>9,d}"
        )
    for r in summary.rejects[:20]:
        typer.echo(f"rejected: {r.file} row {r.row}, {r.column}={r.value!r}: {r.reason}", err=True)
    if len(summary.rejects) > 20:
        typer.echo(f"... {len(summary.rejects) - 20} more", err=True)
    typer.echo(f"rejects: {len(summary.rejects)} (see {summary.rejects_file})")
    typer.echo("feature sources: " + ", ".join(f"{k}={v:,d}" for k, v in summary.source_rows.items()))


@app.command()
def contract(markdown: Annotated[bool, typer.Option("--markdown", help="Print as Markdown.")] = True) -> None:
    """Print the CRM export contract (columns, types, required, meaning)."""
    from leadscore.contract import contract_markdown

    typer.echo(contract_markdown())


@features_app.command("apply")
def features_apply() -> None:
    """Register the feature definitions in features/ (wraps `feast apply`)."""
    from pipelines.feature_store import apply_repo

    typer.echo(apply_repo(load_settings()))


@features_app.command("materialize")
def features_materialize(
    end: Annotated[str | None, typer.Option("--end", help="Load values up to this time (default now).")] = None,
) -> None:
    """Load the latest feature values into the online store (incremental)."""
    from pipelines.feature_store import materialize

    done = materialize(load_settings(), _utc(end).to_pydatetime() if end else None)
    typer.echo(f"online store up to date as of {done.isoformat()}")


@app.command("training-set")
def training_set(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    every_days: Annotated[int | None, typer.Option("--every-days", min=1,
                                                   help="Days between snapshots of a deal.")] = None,
) -> None:
    """Build the point-in-time training frame: snapshots of closed deals while they were open."""
    from pipelines.feature_store import training_frame
    from pipelines.steps import stored_deals

    settings = load_settings()
    tf = training_frame(settings, stored_deals(settings), every_days)
    out.parent.mkdir(parents=True, exist_ok=True)
    tf.frame.to_parquet(out, index=False)
    f = tf.frame
    typer.echo(
        f"{len(f):,d} snapshots of {f['deal_id'].nunique():,d} closed deals, win rate {f['won'].mean():.1%}, "
        f"{f['event_timestamp'].min():%Y-%m-%d} to {f['event_timestamp'].max():%Y-%m-%d} -> {out}"
    )


@app.command()
def demo(
    deals: Annotated[int, typer.Option("--deals", min=100, help="Synthetic deals to generate.")] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    workdir: Annotated[Path | None, typer.Option("--workdir", help="Where to write the export.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The main job on synthetic data: generate, ingest, apply, materialize, and a summary."""
    from pipelines.steps import demo as run_demo

    settings = load_settings()
    s = run_demo(settings, workdir or settings.feature_data / "demo", deals, seed)
    summary = {
        "export": str(s.export_dir),
        "deals_by_status": s.deals_by_status,
        "feature_source_rows": s.ingest.source_rows if s.ingest else {},
        "rejects": len(s.ingest.rejects) if s.ingest else 0,
        "online_store_as_of": s.materialized_to.isoformat() if s.materialized_to else None,
        "seconds": s.seconds,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"\nSynthetic CRM: {deals:,d} deals in {s.export_dir}")
    typer.echo("  by status: " + ", ".join(f"{k} {v:,d}" for k, v in s.deals_by_status.items()))
    typer.echo("Feature sources: " + ", ".join(f"{k} {v:,d}" for k, v in summary["feature_source_rows"].items()))
    typer.echo(f"Rejected rows: {summary['rejects']}")
    typer.echo(f"Online store materialized to {summary['online_store_as_of']}")
    typer.echo("Step times (s): " + ", ".join(f"{k} {v}" for k, v in s.seconds.items()))


# ---- serving commands (issue 4) ----
@app.command()
def package(
    alias: Annotated[str, typer.Option("--alias", help="MLflow alias of the version to package.")] = "champion",
) -> None:
    """Import models:/lead_scorer@champion from MLflow into the BentoML model store."""
    from serving.package import PackagingError, package_champion

    try:
        p = package_champion(load_settings(), alias)
    except PackagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    state = "imported" if p.created else "already packaged"
    typer.echo(f"{state}: {p.model_uri} = version {p.mlflow_version} (run {p.run_id}, "
               f"feature service {p.feature_service}) -> BentoML model {p.tag}")


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "0.0.0.0",
) -> None:
    """Start the scoring service (BentoML) on the packaged model: POST /score, /score_ids; GET /docs."""
    from serving.package import serve as run_server

    run_server(port=port, host=host)
