"""The catalog's one source of truth: every publication, its version and its deletion, in SQLite.

A build is a snapshot of the store at a *generation* (recorded in its manifest); API writes commit here before
they are acknowledged and bump the generation, and every worker serves its build plus the changes made since
that generation (engine/index/delta.py), so nothing acknowledged depends on a build being rewritten.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk (the log fsynced) when it returns, readers
never wait for the writer, and several processes share the file. Why not PostgreSQL: nothing to install or run
beside the service; the interface is small enough to put another database behind it. The chunk vectors a
write or an import encoded are kept beside its record, so other workers and the next build never encode it
again, and every stored change can be served before a build holds it.

An import is a three-way merge: each row remembers the record its file last gave (``imported``). A file that
has not changed an item since its last import leaves an API edit or deletion of it alone; a file that has
changed it wins; ``sync`` mirrors the file exactly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.catalog.records import Publication, UnknownPublicationError, parse_record

STORE_FILE = "catalog.db"
# A write waits this long for another process's transaction before answering "busy" (503, retry).
BUSY_TIMEOUT = 2.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS publications (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,       -- the generation of its last change
    record TEXT,                    -- catalog record as JSON, NULL once deleted (a tombstone)
    model TEXT,                     -- the model of the chunk vectors below
    vectors BLOB,
    weights BLOB,
    imported TEXT                   -- the record as its catalog file last gave it (NULL: never, or deleted by --sync)
);
CREATE INDEX IF NOT EXISTS publications_by_version ON publications (version);
"""


class StoreBusyError(RuntimeError):
    """Another process holds the store's write lock for too long (HTTP 503 with Retry-After)."""

    retry_after = 1


class StoreUnavailableError(RuntimeError):
    """The store cannot be written or read (full or read-only disk, damaged file); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Change:
    """One publication as the store holds it: its latest version, or its deletion."""

    id: str
    version: int
    publication: Publication | None  # None: deleted
    model: str | None = None
    chunks: tuple[np.ndarray, np.ndarray] | None = None  # (chunk vectors, weights) a write encoded


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a catalog file changes (or changed): ids added, changed and deleted."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    kept: int = 0  # in the store but not in the file, and kept (no --sync)
    # API edits and deletions kept: the file has not changed these items since it was last imported.
    kept_api: list[str] = field(default_factory=list)
    generation: int = 0

    @property
    def changes(self) -> int:
        """Number of publications the import writes."""
        return len(self.added) + len(self.changed) + len(self.deleted)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every live publication at one generation, with the chunk vectors writes stored for them."""

    generation: int
    publications: list[Publication]
    chunks: dict[str, tuple[str, np.ndarray, np.ndarray]]  # id -> (model, vectors, weights)


