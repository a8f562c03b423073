"""How far a long step has got: a callback the core calls and the command line draws.

Library code does not print. A step that can take more than a few seconds takes a
``progress`` callback and calls it as work gets done::

    progress("validate export", 12_000, 61_000, unit="rows", detail="activities")

``task`` names what is being counted and identifies it: calls with the same task
update one bar. ``done`` counts up from 0, and the call with ``done == total`` ends the
task; ``total`` is ``None`` while it is not known. ``unit`` names what is counted
(rows, views, rounds), ``detail`` what is being worked on now (a table, a phase).

The default, :func:`no_progress`, does nothing, so callers that do not care pass
nothing and tests can pass ``list.append``-style recorders. The command line draws
bars on stderr (:mod:`pipelines.console`); the service never reports progress.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """A receiver of progress reports; see the module notes for the meaning of each part."""

    def __call__(
        self, task: str, done: int, total: int | None = None, *, unit: str = "", detail: str = ""
    ) -> None: ...


def no_progress(
    task: str, done: int, total: int | None = None, *, unit: str = "", detail: str = ""
) -> None:
    """Report nowhere: the default of every step that reports progress."""
