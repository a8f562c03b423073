"""`kill -9` in the middle of `leadscore train`, then the next commands.

The issue's kill point of ``benchmarks/crash_recovery.py`` (which runs every train step):
the version registered while its run is still RUNNING. The real command runs in its own
process, killed with SIGKILL through the test hook ``LEADSCORE_TEST_CRASH_AT``. A module
of its own, beside the ingest kills of ``test_crash_recovery.py``, so that a parallel run
(pytest-xdist, ``--dist loadfile``) can give this chain of CLI commands its own worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.crash_recovery import prepare_train, train_point

pytestmark = pytest.mark.timeout(600)

#: Deals of the CRM trained on: enough for ``leadscore train`` to finish a version.
TRAIN_DEALS = 600


def test_a_killed_training_run_is_failed_and_its_version_never_aliased(tmp_path: Path) -> None:
    ws = prepare_train(tmp_path, TRAIN_DEALS, 7, first_train=False)
    outcome = train_point(ws, "train.version_created")
    assert outcome.exit_code == -9
    assert outcome.dead_version is not None and outcome.dead_status == "FAILED"
    assert outcome.running_after == 0 and outcome.aliased_dead == []
    assert outcome.promote_refused is True
    assert outcome.rerun_status == "FINISHED" and outcome.rerun_aliases
