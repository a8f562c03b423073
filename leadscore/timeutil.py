"""Moments in UTC: the one rule for reading a time a user or a file gives.

Every time the product stores or compares is UTC. A time given without a zone (a
``--as-of 2025-04-01`` on the command line, a naive column in an export) is read as
UTC, never as the machine's local time; a time with a zone is converted. The command
line, ingest and the feature pipeline all convert through :func:`as_utc`, so they
cannot disagree about the same input.
"""

from __future__ import annotations

from datetime import datetime
from typing import overload

import pandas as pd

#: The column that stamps the moment of an entity row (a training snapshot, a scoring
#: request) and of a feature source row: Feast's event timestamp. Here, below the layers
#: that build such frames (``crm.revival``, ``features``), so they share one name.
TS = "event_timestamp"


@overload
def as_utc(value: pd.Series) -> pd.Series: ...


# mypy sees pd.Series as Any (pandas ships no types), so it takes the first overload to
# accept every argument; with pandas' stubs the two are distinct.
@overload
def as_utc(value: str | datetime | pd.Timestamp) -> pd.Timestamp: ...  # type: ignore[overload-cannot-match]


def as_utc(value: pd.Series | str | datetime | pd.Timestamp) -> pd.Series | pd.Timestamp:
    """``value`` in UTC: naive means UTC, aware is converted.

    A Series comes back as ``datetime64[us, UTC]``: microseconds are what Parquet,
    DuckDB and Feast keep, so a value does not change on its way through them.
    """
    if isinstance(value, pd.Series):
        # pandas' cache of converted values, on by default, looks every value up: for a
        # column already of datetimes with gaps that is a second per two million values
        # for nothing (no text to parse), a hundred times the conversion itself.
        cache = not pd.api.types.is_datetime64_any_dtype(value)
        return pd.to_datetime(value, utc=True, cache=cache).astype("datetime64[us, UTC]")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_now() -> pd.Timestamp:
    """The current moment, in UTC."""
    return pd.Timestamp.now(tz="UTC")
