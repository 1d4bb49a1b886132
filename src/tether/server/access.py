"""Projects, API keys and browser sessions in the store (``tether_projects``,
``tether_api_keys``, ``tether_sessions``).

A key is ``tth_<key id>_<secret>``: the id (16 hex) is public and finds the row; the secret is
32 random bytes (256 bits) and only its SHA-256 is stored. A random 256-bit secret cannot be
guessed from its hash, so a fast hash is enough (a slow one such as bcrypt is for passwords
people choose) and checking a key costs microseconds. A browser session is a separate random
token in an HttpOnly cookie, also stored as its SHA-256: the key itself never sits in the
browser. Revoking a key ends its sessions.

Used by the server and by ``tether keys``/``tether projects`` (no FastAPI here).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, RowMapping, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from tether.core import StoreError, TetherError
from tether.core.settings import PROJECT_NAME
from tether.server.roles import Role, check_project_name
from tether.store import tables
from tether.store.db import create_store_engine, driver_message, migrate, redact_url
from tether.store.values import clean_text

KEY_PREFIX = "tth_"
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
_KEY_NAME_CHARS = 128
SESSION_TTL_NS = 12 * 3600 * 1_000_000_000
"""How long a browser session lasts (the key's own expiry ends it sooner)."""
MAX_SESSIONS_PER_KEY = 20
"""The most live browser sessions one key has: signing in once more ends its oldest. Without
a cap one key (a script signing in in a loop) added rows without end, each a live token."""
LAST_USED_EVERY_NS = 60 * 1_000_000_000
"""A key's last use is written at most this often (a busy agent's key would otherwise write
on every request)."""

_RUN_PROJECTS = text(
    "WITH RECURSIVE p(name) AS ("
    " SELECT MIN(project) FROM tether_runs"
    " UNION ALL"
    " SELECT (SELECT MIN(project) FROM tether_runs WHERE project > p.name) FROM p"
    " WHERE p.name IS NOT NULL"
    ") SELECT name FROM p WHERE name IS NOT NULL"
)
"""The projects runs were written under, one index seek each (``ix_tether_runs_project``):
``DISTINCT`` would read every run's entry."""

log = logging.getLogger("tether.server.access")


class AccessNotFound(TetherError):
    """No such project or key."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as stored: everything but its secret."""

    key_id: str
    """Public id of the key (its second part)."""
    project: str
    """The project it belongs to."""
    role: Role
    """What it may do."""
    name: str
    """What its maker called it."""
    created_ns: int
    """When it was made, in nanoseconds since the epoch."""
    expires_ns: int | None
    """When it stops working; None: never."""
    revoked_ns: int | None
    """When it was revoked; None: it was not."""
    last_used_ns: int | None = None
    """When it last opened a request, to the minute (``LAST_USED_EVERY_NS``); None: never."""

    def active(self, now_ns: int) -> bool:
        """Neither revoked nor expired at ``now_ns``."""
        return self.revoked_ns is None and (self.expires_ns is None or now_ns < self.expires_ns)

    def state(self, now_ns: int) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_ns is not None:
            return "revoked"
        return "active" if self.active(now_ns) else "expired"

    def shown(self) -> dict[str, Any]:
        """The key as ``--json`` and the API show it (never its secret)."""
        return {
            "key_id": self.key_id,
            "project": self.project,
            "role": self.role.value,
            "name": self.name,
            "state": self.state(time.time_ns()),
            "created_ns": self.created_ns,
            "expires_ns": self.expires_ns,
            "revoked_ns": self.revoked_ns,
            "last_used_ns": self.last_used_ns,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: the key it signed in with and the project it looks at."""

    key: KeyInfo
    """The key, as it is now (a revoked or expired key ends the session)."""
    project: str
    """The project the browser looks at (another than the key's only for an admin)."""
    expires_ns: int
    """When the session ends."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _is_key_id(text: str) -> bool:
    return len(text) == 2 * _KEY_ID_BYTES and all(c in "0123456789abcdef" for c in text)


def split_key(key: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of text shaped like a key; None for anything else."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not _is_key_id(key_id) or not secret:
        return None
    return key_id, secret


def _key_from(row: RowMapping) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        project=row["project"],
        role=Role(row["role"]),
        name=row["name"],
        created_ns=row["created_ns"],
        expires_ns=row["expires_ns"],
        revoked_ns=row["revoked_ns"],
        last_used_ns=row["last_used_ns"],
    )


class AccessStore:
    """Projects, keys and sessions of one store. Thread-safe (a connection per call)."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_store_engine(url)
        self._ready = False
        self._lock = threading.Lock()
        self._noted: dict[str, int] = {}  # key id -> when this process last wrote its use
        self._usage: ThreadPoolExecutor | None = None

    def ensure_ready(self) -> None:
        """Connect and migrate, once (``StoreError`` if the store cannot be reached)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                migrate(self.engine)
                self._ready = True

    def _run(
        self, stmt: Any, *, write: bool = False, then: Sequence[Any] = ()
    ) -> Sequence[RowMapping]:
        """``stmt``'s rows; a write (and the statements ``then`` names) in one transaction."""
        self.ensure_ready()
        try:
            if write:
                with self.engine.begin() as conn:
                    result = conn.execute(stmt)
                    rows = result.mappings().all() if result.returns_rows else []
                    for more in then:
                        conn.execute(more)
                    return rows
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(
                f"{'writing' if write else 'reading'} keys "
                f"{'in' if write else 'from'} {redact_url(self.url)} failed: {driver_message(exc)}"
            ) from exc

    # -- projects -----------------------------------------------------------------------------

    def _audit(self, kind: str, actor: dict[str, Any] | None, details: dict[str, Any]) -> None:
        """An admin change joins the hash-chained audit log (written with the store's traces;
        flushed before the change is reported done, so it is not lost with the process)."""
        from tether.trace import AuditLog
        from tether.trace.recorder import writer_for

        log = AuditLog(writer_for(self.url))
        log.record(kind, actor or {"via": "cli"}, details)
        log.flush()

    def create_project(self, name: str, *, actor: dict[str, Any] | None = None) -> str:
        """Make a project; ``TetherError`` for a bad or taken name. ``actor`` (who asked: a
        key id and project, or the CLI) goes into the audit log."""
        check_project_name(name)
        try:
            self._run(
                insert(tables.projects).values(name=name, created_ns=time.time_ns()), write=True
            )
        except IntegrityError:
            raise TetherError(f"project {name!r} exists already") from None
        self._audit("project_created", actor, {"project": name})
        return name

    def list_projects(self) -> list[tuple[str, int | None]]:
        """``(name, created_ns)`` of every project, by name; ``created_ns`` None for a name
        runs were written under that was never made a project (``TETHER_PROJECT`` names any:
        its runs were in no list, and no key could reach them)."""
        p = tables.projects.c
        rows = self._run(select(p.name, p.created_ns).order_by(p.name))
        made: dict[str, int | None] = {r["name"]: r["created_ns"] for r in rows}
        for name in self._run(_RUN_PROJECTS):
            made.setdefault(name["name"], None)
        return sorted(made.items())

    def project_exists(self, name: str) -> bool:
        """Whether ``name`` was made a project."""
        if not PROJECT_NAME.fullmatch(name):  # no such name is stored: not asked either
            return False
        p = tables.projects.c
        return bool(self._run(select(p.name).where(p.name == name)))

    def project_has_runs(self, name: str) -> bool:
        """Whether runs were written under ``name`` (made a project or not)."""
        if not PROJECT_NAME.fullmatch(name):  # (as project_exists: none is written)
            return False
        r = tables.runs.c
        return bool(self._run(select(r.project).where(r.project == name).limit(1)))

    # -- keys ---------------------------------------------------------------------------------

    def create_key(
        self,
        project: str,
        role: Role,
        *,
        name: str = "",
        expires_ns: int | None = None,
        actor: dict[str, Any] | None = None,
    ) -> tuple[KeyInfo, str]:
        """A new key and its text (``tth_...``), which is shown once and never stored."""
        if not self.project_exists(project):
            if self.project_has_runs(project):
                raise AccessNotFound(
                    f"runs were written under {project!r}, but it was never made a project",
                    hint=f"tether projects create {project} makes it one (its runs stay)",
                )
            raise AccessNotFound(
                f"no project {project!r}", hint="tether projects create NAME makes one"
            )
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        info = KeyInfo(
            key_id=key_id,
            project=project,
            role=Role(role),
            # Any database takes it (no NUL, no lone surrogate), clipped to the column.
            name=clean_text(name[:_KEY_NAME_CHARS]) or "",
            created_ns=time.time_ns(),
            expires_ns=expires_ns,
            revoked_ns=None,
        )
        self._run(
            insert(tables.api_keys).values(
                key_id=key_id,
                project=project,
                role=info.role.value,
                name=info.name,
                secret_sha256=_sha256(secret),
                created_ns=info.created_ns,
                expires_ns=expires_ns,
            ),
            write=True,
        )
        details = {"key_id": key_id, "project": project, "role": info.role.value}
        self._audit("key_created", actor, {**details, "expires_ns": expires_ns})
        return info, f"{KEY_PREFIX}{key_id}_{secret}"

    def list_keys(self, project: str | None = None) -> list[KeyInfo]:
        """Keys (of one project, or all), newest first."""
        k = tables.api_keys.c
        stmt = select(tables.api_keys).order_by(k.created_ns.desc(), k.key_id)
        if project is not None:
            stmt = stmt.where(k.project == project)
        return [_key_from(r) for r in self._run(stmt)]

    def get_key(self, key_id: str) -> KeyInfo:
        k = tables.api_keys.c
        # Text that is no key id (a URL's %00 included) is not sent to the database.
        rows = (
            self._run(select(tables.api_keys).where(k.key_id == key_id))
            if _is_key_id(key_id)
            else []
        )
        if not rows:
            raise AccessNotFound(f"no API key {key_id!r}", hint="tether keys list shows them")
        return _key_from(rows[0])

    def revoke_key(self, key_id: str, *, actor: dict[str, Any] | None = None) -> KeyInfo:
        """Revoke a key (again: no change) and end its sessions."""
        info = self.get_key(key_id)
        if info.revoked_ns is None:
            k = tables.api_keys.c
            self._run(
                update(tables.api_keys)
                .where(k.key_id == key_id, k.revoked_ns.is_(None))
                .values(revoked_ns=time.time_ns()),
                write=True,
            )
            s = tables.sessions.c
            self._run(delete(tables.sessions).where(s.key_id == key_id), write=True)
            self._audit("key_revoked", actor, {"key_id": key_id, "project": info.project})
        return self.get_key(key_id)

    def authenticate(self, key: str) -> KeyInfo | None:
        """The key ``key`` is, if it is one and active; None for anything else (unknown,
        wrong secret, revoked, expired), in about the same time either way."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        k = tables.api_keys.c
        rows = self._run(
            select(tables.api_keys, k.secret_sha256.label("hash")).where(k.key_id == key_id)
        )
        given = _sha256(secret)
        stored = rows[0]["hash"] if rows else "0" * 64
        if not hmac.compare_digest(given, stored) or not rows:
            return None
        info = _key_from(rows[0])
        return info if info.active(time.time_ns()) else None

    def note_used(self, key: KeyInfo) -> None:
        """Record that ``key`` opened a request: at most one write per key a minute (here and
        across processes: the UPDATE skips a use written less than a minute ago), in a
        background thread, so the request neither waits for it (a SQLite store busy with an
        ingest) nor fails with it (a failed write is logged)."""
        now = time.time_ns()
        if key.last_used_ns is not None and now - key.last_used_ns < LAST_USED_EVERY_NS:
            return
        with self._lock:
            noted = self._noted.get(key.key_id)
            if noted is not None and now - noted < LAST_USED_EVERY_NS:
                return
            self._noted[key.key_id] = now
            if self._usage is None:
                self._usage = ThreadPoolExecutor(1, thread_name_prefix="tether-key-use")
            usage = self._usage
        usage.submit(self._write_used, key.key_id, now)

    def _write_used(self, key_id: str, now: int) -> None:
        k = tables.api_keys.c
        try:
            self._run(
                update(tables.api_keys)
                .where(
                    k.key_id == key_id,
                    k.last_used_ns.is_(None) | (k.last_used_ns <= now - LAST_USED_EVERY_NS),
                )
                .values(last_used_ns=now),
                write=True,
            )
        except Exception as exc:  # never the request's failure: it has its answer already
            with self._lock:
                self._noted.pop(key_id, None)  # the next use tries again
            log.warning("could not record the use of API key %s: %s", key_id, exc)

    def wait_for_uses(self) -> None:
        """Finish the pending last-use writes (before the engine is disposed)."""
        with self._lock:
            usage, self._usage = self._usage, None
        if usage is not None:
            usage.shutdown(wait=True)

    # -- sessions -----------------------------------------------------------------------------

    def open_session(self, key: KeyInfo, project: str | None = None) -> str:
        """A new session token for a signed-in key, looking at ``project`` (its own by
        default). The key's ended sessions, and the oldest beyond ``MAX_SESSIONS_PER_KEY``,
        are deleted in the same transaction."""
        token = secrets.token_urlsafe(_SECRET_BYTES)
        now = time.time_ns()
        expires = now + SESSION_TTL_NS
        if key.expires_ns is not None:
            expires = min(expires, key.expires_ns)
        s = tables.sessions.c
        newest = (
            select(s.token_sha256)
            .where(s.key_id == key.key_id, s.expires_ns > now)
            .order_by(s.created_ns.desc(), s.token_sha256)
            .limit(MAX_SESSIONS_PER_KEY)
        )
        self._run(
            insert(tables.sessions).values(
                token_sha256=_sha256(token),
                key_id=key.key_id,
                project=project or key.project,
                created_ns=now,
                expires_ns=expires,
            ),
            write=True,
            then=[
                delete(tables.sessions).where(
                    s.key_id == key.key_id,
                    s.token_sha256.not_in(newest.scalar_subquery()),
                )
            ],
        )
        return token

    def session(self, token: str) -> Session | None:
        """The live session of a cookie's token; None when there is none (unknown, ended,
        or its key revoked or expired)."""
        if not token or len(token) > 128:
            return None
        s = tables.sessions.c
        rows = self._run(
            select(s.key_id, s.project, s.expires_ns).where(s.token_sha256 == _sha256(token))
        )
        now = time.time_ns()
        if not rows or rows[0]["expires_ns"] <= now:
            return None
        try:
            key = self.get_key(rows[0]["key_id"])
        except AccessNotFound:
            return None
        if not key.active(now):
            return None
        return Session(key=key, project=rows[0]["project"], expires_ns=rows[0]["expires_ns"])

    def switch_session(self, token: str, project: str) -> None:
        """Point a session at another project (the caller checked it may)."""
        s = tables.sessions.c
        self._run(
            update(tables.sessions).where(s.token_sha256 == _sha256(token)).values(project=project),
            write=True,
        )

    def close_session(self, token: str) -> None:
        """Sign out: the token opens nothing any more. Ended sessions are swept too."""
        s = tables.sessions.c
        self._run(
            delete(tables.sessions).where(
                (s.token_sha256 == _sha256(token)) | (s.expires_ns <= time.time_ns())
            ),
            write=True,
        )
