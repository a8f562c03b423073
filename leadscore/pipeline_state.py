"""The pipeline's stored state, committed all at once: CRM tables, feature sources, rejects.

Feast's FileSources read fixed paths (``features/data/sources/<view>.parquet``) and the
rest of the product reads ``features/data/crm/<table>.parquet``, so an ingest cannot
simply write a new folder and announce it. Instead each ingest builds a complete
*generation* and switches to it with one atomic rename::

    features/data/
      crm      -> current/crm          (fixed symlinks: the paths every reader uses)
      sources  -> current/sources
      rejects  -> current/rejects
      current  -> generations/<id>     (the one pointer an ingest swaps)
      previous -> generations/<id>     (kept for readers still inside it)
      generations/<id>/{crm,sources,rejects}/ and manifest.json

:func:`transaction` takes an exclusive lock, repairs what a killed run left
(:func:`recover`) and opens a new generation; the caller writes the changed tables, the
sources and the rejects there, and links the unchanged tables in
(:meth:`Generation.carry`: hard links, so they cost nothing). :meth:`Generation.commit` writes the manifest (every file with its size and
SHA-256), flushes everything to disk and renames a new ``current`` link over the old one
(``rename(2)`` is atomic). A reader resolving ``crm/deals.parquet`` and
``sources/deal_profile.parquet`` at any moment gets both from the same generation, and a
``kill -9`` at any point leaves either the old generation or the new one as ``current``:
there is no moment when the CRM tables and the sources disagree.

What remains, said plainly: a reader that opens several files over a span of time (a
materialize reading one source after another) can open one from the old generation and the
next from the new one if a commit falls in between. Each file it reads is whole and the
generation it was in is kept (``previous``) until the next commit, so the fix is to rerun
it; nothing here can make a sequence of opens atomic for readers that go through fixed
paths.

Recovery (at the start of every transaction, under the lock): generations that are
neither ``current`` nor ``previous`` are the leftovers of a killed run and are deleted,
with any stray temporary file (``*.tmp``) and temporary link. A store written before
generations existed (``crm/`` and ``sources/`` as real folders) is moved into a
generation named ``legacy`` once; a kill during that move is finished by the next run.

POSIX only (symlinks, ``flock``); the product runs on Linux and macOS.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from leadscore.config import crash_point

log = logging.getLogger(__name__)

#: The parts of one generation, each reached through a fixed link of the same name.
PARTS: tuple[str, ...] = ("crm", "sources", "rejects")
GENERATIONS = "generations"
CURRENT, PREVIOUS = "current", "previous"
MANIFEST = "manifest.json"
LEGACY = "legacy"
LOCK = ".state.lock"
_TMP_SUFFIX = ".tmp"


class StateBusyError(RuntimeError):
    """Another process holds the pipeline state (an ingest is running)."""


def _link_target(link: Path) -> str | None:
    """The name of the generation ``link`` points at, or None (absent or not a link)."""
    try:
        return Path(os.readlink(link)).name
    except OSError:
        return None


def current_generation(root: Path) -> Path | None:
    """The committed generation's folder, or None before the first commit."""
    name = _link_target(Path(root) / CURRENT)
    if name is None:
        return None
    path = Path(root) / GENERATIONS / name
    return path if path.is_dir() else None


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary sibling renamed over it: a reader (or a kill
    midway) finds the old file or the new one, never half of one. The temporary file
    has a unique name, so two writers never share it, and it is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _symlink(root: Path, name: str, target: str) -> None:
    """Point ``root/name`` at ``target`` atomically (a new link renamed over the old)."""
    link = root / name
    if _link_target(link) is not None and os.readlink(link) == target:
        return
    tmp = root / f".{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk (a power cut keeps them too)."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() or path.is_dir():
            _fsync(path)
    _fsync(folder)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Digests of files hashed as they were written (:func:`digest_ahead`), by the file's
#: identity and version: device, inode, size and modification time in nanoseconds.
_AHEAD: dict[tuple[int, int, int, int], str] = {}


