"""Opening the store: engine creation, SQLite pragmas, migrations, friendly connection errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from tether.core import StoreError
from tether.store.tables import VERSION_TABLE

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock for SQLite migrations
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*:)[^@]*@")


def redact_url(url: str) -> str:
    """The URL with any password hidden, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # make_url raises ValueError for a bad port; still hide whatever looks like a password.
        return _USERINFO_PASSWORD.sub(r"\1***@", url)


def _with_driver(parsed: URL) -> URL:
    """``postgresql://`` means psycopg 3 (SQLAlchemy's default would be psycopg2)."""
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def canonical_url(url: str) -> str:
    """One spelling per database: ``postgresql://`` and ``postgresql+psycopg://`` alike, and
    SQLite files by absolute path (for keys such as the trace journal's folder)."""
    parsed = _with_driver(make_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and its directory created."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        detail = f": {exc}" if isinstance(exc, ValueError) else ""
        raise StoreError(
            f"invalid database URL {redact_url(url)!r}{detail}",
            hint="use sqlite:///path/to/tether.db or postgresql+psycopg://user@host/db",
        ) from None
    parsed = _with_driver(parsed)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                database = Path(parsed.database).expanduser()
                parsed = parsed.set(database=str(database))
                folder = database.parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the folder {str(folder)!r} for the SQLite store "
                        f"{redact_url(url)}: {exc.strerror or exc}",
                        hint="point TETHER_DATABASE_URL or TETHER_HOME at a writable folder",
                    ) from None
            memory = parsed.database in (None, "", ":memory:")
            engine = create_engine(
                parsed,
                connect_args={
                    "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                    # An in-memory database lives in one connection, shared by the writer
                    # thread and readers.
                    **({"check_same_thread": False} if memory else {}),
                },
                poolclass=StaticPool if memory else None,
                hide_parameters=True,  # parameters hold user content; keep them out of errors
            )
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True
            )
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no database driver for {redact_url(url)}: {exc}",
            hint="for PostgreSQL install the extra: pip install 'tether[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "Tether stores traces in SQLite (sqlite:///path.db) or PostgreSQL "
            "(postgresql://user@host/db)",
        ) from None
    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


# Any fixed 64-bit key: PostgreSQL advisory locks are per database, named by a number.
_PG_MIGRATION_LOCK = 0x7E7E_0001


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations of one SQLite file across processes (a lock file beside it)."""
    database = engine.url.database
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _revision(conn: Any) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _adopt_legacy_revision(conn: Any, known: set[str]) -> None:
    """Stores made before the store had its own version table recorded their revision in
    Alembic's default ``alembic_version``: carry it over (leaving that table alone)."""
    names = set(inspect(conn).get_table_names())
    if "tether_runs" not in names:
        return  # a new store
    legacy = None
    if "alembic_version" in names:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        legacy = next((r for r in rows if r in known), None)
    if legacy is None:
        raise StoreError(
            "the database already has Tether's tables (tether_*) but no record of their schema "
            "revision",
            hint="point Tether at another database or schema, or drop the tether_* tables",
        )
    conn.execute(
        text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )
    conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": legacy})


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe when several processes or
    replicas open a new store at the same time)."""
    cfg = _alembic_config()
    scripts = ScriptDirectory.from_config(cfg)
    head = scripts.get_current_head()
    is_sqlite = engine.url.get_backend_name() == "sqlite"
    try:
        with engine.connect() as conn:  # the fast path: already at head, no lock taken
            current = _revision(conn)
            if current == head:
                return
        lock = _sqlite_migration_lock(engine) if is_sqlite else nullcontext()
        with lock, engine.begin() as conn:
            if engine.url.get_backend_name() == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            # Read again under the lock: another process may have migrated meanwhile.
            current = _revision(conn)
            if current == head:
                return
            known = {s.revision for s in scripts.walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(
                    f"the trace store at {redact_url(str(engine.url))} has schema revision "
                    f"{current!r}, which this version of Tether does not know",
                    hint="it was probably migrated by a newer Tether: upgrade Tether, or use "
                    "another database",
                )
            if current is None:
                _adopt_legacy_revision(conn, known)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the trace store at {redact_url(str(engine.url))}: {exc}",
            hint="check that this database is not used by another program under the same "
            "table names (tether_*)",
        ) from None
    except DBAPIError as exc:
        # OperationalError (unreachable, locked, unwritable) and DatabaseError (the file is not
        # a database) alike: the store cannot be opened.
        raise StoreError(
            f"cannot open the trace store at {redact_url(str(engine.url))}: {exc.orig}",
            hint="check the database URL (--database-url or TETHER_DATABASE_URL), that the "
            "server is running, and file permissions",
        ) from exc  # the cause says whether it is worth retrying (unreachable, locked)
