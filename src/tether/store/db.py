"""Opening the store: engine creation, SQLite pragmas, migrations, friendly connection errors."""

from __future__ import annotations

import math
import os
import re
import shlex
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

from tether.core import Settings, StoreError
from tether.core.text import hide_secret_params
from tether.store.tables import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

# The sqlite3 module of Python 3.11 hands every parameter that is not exactly an int, float,
# str or bytearray to its adapter protocol, None included: a search of the adapters, then of
# ``PrepareProtocol.__adapt__`` and ``None.__conform__``, the first raising and discarding an
# AttributeError with its formatted message. Most rows bind a NULL (a span's status
# message, a root's parent, a run's empty columns): ~2,900 instructions a span of OTLP ingest,
# 2% of it. An adapter registered for None answers the search at its first step, with None,
# which binds NULL as before. (Registered for the process: it changes no value bound.)
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))  # a C call

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock for SQLite migrations
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD_REVISION = "0013"
"""The newest migration in ``MIGRATIONS_DIR`` (a test checks it against Alembic's script
directory). A store already at it is opened without importing Alembic, about a third of a
second of CPU at start-up."""
SQLITE_BUSY_TIMEOUT_MS = 5000
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*:)[^@]*@")


def redact_url(url: str) -> str:
    """The URL with any password hidden, safe for messages and logs: the one before ``@``
    and those given as query parameters (libpq takes ``?password=...`` and
    ``?sslpassword=...`` as well)."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # make_url raises ValueError for a bad port; still hide whatever looks like a password.
        shown = _USERINFO_PASSWORD.sub(r"\1***@", url)
    base, mark, query = shown.partition("?")
    return f"{base}{mark}{hide_secret_params(query)}"


def parse_store_url(url: str) -> URL:
    """``url`` parsed, or a ``StoreError`` naming it and the forms a store URL takes (a bare
    path or ``sqlite:/path`` is a user's slip, not an internal error)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        detail = f": {exc}" if isinstance(exc, ValueError) else ""
        raise StoreError(
            f"invalid database URL {redact_url(url)!r}{detail}",
            hint="use sqlite:///path/to/tether.db (three slashes before a relative path, four "
            "before an absolute one) or postgresql://user@host/db, in --database-url or "
            "TETHER_DATABASE_URL",
        ) from None


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


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_DEFAULT_PORTS = {"postgresql": 5432}
# Query parameters that choose which server, database or schema a URL points at. Others
# (sslmode, timeouts, application_name, user, password) do not change where records go.
_WHERE_PARAMETERS = ("host", "hostaddr", "port", "dbname", "service")
_OPTION = re.compile(r"(?:-c\s*|--)([A-Za-z_.]+)=(\S+)")


def _schema_options(options: str | tuple[str, ...]) -> str | None:
    """The ``search_path`` settings in libpq ``options`` (``-c search_path=x``), normalized."""
    text = " ".join(options) if isinstance(options, tuple) else options
    found = [f"-c{name}={value}" for name, value in _OPTION.findall(text) if name == "search_path"]
    return " ".join(found) or None


def store_identity(url: str) -> str:
    """Which database a URL writes to, without credentials: the backend, the host (the
    loopback spellings ``localhost``, ``127.0.0.1`` and ``::1`` as one), port, database and
    schema; a SQLite file by its absolute path. Two URLs with the same identity reach the same
    tables however the user, password or connection options are spelled, so the trace journal
    is keyed by it (and it is safe to show and to write down)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(url)
        return "sqlite://" if path is None else f"sqlite:///{path}"
    host = parsed.host or ""
    if host.lower() in _LOOPBACK:
        host = "localhost"
    port = parsed.port or _DEFAULT_PORTS.get(backend)
    where: dict[str, str] = {}
    for key in _WHERE_PARAMETERS:
        value = parsed.query.get(key)
        if value:
            where[key] = " ".join(value) if isinstance(value, tuple) else value
    options = parsed.query.get("options")
    schema = _schema_options(options) if options else None
    if schema:
        where["options"] = schema
    return URL.create(
        backend, host=host or None, port=port, database=parsed.database, query=where
    ).render_as_string()


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a file-backed SQLite store; None for any other store."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if database.startswith("file:"):  # a URI filename (``?uri=true``)
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database).expanduser().resolve()


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Ask the kernel to put ``path``'s data on disk (``directory``: a folder, for the names
    in it). A file that does not exist has nothing to sync."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_committed(url: str) -> None:
    """Make every transaction committed to the SQLite store ``url`` so far survive a power
    cut, not only the process dying. The store runs with ``synchronous=NORMAL`` (fast: a
    commit is in the write-ahead log, in the kernel's cache, and the log is synced at each
    checkpoint), so a commit may be lost with the machine's power; this syncs the log (and
    the database file, where a checkpoint may have moved it). For the few writes that must
    never be lost once acknowledged: a person's answer to an approval, the claim of a
    resume. Other stores commit durably already; nothing to do."""
    path = sqlite_file(url)
    if path is None:
        return
    for suffix in ("-wal", ""):
        fsync_path(path.with_name(path.name + suffix))


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of a file, None if there is none: a file deleted, or replaced by
    another one, under an open database connection is told apart by these."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


_OPENED_FILE = "tether_opened_file"
"""Where a SQLite connection's record keeps ``file_identity`` of its file when it was opened."""


