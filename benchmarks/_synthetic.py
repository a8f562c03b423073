"""What the synthetic-CRM backtests share: their CRM options, the CRM, and step timing.

The revival, dormant and forecast backtests read the same four-year synthetic CRM (20,000
deals, seed 7, history to a fixed 2026-06-30: "now" would move the budget cycles and
give another CRM, and other figures, on every run), so their figures sit side by side.
Imported by the scripts beside it (``uv run python benchmarks/<script>.py`` puts this
folder first on the path).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from leadscore.config import REVIVAL_HORIZON_DAYS, REVIVAL_WINDOW_DAYS, Settings, load_settings
from leadscore.crm.synth import REVIVAL_HISTORY_DAYS, SyntheticCRM, generate_crm
from training.revival import in_memory_revival_frame

T = TypeVar("T")


def crm_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with ``--deals``, ``--seed``, ``--history-days``, ``--as-of`` and ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history-days", type=float, default=REVIVAL_HISTORY_DAYS)
    parser.add_argument("--as-of", default="2026-06-30")
    parser.add_argument("--json", action="store_true")
    return parser


class Steps:
    """Wall seconds per named step, in the order run (printed at the end of a benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        return out

    def line(self) -> str:
        return "seconds: " + ", ".join(f"{k} {v}" for k, v in self.seconds.items())


def synthetic_crm(args: argparse.Namespace, steps: Steps, revival: bool = True) -> SyntheticCRM:
    """The CRM the options describe, timed as the ``generate`` step."""
    return steps(
        "generate",
        generate_crm,
        args.deals,
        seed=args.seed,
        as_of=pd.Timestamp(args.as_of, tz="UTC"),
        revival=revival,
        history_days=args.history_days,
    )


def revival_frame(crm: SyntheticCRM, steps: Steps) -> tuple[pd.DataFrame, dict[str, int]]:
    """The revival model's frame of ``crm`` and its entity counts, with the product's
    window and horizon, timed as the ``revival frame`` step."""
    return steps(
        "revival frame",
        in_memory_revival_frame,
        crm.tables,
        crm.as_of,
        REVIVAL_WINDOW_DAYS,
        REVIVAL_HORIZON_DAYS,
    )


def stored_crm(tables: dict[str, pd.DataFrame], folder: Path) -> Settings:
    """Settings whose stored CRM tables are ``tables``, written under ``folder`` (as an
    ingest would leave them), for benchmarks that rank without ingesting."""
    settings = load_settings(feature_repo=Path(folder) / "features")
    settings.crm_dir.mkdir(parents=True)
    for name, table in tables.items():
        table.to_parquet(settings.crm_dir / f"{name}.parquet")
    return settings
