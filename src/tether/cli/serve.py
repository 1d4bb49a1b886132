"""``tether serve``: the API and the web UI over the trace store, on uvicorn."""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import signal
import socket
import sys
import time
from typing import Any

import click

from tether.cli.base import database_url, handle_errors
from tether.core import TetherError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8700,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free one; the URL printed says which).",
)
@click.option("--dev", is_flag=True, help="No sign-in (loopback only): all requests admin.")
@click.option(
    "--print-key",
    is_flag=True,
    help="Print a new admin key of the default project, valid for a day.",
)
@click.option("--secure-cookies", is_flag=True, help="Session cookies only over HTTPS.")
@click.option(
    "--public-url",
    metavar="URL",
    envvar="TETHER_PUBLIC_URL",
    help="URL browsers use, behind a proxy that rewrites Host [env: TETHER_PUBLIC_URL].",
)
@click.option(
    "--read-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1, max=3600),
    metavar="SECONDS",
    help="Close a connection whose headers take longer, or whose body pauses longer.",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    envvar="TETHER_FORWARDED_ALLOW_IPS",
    default="",
    help="Proxies whose X-Forwarded-For/-Proto are believed (comma-separated, or *; "
    "default none) [env: TETHER_FORWARDED_ALLOW_IPS].",
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, /, **options: Any) -> None:
    """Serve the API (/api/v1) and the trace explorer on HOST:PORT until Ctrl-C.

    Every request needs an API key (tether keys create); the UI asks for one once and keeps a
    session cookie. Migrates the store on start.
    """
    # Ctrl-C and SIGTERM (a container stop) are how a server is stopped: both end it cleanly,
    # whether it is still starting or serving (uvicorn answers requests in flight first).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        _serve(ctx, **options)
    click.echo("stopped", err=True)


def _serve(
    ctx: click.Context,
    *,
    host: str,
    port: int,
    dev: bool,
    print_key: bool,
    secure_cookies: bool,
    public_url: str | None,
    read_timeout: float,
    forwarded_allow_ips: str,
) -> None:
    if dev and host not in LOOPBACK:
        raise TetherError(
            f"--dev serves without sign-in and only on 127.0.0.1, not on {host}",
            hint="drop --host, or drop --dev and sign in with a key",
        )
    proxies = _proxies(forwarded_allow_ips)
    if host not in LOOPBACK and not secure_cookies:
        click.echo(
            f"warning: serving on {host} over plain HTTP: API keys and session cookies cross "
            "the network readable; put a TLS proxy in front and add --secure-cookies",
            err=True,
        )
    import uvicorn

    from tether.server.access import AccessStore
    from tether.server.app import create_app
    from tether.server.config import ServerConfig, public_origin
    from tether.server.http_deadline import deadline_protocol
    from tether.server.roles import Role

    origin = None
    if public_url:
        try:
            origin = public_origin(public_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--public-url") from None
    url = database_url(ctx)
    config = ServerConfig(
        database_url=url,
        dev=dev,
        secure_cookies=secure_cookies,
        public_origin=origin,
        read_timeout_s=read_timeout,
    )
    access = AccessStore(url)
    access.ensure_ready()  # a store that cannot be opened is one clear error, before binding
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        access.engine.dispose()
        raise TetherError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another program may use the port: pick another with --port",
        ) from None
    # Listening now: a client that connects while the app loads waits in the backlog
    # instead of being refused, so the URL printed below works as soon as it is printed.
    sock.listen(2048)
    key = None
    try:
        if print_key and not dev:
            # Made once the port is ours: a server that cannot listen leaves no admin key
            # behind that nobody was shown.
            _, key = access.create_key(
                "default",
                Role.ADMIN,
                name="tether serve --print-key",
                expires_ns=time.time_ns() + 86_400 * 1_000_000_000,
            )
    except BaseException:
        sock.close()
        raise
    finally:
        access.engine.dispose()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Tether serving on http://{shown}:{bound}  (Ctrl-C stops)")
    if key and not dev:  # dev mode says so once, from the app (its log, when it starts)
        click.echo(f"sign in with this admin key (valid for a day, shown once): {key}")
    sys.stdout.flush()
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=deadline_protocol(read_timeout),  # headers within the timeout (slowloris)
            # Whose X-Forwarded-For names the client (the address audit entries record):
            # uvicorn believes 127.0.0.1's by default, so any local user, or anyone through
            # an SSH tunnel, could write another address into an approval's audit entry.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=",".join(proxies),
        )
    )
    # What start-up made (the modules, the app: about 90,000 objects, no garbage among them)
    # lives as long as the process: out of the collector's sight, a full collection (every
    # few dozen OTLP requests) scans what requests made, not all of it again (50 ms of CPU
    # each, 3 us an ingested span). Not in ``create_app``: a process hosting many apps, a
    # test run, would keep what each start found forever.
    gc.freeze()
    server.run(sockets=[sock])  # passes the signal on (KeyboardInterrupt) once shut down


def _proxies(given: str) -> list[str]:
    """``--forwarded-allow-ips`` as a list: addresses, networks or ``*``. A typo is an error,
    not a proxy silently never believed (its clients' addresses all recorded as its own)."""
    proxies = [p.strip() for p in given.split(",") if p.strip()]
    for proxy in proxies:
        if proxy == "*":
            continue
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{proxy!r} is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/8), "
                "nor *",
                param_hint="--forwarded-allow-ips",
            ) from None
    return proxies
