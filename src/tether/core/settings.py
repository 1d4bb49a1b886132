"""Process settings, read from the environment (``TETHER_*``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core.errors import TetherError

DEFAULT_MAX_PAYLOAD_CHARS = 65_536
DEFAULT_MAX_DISPLAY_CHARS = 8_000
DEFAULT_DB_CONNECT_TIMEOUT_S = 5.0
DEFAULT_DB_STATEMENT_TIMEOUT_S = 30.0
DEFAULT_DB_LOCK_TIMEOUT_S = 10.0
DEFAULT_DB_MIGRATION_WAIT_S = 600.0


def env_get(name: str) -> str | None:
    """``os.environ.get(name)`` for what every run reads (``TETHER_PROJECT``...), at a
    thirtieth of its cost when the variable is unset: ``os.environ.get`` raises and catches a
    ``KeyError`` inside for a missing name (about 0.7 us). Reads the mapping ``os.environ``
    keeps (so ``os.environ[...] = ...`` and ``putenv`` through it are seen at once); anywhere
    that mapping is not there (another Python, Windows), ``os.environ.get`` itself."""
    env = os.environ
    data = getattr(env, "_data", None)
    if type(data) is not dict or os.name != "posix":
        return env.get(name)
    raw = data.get(env.encodekey(name))
    return None if raw is None else env.decodevalue(raw)


def default_home() -> Path:
    """Where Tether keeps local state when ``TETHER_HOME`` is not set: one folder per user
    (``$XDG_DATA_HOME/tether``, else ``~/.local/share/tether``), whatever the current folder,
    so a run made in one folder is listed from any other and its journal is found again."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "tether"


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise TetherError(
            f"{name} must be a number of seconds (0: no limit), got {raw!r}",
            hint=f"unset {name} to use the default ({default:g} s)",
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Settings for one process. Build with :meth:`from_env`."""

    home: Path
    """Directory for local state (the default SQLite store, the trace journal);
    ``TETHER_HOME``, default ``$XDG_DATA_HOME/tether`` or ``~/.local/share/tether``."""

    database_url: str
    """SQLAlchemy URL of the trace store; ``TETHER_DATABASE_URL``, default SQLite in ``home``."""

    db_connect_timeout_s: float = DEFAULT_DB_CONNECT_TIMEOUT_S
    """How long to wait for a database server to accept a connection (0: no limit);
    ``TETHER_DB_CONNECT_TIMEOUT_S``."""

    db_statement_timeout_s: float = DEFAULT_DB_STATEMENT_TIMEOUT_S
    """How long one statement may run on a database server before it is cancelled (0: no
    limit); ``TETHER_DB_STATEMENT_TIMEOUT_S``."""

    db_lock_timeout_s: float = DEFAULT_DB_LOCK_TIMEOUT_S
    """How long a migration of a PostgreSQL store may wait for a table another session holds
    (0: no limit) before it gives up, its schema unchanged; ``TETHER_DB_LOCK_TIMEOUT_S``."""

    db_migration_wait_s: float = DEFAULT_DB_MIGRATION_WAIT_S
    """How long a process opening a store waits for another process's migration of it to end
    (0: no limit) before it gives up, saying so; ``TETHER_DB_MIGRATION_WAIT_S``."""

    max_payload_chars: int = DEFAULT_MAX_PAYLOAD_CHARS
    """Longest run input, output or error stored in a trace; longer text is stored clipped,
    with a marker giving its full size; ``TETHER_MAX_PAYLOAD_CHARS``, default 65,536."""

    max_display_chars: int = DEFAULT_MAX_DISPLAY_CHARS
    """Longest input or output the CLI prints (``--json`` prints what is stored); longer text
    is clipped with the same marker; ``TETHER_MAX_DISPLAY_CHARS``, default 8,000."""

    project: str = "default"
    """The project runs are filed under when their caller names none; ``TETHER_PROJECT``."""

    @classmethod
    def from_env(cls) -> Settings:
        home = home_from_env()
        url = os.environ.get("TETHER_DATABASE_URL") or f"sqlite:///{home / 'tether.db'}"
        return cls(
            home=home,
            database_url=url,
            db_connect_timeout_s=_seconds(
                "TETHER_DB_CONNECT_TIMEOUT_S", DEFAULT_DB_CONNECT_TIMEOUT_S
            ),
            db_statement_timeout_s=_seconds(
                "TETHER_DB_STATEMENT_TIMEOUT_S", DEFAULT_DB_STATEMENT_TIMEOUT_S
            ),
            db_lock_timeout_s=_seconds("TETHER_DB_LOCK_TIMEOUT_S", DEFAULT_DB_LOCK_TIMEOUT_S),
            db_migration_wait_s=_seconds("TETHER_DB_MIGRATION_WAIT_S", DEFAULT_DB_MIGRATION_WAIT_S),
            max_payload_chars=max_payload_chars_from_env(),
            max_display_chars=_chars_from_env(
                "TETHER_MAX_DISPLAY_CHARS", DEFAULT_MAX_DISPLAY_CHARS
            ),
            project=project_from_env(),
        )


def home_from_env() -> Path:
    """``TETHER_HOME`` (``~`` expanded), else :func:`default_home`. A relative path is an
    error, not resolved: the same ``TETHER_HOME=data`` named another folder from each current
    folder (and after a process changed folder), so commands run from different folders read
    and wrote different stores and journals. An absolute path is what the XDG variables
    require too."""
    raw = os.environ.get("TETHER_HOME")
    if not raw:
        return default_home()
    home = Path(raw).expanduser()
    if not home.is_absolute():
        raise TetherError(
            f"TETHER_HOME must be an absolute path, got {raw!r:.200}: a relative one would "
            "name a different folder from each current folder",
            hint=f"give the full path, e.g. TETHER_HOME={Path.cwd() / home}",
        )
    return home


PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""What a project may be called (``tether projects create``): it appears in URLs, log lines and
file names."""
PROJECT_NAME_RULE = (
    "1 to 64 characters: lower-case letters, digits, '-', '_' and '.', "
    "starting with a letter or digit"
)


def is_project_name(text: str) -> bool:
    """Whether ``text`` may name a project (``PROJECT_NAME``)."""
    return PROJECT_NAME.fullmatch(text) is not None


def project_from_env() -> str:
    """``TETHER_PROJECT``, default ``default``. A name no project may have is a ``TetherError``
    naming the variable: runs written under it (``Acme``, ``my project``) were stored, and no
    key or admin could ever open them in ``tether serve``, whose projects are named by
    ``PROJECT_NAME``."""
    raw = (env_get("TETHER_PROJECT") or "").strip()
    if not raw:
        return "default"
    if not is_project_name(raw):
        raise TetherError(
            f"TETHER_PROJECT must name a project as tether projects create takes it "
            f"({PROJECT_NAME_RULE}), got {raw!r:.120}"
        )
    return raw


def max_payload_chars_from_env() -> int:
    """``Settings.from_env().max_payload_chars`` at a fraction of the cost: every run reads it
    when it stores its input and output."""
    return _chars_from_env("TETHER_MAX_PAYLOAD_CHARS", DEFAULT_MAX_PAYLOAD_CHARS)


def _chars_from_env(name: str, default: int) -> int:
    given = env_get(name)
    if not given:
        return default
    raw = given.strip().replace("_", "").replace(",", "")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise TetherError(
            f"{name} must be a whole number of characters (1 or more), got {given!r}",
            hint=f"unset {name} for the default, {default:,}",
        )
    return int(raw)


DEFAULT_REDIS_PREFIX = "tether:"
REDIS_PROTOCOL = 2
"""The RESP version Tether's Redis clients speak. redis-py 7 and later speak RESP3 by
default and then hand a pooled connection out without checking it (for maintenance push
notifications): after Redis restarted, or a proxy closed an idle connection, the next call
failed on the dead connection (a budget check refused the call). Over RESP2 the pool finds
it closed and connects again; Tether's commands and scripts answer alike over both."""


def redis_no_retries(retry_class: Any) -> Any:
    """A redis-py ``Retry`` (``retry_class``: the sync or the asyncio one) that never sends a
    command again, given as a client's ``retry``: it wins over the URL's own options, which
    win over every other argument. A reply lost after Redis ran a script (a timeout, a
    connection reset) was sent again when the URL asked for retries (``?retry_on_timeout=
    true``; redis-py's default for a client made without a URL): a budget reservation held
    twice, a call's usage or a circuit's failure counted twice. The call fails instead, as
    any Redis error does."""
    from redis.backoff import NoBackoff

    return retry_class(NoBackoff(), 0)


_REDIS_URL_OPTIONS_REFUSED = {
    "retry_on_error": "redis-py reads it as a list of the value's characters, and the first "
    "timeout or dropped connection then fails with TypeError",
}
"""Options a Redis URL may carry that redis-py mishandles (redis-py 5 to 8), and why."""


def redis_url_option_refused(url: str) -> str | None:
    """Why Tether refuses the Redis URL ``url`` (an option of ``_REDIS_URL_OPTIONS_REFUSED``:
    with ``?retry_on_error=ConnectionError`` every budget check or circuit breaker call that
    met a timeout failed with an "unexpected error"); None when it does not."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        names = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    except ValueError:
        return None  # redis-py says what is wrong with the URL
    for name in sorted(names & _REDIS_URL_OPTIONS_REFUSED.keys()):
        return f"sets {name}, which Tether cannot use: {_REDIS_URL_OPTIONS_REFUSED[name]}"
    return None


def check_redis_url_options(url: str, shown_url: str) -> None:
    """A ``TetherError`` for a Redis URL (``shown_url``: as messages show it) that
    ``redis_url_option_refused``."""
    problem = redis_url_option_refused(url)
    if problem is not None:
        raise TetherError(
            f"the Redis URL {shown_url!r} {problem}",
            hint="remove the option from the URL (TETHER_REDIS_URL, or the budgets' "
            "redis_url): Tether never sends a Redis command again anyway (a script run twice "
            "would count usage twice), and a Redis error is reported as such",
        )


def redis_from_env() -> tuple[str | None, str]:
    """The Redis that processes share state through (circuit breakers): ``TETHER_REDIS_URL``
    (``redis://[:password@]host:port/db``; unset or empty: none) and the prefix of every key
    Tether writes there, ``TETHER_REDIS_PREFIX`` (default ``tether:``), so several deployments
    can share one Redis."""
    url = (os.environ.get("TETHER_REDIS_URL") or "").strip() or None
    prefix = os.environ.get("TETHER_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX
    return url, prefix
