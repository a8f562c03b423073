"""`kill -9` in the middle of `leadscore ingest` and `leadscore train`, then a rerun.

A few of the kill points of ``benchmarks/crash_recovery.py`` (which runs all fifteen), on
a small CRM: the real command in its own process, killed with SIGKILL at a named step
through the test hook ``LEADSCORE_TEST_CRASH_AT``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash_recovery import (
    Workspace,
    fingerprint,
    ingest_point,
    prepare_ingest,
    prepare_train,
    stray_files,
    train_point,
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
        "ingest.table_written",  # a table written, sources not: the mix
        "state.before_swap",
        "state.after_swap",
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


def test_a_killed_training_run_is_failed_and_its_version_never_aliased(tmp_path: Path) -> None:
    ws = prepare_train(tmp_path, 600, 7, first_train=False)
    outcome = train_point(ws, "train.version_created")
    assert outcome.exit_code == -9
    assert outcome.dead_version is not None and outcome.dead_status == "FAILED"
    assert outcome.running_after == 0 and outcome.aliased_dead == []
    assert outcome.promote_refused is True
    assert outcome.rerun_status == "FINISHED" and outcome.rerun_aliases
