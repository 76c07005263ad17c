"""Where Gristmill may send a request: public addresses only, unless an operator allows a network.

Every outbound request (URL sources and each of their redirects, the scheduled sync, webhooks) goes
through `send`. It resolves the host itself, refuses loopback, private, link-local, unique-local,
shared (CGNAT), multicast, reserved and unspecified addresses, also when spelled another way
(`2130706433`, `0x7f000001`, `127.1`) or carried inside an IPv6 address (`::ffff:127.0.0.1`,
NAT64, 6to4), and the cloud metadata names; then it connects to the very address it checked: the
request goes to that IP with the original Host header and TLS server name, so a DNS answer that
changes between the check and the connection (rebinding) cannot send it elsewhere.

`GRISTMILL_FETCH_ALLOWED_NETWORKS` (CIDRs) lets an operator reach internal sites on purpose.
"""

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from gristmill.errors import BlockedUrl, InvalidRequest, TransientFetchError
from gristmill.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]  # host, port -> addresses, in the order to try them

# Names that answer with a cloud machine's credentials (their addresses are link-local anyway, but
# a resolver may be configured to hand out others); RFC 6761 reserves `localhost` for loopback.
METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_INET_ATON_FORM = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.I)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses requests may go to: public ones, and those in `allowed_networks`."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = system_resolver

    def permits(self, address: IPAddress) -> bool:
        inner = embedded_ipv4(address) or address
        for candidate in (address, inner):
            if any(candidate in net for net in self.allowed_networks if net.version == candidate.version):
                return True
        return inner.is_global and not inner.is_multicast

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """The URL parsed, if its host may be reached as far as can be told without DNS: a literal
        address must be permitted, and metadata and localhost names never are. Raises BlockedUrl."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except httpx.InvalidURL as error:  # e.g. 0177.0.0.1, which looks like an address but is none
            raise InvalidRequest(f"{url!r} is not a URL Gristmill can fetch: {error}", code="invalid_url") from None
        host = parsed.host.rstrip(".").lower()
        literal = address_literal(host)
        if literal is not None and not self.permits(literal):
            raise _blocked(str(parsed), host, literal)
        if literal is None and (host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost")):
            raise BlockedUrl(
                f"{parsed} is refused: {host} is a local or cloud-metadata name that Gristmill does not fetch from.",
                details={"url": str(parsed), "host": host},
            )
        return parsed

    def resolve(self, url: httpx.URL) -> IPAddress:
        """The first address of the URL's host that may be reached; BlockedUrl when none may."""
        host = url.host.rstrip(".")
        literal = address_literal(host)
        if literal is not None:
            return literal  # checked by check_url
        try:
            found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host, url.port or _default_port(url))]
        except (OSError, UnicodeError) as error:
            raise TransientFetchError(
                f"Cannot connect to {url}: the name {host} does not resolve ({error}). Check the host name.",
                code="url_unreachable",
                details={"url": str(url)},
            ) from None
        for address in found:
            if self.permits(address):
                return address
        if not found:
            raise TransientFetchError(
                f"Cannot connect to {url}: the name {host} has no address.", code="url_unreachable", details={"url": str(url)}
            )
        raise _blocked(str(url), host, found[0])


def policy_for(settings: Settings) -> OutboundPolicy:
    return OutboundPolicy(allowed_networks=settings.allowed_networks)


def send(
    client: httpx.Client,
    policy: OutboundPolicy,
    method: str,
    url: str | httpx.URL,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    timeout: httpx.Timeout | None = None,
) -> httpx.Response:
    """One request, redirects not followed, streamed, to the checked address of `url`'s host.

    The response's `request.url` names the address connected to; callers keep `url` as the page's URL.
    """
    parsed = policy.check_url(url)
    address = policy.resolve(parsed)
    host = parsed.raw_host.decode("ascii")
    pinned = parsed.copy_with(host=str(address))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    request = client.build_request(
        method,
        pinned,
        headers={**(headers or {}), "Host": parsed.netloc.decode("ascii")},
        content=content,
        timeout=timeout if timeout is not None else client.timeout,
        extensions=extensions,
    )
    return client.send(request, stream=True, follow_redirects=False)


def address_literal(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling a resolver accepts; None for a name."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _INET_ATON_FORM.match(bare):  # 2130706433, 0x7f000001, 0177.0.0.1, 127.1: what inet_aton reads
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo, IPv4-compatible)."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _blocked(url: str, host: str, address: IPAddress) -> BlockedUrl:
    return BlockedUrl(
        f"{url} is refused: {host} is {address}, a {_kind(address)} address; Gristmill fetches only from "
        "public addresses unless GRISTMILL_FETCH_ALLOWED_NETWORKS allows it.",
        details={"url": url, "address": str(address), "kind": _kind(address)},
    )


def _kind(address: IPAddress) -> str:
    inner = embedded_ipv4(address) or address
    for kind, test in (
        ("unspecified", inner.is_unspecified),
        ("loopback", inner.is_loopback),
        ("link-local", inner.is_link_local),
        ("multicast", inner.is_multicast),
        ("shared (CGNAT)", inner in _SHARED),
        ("unique-local", inner in _UNIQUE_LOCAL),
        ("private", inner.is_private),
    ):
        if test:
            return kind
    return "reserved"


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
