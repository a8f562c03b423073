"""Batch ranking as a Spark job (``leadscore rank --engine spark``), by the local code.

The driver selects the candidates and builds the :class:`~leadscore.priority.rank.BatchRanker`
(the champion's explainers, the account and owner track records and the won-deal
activity reference, all from the whole CRM), exactly as :func:`~leadscore.priority.rank.rank_deals`
does. The candidates are then hashed into buckets by deal, each with its own rows of
the per-deal tables (activities, stages, contacts on deals), and every bucket runs
:meth:`BatchRanker.rank <leadscore.priority.rank.BatchRanker.rank>` batch by batch in a
Spark Python worker (``groupBy(bucket).applyInPandas``); the ranker travels to the
workers with the function. Ranking a batch of deals does not depend on the other
batches (``test_batches_rank_exactly_as_one_batch``), so the rows are those of the local
engine, put back in candidate order; the history and the ranked files are then written
by :func:`~leadscore.priority.rank.run_rank` as for a local run.

Reasons and risk flags (lists of records) cross Spark as JSON text.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from leadscore.config import SNAPSHOT_EVERY_DAYS
from leadscore.crm.contract import AFTER_DEAL_CREATION
from leadscore.features.spark_engine import (
    BUCKET,
    bucket_count,
    run_grouped,
    spark_tables,
    utc_times,
)
from leadscore.model.fallback import StageFallback
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import (
    BatchRanker,
    RankConfig,
    RevivalModel,
    Scored,
    batch_ranker,
    batches,
    finish_ranking,
)
from leadscore.progress import Progress, no_progress

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

#: Columns of a ranked row that hold lists of records: JSON text on Spark.
RECORD_COLUMNS: tuple[str, ...] = ("positive_reasons", "negative_reasons", "risk_flags")
#: Columns that are numbers (``score`` a whole one); every other column is text.
NUMBER_COLUMNS: tuple[str, ...] = ("probability", "amount", "expected_value")
WHOLE_COLUMNS: tuple[str, ...] = ("score",)


def spark_rank_deals(
    spark: SparkSession,
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel | StageFallback,
    as_of: pd.Timestamp,
    config: RankConfig,
    snapshot_every_days: int = SNAPSHOT_EVERY_DAYS,
    progress: Progress = no_progress,
    revival: RevivalModel | None = None,
    buckets: int | None = None,
) -> Scored:
    """:func:`~leadscore.priority.rank.rank_deals` with the candidates scored on Spark.

    ``buckets`` (default: :func:`~leadscore.features.spark_engine.bucket_count` of the
    candidates) is how many groups the candidates are hashed into. Returns the same rows
    in the same order.
    """
    from pyspark.sql import functions as F

    candidates, ranker = batch_ranker(
        tables, model, as_of, config, snapshot_every_days, revival, progress
    )
    if candidates.empty:
        return finish_ranking(ranker.empty(candidates), model, ranker.clock.seconds)
    started = time.perf_counter()
    n = buckets or bucket_count(spark, len(candidates))
    wanted = candidates["deal_id"].astype(str)
    ids = set(wanted)
    local = {"deals": candidates} | {
        name: t[t["deal_id"].astype(str).isin(ids)]
        for name, t in tables.items()
        if name in AFTER_DEAL_CREATION
    }
    shared = {n_: t for n_, t in tables.items() if n_ not in local}
    parts = spark_tables(spark, local)
    deal_bucket = (
        parts["deals"]
        .select("deal_id")
        .withColumn(BUCKET, F.pmod(F.xxhash64(F.col("deal_id").cast("string")), F.lit(n)))
    )
    parts = {name: frame.join(deal_bucket, "deal_id") for name, frame in parts.items()}
    columns = list(ranker.empty(candidates.iloc[0:0]).columns)
    rank = functools.partial(
        _rank_group, ranker=ranker, shared=shared, batch_size=config.batch_size, columns=columns
    )
    rows: pd.DataFrame = run_grouped(parts, rank, _schema(columns), n).toPandas()
    frame = _from_spark(rows, columns)
    frame = frame.set_index("deal_id").loc[wanted.to_numpy()].reset_index()[columns]
    ranker.clock.seconds["spark ranking"] = round(time.perf_counter() - started, 2)
    progress("rank", len(candidates), len(candidates), unit="deals")
    return finish_ranking(frame, model, ranker.clock.seconds)


def _rank_group(
    tables: dict[str, pd.DataFrame],
    ranker: BatchRanker,
    shared: Mapping[str, pd.DataFrame],
    batch_size: int,
    columns: list[str],
) -> pd.DataFrame:
    """One bucket of candidates ranked batch by batch, as the local engine ranks them."""
    candidates = tables["deals"]
    everything = {**shared, **tables}
    rows = [
        ranker.rank(part, part_tables)
        for part, part_tables in batches(everything, candidates, batch_size)
    ]
    frame = pd.concat(rows, ignore_index=True) if rows else ranker.empty(candidates)
    out = frame[columns].copy()
    for col in RECORD_COLUMNS:
        out[col] = [json.dumps(v, ensure_ascii=False) for v in out[col]]
    for col in columns:
        if col not in (*RECORD_COLUMNS, *NUMBER_COLUMNS, *WHOLE_COLUMNS):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _schema(columns: list[str]) -> StructType:
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    def kind(col: str):
        if col in NUMBER_COLUMNS:
            return DoubleType()
        if col in WHOLE_COLUMNS:
            return LongType()
        return StringType()

    return StructType([StructField(c, kind(c), True) for c in columns])


def _from_spark(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Collected rows as the local engine makes them: records parsed, score whole."""
    out = utc_times(rows[columns].copy())
    for col in RECORD_COLUMNS:
        out[col] = [json.loads(v) for v in out[col]]
    for col in WHOLE_COLUMNS:
        out[col] = out[col].astype("int64")
    return out