class CatalogStore:
    """The catalog store of an index folder. Thread-safe; any number of processes may open it."""

    def __init__(self, path: Path, *, timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc) from None

    @classmethod
    def of(cls, index_dir: Path) -> CatalogStore:
        """The store of an index folder (created empty when missing)."""
        return cls(Path(index_dir) / STORE_FILE)

    @staticmethod
    def exists(index_dir: Path) -> bool:
        """Whether the index folder has a store yet."""
        return (Path(index_dir) / STORE_FILE).is_file()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # ----- reading -----

    def generation(self) -> int:
        """The generation of the last committed change (0 for an empty store)."""
        return self._state("generation")

    def reloads(self) -> int:
        """How many reloads have been requested (workers reload when it moves)."""
        return self._state("reloads")

    def positions(self) -> tuple[int, int]:
        """``(generation, reloads)`` in one read: what a worker compares every few hundredths of a second."""
        with self._reading() as db:
            return self._state_in(db, "generation"), self._state_in(db, "reloads")

    def __len__(self) -> int:
        with self._reading() as db:
            return db.execute("SELECT count(*) FROM publications WHERE record IS NOT NULL").fetchone()[0]

    def changes_since(self, generation: int) -> tuple[int, list[Change]]:
        """The store's generation and every publication changed after ``generation`` (one consistent read)."""
        with self._reading() as db:
            now = self._state_in(db, "generation")
            rows = db.execute(
                "SELECT id, version, record, model, vectors, weights FROM publications WHERE version > ? "
                "ORDER BY version, rowid",
                (generation,),
            ).fetchall()
        return now, [self._change(row) for row in rows]

    def snapshot(self) -> Snapshot:
        """Every live publication (in the order they were first stored) at the current generation."""
        with self._reading() as db:
            now = self._state_in(db, "generation")
            rows = db.execute(
                "SELECT id, version, record, model, vectors, weights FROM publications WHERE record IS NOT NULL "
                "ORDER BY rowid"
            ).fetchall()
        changes = [self._change(row) for row in rows]
        chunks = {c.id: (c.model, *c.chunks) for c in changes if c.chunks is not None and c.model}
        return Snapshot(now, [c.publication for c in changes if c.publication is not None], chunks)

    # ----- writing -----

    def write(
        self,
        upserts: Sequence[tuple[Publication, str | None, tuple[np.ndarray, np.ndarray] | None]] = (),
        deletes: Sequence[str] = (),
    ) -> int:
        """Commit upserts (publication, model, chunk vectors) and deletions as one new generation; returns it.

        :class:`UnknownPublicationError` when a deleted id is not in the store (nothing is written). An upsert
        identical to the stored record changes nothing.
        """
        with self._transaction() as db:
            live = self._live(db, [p.id for p, _, _ in upserts] + list(deletes))
            missing = [i for i in deletes if i not in live]
            if missing:
                raise UnknownPublicationError(missing[0])
            rows = []
            for publication, model, chunks in upserts:
                record = _record_json(publication)
                if live.get(publication.id) != record:
                    vectors, weights = chunks if chunks is not None else (None, None)
                    rows.append((publication.id, record, model, _blob(vectors), _blob(weights)))
            if not rows and not deletes:
                return self._state_in(db, "generation")
            generation = self._bump(db, "generation")
            self._upsert(db, [(generation, *row, None) for row in rows], imported=False)
            self._tombstone(db, generation, deletes)
            return generation

    def plan_import(self, publications: Sequence[Publication], *, sync: bool = False) -> ImportPlan:
        """What :meth:`import_catalog` would change (nothing is written)."""
        with self._reading() as db:
            return self._plan(db, publications, sync)[0]

    def import_catalog(
        self,
        publications: Sequence[Publication],
        *,
        sync: bool = False,
        chunks: Mapping[str, tuple[str, tuple[np.ndarray, np.ndarray]]] | None = None,
    ) -> ImportPlan:
        """Merge a catalog file's publications into the store (see the module docstring); with ``sync`` also
        delete the stored ones it lacks. ``chunks``: id -> (model, chunk vectors) of the records it writes, so
        workers serve them before the build does. One transaction."""
        chunks = chunks or {}
        with self._transaction() as db:
            plan, rows, noted = self._plan(db, publications, sync)
            db.executemany("UPDATE publications SET imported = ? WHERE id = ?", [(r, i) for i, r in noted])
            if not rows and not plan.deleted:
                return plan
            generation = self._bump(db, "generation")
            written = []
            for key, record in rows:
                model, (vectors, weights) = chunks.get(key, (None, (None, None)))
                written.append((generation, key, record, model, _blob(vectors), _blob(weights), record))
            self._upsert(db, written, imported=True)
            self._tombstone(db, generation, plan.deleted, imported=True)
            return replace(plan, generation=generation)

    def _plan(
        self, db: sqlite3.Connection, publications: Sequence[Publication], sync: bool
    ) -> tuple[ImportPlan, list[tuple[str, str]], list[tuple[str, str]]]:
        """The plan, the (id, record) rows to write, and the (id, record) rows only to note as the file's."""
        stored = {
            key: (record, imported)
            for key, record, imported in db.execute("SELECT id, record, imported FROM publications")
        }
        added, changed, kept_api, rows, noted = [], [], [], [], []
        for publication in publications:
            record = _record_json(publication)
            current, imported = stored.get(publication.id, (None, None))
            if current == record:
                if imported != record:
                    noted.append((publication.id, record))
            elif imported == record and not sync:
                kept_api.append(publication.id)  # an API edit or deletion the file does not know of
            else:
                (added if current is None else changed).append(publication.id)
                rows.append((publication.id, record))
        present = {p.id for p in publications}
        absent = [key for key, (record, _) in stored.items() if record is not None and key not in present]
        plan = ImportPlan(
            added,
            changed,
            absent if sync else [],
            unchanged=len(publications) - len(rows) - len(kept_api),
            kept=0 if sync else len(absent),
            kept_api=kept_api,
            generation=self._state_in(db, "generation"),
        )
        return plan, rows, noted

    def adopt(self, publications: Sequence[Publication], generation: int) -> bool:
        """Make the store able to serve a build made at ``generation``: an empty store (lost or deleted beside
        its builds) is filled from the build's catalog; a store behind the build (restored from a backup) is
        moved to its generation, so later writes are newer than the build. Returns whether it changed."""
        with self._reading() as db:
            empty = db.execute("SELECT 1 FROM publications LIMIT 1").fetchone() is None
            behind = self._state_in(db, "generation") < generation
        if not (empty or behind):
            return False  # the usual case, without taking the write lock
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM publications LIMIT 1").fetchone() is None:
                rows = [(generation, p.id, _record_json(p), None, None, None, _record_json(p)) for p in publications]
                self._upsert(db, rows, imported=True)
            db.execute(
                "INSERT INTO state (key, value) VALUES ('generation', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (generation,),
            )
            return True

    def request_reload(self) -> int:
        """Ask every worker to reload its build (they follow :meth:`reloads`)."""
        with self._transaction() as db:
            return self._bump(db, "reloads")

    # ----- internals -----

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), committed durably or rolled back."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc) from None
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent view while a writer commits beside it."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from None

    def _state(self, key: str) -> int:
        with self._reading() as db:
            return self._state_in(db, key)

    @staticmethod
    def _state_in(db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump(db: sqlite3.Connection, key: str) -> int:
        db.execute(
            "INSERT INTO state (key, value) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET value = value + 1", (key,)
        )
        return CatalogStore._state_in(db, key)

    @staticmethod
    def _live(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            batch = unique[start : start + 500]
            marks = ",".join("?" * len(batch))
            found.update(
                db.execute(
                    f"SELECT id, record FROM publications WHERE record IS NOT NULL AND id IN ({marks})", batch
                ).fetchall()
            )
        return found

    @staticmethod
    def _tombstone(db: sqlite3.Connection, generation: int, ids: Sequence[str], *, imported: bool = False) -> None:
        """Delete ``ids`` (keeping a tombstone); by an import (``--sync``), the file forgets them too."""
        forget = ", imported = NULL" if imported else ""
        db.executemany(
            "UPDATE publications SET version = ?, record = NULL, model = NULL, vectors = NULL, weights = NULL"
            f"{forget} WHERE id = ?",
            [(generation, i) for i in ids],
        )

    @staticmethod
    def _upsert(db: sqlite3.Connection, rows: Sequence[tuple], *, imported: bool) -> None:
        """Rows of (version, id, record, model, vectors, weights, imported); an API write (``imported`` False)
        leaves what the file last gave as it was."""
        keep = ", imported = excluded.imported" if imported else ""
        db.executemany(
            "INSERT INTO publications (version, id, record, model, vectors, weights, imported) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
            "record = excluded.record, model = excluded.model, vectors = excluded.vectors, "
            f"weights = excluded.weights{keep}",
            rows,
        )

    def _change(self, row: tuple) -> Change:
        publication_id, version, record, model, vectors, weights = row
        publication = parse_record(json.loads(record), str(self.path), version) if record is not None else None
        chunks = None
        if vectors is not None and weights is not None:
            w = np.frombuffer(weights, dtype=np.float32)
            v = np.frombuffer(vectors, dtype=np.float32)
            if len(w) and v.size % len(w) == 0:
                chunks = (v.reshape(len(w), -1), w)
        return Change(publication_id, int(version), publication, model, chunks)

    def _translate(self, exc: BaseException) -> Exception:
        """A sqlite or OS error as what a caller can act on: busy (retry), or unusable (naming the path)."""
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            return StoreBusyError(
                f"the catalog store {self.path} is busy (another process holds its write lock); retry shortly"
            )
        return StoreUnavailableError(f"the catalog store {self.path} cannot be used: {message}; nothing was changed")


def _record_json(publication: Publication) -> str:
    """The canonical stored form of a record (sorted keys): equal records compare equal as text."""
    return json.dumps(publication.to_dict(), ensure_ascii=False, sort_keys=True)


def _blob(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.ascontiguousarray(array, dtype=np.float32).tobytes()
