"""The Feast registry is replaced whole: a reader mid-write still reads the old one."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_config import RegistryConfig

from leadscore.features.registry_store import AtomicFileRegistryStore


def _registry(projects: int) -> RegistryProto:
    proto = RegistryProto()
    for i in range(projects):
        proto.project_metadata.add().project = f"p{i}"
    return proto


def _seen_while_writing(store_class: type[FileRegistryStore], tmp_path: Path, monkeypatch) -> int:
    """How many projects a reader of the registry path finds once the writer has opened
    the file it writes the new registry to; the old registry has 3, the new one 5."""
    store = store_class(RegistryConfig(path=str(tmp_path / "registry.db")), tmp_path)
    store.update_registry_proto(_registry(3))
    seen: list[int] = []

    def reading_open(*args, **kwargs):
        f = builtins.open(*args, **kwargs)
        seen.append(len(store.get_registry_proto().project_metadata))
        return f

    monkeypatch.setattr(sys.modules[store_class.__module__], "open", reading_open, raising=False)
    store.update_registry_proto(_registry(5))
    monkeypatch.undo()
    assert len(store.get_registry_proto().project_metadata) == 5
    return seen[0]


def test_a_reader_mid_write_reads_the_old_registry(tmp_path, monkeypatch):
    assert _seen_while_writing(AtomicFileRegistryStore, tmp_path, monkeypatch) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["registry.db"]  # no temporary file left


def test_feasts_own_store_is_seen_emptied(tmp_path, monkeypatch):
    """Why the repo selects the atomic store: Feast's empties the file, then writes it, and
    an empty file reads as a registry without any view. If Feast changes that, this fails
    and the atomic store can go."""
    assert _seen_while_writing(FileRegistryStore, tmp_path, monkeypatch) == 0
