"""Numbered schema migrations of state.sqlite, applied in order when a writable StateDB opens it.

The schema version is SQLite's `PRAGMA user_version`: the number of migrations applied. Each
migration runs once, inside its own write transaction together with the bump of user_version,
so a crash leaves the database at the previous version and the migration is retried on the next
open. Several processes opening the database at once are safe: each re-reads the version after
taking the write lock and skips what another one applied meanwhile.

To change the schema, append a function to MIGRATIONS (never edit or reorder a released one):

    @migration
    def add_notes(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE notes (image_id TEXT PRIMARY KEY, text TEXT NOT NULL)")

Use plain `db.execute` statements (not `executescript`, which commits), name the columns of
every INSERT, and add a test that opens a database at the previous version. A database with a
newer version than this code knows is refused ("upgrade edgemine"), and a read-only one must
already be at LATEST (it cannot be migrated).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from edgemine.bundle.errors import BundleError

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(step: Migration) -> Migration:
    """Register `step` as the next numbered migration."""
    MIGRATIONS.append(step)
    return step


@migration
def initial_schema(db: sqlite3.Connection) -> None:
    """1: the schema as first released (IF NOT EXISTS: such databases have user_version 0)."""
    for statement in (
        """CREATE TABLE IF NOT EXISTS images (
            image_id TEXT PRIMARY KEY,
            path TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            vec_id INTEGER,
            state TEXT NOT NULL DEFAULT 'unlabeled' CHECK (state IN ('unlabeled', 'queued', 'labeled')),
            batch_id TEXT,
            state_updated_at TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS label_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id TEXT NOT NULL,
            state TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS batches (
            batch_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            bundle_version INTEGER,
            query TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE IF NOT EXISTS batch_items (
            batch_id TEXT NOT NULL REFERENCES batches(batch_id),
            image_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            score REAL,
            nearest_example_id TEXT,
            nearest_example_similarity REAL,
            PRIMARY KEY (batch_id, image_id)
        )""",
        """CREATE TABLE IF NOT EXISTS journal (
            image_id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            model TEXT NOT NULL,
            vector BLOB NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS failures (
            image_id TEXT PRIMARY KEY,
            path TEXT,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
    ):
        db.execute(statement)


@migration
def index_image_state(db: sqlite3.Connection) -> None:
    """2: index images by state (state counts, the queued/labeled scan at every version switch)."""
    db.execute("CREATE INDEX IF NOT EXISTS images_by_state ON images (state)")


@migration
def utc_timestamps_with_z(db: sqlite3.Connection) -> None:
    """3: stored timestamps in utc_now's one format: "+00:00" suffixes become "Z"."""
    for table, column in (("images", "state_updated_at"), ("label_events", "at"),
                          ("batches", "created_at"), ("failures", "at")):
        db.execute(f"UPDATE {table} SET {column} = substr({column}, 1, length({column}) - 6) || 'Z' "
                   f"WHERE {column} LIKE '%+00:00'")



@migration
def bundle_notes(db: sqlite3.Connection) -> None:
    """4: a key-value table for the indexer's bookkeeping (which version the images table mirrors)."""
    db.execute("CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration
def feedback_tables(db: sqlite3.Connection) -> None:
    """5: mining queries, review verdicts (with history) and a 'rejected' labeling state."""
    db.execute("""CREATE TABLE IF NOT EXISTS queries (
        query_id TEXT PRIMARY KEY,
        session_id TEXT,
        parent_query_id TEXT,
        created_at TEXT NOT NULL,
        bundle_version INTEGER,
        strategy TEXT NOT NULL,
        query TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS queries_by_session ON queries (session_id)")
    db.execute("""CREATE TABLE IF NOT EXISTS verdicts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('accept', 'reject', 'skip')),
        query_id TEXT,
        session_id TEXT,
        reviewer TEXT,
        source TEXT NOT NULL DEFAULT 'api',
        at TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS verdicts_by_image ON verdicts (image_id, seq)")
    db.execute("CREATE INDEX IF NOT EXISTS verdicts_by_query ON verdicts (query_id)")
    db.execute("CREATE INDEX IF NOT EXISTS verdicts_by_session ON verdicts (session_id)")
    # SQLite cannot alter a CHECK constraint: rebuild images with the wider one. No table
    # references images, so dropping it inside the transaction is safe with foreign keys on.
    db.execute("""CREATE TABLE images_new (
        image_id TEXT PRIMARY KEY,
        path TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        vec_id INTEGER,
        state TEXT NOT NULL DEFAULT 'unlabeled'
            CHECK (state IN ('unlabeled', 'queued', 'labeled', 'rejected')),
        batch_id TEXT,
        state_updated_at TEXT
    )""")
    columns = "image_id, path, metadata, vec_id, state, batch_id, state_updated_at"
    db.execute(f"INSERT INTO images_new ({columns}) SELECT {columns} FROM images")
    db.execute("DROP TABLE images")
    db.execute("ALTER TABLE images_new RENAME TO images")
    db.execute("CREATE INDEX IF NOT EXISTS images_by_state ON images (state)")


@migration
def ground_truth_and_predictions(db: sqlite3.Connection) -> None:
    """6: ground truth per image, predictions per model and image, models, COCO id mappings."""
    # Records are stored as canonical JSON (edgemine.scenarios.store): evaluation always reads
    # whole records, and one row per image keeps an import's replace-by-image a plain upsert.
    # No foreign key to images: an image removed from the bundle keeps its history.
    db.execute("""CREATE TABLE IF NOT EXISTS annotations (
        image_id TEXT PRIMARY KEY,
        task TEXT NOT NULL CHECK (task IN ('classification', 'detection')),
        record TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        source TEXT NOT NULL
    )""")
    db.execute("""CREATE TABLE IF NOT EXISTS models (
        name TEXT PRIMARY KEY,
        task TEXT NOT NULL CHECK (task IN ('classification', 'detection')),
        imported_at TEXT NOT NULL,
        source TEXT NOT NULL,
        hash TEXT NOT NULL,
        images INTEGER NOT NULL
    )""")
    db.execute("""CREATE TABLE IF NOT EXISTS predictions (
        model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (model, image_id)
    )""")
    # COCO results files name images and categories by number: the mapping of the COCO
    # instances file last imported as ground truth resolves them.
    db.execute("CREATE TABLE IF NOT EXISTS coco_images (coco_id INTEGER PRIMARY KEY, image_id TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS coco_categories (category_id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


LATEST = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """Return the database's schema version (its user_version)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_known(version: int, where: object) -> None:
    """Refuse a schema written by a newer edgemine, which this code could corrupt."""
    if version > LATEST:
        raise BundleError(f"{where} has state schema version {version}; this edgemine knows up to "
                          f"{LATEST}: upgrade edgemine")


def migrate(db: sqlite3.Connection, where: object) -> int:
    """Apply every pending migration to an autocommit connection; return the final version."""
    version = schema_version(db)
    check_known(version, where)
    while version < LATEST:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(db)  # another process may have migrated while we waited
            check_known(version, where)
            if version < LATEST:
                MIGRATIONS[version](db)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return version
