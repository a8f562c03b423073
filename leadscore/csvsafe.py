"""CSV files a spreadsheet can open safely: no cell is read as a formula.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or
``@`` as a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``), and a leading tab or
carriage return can hide such a start. CRM data is written by anyone who can type in
the CRM, and managers open ``ranked_leads.csv`` and ``rejects.csv`` in Excel, so every
CSV the product writes goes through :func:`write_csv`, which applies the OWASP rule
(https://owasp.org/www-community/attacks/CSV_Injection): a text cell starting with one
of those characters gets a single quote in front, which spreadsheets show as text.

Only text cells are touched. Numeric columns stay numbers (a column of negative amounts
is not text), and a text cell that is a plain number as a whole (``-5``, ``+3.2``,
``-1e3``) is left as written: a spreadsheet reads it as that number, never as a
formula, and ``rejects.csv`` should show a rejected amount exactly as the CRM sent it.

The synthetic CRM export (``leadscore generate --format csv``) is the one CSV written
without this: it stands for a CRM's own export, the input of ingest, not a file for people.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

#: First characters that make a spreadsheet evaluate a cell (OWASP's list).
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_STARTS = "[" + re.escape("".join(FORMULA_STARTS)) + "]"
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading single quote when it is text a spreadsheet would run."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def _is_text(column: pd.Series) -> bool:
    dtype = column.dtype
    return pd.api.types.is_object_dtype(dtype) or isinstance(
        dtype, pd.StringDtype | pd.CategoricalDtype
    )


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a formula (see the module notes).

    Column names are text cells too (the header row), so they are treated the same way.
    """
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if _is_text(column):
            # Find candidates vectorised; decide on each (few) in Python.
            starts = column.astype("string").str.match(_STARTS, na=False).to_numpy(dtype=bool)
            if starts.any():
                values = column.to_numpy(dtype=object, copy=True)
                values[starts] = [neutralise_cell(v) for v in values[starts]]
                out[name] = values
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path | str, **kwargs: Any) -> None:
    """``frame.to_csv(path, index=False, **kwargs)`` with formula-leading cells neutralised.

    The one way the product writes CSV; ``kwargs`` go to :meth:`pandas.DataFrame.to_csv`.
    Lines end in CRLF (RFC 4180, what Excel writes): with it, a cell holding a carriage
    return is quoted, where with a bare LF it would be written as is and split the row.
    """
    kwargs.setdefault("index", False)
    kwargs.setdefault("lineterminator", "\r\n")
    neutralise(frame).to_csv(path, **kwargs)