def _signature(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def digest_ahead(path: Path) -> None:
    """Hash ``path``, a file just written into a generation, for its commit to reuse.

    Call it on the thread that wrote the file: a re-ingest writes its changed tables on
    a thread of its own while the sources are rebuilt, and the 27 million activities of
    a million deals (640 MB) took the commit more than a second to read again. The
    digest is kept by the file's inode, size and modification time, which a rename
    (``os.replace`` into place) keeps and any other write changes: a file changed after
    it was hashed is hashed again at the commit.
    """
    _AHEAD[_signature(path)] = _sha256(path)


def file_digests(
    folder: Path, parts: Iterable[str] = PARTS, known: Path | None = None
) -> dict[str, str]:
    """``part/name`` -> SHA-256 of every file of ``parts`` under ``folder``, sorted by name.

    ``folder`` is a generation or the state root (the fixed links resolve to ``current``).
    Temporary files are left out: they are not part of any state. ``known`` is a committed
    generation: a file that is a hard link of its file of the same name (carried, not
    rewritten) takes the digest its manifest records instead of being read again, which
    at a million deals is gigabytes an ingest that changed little would hash for nothing.
    """
    recorded: dict[str, str] = {}
    if known is not None:
        try:
            recorded = json.loads((known / MANIFEST).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError):
            recorded = {}
    out: dict[str, str] = {}
    for part in parts:
        base = Path(folder) / part
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.endswith(_TMP_SUFFIX):
                name = f"{part}/{path.relative_to(base).as_posix()}"
                same = known is not None and name in recorded and _same_file(path, known / name)
                ahead = None if same else _AHEAD.pop(_signature(path), None)
                out[name] = recorded[name] if same else ahead or _sha256(path)
    return out


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def state_fingerprint(root: Path, parts: Iterable[str] = ("crm", "sources")) -> str:
    """One hash of the committed files of ``parts``: equal states, equal fingerprints."""
    digests = file_digests(root, parts)
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def _link_files(source: Path, target: Path) -> None:
    """Hard-link (or copy, where links are impossible) the files of ``source`` into ``target``.

    Files ``target`` already has are left alone: they are the new versions. A folder
    (a feature source is a folder of a file per month) is a unit: one ``target`` lacks is
    linked file by file; one it has is its new version, complete as written.
    """
    if not source.is_dir():
        return
    for path in sorted(source.iterdir()):
        if path.name.endswith(_TMP_SUFFIX) or (target / path.name).exists():
            continue
        if path.is_dir():
            (target / path.name).mkdir()
            _link_files(path, target / path.name)
            continue
        if path.is_file():
            link_file(path, target / path.name)


def link_file(source: Path, target: Path) -> None:
    """``target`` as a hard link of ``source`` (a copy where links are impossible): a
    committed file kept in a new generation costs no space or time."""
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


@dataclass
class Generation:
    """A generation being written; nothing in it is visible before :meth:`commit`."""

    root: Path
    path: Path
    committed: bool = False

    def dir(self, part: str) -> Path:
        """The folder of ``part`` (crm, sources or rejects) in this generation."""
        return self.path / part

    def carry(self, part: str) -> None:
        """Complete ``part`` with the committed files it does not have yet: hard links,
        so unchanged files cost no space or time.

        Call it after writing the new files: a hard link shares its bytes with the
        committed file, so writing into one in place would change the committed state
        (replacing it with ``os.replace`` would not).
        """
        source = current_generation(self.root)
        if source is not None:
            _link_files(source / part, self.dir(part))

    def clear(self, part: str) -> None:
        """Empty ``part`` of this generation."""
        shutil.rmtree(self.dir(part), ignore_errors=True)
        self.dir(part).mkdir(parents=True)

    def commit(self) -> None:
        """Make this generation the state: manifest, flush to disk, one atomic rename."""
        manifest = {
            "generation": self.path.name,
            "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": file_digests(self.path, known=current_generation(self.root)),
        }
        (self.path / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync_tree(self.path)
        crash_point("state.before_swap")
        old = _link_target(self.root / CURRENT)
        if old is not None and old != self.path.name:
            _symlink(self.root, PREVIOUS, f"{GENERATIONS}/{old}")
        _symlink(self.root, CURRENT, f"{GENERATIONS}/{self.path.name}")  # the commit
        _fsync(self.root)
        self.committed = True
        crash_point("state.after_swap")
        _ensure_links(self.root)
        _remove_stale(self.root)
        log.info("state committed: generation %s", self.path.name)


def _ensure_links(root: Path) -> None:
    """The fixed links ``crm``, ``sources``, ``rejects`` -> ``current/<part>``."""
    for part in PARTS:
        _symlink(root, part, f"{CURRENT}/{part}")


def _remove_stale(root: Path) -> list[Path]:
    """Delete generations neither current nor previous, and temporary files and links."""
    removed: list[Path] = []
    keep = {_link_target(root / CURRENT), _link_target(root / PREVIOUS)} - {None}
    generations = root / GENERATIONS
    if generations.is_dir():
        for path in sorted(generations.iterdir()):
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        for name in keep:
            folder = generations / str(name)
            if folder.is_dir():
                for tmp in sorted(folder.rglob(f"*{_TMP_SUFFIX}")):
                    if tmp.is_dir():  # a source folder being written
                        shutil.rmtree(tmp, ignore_errors=True)
                    else:
                        tmp.unlink(missing_ok=True)
                    removed.append(tmp)
    for tmp in root.glob(f".*{_TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _migrate_legacy(root: Path) -> None:
    """Move a store written before generations (real ``crm/`` etc. folders) into one.

    Every step is a rename, and a killed migration is finished by the next run: the
    ``legacy`` generation is marked as migrating, collects the folders, then becomes
    ``current``.
    """
    real = [p for p in PARTS if (root / p).is_dir() and not (root / p).is_symlink()]
    legacy = root / GENERATIONS / LEGACY
    marker = legacy / ".migrating"
    if not real and not marker.exists():
        return
    legacy.mkdir(parents=True, exist_ok=True)
    marker.touch()
    for part in real:
        if (legacy / part).exists():  # the real folder is what readers saw last
            shutil.rmtree(legacy / part)
        os.rename(root / part, legacy / part)
    committed = current_generation(root)
    for part in PARTS:
        if not (legacy / part).exists():  # not a real folder: keep what readers saw
            (legacy / part).mkdir()
            if committed is not None and committed != legacy:
                _link_files(committed / part, legacy / part)
    old = _link_target(root / CURRENT)
    if old is not None and old != LEGACY:
        _symlink(root, PREVIOUS, f"{GENERATIONS}/{old}")
    _symlink(root, CURRENT, f"{GENERATIONS}/{LEGACY}")
    marker.unlink()
    log.info("moved the stored state (%s) into generation %s", ", ".join(real), LEGACY)


def recover(root: Path) -> list[Path]:
    """Repair what a killed run left: finish a migration, links, stale files. Idempotent.

    Call with the lock held (:func:`transaction` does). Returns what was removed.
    """
    root = Path(root)
    _migrate_legacy(root)
    if current_generation(root) is not None:
        _ensure_links(root)
    removed = _remove_stale(root)
    if removed:
        log.info("removed %d leftovers of an interrupted run in %s", len(removed), root)
    return removed


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    import fcntl  # POSIX; imported here so that importing this module works anywhere

    with (root / LOCK).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateBusyError(
                f"another ingest is writing {root} now; wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _new_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def transaction(root: Path, carry: Iterable[str] = ()) -> Iterator[Generation]:
    """A new generation of the state under ``root``, committed by :meth:`Generation.commit`.

    Holds an exclusive lock (a second ingest fails at once with :class:`StateBusyError`;
    the lock dies with its process, so a ``kill -9`` never leaves it held), repairs
    leftovers first, and starts the new generation with ``carry`` parts hard-linked from
    the committed one (see :meth:`Generation.carry`). Leaving the block without a commit
    discards the generation.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        recover(root)
        generation = Generation(root, root / GENERATIONS / _new_id())
        for part in PARTS:
            generation.dir(part).mkdir(parents=True)
        for part in carry:
            generation.carry(part)
        try:
            yield generation
        finally:
            if not generation.committed:
                shutil.rmtree(generation.path, ignore_errors=True)