def _file_changed(path: Path, statement: str) -> OperationalError:
    why = sqlite3.OperationalError(
        f"the SQLite store file {path} was deleted or replaced while this process was using "
        "it: nothing more is read from it or written to it (restart to open the store at "
        "that path)"
    )
    return OperationalError(statement, None, why)


class _SqliteFileWatch:
    """The file (device, inode) an engine's first connection opened, checked as each
    connection is made and handed out. Once the file was deleted or replaced under a long-
    lived process (``tether serve``), its pooled connections read on from the unlinked file
    (runs answered that no other process sees, and a deleted store's runs listed as if
    there), and a new connection made a fresh empty file at the path or opened the one moved
    there. Every use of the engine fails instead, naming the file (a 503 from the server),
    until the process is restarted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None

    def listen(self, engine: Engine) -> None:
        event.listen(engine, "do_connect", self.before_connect)
        event.listen(engine, "connect", self.opened)
        event.listen(engine, "checkout", self.checkout)

    def _same(self) -> bool:
        return self.identity is None or file_identity(self.path) == self.identity

    def before_connect(self, *_args: Any) -> None:
        if not self._same():  # before SQLite makes a new empty file at the path
            raise _file_changed(self.path, "CONNECT")

    def opened(self, _dbapi_conn: Any, record: Any) -> None:
        current = file_identity(self.path)
        if self.identity is None:
            self.identity = current
        record.info[_OPENED_FILE] = current

    def checkout(self, *_args: Any) -> None:
        if not self._same():  # the connection is closed, not handed out
            raise _file_changed(self.path, "CHECKOUT")


def _same_file_on_commit(path: Path) -> Any:
    """A ``commit`` listener (run before the database commits) refusing to commit through a
    connection whose file was deleted or replaced since it was opened: the commit would go
    into an unlinked file, gone when the process ends and seen by no other process, while
    its caller answers "stored" (OTLP's 2xx, a new key shown once). A driver error, so the
    caller sees the store as down (503; the trace writer keeps its records and retries:
    ``tether.trace.store_gate`` then says the file changed)."""

    def check(conn: Any) -> None:
        opened = conn.connection.info.get(_OPENED_FILE, False)
        if opened is not False and file_identity(path) != opened:
            # Nothing of it is kept: a later statement on this connection (a pragma, the
            # pool's reset) would otherwise find the transaction still open.
            conn.connection.dbapi_connection.rollback()
            raise _file_changed(path, "COMMIT")

    return check


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # A multi-row INSERT in a transaction keeps a statement journal (to undo that statement
    # alone); past 64 KiB SQLite spilled it to a file in /var/tmp, a second copy on disk of
    # every page a batch changed (more than half of the writer's page writes). Kept in memory.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _wal(cur: Any) -> None:
    """Put the file in WAL mode (once per file: it stays so). Switching needs the file to
    itself, and SQLite answers "database is locked" at once, without its busy wait, while
    another connection is creating the same new store: so it is tried again, up to the busy
    timeout, and skipped when the file is in WAL mode already."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def sqlite_read_only(url: str) -> bool:
    """A SQLite store file this process cannot write (the file, or the folder its WAL files
    live in): it can still be read, opened read-only."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return False
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _read_only_sqlite(path: Path) -> URL:
    """A URL opening a SQLite file read-only. Reading a WAL database needs its ``-shm`` file:
    in a folder nobody can write, with no WAL files there, no one can be writing to it, and
    it is read as immutable (without the shared-memory index it cannot create)."""
    query = {"mode": "ro", "uri": "true"}
    wal_files = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    if not os.access(path.parent, os.W_OK) and not wal_files:
        query["immutable"] = "1"
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


def is_read_only(engine: Engine) -> bool:
    """An engine made with ``create_store_engine(..., read_only=True)``."""
    return engine.url.query.get("mode") == "ro"


def _shown(engine: Engine) -> str:
    """The store an engine opens, as messages name it (a read-only file by its path)."""
    if is_read_only(engine) and engine.url.database:
        return f"sqlite:///{unquote(engine.url.database.removeprefix('file:'))}"
    return redact_url(str(engine.url))


def _sqlite_read_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def create_store_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and its directory created. With
    ``read_only``, a SQLite file is opened read-only (nothing is created or migrated)."""
    parsed = _with_driver(parse_store_url(url))
    try:
        path = sqlite_file(url) if read_only else None
        if path is not None:
            engine = create_engine(
                _read_only_sqlite(path),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                hide_parameters=True,
            )
            event.listen(engine, "connect", _sqlite_read_pragmas)
        elif parsed.get_backend_name() == "sqlite":
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
            file = sqlite_file(url)
            if file is not None:
                _SqliteFileWatch(file).listen(engine)
                event.listen(engine, "commit", _same_file_on_commit(file))
        else:
            engine = create_engine(
                parsed,
                connect_args=_timeouts(parsed),
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                hide_parameters=True,
            )
            if parsed.get_backend_name() == "postgresql":
                from tether.store.pg_wait import answer_deadline_s, connect_with_deadline

                deadline = answer_deadline_s(parsed)
                if deadline is not None:
                    event.listen(engine, "do_connect", connect_with_deadline(deadline))
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no database driver for {redact_url(url)}: {exc}",
            hint="for PostgreSQL install the extra: pip install 'tether[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "Tether stores traces in SQLite (sqlite:///path.db) or PostgreSQL "
            "(postgresql://user@host/db)",
        ) from None
    if not (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")):
        _ENGINES.add(engine)  # (an in-memory database is the child's own copy: kept)
    return engine


def _timeouts(parsed: URL) -> dict[str, Any]:
    """Connection arguments for PostgreSQL: a connect timeout, a statement timeout
    (``Settings``) and an idle-in-transaction timeout of twice that, unless the URL sets its
    own. A server that accepts connections and never answers would otherwise hold a command
    for minutes (libpq's default) before anything is said. (Given apart from the URL, so
    messages show the URL as the user wrote it.)"""
    if parsed.get_backend_name() != "postgresql":
        return {}
    settings = Settings.from_env()
    connect_s, statement_s = settings.db_connect_timeout_s, settings.db_statement_timeout_s
    args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query and connect_s:
        args["connect_timeout"] = max(1, math.ceil(connect_s))  # libpq: whole seconds
    options = parsed.query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    added = []
    if "statement_timeout" not in options and statement_s:
        added.append(f"-c statement_timeout={round(statement_s * 1000)}")
    if "idle_in_transaction_session_timeout" not in options and statement_s:
        # A session left in its transaction by a client cut off from the server (a network
        # partition: the client gave up, the server does not know) keeps its locks (an OTLP
        # trace's advisory lock: every request for that trace waits on it) until TCP
        # keep-alives end it, two hours by default. Tether's transactions never idle between
        # statements for long: the server ends one that does.
        added.append(f"-c idle_in_transaction_session_timeout={round(statement_s * 2000)}")
    if added:
        # These replace the URL's own options, so they carry them (a search_path) along.
        args["options"] = " ".join([options, *added]).strip()
    return args


def driver_message(exc: SQLAlchemyError) -> str:
    """What the database driver said, on one line, without the SQL statement and its
    parameters (they hold user content): libpq adds its own hint on a second line ("Is the
    server running..."), which ours says already. The error's type name when the driver
    said nothing."""
    orig = getattr(exc, "orig", None)
    lines = [line.strip() for line in str(orig or "").splitlines() if line.strip()]
    return lines[0] if lines else type(orig or exc).__name__


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


# Any fixed 64-bit key: PostgreSQL advisory locks are per database, named by a number.
_PG_MIGRATION_LOCK = 0x7E7E_0001
_ALEMBIC_TURNS = threading.Lock()
"""Alembic keeps the migration under way in module globals (``alembic.context``, ``op``): two
threads migrating two databases at once (the trace store and a budget ledger's database) would
each run on the other's connection. Taken last, inside each database's own lock."""


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
"""The engines connecting to a file or a server, for ``_after_fork``."""


def _after_fork() -> None:
    """In a child just forked (``multiprocessing``, a pre-forking server, Celery's workers):
    a pooled connection is the parent's (its socket, or a SQLite handle whose locks the
    child does not hold), and two processes using one mix their sessions (SQLite: can corrupt
    the file). The child's engines start new pools, leaving those connections open for the
    parent; a lock a thread of the parent held at the fork is made anew."""
    global _ALEMBIC_TURNS
    _ALEMBIC_TURNS = threading.Lock()
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def _sqlite_migration_lock(engine: Engine, current: str | None) -> Iterator[None]:
    """Serialize migrations of one SQLite file across processes (a lock file beside it),
    waiting for another process's migration up to ``TETHER_DB_MIGRATION_WAIT_S`` (it waited
    for ever: a process stuck migrating kept every other one from starting, without a word)."""
    database = engine.url.database
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    lock_file = f"{database}.migrate.lock"
    wait_s = Settings.from_env().db_migration_wait_s
    deadline = time.monotonic() + wait_s
    with open(lock_file, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_s and time.monotonic() > deadline:
                    raise _migration_wait_ended(
                        engine,
                        current,
                        f"the lock file {lock_file}",
                        "find it with: fuser -v " + shlex.quote(lock_file),
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _pg_migration_turn(engine: Engine, conn: Any, current: str | None) -> Iterator[None]:
    """The migration's transaction on PostgreSQL: it waits for another process's migration
    (an advisory lock) up to ``TETHER_DB_MIGRATION_WAIT_S``, then runs without the statement
    timeout, which cancelled a migration updating a whole large table (0010, 0011) every
    time: a store that could never be upgraded. Tables another session holds are waited for
    up to ``TETHER_DB_LOCK_TIMEOUT_S``."""
    from tether.store.pg_wait import waits_unbounded

    settings = Settings.from_env()
    with waits_unbounded(conn.connection.dbapi_connection):
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(text(f"SET LOCAL lock_timeout = {round(settings.db_migration_wait_s * 1000)}"))
        try:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise _migration_wait_ended(
                engine,
                current,
                f"PostgreSQL's advisory lock {_PG_MIGRATION_LOCK}",
                "find it with: SELECT pid, state, xact_start, query FROM pg_stat_activity "
                "WHERE pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                f"objid = {_PG_MIGRATION_LOCK} AND granted)",
            ) from exc
        # Once it is Tether's turn: a migration waiting on a table another session holds
        # waited forever, and every query on that table queued behind it.
        conn.execute(text(f"SET LOCAL lock_timeout = {round(settings.db_lock_timeout_s * 1000)}"))
        yield


def _migration_wait_ended(engine: Engine, current: str | None, lock: str, find: str) -> StoreError:
    """Another process's migration of the store did not end within the wait."""
    seconds = Settings.from_env().db_migration_wait_s
    return StoreError(
        f"cannot open the trace store at {_shown(engine)}: waited {seconds:g} s for another "
        f"process's migration of it to end ({lock} is held); the schema is still at revision "
        f"{current or 'none'} here",
        hint=f"a migration of a large store can take minutes: wait for that process, or {find}; "
        "TETHER_DB_MIGRATION_WAIT_S sets how long to wait (0: no limit)",
    )


def _revision(conn: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _at_head(conn: Any) -> bool:
    """The store's recorded revision is ``HEAD_REVISION``: read with plain SQL (what
    Alembic's own check reads), so a store that needs nothing does not load Alembic."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return False
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return list(rows) == [HEAD_REVISION]


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
    try:
        with engine.connect() as conn:  # the fast path: already at head, no lock, no Alembic
            if _at_head(conn):
                return
    except DBAPIError as exc:
        raise _cannot_open(engine, exc) from exc
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    cfg = _alembic_config()
    scripts = ScriptDirectory.from_config(cfg)
    head = scripts.get_current_head()
    is_sqlite = engine.url.get_backend_name() == "sqlite"
    is_pg = engine.url.get_backend_name() == "postgresql"
    applied: list[str] = []
    cfg.attributes["on_version_apply"] = lambda step, **_: applied.append(step.up_revision_id)
    current = None
    try:
        with engine.connect() as conn:
            current = _revision(conn)
            if current == head:
                return
        if is_read_only(engine):
            raise StoreError(
                f"the trace store at {_shown(engine)} is read-only here, and its "
                f"schema (revision {current or 'none'}) needs an upgrade to {head}",
                hint="open it once with a Tether that can write to it, or use another store",
            )
        lock = _sqlite_migration_lock(engine, current) if is_sqlite else nullcontext()
        with lock, engine.begin() as conn:
            turn = _pg_migration_turn(engine, conn, current) if is_pg else nullcontext()
            with turn:
                # Read again under the lock: another process may have migrated meanwhile.
                current = _revision(conn)
                if current == head:
                    return
                known = {s.revision for s in scripts.walk_revisions()}
                if current is not None and current not in known:
                    raise StoreError(
                        f"the trace store at {_shown(engine)} has schema revision "
                        f"{current!r}, which this version of Tether does not know",
                        hint="it was probably migrated by a newer Tether: upgrade Tether, or use "
                        "another database",
                    )
                if current is None:
                    _adopt_legacy_revision(conn, known)
                cfg.attributes["connection"] = conn
                with _ALEMBIC_TURNS:
                    command.upgrade(cfg, "head")
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the trace store at {_shown(engine)}: {exc}",
            hint="check that this database is not used by another program under the same "
            "table names (tether_*)",
        ) from None
    except DBAPIError as exc:
        if is_pg and getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            # The upgrades to run, oldest first: the one that waited is the first not applied.
            upgrades = list(scripts.iterate_revisions(head, current or "base"))[::-1]
            if upgrades:
                failed = upgrades[min(len(applied), len(upgrades) - 1)]
                raise _lock_timed_out(engine, exc, Path(failed.path).stem, current) from exc
        raise _cannot_open(engine, exc) from exc  # the cause: worth retrying (unreachable)?


_LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for ``lock_timeout`` expired."""


def _lock_timed_out(
    engine: Engine, exc: DBAPIError, migration: str, current: str | None
) -> StoreError:
    """A migration gave up waiting for a table: which migration, which table, what to do."""
    # The statement waiting is DDL or SQL of ours (values are bound apart): it names the table.
    found = re.search(r"\b(tether_\w+)", str(exc.statement or ""))
    table = found.group(1) if found else None
    relation = f"= '{table}'::regclass" if table else "IS NOT NULL"
    seconds = Settings.from_env().db_lock_timeout_s
    return StoreError(
        f"cannot migrate the trace store at {_shown(engine)}: migration {migration} waited "
        f"{seconds:g} s for {'table ' + table if table else 'a table'}, which another session "
        f"holds ({driver_message(exc)}); nothing was changed (the schema is still at revision "
        f"{current or 'none'})",
        hint="find that session (SELECT pid, state, xact_start, query FROM pg_stat_activity "
        f"WHERE pid IN (SELECT pid FROM pg_locks WHERE relation {relation})), let it finish or "
        "end it (pg_terminate_backend(pid)), then open the store again; "
        "TETHER_DB_LOCK_TIMEOUT_S sets how long a migration waits (0: no limit)",
    )


def _cannot_open(engine: Engine, exc: DBAPIError) -> StoreError:
    """OperationalError (unreachable, locked, unwritable) and DatabaseError (the file is not
    a database) alike: the store cannot be opened."""
    return StoreError(
        f"cannot open the trace store at {_shown(engine)}: {driver_message(exc)}",
        hint="check the database URL (--database-url or TETHER_DATABASE_URL), that the "
        "server is running, and file permissions",
    )
