"""The feature sources built on Spark (``--engine spark``), by the local engine's own code.

:func:`leadscore.features.featurize.build_feature_sources` is written for one frame of
all rows; each source it builds depends only on the rows of one account (the deal
views, the account's track record, a lost deal's account counts) or of one owner (the
owner's track record). So Spark hashes every deal into a bucket by its account (a deal
without one by its own id), sends each table's rows to their deal's bucket, and runs
that same function on each bucket with ``groupBy(bucket).applyInPandas``; a second pass
over the deals bucketed by owner builds ``owner_history``. Many accounts share a bucket,
so each Python call runs the numba kernels over thousands of deals at once, as the local
engine does over all of them; the result is row for row what the local engine builds
(``tests/integration/test_spark_parity.py``).

The tables travel to the groups as one packed frame (``applyInPandas`` hands a function
one frame per group): each table's columns prefixed with its name, a ``_table`` column
saying which table a row is from. Each source comes back as one Arrow IPC value per
bucket, typed by :func:`leadscore.features.featurize.source_table`.

Where Spark runs is configuration (``Settings.spark_master``, ``LEADSCORE_SPARK_MASTER``),
never code. The Python workers run this process's interpreter (``spark.pyspark.python``),
so they have the project's numba, pandas and pyarrow.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.config import REVIVAL_WINDOW_DAYS, Settings
from leadscore.crm.attributes import Attribute
from leadscore.features.featurize import (
    DEAL_TABLES,
    OWNER_VIEWS,
    TS,
    VIEW_KEYS,
    build_feature_sources,
    source_table,
)
from leadscore.timeutil import as_utc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

#: The column of a table that says which group its rows go to.
BUCKET = "_bucket"
_TABLE = "_table"
_VIEW = "_view"
_DATA = "_data"
_SEP = "__"
#: Deals per bucket at most, by default: a bucket's sources travel back as one Arrow
#: value each, and with a fixed count of buckets (twice the cores) a 100,000-deal CRM
#: made values of hundreds of MB that the 4 GB Spark heap could not hold
#: (``OutOfMemoryError`` in the build's stage). At 5,000 deals a value is a few tens of MB.
DEALS_PER_BUCKET = 5_000


def bucket_count(spark: SparkSession, rows: int, per_bucket: int = DEALS_PER_BUCKET) -> int:
    """How many groups ``rows`` deals go into: every core busy (twice the session's
    parallelism), and no group above ``per_bucket`` deals."""
    return max(2 * spark.sparkContext.defaultParallelism, -(-rows // per_bucket))


def spark_session(settings: Settings, app_name: str = "leadscore") -> SparkSession:
    """The Spark session of ``--engine spark``, at ``settings.spark_master``.

    UI off (nothing here looks at it, and it takes a port), the driver's memory from
    settings (it collects the sources: Spark's 1 GB default fails at 5,000 deals), times in UTC (the sources'
    unit; Spark would otherwise turn them into the machine's local time on the way to
    pandas), Arrow for every pandas exchange, the workers on this interpreter, and the
    tasks per SQL shuffle from settings (Feast's point-in-time join of 800 snapshots took
    41 s on ``local[2]`` at Spark's default of 200, 27 s at 4). It is also the session
    Feast's Spark offline store and compute engine use (``--engine spark``).
    ``getOrCreate``: a session already running in this process (a test's) is reused.
    """
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        .getOrCreate()
    )


def spark_tables(spark: SparkSession, tables: Mapping[str, pd.DataFrame]) -> dict[str, DataFrame]:
    """Stored CRM tables (pandas) as Spark frames; on a cluster they would be read from the
    lake instead (``spark.read.parquet``), and :func:`spark_feature_sources` takes either."""
    out = {}
    for name, table in tables.items():
        frame = table.reset_index(drop=True)
        for col in frame.columns:  # Arrow has no pandas "string" extension on the way in
            if isinstance(frame[col].dtype, pd.StringDtype):
                frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
        out[name] = spark.createDataFrame(frame)
    return out


def spark_feature_sources(
    spark: SparkSession,
    tables: Mapping[str, DataFrame],
    attributes: Sequence[Attribute] = (),
    revival_window_days: int = REVIVAL_WINDOW_DAYS,
    buckets: int | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`~leadscore.features.featurize.build_feature_sources` of ``tables``, on Spark.

    ``buckets`` (default: :func:`bucket_count`) is how many groups the deals are hashed
    into: few enough that each Python call does a lot of work, enough that every core
    has some and that no group's sources outgrow the Spark heap. Returns the sources as
    pandas frames, sorted by key and time as the local engine sorts them, for
    :func:`leadscore.features.featurize.write_sources`.
    """
    from pyspark.sql import functions as F

    if "deals" not in tables:
        raise ValueError("no deals table: feature sources are built from the stored deals")
    deals = tables["deals"]
    n = buckets or bucket_count(spark, deals.count())
    account = F.coalesce(F.col("account_id").cast("string"), F.lit(""))
    by_account = F.when(account != "", F.concat(F.lit("a:"), account)).otherwise(
        F.concat(F.lit("d:"), F.col("deal_id").cast("string"))
    )
    bucketed = deals.withColumn(BUCKET, F.pmod(F.xxhash64(by_account), F.lit(n)))
    parts = {"deals": bucketed}
    deal_bucket = bucketed.select(F.col("deal_id").cast("string").alias("deal_id"), BUCKET)
    for name in DEAL_TABLES:
        if name in tables:
            parts[name] = tables[name].join(deal_bucket, "deal_id")
    if "accounts" in tables:
        account_bucket = bucketed.select("account_id", BUCKET).distinct()
        parts["accounts"] = tables["accounts"].join(account_bucket, "account_id")
    if "contacts" in tables:
        named = [
            parts[t].select("contact_id", BUCKET)
            for t in ("deal_contacts", "activities")
            if t in parts and "contact_id" in parts[t].columns
        ]
        if named:
            refs = named[0]
            for more in named[1:]:
                refs = refs.unionByName(more)
            parts["contacts"] = tables["contacts"].join(refs.distinct(), "contact_id")
        else:
            parts["contacts"] = tables["contacts"].withColumn(BUCKET, F.lit(0)).limit(0)
    by_owner = F.pmod(F.xxhash64(F.coalesce(F.col("owner_id").cast("string"), F.lit(""))), n)
    account_views = [v for v in VIEW_KEYS if v not in OWNER_VIEWS]
    passes = (
        (parts, account_views),
        ({"deals": deals.withColumn(BUCKET, by_owner)}, list(OWNER_VIEWS)),
    )
    sources: dict[str, pd.DataFrame] = {}
    for pass_tables, views in passes:
        sources.update(_run_pass(pass_tables, views, attributes, revival_window_days, n))
    return {v: sources[v] for v in VIEW_KEYS if v in sources}


def _run_pass(
    parts: Mapping[str, DataFrame],
    views: Sequence[str],
    attributes: Sequence[Attribute],
    revival_window_days: int,
    buckets: int,
) -> dict[str, pd.DataFrame]:
    """Build ``views`` per bucket of ``parts`` (each table with a bucket column)."""
    from pyspark.sql.types import BinaryType, StringType, StructField, StructType

    out_schema = StructType(
        [StructField(_VIEW, StringType(), False), StructField(_DATA, BinaryType(), False)]
    )
    build = functools.partial(
        _group_sources,
        views=views,
        attributes=attributes,
        revival_window_days=revival_window_days,
    )
    # One partition at a time on the driver (``toPandas`` would gather them all in its
    # JVM heap first): each row is one bucket's source as one Arrow value.
    pieces: dict[str, list[pa.Table]] = {}
    built = run_grouped(parts, build, out_schema, buckets)
    for row in built.toLocalIterator(prefetchPartitions=False):
        pieces.setdefault(row[_VIEW], []).append(_from_ipc(row[_DATA]))
    empty = {name: _restore(pd.DataFrame(), table_schema(frame)) for name, frame in parts.items()}
    out = {}
    for view, none in build_feature_sources(
        empty, attributes=attributes, revival_window_days=revival_window_days, views=views
    ).items():
        mine = pieces.get(view)
        table = pa.concat_tables(mine) if mine else source_table(view, none)
        out[view] = _sorted(view, table.to_pandas())
        log.info("feature source %s on spark: %d rows", view, len(out[view]))
    return out


def _group_sources(
    tables: Mapping[str, pd.DataFrame],
    views: Sequence[str],
    attributes: Sequence[Attribute],
    revival_window_days: int,
) -> pd.DataFrame:
    """What each bucket runs: the local engine's function on its tables, one row per
    source with the bucket's rows as Arrow IPC bytes, typed by ``source_table``.

    One binary value per source rather than the rows themselves: the sources have
    different columns, and a frame of them all would be mostly nulls, many times larger.
    """
    sources = build_feature_sources(
        tables, attributes=attributes, revival_window_days=revival_window_days, views=views
    )
    return pd.DataFrame(
        {
            _VIEW: list(sources),
            _DATA: [_to_ipc(source_table(view, df)) for view, df in sources.items()],
        }
    )


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def table_schema(frame: DataFrame) -> StructType:
    """A bucketed table's own columns (without the bucket)."""
    return frame.drop(BUCKET).schema


def run_grouped(
    parts: Mapping[str, DataFrame],
    per_group: Callable[[dict[str, pd.DataFrame]], pd.DataFrame],
    out_schema: StructType,
    buckets: int,
) -> DataFrame:
    """``per_group`` on every bucket's tables: the Spark frame of the rows it returns.

    ``parts`` are tables with a :data:`BUCKET` column; each bucket's rows of every table
    travel to one Python call as one packed frame (``applyInPandas`` hands a function one
    frame per group), are unpacked into pandas tables typed as stored tables are, and
    ``per_group`` returns a frame of ``out_schema``'s columns.
    """
    from pyspark.sql import functions as F

    in_schemas = {name: table_schema(frame) for name, frame in parts.items()}
    packed = None
    for name, frame in parts.items():
        cols = [F.col(BUCKET), F.lit(name).alias(_TABLE)] + [
            F.col(c).alias(f"{name}{_SEP}{c}") for c in frame.columns if c != BUCKET
        ]
        piece = frame.select(*cols)
        packed = piece if packed is None else packed.unionByName(piece, allowMissingColumns=True)
    assert packed is not None

    def run(group: pd.DataFrame) -> pd.DataFrame:
        return _unpacked(group, per_group, in_schemas)

    # One partition per bucket: groupBy then needs no shuffle of its own, and the
    # session's default (200 shuffle partitions) would start a Python task per partition.
    return packed.repartition(buckets, BUCKET).groupBy(BUCKET).applyInPandas(run, out_schema)


def _unpacked(
    packed: pd.DataFrame,
    per_group: Callable[[dict[str, pd.DataFrame]], pd.DataFrame],
    in_schemas: Mapping[str, StructType],
) -> pd.DataFrame:
    tables = {}
    for name, schema in in_schemas.items():
        rows = packed[packed[_TABLE] == name]
        prefix = f"{name}{_SEP}"
        frame = pd.DataFrame(
            {f.name: rows[prefix + f.name].to_numpy() for f in schema.fields},
            index=pd.RangeIndex(len(rows)),
        )
        tables[name] = _restore(frame, schema)
    return per_group(tables)


def _restore(frame: pd.DataFrame, schema: StructType) -> pd.DataFrame:
    """A table as the stored tables hold it: text as pandas ``string``, times UTC
    microseconds (Spark hands timestamps over without their zone), every column present."""
    from pyspark.sql.types import StringType, TimestampType

    out = pd.DataFrame(index=frame.index)
    for f in schema.fields:
        values = frame[f.name] if f.name in frame else pd.Series(dtype=object, index=frame.index)
        if isinstance(f.dataType, StringType):
            out[f.name] = values.astype(object).astype("string")
        elif isinstance(f.dataType, TimestampType):
            out[f.name] = as_utc(values)
        elif len(values) == 0:
            out[f.name] = values.astype(np.float64)
        else:
            out[f.name] = values
    return out


def utc_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps from ``toPandas`` (naive, in the session's UTC) as UTC microseconds."""
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]):
            frame[col] = as_utc(frame[col])
    return frame


def _sorted(view: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by key and time, the local engine's order (a key's rows are one bucket's)."""
    return frame.sort_values([VIEW_KEYS[view], TS], kind="stable").reset_index(drop=True)


def spark_ingest_sources(
    settings: Settings, tables: Mapping[str, pd.DataFrame], attributes: Sequence[Attribute] = ()
) -> dict[str, pd.DataFrame]:
    """What ``leadscore ingest --engine spark`` builds: the stored tables' feature sources
    on the configured Spark session, for :func:`leadscore.features.featurize.write_sources`."""
    spark = spark_session(settings)
    return spark_feature_sources(
        spark,
        spark_tables(spark, tables),
        attributes,
        revival_window_days=settings.revival_window_days,
    )
