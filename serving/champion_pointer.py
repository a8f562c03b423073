"""The "served champion" pointer: which packaged models a running service should serve.

``leadscore package`` (and ``rollback`` and ``retrain``, which package) writes it at
:attr:`leadscore.config.Settings.served_pointer` (``bentoml_home/served_champion.json``):
the exact BentoML tags of the win model and the revival model (or none) that the
champions are now, with their MLflow versions. It is written to a temporary file and
renamed over the old one, so a reader sees the old pointer or the new one, never half of
one. ``leadscore serve`` writes it too, before it starts the service, so a worker that
starts finds the pointer naming what it was started with. Every worker of a running
service polls it and switches (:mod:`serving.reload`).

Apart from :mod:`serving.package` and :mod:`serving.reload` because both use it and the
second builds on the first.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from leadscore.config import Settings

if TYPE_CHECKING:
    from serving.package import PackagedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedChampion:
    """What the pointer file holds: the models a running service should serve."""

    tag: str
    mlflow_version: str
    revival_tag: str | None = None
    revival_version: str | None = None
    #: When and by which command it was written (for the operator reading the file).
    written_at: str = ""
    by: str = ""


def write_served_pointer(
    settings: Settings, win: PackagedModel, revival: PackagedModel | None, by: str
) -> ServedChampion:
    """Point running services at ``win`` (and ``revival``, or no revival model), atomically.

    Written beside the target and renamed over it (``os.replace``), after an fsync, so a
    worker reading at any moment, or a machine losing power, finds a whole pointer.
    """
    pointer = ServedChampion(
        tag=win.tag,
        mlflow_version=win.mlflow_version,
        revival_tag=None if revival is None else revival.tag,
        revival_version=None if revival is None else revival.mlflow_version,
        written_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        by=by,
    )
    path = settings.served_pointer
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".served_champion.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a service run as another user
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(pointer), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info(
        "served champion is now %s (MLflow version %s), revival %s: %s",
        pointer.tag,
        pointer.mlflow_version,
        pointer.revival_tag or "none",
        path,
    )
    return pointer


def read_served_pointer(path: Path) -> ServedChampion | None:
    """The pointer at ``path``; None when there is none (a built Bento, a store never
    packaged) or it cannot be read (logged: the service keeps what it serves)."""
    try:
        raw = json.loads(path.read_text())
        return ServedChampion(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("cannot read the served-champion pointer %s (%s); ignored", path, exc)
        return None
