"""What the command line shows besides results: logging, third-party noise, progress bars.

stdout carries a command's result only (tables, paths, JSON), so ``leadscore train
--json > run.json`` stays valid JSON whatever else happens; everything here goes to
stderr. Three levels, set by the global options of ``leadscore``:

* default: warnings and errors, the product's and the libraries', without the known
  third-party notices of :mod:`leadscore.noise`; progress bars while a step works, when
  stderr is a terminal.
* ``--verbose``: debug logging with timestamps and nothing hidden (numba and
  matplotlib stay at info: their debug output is pages of compiler and font traces).
* ``--quiet``: errors only: no warnings, no bars, and nothing libraries print to stderr
  while a step works. An error still says what went wrong.

The core never prints; it reports progress to a :class:`leadscore.progress.Progress`
callback, which :func:`working` turns into Rich bars. Log records and warnings
raised while bars are drawn are printed above them rather than through them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from leadscore.noise import hidden
from leadscore.progress import Progress, no_progress


class Verbosity(enum.Enum):
    QUIET = "quiet"
    DEFAULT = "default"
    VERBOSE = "verbose"


#: Loggers whose debug output is noise even with --verbose.
_FLOODING_AT_DEBUG = ("numba", "matplotlib", "PIL", "asyncio", "urllib3", "filelock")
#: Counts from this size on get a rate (rows/s, deals/s): a rate of 6 views is no news.
_RATE_FROM = 100

_verbosity = Verbosity.DEFAULT


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the record.

    While bars are drawn that is Rich's proxy, which prints the line above the bars; a
    handler holding the original stream would write through them.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        """The stream is always the current stderr; the base class's assignment is ignored."""


@contextlib.contextmanager
def configured(verbosity: Verbosity) -> Iterator[None]:
    """Logging and notice filtering for one command, undone when it ends.

    ``logging.disable`` rather than logger levels for the default and quiet levels:
    libraries that set up their own loggers when imported (MLflow does, after this runs)
    would otherwise undo a level set here.
    """
    global _verbosity
    root = logging.getLogger()
    verbose, quiet = verbosity is Verbosity.VERBOSE, verbosity is Verbosity.QUIET
    # Quiet drops what is printed to stderr during a step (see working), so its
    # errors go to the stream of now; otherwise records follow stderr into the bars.
    handler = logging.StreamHandler(sys.stderr) if quiet else _CurrentStderr()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if verbose
            else "%(levelname)s %(name)s: %(message)s"
        )
    )
    floods = {name: logging.getLogger(name).level for name in _FLOODING_AT_DEBUG}
    saved = (_verbosity, root.level, root.manager.disable)
    _verbosity = verbosity
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.DEBUG)
        logging.disable(logging.NOTSET)
        for name in floods:
            logging.getLogger(name).setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
        logging.disable(logging.WARNING if quiet else logging.INFO)
    try:
        with contextlib.nullcontext() if verbose else hidden(everything=quiet):
            yield
    finally:
        root.removeHandler(handler)
        _verbosity, level, disabled = saved
        root.setLevel(level)
        logging.disable(disabled)
        for name, level in floods.items():
            logging.getLogger(name).setLevel(level)


class _Counts(ProgressColumn):
    """``12,000/61,000 rows  8,400 rows/s``: the count, and the rate for large counts."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        if task.total is None and not task.completed:
            return Text("")  # started, nothing countable yet: the bar pulses
        total = "" if task.total is None else f"/{task.total:,.0f}"
        text = f"{task.completed:,.0f}{total} {unit}".rstrip()
        # Over the whole task once it is done (a step that jumps from 0 to its total in
        # one report has no recent samples); over Rich's recent window while it runs.
        if task.finished_time:
            speed: float | None = task.completed / task.finished_time
        else:
            speed = task.speed
        if speed and max(task.completed, task.total or 0) >= _RATE_FROM:
            text += f"  {speed:,.0f} {unit}/s"
        return Text(text)


class _Bars:
    """A :class:`~leadscore.progress.Progress` drawing one Rich bar per task."""

    def __init__(self, bars: RichProgress) -> None:
        self._bars = bars
        self._ids: dict[str, TaskID] = {}
        self._finished: set[str] = set()

    def __call__(
        self, task: str, done: int, total: int | None = None, *, unit: str = "", detail: str = ""
    ) -> None:
        if task not in self._ids:
            self._ids[task] = self._bars.add_task(
                task, total=total, completed=done, unit=unit, detail=detail
            )
        elif task in self._finished:
            # A task reported again after it ended starts over (a second run of a step).
            self._finished.discard(task)
            self._bars.reset(self._ids[task], total=total, completed=done, unit=unit, detail=detail)
        else:
            self._bars.update(
                self._ids[task], total=total, completed=done, unit=unit, detail=detail
            )
        if total is not None and done >= total:
            self._finished.add(task)


def _draws_bars(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


@contextlib.contextmanager
def working() -> Iterator[Progress]:
    """The block in which a command's step works: its progress callback, its output kept apart.

    Bars on stderr when it is a terminal; none with ``--quiet`` or when stderr is not a
    terminal (a log file, CI, tests), where lines redrawn in place are garbage. Whatever
    libraries print to stdout in the block goes to stderr, so stdout carries only what the
    command prints after it; with ``--quiet`` what they print to stderr is dropped as well
    (the command's own errors are printed after the block; error records still show).
    """
    if _verbosity is Verbosity.QUIET:
        with open(os.devnull, "w") as devnull:
            with contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
                yield no_progress
        return
    console = Console(stderr=True, highlight=False)
    if not _draws_bars(console):
        with contextlib.redirect_stdout(sys.stderr):
            yield no_progress
        return
    # Rich sends stdout and stderr written while bars are drawn to stderr, above them.
    bars = RichProgress(
        TextColumn("{task.description:<20}"),
        BarColumn(bar_width=28),
        _Counts(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim", markup=False),
        console=console,
    )
    with bars:
        yield _Bars(bars)
