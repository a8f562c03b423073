"""Ingest errors people can act on, and pipeline state that survives a killed run.

* ``leadscore ingest`` on an export it cannot use prints one message (file, line,
  problem, a hint) and exits 2, never a traceback; a first export that stores no deal
  is such an error too (not ``KeyError: 'deals'``); its summary adds up.
* The CRM tables, feature sources and rejects are one generation, committed at once;
  leftovers of a killed run are removed by the next (:mod:`leadscore.pipeline_state`).
* A training run whose process died is marked FAILED and its version gets no alias;
  ``promote`` refuses a version whose run did not finish.

The ``kill -9`` runs themselves are in ``tests/integration/test_crash_recovery.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from leadscore import pipeline_state
from leadscore.config import CHALLENGER, Settings
from leadscore.pipeline_state import (
    GENERATIONS,
    StateBusyError,
    current_generation,
    file_digests,
    recover,
    state_fingerprint,
    transaction,
)
from pipelines.cli import app
from tests.crm_fixture import tiny_crm


def write_csv_export(folder: Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (tables or tiny_crm()).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def ingest(settings: Settings, export: Path) -> Result:
    env = {"LEADSCORE_FEATURE_REPO": str(settings.feature_repo)}
    return CliRunner().invoke(app, ["ingest", str(export)], env=env)


def one_error(result: Result) -> str:
    """The single message of a failed run; no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# ------------------------------------------------------------------ friendly errors


def _semicolons(export: Path) -> None:
    deals = tiny_crm()["deals"]
    deals.to_csv(export / "deals.csv", index=False, sep=";")


def _latin1(export: Path) -> None:
    text = (export / "deals.csv").read_text(encoding="utf-8").replace("open", "ouvert é", 1)
    (export / "deals.csv").write_bytes(text.encode("latin-1"))


def _utf16(export: Path) -> None:
    text = (export / "deals.csv").read_text(encoding="utf-8")
    (export / "deals.csv").write_text(text, encoding="utf-16")


def _ragged(export: Path) -> None:
    with (export / "deals.csv").open("a", encoding="utf-8") as f:
        f.write("D9,A1,U1,too,many,fields,in,this,row,for,the,header,of,deals,at,all\n")


def _empty(export: Path) -> None:
    (export / "deals.csv").write_bytes(b"")


def _missing_column(export: Path) -> None:
    tiny_crm()["deals"].drop(columns=["status"]).to_csv(export / "deals.csv", index=False)


def _corrupt_parquet(export: Path) -> None:
    (export / "deals.csv").unlink()
    (export / "deals.parquet").write_bytes(b"PAR1 this is not parquet")


def _open_quote(export: Path) -> None:
    with (export / "deals.csv").open("a", encoding="utf-8") as f:
        f.write('D9,"never closed\n')


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        pytest.param(
            _semicolons,
            ["deals.csv", "line 1", "semicolons", "lacks required column"],
            id="semicolons",
        ),
        pytest.param(_latin1, ["deals.csv", "not UTF-8", "line 4", "Windows-1252"], id="latin1"),
        pytest.param(_utf16, ["deals.csv", "UTF-16", "line 1", "CSV UTF-8"], id="utf16"),
        pytest.param(_ragged, ["deals.csv", "line 6", "fields where the header has"], id="ragged"),
        pytest.param(_empty, ["deals.csv", "line 1", "empty"], id="empty"),
        pytest.param(
            _missing_column,
            ["deals.csv", "lacks required column(s): status", "line 1"],
            id="missing_column",
        ),
        pytest.param(
            _corrupt_parquet, ["deals.parquet", "not a readable Parquet file"], id="corrupt_parquet"
        ),
        pytest.param(_open_quote, ["deals.csv", "line 6", "never closed"], id="open_quote"),
    ],
)
def test_an_export_error_is_one_message_and_exit_2(
    isolated_settings: Settings, tmp_path: Path, spoil, expected: list[str]
) -> None:
    export = write_csv_export(tmp_path / "export")
    spoil(export)
    message = one_error(ingest(isolated_settings, export))
    for part in expected:
        assert part in message, message
    assert current_generation(isolated_settings.feature_data) is None  # nothing committed


def test_a_missing_folder_is_one_message(isolated_settings: Settings, tmp_path: Path) -> None:
    assert "does not exist" in one_error(ingest(isolated_settings, tmp_path / "nowhere"))


