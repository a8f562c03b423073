"""Third-party notices a user of leadscore can do nothing about, and a way to hide them.

The libraries under the product warn about each other: a deprecated DuckDB call inside
ibis, a SQLAlchemy loader inside MLflow's SQL store, a pathspec pattern name inside
BentoML. None of it is ours to fix or the user's to act on, and a screen of it hides
the warnings that matter. Each notice is listed here once, by the package (or logger)
that issues it and the start of its text, so a new or changed message shows again
instead of disappearing with a whole category. The product's own warnings and log
records never match: rules name third-party origins only.

Filters act when a notice is shown, not when it is raised: Feast re-enables every
``DeprecationWarning`` at import (``warnings.simplefilter("once", ...)``), which would
undo a filter installed before it. The command line hides them around each command
(:func:`hidden`); a server process can for its lifetime (:func:`hide_known_notices`).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Notice:
    """One known notice: who issues it, how it reads, and why it is noise."""

    #: A warning: the top-level package of the file that issues it. A log record: the
    #: exact name of the logger it is logged on.
    origin: str
    #: Regular expression searched in the message.
    text: str
    why: str

    def matches(self, origin: str, message: str) -> bool:
        """``origin`` is the issuing file's path (a warning) or the logger's name (a record)."""
        return _contains_origin(origin, self.origin) and bool(re.search(self.text, message))


def _contains_origin(where: str, origin: str) -> bool:
    """A logger name equal to ``origin``, or a file path inside a package of that name."""
    return where == origin or f"{os.sep}{origin}{os.sep}" in where


#: Python warnings, matched on the issuing file's package and the message.
WARNINGS: tuple[Notice, ...] = (
    Notice(
        "ibis",
        r"fetch_arrow_table\(\) is deprecated",
        "ibis's DuckDB backend still calls DuckDB's old name; every Feast retrieval hits it",
    ),
    Notice(
        "mlflow",
        r"The ``noload`` loader strategy is deprecated",
        "SQLAlchemy deprecation inside MLflow's SQL tracking store, at its import",
    ),
    Notice(
        "pathspec",
        r"GitWildMatchPattern \('gitwildmatch'\) is deprecated",
        "BentoML reads its ignore files with pathspec's old pattern name",
    ),
    Notice(
        "_bentoml_sdk",
        r"The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated",
        "BentoML's IO models use a pydantic hook deprecated since pydantic 2.11",
    ),
    Notice(
        "tornado",
        r"add_callback_from_signal is deprecated",
        "BentoML's server loop installs its signal handlers the old way",
    ),
    Notice(
        "feast",
        r"is an experimental feature",
        "Feast calls on-demand views experimental each time a repo with one is applied",
    ),
)

#: Log records, matched on the logger's name and the message.
LOG_RECORDS: tuple[Notice, ...] = (
    Notice(
        "mlflow.utils.environment",
        r"Failed to resolve installed pip version",
        "a uv environment has no pip; the model's requirements are given explicitly anyway",
    ),
    Notice(
        "feast.repo_config",
        r"`serve_features_while_materializing` is enabled but `registry_type` is 'file'",
        "Feast expects no server to re-read a file registry; ours does, at every change "
        "(sync cache mode), so the flag is what keeps views served while materialize runs",
    ),
)


def is_noise(origin: str, message: str, notices: tuple[Notice, ...] = WARNINGS) -> bool:
    """Whether a notice from ``origin`` (file path or logger name) reading ``message`` is noise."""
    return any(n.matches(origin, message) for n in notices)


class _DropKnownRecords(logging.Filter):
    """Drops the :data:`LOG_RECORDS` notices of the logger it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_noise(record.name, record.getMessage(), LOG_RECORDS)


def hide_known_notices(everything: bool = False) -> Callable[[], None]:
    """Hide the known notices (or, with ``everything``, all warnings); returns the undo.

    Warnings that are not noise are shown as before. Log filters sit on the issuing
    loggers themselves, which libraries that configure their own logging (MLflow replaces
    its handlers when imported) leave alone. For a process that lives as long as its
    entry point (a server); a command uses :func:`hidden`.
    """
    show = warnings.showwarning

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if everything or is_noise(filename, str(message)):
            return
        show(message, category, filename, lineno, file, line)

    drop = _DropKnownRecords()
    loggers = [logging.getLogger(n.origin) for n in LOG_RECORDS]
    warnings.showwarning = showwarning
    for logger in loggers:
        logger.addFilter(drop)

    def undo() -> None:
        warnings.showwarning = show
        for logger in loggers:
            logger.removeFilter(drop)

    return undo


@contextmanager
def hidden(everything: bool = False) -> Iterator[None]:
    """:func:`hide_known_notices` until the block ends."""
    undo = hide_known_notices(everything)
    try:
        yield
    finally:
        undo()
