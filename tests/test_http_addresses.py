"""HTTP tools are checked on the addresses they connect to, not only on host names: private,
loopback, link-local and metadata addresses are refused unless the spec allows them, the
address checked is the one connected to (DNS rebinding), and every redirect is checked too.

Real servers on 127.0.0.1 and 127.0.0.2; names resolve through the system resolver
(``localhost``, from /etc/hosts) or through a DNS played by the test (a ``resolver``)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from fakes.http_server import Canned, Server
from tether.core import SpecError, ToolError
from tether.spec import HttpToolSpec, load_spec
from tether.tools import HttpTool
from tether.tools.addresses import AddressPolicy, embedded_ipv4


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


@pytest.fixture
def second() -> Iterator[Server]:
    """A server on 127.0.0.2: loopback too, but not in the tests' allowed network."""
    with Server(host="127.0.0.2") as s:
        yield s


class FakeDNS:
    """Answers each lookup of a name with the next of its answers (the last one repeats) and
    counts lookups: a DNS server that rebinds."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        series = self.answers[host]
        return series[min(self.lookups.count(host), len(series)) - 1]


MakeHttp = Callable[..., HttpTool]


@pytest.fixture
async def make_http() -> AsyncIterator[MakeHttp]:
    made: list[HttpTool] = []

    def make(resolver: Any = None, **fields: Any) -> HttpTool:
        fields.setdefault("name", "api")
        t = HttpTool(HttpToolSpec(kind="http", **fields), resolver=resolver)
        made.append(t)
        return t

    yield make
    for t in made:
        await t.aclose()


# --- names resolving to refused addresses ------------------------------------------------------


async def test_a_name_resolving_to_loopback_is_refused_by_default(
    server: Server, make_http: MakeHttp
) -> None:
    # localhost comes from /etc/hosts through the system resolver: no fake involved.
    t = make_http(url=f"http://localhost:{server.port}/x", allowed_hosts=["localhost"])
    with pytest.raises(ToolError) as info:
        await t.call({})
    message = str(info.value)
    assert "localhost resolves to 127.0.0.1 (a loopback address)" in message
    assert "allowed_networks: [127.0.0.1/32]" in message  # how to allow it on purpose
    assert server.requests == []


async def test_the_same_name_passes_once_its_network_is_allowed(
    server: Server, make_http: MakeHttp
) -> None:
    t = make_http(
        url=f"http://localhost:{server.port}/x",
        allowed_hosts=["localhost"],
        allowed_networks=["127.0.0.0/8"],
    )
    assert (await t.call({})).data["path"] == "/x"
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible IPv6
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "224.0.0.1",
        "255.255.255.255",
    ],
)
async def test_names_resolving_to_private_loopback_link_local_or_metadata_are_refused(
    server: Server, make_http: MakeHttp, address: str
) -> None:
    dns = FakeDNS({"api.example.com": [[address]]})
    t = make_http(
        resolver=dns,
        url=f"http://api.example.com:{server.port}/x",
        allowed_hosts=["api.example.com"],
    )
    with pytest.raises(
        ToolError, match=re.escape("connection refused: api.example.com resolves to")
    ):
        await t.call({})
    assert dns.lookups == ["api.example.com"]
    assert server.requests == []


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_covers_the_mapped_form_too() -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) is not None
    assert embedded_ipv4(ipaddress.ip_address("::ffff:7f00:1")) == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:9/x", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:9/x", "::ffff:7f00:1 is an IPv6 form of 127.0.0.1, a loopback"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a unique local"),
    ],
)
def test_an_address_in_the_url_is_refused_when_the_tool_is_built(url: str, shown: str) -> None:
    host = url.split("//")[1].rsplit(":", 1)[0] if "[" not in url else url[8:].split("]")[0]
    host = host.split("/")[0]
    with pytest.raises(SpecError) as info:
        HttpTool(HttpToolSpec(kind="http", name="t", url=url, allowed_hosts=[host]))
    assert shown in info.value.message
    assert "allowed_networks" in (info.value.hint or "")


def test_a_spec_names_the_line_of_a_bad_network(tmp_path: Any) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: a\n"
        "model: {provider: scripted, name: m, script: s.yaml}\n"
        "tools:\n"
        "  - name: t\n"
        "    kind: http\n"
        "    url: http://127.0.0.1/x\n"
        "    allowed_hosts: [127.0.0.1]\n"
        "    allowed_networks: [127.0.0.300/8]\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"{path}:8: tools[0].allowed_networks: '127.0.0.300/8' is not a network" in str(
        info.value
    )


async def test_a_name_with_public_and_private_addresses_connects_only_to_allowed_ones(
    server: Server, make_http: MakeHttp
) -> None:
    dns = FakeDNS({"api.example.com": [["10.9.9.9", "127.0.0.1"]]})
    t = make_http(
        resolver=dns,
        url=f"http://api.example.com:{server.port}/x",
        allowed_hosts=["api.example.com"],
        allowed_networks=["127.0.0.1/32"],
    )
    assert (await t.call({})).data["path"] == "/x"


async def test_garbage_from_the_resolver_is_refused(make_http: MakeHttp) -> None:
    dns = FakeDNS({"api.example.com": [["not-an-address"]]})
    t = make_http(resolver=dns, url="http://api.example.com/x", allowed_hosts=["api.example.com"])
    with pytest.raises(ToolError, match="'not-an-address' \\(not an address\\)"):
        await t.call({})


async def test_a_resolver_that_never_answers_times_out(make_http: MakeHttp) -> None:
    never = asyncio.Event()

    async def hanging(host: str, port: int) -> Sequence[str]:
        await never.wait()
        return []

    t = make_http(
        resolver=hanging,
        url="http://api.example.com/x",
        allowed_hosts=["api.example.com"],
        timeout_s=0.2,
    )
    with pytest.raises(ToolError, match=re.escape("timed out after 0.2s")):
        await t.call({})


async def test_an_unknown_name_is_a_clear_error(make_http: MakeHttp) -> None:
    t = make_http(url="http://no-such-host.invalid/x", allowed_hosts=["no-such-host.invalid"])
    with pytest.raises(ToolError, match=re.escape("cannot resolve no-such-host.invalid")):
        await t.call({})


# --- DNS rebinding -----------------------------------------------------------------------------


async def test_the_checked_address_is_the_one_connected_to(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    # First answer: 127.0.0.1 (allowed, where `server` listens). Any later lookup answers
    # 127.0.0.2, where `second` listens and which is not allowed: a second lookup between the
    # check and the connection would land there.
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    t = make_http(
        resolver=dns,
        url=f"http://rebind.test:{server.port}/x",
        allowed_hosts=["rebind.test"],
        allowed_networks=["127.0.0.1/32"],
    )
    assert (await t.call({})).data["path"] == "/x"
    assert dns.lookups == ["rebind.test"]
    assert [r.headers["host"] for r in server.requests] == [f"rebind.test:{server.port}"]
    assert second.requests == []


async def test_a_rebinding_answer_is_refused_when_it_comes(
    server: Server, make_http: MakeHttp
) -> None:
    # A new connection (a new event loop's client) looks the name up again: the new answer is
    # checked like the first.
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    t = make_http(
        resolver=dns,
        url=f"http://rebind.test:{server.port}/x",
        allowed_hosts=["rebind.test"],
        allowed_networks=["127.0.0.1/32"],
    )
    await t.call({})
    await t.aclose()  # drops the pooled connection
    with pytest.raises(ToolError, match=re.escape("169.254.169.254 (a link-local address")):
        await t.call({})
    assert len(server.requests) == 1


# --- redirects ---------------------------------------------------------------------------------


async def test_a_redirect_to_a_refused_address_is_refused(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    server.routes["/moved"] = Canned(302, b"", {"Location": second.url + "/stolen"})
    t = make_http(
        url=server.url + "/moved",
        allowed_hosts=["127.0.0.1", "127.0.0.2"],
        allowed_networks=["127.0.0.1/32"],
        max_redirects=3,
    )
    with pytest.raises(ToolError, match=re.escape("127.0.0.2 is a loopback address")):
        await t.call({})
    assert second.requests == []


async def test_a_redirect_to_an_allowed_address_is_followed(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    # The same redirect with 127.0.0.2 allowed: the check above is what stopped it.
    server.routes["/moved"] = Canned(302, b"", {"Location": second.url + "/there"})
    t = make_http(
        url=server.url + "/moved",
        allowed_hosts=["127.0.0.1", "127.0.0.2"],
        allowed_networks=["127.0.0.1/32", "127.0.0.2/32"],
        max_redirects=3,
    )
    assert (await t.call({})).data["path"] == "/there"


async def test_a_redirect_through_a_name_resolving_to_metadata_is_refused(
    server: Server, make_http: MakeHttp
) -> None:
    server.routes["/moved"] = Canned(302, b"", {"Location": "http://meta.test/latest/"})
    dns = FakeDNS({"meta.test": [["169.254.169.254"]]})
    t = make_http(
        resolver=dns,
        url=server.url + "/moved",
        allowed_hosts=["127.0.0.1", "meta.test"],
        allowed_networks=["127.0.0.1/32"],
        max_redirects=1,
    )
    with pytest.raises(
        ToolError, match=re.escape("meta.test resolves to 169.254.169.254 (a link-local")
    ):
        await t.call({})


async def test_a_redirect_to_a_host_not_allowed_is_refused(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    server.routes["/moved"] = Canned(302, b"", {"Location": second.url + "/x"})
    t = make_http(
        url=server.url + "/moved",
        allowed_hosts=["127.0.0.1"],
        allowed_networks=["127.0.0.0/8"],
        max_redirects=3,
    )
    with pytest.raises(ToolError, match=r"host '127\.0\.0\.2' is not in allowed_hosts"):
        await t.call({})
    assert second.requests == []


async def test_redirects_are_refused_by_default(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    server.routes["/moved"] = Canned(302, b"", {"Location": second.url + "/x"})
    t = make_http(
        url=server.url + "/moved",
        allowed_hosts=["127.0.0.1", "127.0.0.2"],
        allowed_networks=["127.0.0.0/8"],
    )
    with pytest.raises(ToolError, match=r"HTTP 302 redirect refused \(max_redirects is 0"):
        await t.call({})
    assert second.requests == []


async def test_redirect_loops_stop_at_max_redirects(server: Server, make_http: MakeHttp) -> None:
    server.routes["/loop"] = Canned(302, b"", {"Location": "/loop"})
    t = make_http(
        url=server.url + "/loop",
        allowed_hosts=["127.0.0.1"],
        allowed_networks=["127.0.0.1/32"],
        max_redirects=2,
    )
    with pytest.raises(ToolError, match=r"more than max_redirects \(2\) redirects"):
        await t.call({})
    assert len(server.requests) == 3


async def test_headers_go_only_to_the_origin_of_the_url(
    server: Server, second: Server, make_http: MakeHttp
) -> None:
    server.routes["/here"] = Canned(307, b"", {"Location": "/echo"})
    server.routes["/away"] = Canned(302, b"", {"Location": second.url + "/echo"})
    server.echo_headers = second.echo_headers = True
    fields: dict[str, Any] = {
        "allowed_hosts": ["127.0.0.1", "127.0.0.2"],
        "allowed_networks": ["127.0.0.0/8"],
        "max_redirects": 2,
        "headers": {"X-Api-Key": "k-123", "Authorization": "Bearer t-456"},
    }
    same = await make_http(url=server.url + "/here", **fields).call({})
    assert same.data["headers"]["x-api-key"] == "***"  # sent (and redacted in the echo)
    other = await make_http(url=server.url + "/away", **fields).call({})
    assert "x-api-key" not in other.data["headers"]
    assert "authorization" not in other.data["headers"]
    assert "k-123" not in second.requests[0].headers.values()