def test_a_first_export_whose_deals_are_all_rejected_stores_nothing_and_says_why(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    tables = tiny_crm()
    tables["deals"] = tables["deals"].assign(status="bogus")
    message = one_error(ingest(isolated_settings, write_csv_export(tmp_path / "export", tables)))
    assert "all 4 rows of deals.csv were rejected, so nothing was stored" in message
    assert "status 'bogus' must be one of" in message
    rejects = pd.read_csv(isolated_settings.rejects_dir / "rejects.csv")
    assert set(rejects.loc[rejects["table"] == "deals", "line"]) == {2, 3, 4, 5}
    assert not list(isolated_settings.crm_dir.glob("*.parquet"))
    assert not list(isolated_settings.sources_dir.glob("*.parquet"))


def test_a_header_only_deals_file_is_a_clear_error(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    tables = {"deals": tiny_crm()["deals"].iloc[:0]}
    message = one_error(ingest(isolated_settings, write_csv_export(tmp_path / "export", tables)))
    assert "deals.csv has a header but no rows" in message


def test_the_summary_counts_duplicates_so_rows_add_up(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    tables = tiny_crm()
    deals = tables["deals"]
    tables["deals"] = pd.concat([deals, deals.iloc[[0, 0]]], ignore_index=True)  # 2 repeats
    unused = tables["accounts"].iloc[[0]].astype(object).assign(account_id="A9")
    tables["accounts"] = pd.concat(  # one rejected row nothing refers to
        [tables["accounts"], unused.assign(employee_count="many")], ignore_index=True
    )
    result = ingest(isolated_settings, write_csv_export(tmp_path / "export", tables))
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "table",
        "read",
        "valid",
        "rejected",
        "duplicates",
        "inserted",
        "updated",
        "unchanged",
    ]
    by_table = {r.split()[0]: [int(v.replace(",", "")) for v in r.split()[1:]] for r in rows[:6]}
    assert by_table["deals"][:4] == [6, 4, 0, 2]
    assert by_table["accounts"][:4] == [3, 2, 1, 0]
    for read, valid, rejected, duplicates, *_ in by_table.values():
        assert read == valid + rejected + duplicates
    read = sum(len(t) for t in tables.values())
    assert f"rows read {read:,d} = stored {read - 3:,d} + rejected 1 + duplicates 2" in (
        result.stdout
    )


# ------------------------------------------------------------------ one generation at a time


def test_ingest_commits_tables_sources_and_rejects_as_one_generation(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    root = isolated_settings.feature_data
    export = write_csv_export(tmp_path / "export")
    assert ingest(isolated_settings, export).exit_code == 0
    first = current_generation(root)
    assert first is not None
    for part, link in (("crm", "crm"), ("sources", "sources"), ("rejects", "rejects")):
        assert (root / link).is_symlink()
        assert (root / link).resolve() == (first / part).resolve()
    assert (first / "manifest.json").is_file()
    before = state_fingerprint(root)

    assert ingest(isolated_settings, export).exit_code == 0  # the same export again
    second = current_generation(root)
    assert second != first and state_fingerprint(root) == before
    # Unchanged tables are hard links to the previous generation's files: no copy.
    assert (second / "crm" / "deals.parquet").stat().st_ino == (
        first / "crm" / "deals.parquet"
    ).stat().st_ino
    assert ingest(isolated_settings, export).exit_code == 0
    # current and previous are kept; older generations are removed.
    assert len(list((root / GENERATIONS).iterdir())) == 2


def test_a_generation_left_without_commit_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with transaction(root) as generation:
        (generation.dir("crm") / "deals.parquet").write_bytes(b"old")
        generation.commit()
    with pytest.raises(RuntimeError, match="died"):
        with transaction(root) as generation:
            (generation.dir("crm") / "deals.parquet").write_bytes(b"new")
            raise RuntimeError("died")
    assert (root / "crm" / "deals.parquet").read_bytes() == b"old"
    assert len(list((root / GENERATIONS).iterdir())) == 1


def test_a_hard_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with transaction(root) as generation:
        (generation.dir("crm") / "deals.parquet").write_bytes(b"old")
        generation.commit()
        (generation.dir("crm") / "accounts.parquet").write_bytes(b"accounts")
        generation.commit()
    with transaction(root, carry=["crm"]) as generation:
        tmp = generation.dir("crm") / ".deals.parquet.x.tmp"
        tmp.write_bytes(b"new")
        os.replace(tmp, generation.dir("crm") / "deals.parquet")
        assert (root / "crm" / "deals.parquet").read_bytes() == b"old"  # not yet committed
        generation.commit()
    assert (root / "crm" / "deals.parquet").read_bytes() == b"new"
    assert (root / "crm" / "accounts.parquet").read_bytes() == b"accounts"
    assert (root / "previous" / "crm" / "deals.parquet").read_bytes() == b"old"


def test_a_carried_file_keeps_its_recorded_digest_and_a_rewritten_one_is_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    with transaction(root) as generation:
        (generation.dir("sources") / "big.parquet").write_bytes(b"kept")
        (generation.dir("sources") / "small.parquet").write_bytes(b"old")
        generation.commit()
    hashed: list[str] = []
    real = pipeline_state._sha256
    monkeypatch.setattr(
        pipeline_state, "_sha256", lambda path: hashed.append(path.name) or real(path)
    )
    with transaction(root) as generation:
        (generation.dir("sources") / "small.parquet").write_bytes(b"new")
        generation.carry("sources")
        generation.commit()
    assert hashed == ["small.parquet"]  # the carried file was not read again
    monkeypatch.undo()
    # ...and the manifest still says what is in every file, as hashing them all would.
    committed = current_generation(root)
    assert committed is not None
    manifest = json.loads((committed / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"] == file_digests(committed)


def test_leftovers_of_a_killed_run_are_removed_on_start(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with transaction(root) as generation:
        (generation.dir("sources") / "deal_profile.parquet").write_bytes(b"ok")
        generation.commit()
    kept = current_generation(root)
    assert kept is not None
    # What a kill -9 leaves: a half-built generation, temporary files, a temporary link.
    (root / GENERATIONS / "20990101T000000-1-dead").mkdir()
    (root / GENERATIONS / "20990101T000000-1-dead" / "crm").mkdir()
    (kept / "sources" / ".deal_stage.parquet.tmp").write_bytes(b"half")
    half_source = kept / "sources" / ".deal_activity.parquet.tmp"  # a source's folder
    half_source.mkdir()
    (half_source / "part-2024-03.parquet").write_bytes(b"half")
    (kept / "crm" / ".deals.parquet.0123.tmp").write_bytes(b"half")
    os.symlink("generations/x", root / ".current.abc.tmp")

    removed = recover(root)
    assert len(removed) == 5
    assert not half_source.exists()
    assert [p.name for p in (root / GENERATIONS).iterdir()] == [kept.name]
    assert not list(root.rglob("*.tmp")) and not (root / ".current.abc.tmp").is_symlink()
    assert (root / "sources" / "deal_profile.parquet").read_bytes() == b"ok"


def test_a_store_from_before_generations_is_moved_in_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for part in ("crm", "sources"):
        (root / part).mkdir(parents=True)
        (root / part / f"{part}.parquet").write_bytes(part.encode())
    (root / "crm" / ".deals.parquet.1.tmp").write_bytes(b"stale")
    recover(root)
    assert (root / "crm").is_symlink() and (root / "crm" / "crm.parquet").read_bytes() == b"crm"
    assert (root / "sources" / "sources.parquet").read_bytes() == b"sources"
    assert not list(root.rglob("*.tmp"))
    with transaction(root, carry=["crm"]) as generation:  # the next ingest carries them over
        assert (generation.dir("crm") / "crm.parquet").read_bytes() == b"crm"


def test_a_killed_migration_is_finished_by_the_next_run(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for part in ("crm", "sources"):
        (root / part).mkdir(parents=True)
        (root / part / "t.parquet").write_bytes(part.encode())
    # Killed after moving crm/ into the legacy generation, before sources/ and the switch.
    legacy = root / GENERATIONS / "legacy"
    legacy.mkdir(parents=True)
    (legacy / ".migrating").touch()
    os.rename(root / "crm", legacy / "crm")
    recover(root)
    assert (root / "crm" / "t.parquet").read_bytes() == b"crm"
    assert (root / "sources" / "t.parquet").read_bytes() == b"sources"
    assert not (legacy / ".migrating").exists()


def test_a_second_ingest_at_the_same_time_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with transaction(root):
        with pytest.raises(StateBusyError, match="another ingest"):
            with transaction(root):
                pass


# ------------------------------------------------------------------ training runs that died


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_died_is_failed_and_its_version_cannot_be_promoted(
    isolated_settings: Settings,
) -> None:
    from leadscore.model.registry import RegistryError, alias_version, mlflow_client
    from training.registry import (
        HOST_TAG,
        PID_TAG,
        START_TAG,
        ensure_experiment,
        fail_dead_runs,
        list_versions,
        process_tags,
        promote,
    )

    settings = isolated_settings
    client = mlflow_client(settings)
    experiment = ensure_experiment(settings, client)
    dead = client.create_run(
        experiment,
        tags={PID_TAG: str(_dead_pid()), HOST_TAG: process_tags()[HOST_TAG], START_TAG: "1"},
    )
    alive = client.create_run(experiment, tags=process_tags())  # this very process
    elsewhere = client.create_run(experiment, tags={PID_TAG: "1", HOST_TAG: "another-host"})
    name = settings.model_name
    client.create_registered_model(name)
    version = client.create_model_version(name, "file:///nowhere", run_id=dead.info.run_id)
    # As an older leadscore did: the alias set before the run had finished.
    client.set_registered_model_alias(name, CHALLENGER, version.version)

    assert fail_dead_runs(settings, client) == [dead.info.run_id]
    assert client.get_run(dead.info.run_id).info.status == "FAILED"
    assert (
        "ended before the run finished"
        in client.get_run(dead.info.run_id).data.tags["leadscore.failure"]
    )
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"  # cannot tell
    assert alias_version(client, name, CHALLENGER) is None
    assert list_versions(settings)[0]["run_status"] == "FAILED"

    with pytest.raises(RegistryError, match=r"did not finish \(status FAILED\)"):
        promote(settings, pd.DataFrame(), version=str(version.version))
    client.set_terminated(alive.info.run_id)
    client.set_terminated(elsewhere.info.run_id)
