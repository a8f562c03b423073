"""`kill -9` in the middle of `leadscore ingest`, then a rerun.

Two of the kill points of ``benchmarks/crash_recovery.py`` (which runs all fifteen), on
a small CRM: the real command in its own process, killed with SIGKILL at a named step
through the test hook ``LEADSCORE_TEST_CRASH_AT``. They are the two outcomes a kill can
have: the old state (``ingest.table_written``, a table written and the sources not: the
issue's mix) and the new one (``state.after_swap``, switched but not tidied); the other
points before the switch (``state.before_swap`` among them) end in the old state too and
are the benchmark's to run. A leftovers test covers the files a
kill leaves behind. The killed ``leadscore train`` is in ``test_crash_recovery_train.py``
(its own module, so a parallel run gives it a worker of its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash_recovery import (
    Workspace,
    fingerprint,
    ingest_point,
    prepare_ingest,
    stray_files,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ingest_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, str, str]:
    base, export_b, old, new, _ = prepare_ingest(tmp_path_factory.mktemp("ingest"), 300, 3)
    assert old != new
    return base, export_b, old, new


@pytest.mark.parametrize(
    "point",
    [
        "ingest.table_written",  # a table written, sources not: the mix (old state)
        "state.after_swap",  # switched, not yet tidied: the new state
    ],
)
def test_a_killed_ingest_leaves_old_or_new_state_and_a_rerun_converges(
    ingest_base: tuple[Workspace, Path, str, str], tmp_path: Path, point: str
) -> None:
    base, export, old, new = ingest_base
    outcome = ingest_point(base, export, old, new, point, None, tmp_path / "run")
    assert outcome.exit_code == -9
    assert outcome.after_kill == ("new" if point == "state.after_swap" else "old")
    assert outcome.converged and outcome.stray_after_rerun == []


def test_leftovers_of_a_killed_ingest_are_removed_by_the_next(
    ingest_base: tuple[Workspace, Path, str, str], tmp_path: Path
) -> None:
    base, export, _, new = ingest_base
    ws = base.copy_to(tmp_path / "run")
    code, _, _ = ws.run("ingest", str(export), crash_at="ingest.source_written")
    assert code == -9
    assert any(p.endswith(".tmp") or "generations/" in p for p in stray_files(ws))
    ws.must("ingest", str(export))
    assert stray_files(ws) == [] and fingerprint(ws) == new
