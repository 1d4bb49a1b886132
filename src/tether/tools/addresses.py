"""Where HTTP tools may connect: public addresses, unless a spec allows a network explicitly.

A host name is checked on the addresses it resolves to, at the moment of connecting, and the
connection is made to the address that passed: there is no second lookup between the check and
the connection, so a name that answers a public address first and a private one next (DNS
rebinding) cannot slip through. TLS still verifies the certificate against the host name (SNI
and ``Host`` are unchanged): only the TCP connection is pinned.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from tether.core import ToolError

if TYPE_CHECKING:
    import httpcore
    import httpx

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: how a host name becomes addresses (the system's resolver by
default; tests pass their own DNS)."""


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), what) for net, what in pairs)


REFUSED_NETWORKS = _nets(
    ("0.0.0.0/8", "a 'this network' address (0.0.0.0 reaches the local host)"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives at 169.254.169.254)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local NAT64 address"),
    ("100::/64", "a discard address"),
    ("2001::/23", "an IETF protocol address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique local (private) address (cloud metadata lives at fd00:ec2::254)"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
"""What HTTP tools refuse unless ``allowed_networks`` names it: everything that is not a
public unicast address."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, in the forms that reach it: mapped
    (``::ffff:127.0.0.1``), compatible (``::127.0.0.1``), NAT64 (``64:ff9b::/96``) and 6to4."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressPolicy:
    """Public unicast addresses pass; others only inside ``allowed_networks``."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowed)

    def _why(self, address: IPAddress) -> str | None:
        """What kind of refused address ``address`` is, or ``None`` when it may be reached."""
        if self._allowed(address):
            return None
        inner = embedded_ipv4(address)
        if inner is not None:
            if self._allowed(inner):
                return None
            what = _kind_of(inner)
            return None if what is None else f"an IPv6 form of {inner}, {what}"
        return _kind_of(address)

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be reached (``127.0.0.1 is a loopback address``), or
        ``None`` when it may."""
        why = self._why(address)
        return None if why is None else f"{address} is {why}"

    def checked(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses of ``host`` that may be reached, in order; ``AddressRefused`` naming
        them when none may."""
        passed: list[str] = []
        refused: list[tuple[str, str]] = []
        for text in addresses:
            try:
                address = ipaddress.ip_address(text.partition("%")[0])
            except ValueError:
                refused.append((repr(text), "not an address"))
                continue
            why = self._why(address)
            if why is None:
                passed.append(str(address))
            else:
                refused.append((str(address), why))
        if passed:
            return passed
        if _is_literal(host) and len(refused) == 1:
            detail = f"{refused[0][0]} is {refused[0][1]}"
        else:
            found = ", ".join(f"{a} ({why})" for a, why in refused) or "no address"
            detail = f"{host} resolves to {found}"
        example = next((a for a, _ in refused if _is_literal(a)), "127.0.0.1")
        hint = (
            "; to reach it on purpose, add its network to the tool's allowed_networks "
            f"(e.g. allowed_networks: [{example}/{128 if ':' in example else 32}])"
        )
        raise AddressRefused(f"connection refused: {detail}{hint}")


def _kind_of(address: IPAddress) -> str | None:
    """What kind of refused address this is (``None``: a public one)."""
    for network, what in REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return what
    return None


class AddressRefused(ToolError):
    """An HTTP tool was about to connect to an address its policy refuses."""


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo``), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_backend(policy: AddressPolicy, resolver: Resolver | None = None) -> Any:
    """An ``httpcore`` network backend that resolves a host once, checks its addresses, and
    connects to one that passed (the next on a connection error)."""
    import httpcore

    class CheckedBackend(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.AnyIOBackend()
            self._resolve = resolver or system_resolver

        async def _addresses(self, host: str, port: int, within: float | None) -> list[str]:
            if _is_literal(host):
                return policy.checked(host, [host])
            try:
                async with asyncio.timeout(within):
                    found = await self._resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:  # socket.gaierror: no such name, no resolver
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
            return policy.checked(host, list(found))

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            error: Exception | None = None
            for address in await self._addresses(host, port, timeout):
                try:
                    return await self._inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
            assert error is not None  # _addresses returns at least one address or raises
            raise error

        async def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            raise AddressRefused("HTTP tools do not connect to unix sockets")

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    return CheckedBackend()


def checked_transport(
    policy: AddressPolicy, ssl_context: Any, resolver: Resolver | None = None
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go only to addresses ``policy`` lets through.

    httpx offers no public way to give its transport a network backend, so the transport's
    connection pool is replaced by an equal one with the checked backend (httpx 0.27 and
    0.28 keep it in ``_pool``). Proxies from the environment are not used: a proxy would
    resolve the name itself, out of reach of the check."""
    import httpcore
    import httpx

    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version keeps no connection pool in _pool")
    limits = httpx.Limits()  # httpx's defaults, as the pool it replaces had them
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=checked_backend(policy, resolver),
    )
    return transport
