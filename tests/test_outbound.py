"""Outbound requests go to public addresses only, unless an operator allows a network: every spelling
of an internal address is refused, at submission where it can be told and on the address actually
connected to otherwise, for the first URL and every redirect hop."""

from pathlib import Path

import pytest

from connectors.outbound import OutboundPolicy, address_literal
from connectors.url import fetch_url
from gristmill.errors import BlockedUrl, InvalidRequest
from gristmill.settings import Settings
from tests.conftest import LOOPBACK
from tests.http_server import LoopbackServer

INTERNAL_URLS = [
    "http://127.0.0.1:4200/api/admin/settings",
    "http://0.0.0.0/",
    "http://localhost/",
    "http://api.localhost/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.7/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00:ec2::254]/",
    "http://224.0.0.1/",
    "http://metadata.google.internal/computeMetadata/v1/",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_addresses_and_names_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(BlockedUrl) as refused:
        OutboundPolicy().check_url(url)
    assert refused.value.code == "blocked_url" and refused.value.status == 400
    assert "is refused" in refused.value.message


def test_an_octal_spelling_is_not_a_url_httpx_would_send() -> None:
    with pytest.raises(InvalidRequest) as refused:
        OutboundPolicy().check_url("http://0177.0.0.1/")
    assert refused.value.code == "invalid_url"


def test_spellings_of_one_address_are_the_same_address() -> None:
    assert {str(address_literal(h)) for h in ("127.0.0.1", "2130706433", "0x7f000001", "127.1", "0177.0.0.1")} == {"127.0.0.1"}
    assert address_literal("docs.example.org") is None and address_literal("cafe") is None


def test_public_addresses_pass_and_an_allowed_network_opens_internal_ones() -> None:
    policy = OutboundPolicy()
    assert policy.check_url("https://93.184.215.14/").host == "93.184.215.14"
    assert policy.check_url("https://[2606:4700::1111]/").host == "2606:4700::1111"
    opened = OutboundPolicy(allowed_networks=Settings(fetch_allowed_networks="10.1.0.0/16").allowed_networks)
    assert opened.check_url("http://10.1.2.3/").host == "10.1.2.3"
    with pytest.raises(BlockedUrl):
        opened.check_url("http://10.2.0.1/")


def test_a_name_is_judged_by_the_address_it_resolves_to() -> None:
    """The address checked is the one connected to; a name with an internal address among public
    ones is sent to a public one."""
    answers = {"intranet.example": ["10.0.0.5"], "mixed.example": ["127.0.0.1", "93.184.215.14"]}
    policy = OutboundPolicy(resolver=lambda host, port: answers[host])
    with pytest.raises(BlockedUrl) as refused:
        policy.resolve(policy.check_url("http://intranet.example/"))
    assert refused.value.details["address"] == "10.0.0.5" and refused.value.details["kind"] == "private"
    assert str(policy.resolve(policy.check_url("http://mixed.example/"))) == "93.184.215.14"


def test_the_loopback_server_is_refused_by_default_and_fetched_when_allowed(tmp_path: Path) -> None:
    with LoopbackServer() as web:
        web.serve("/page.txt", "internal page", content_type="text/plain")
        with pytest.raises(BlockedUrl) as refused:
            fetch_url(web.url("/page.txt"), Settings(home=tmp_path), max_bytes=100)
        assert refused.value.details["kind"] == "loopback"
        fetched = fetch_url(web.url("/page.txt"), Settings(home=tmp_path, fetch_allowed_networks=LOOPBACK), max_bytes=100)
    assert fetched.data == b"internal page" and fetched.uri == web.url("/page.txt")


def test_every_redirect_hop_is_checked(tmp_path: Path) -> None:
    """An allowed page that redirects to an address outside the allowed network is refused at that hop."""
    with LoopbackServer() as web:
        web.redirect("/out", web.url("/admin").replace("127.0.0.1", "127.0.0.2"))
        only_this_host = Settings(home=tmp_path, fetch_allowed_networks="127.0.0.1/32")
        with pytest.raises(BlockedUrl) as refused:
            fetch_url(web.url("/out"), only_this_host, max_bytes=100)
        assert refused.value.details["address"] == "127.0.0.2"
        assert [r.path for r in web.requests] == ["/out"]  # the internal target never saw a request


def test_a_redirect_keeps_the_pages_name_while_connecting_to_its_checked_address(tmp_path: Path) -> None:
    with LoopbackServer() as web:
        web.redirect("/old", "/new")
        web.serve("/new", "moved here", content_type="text/plain")
        fetched = fetch_url(web.url("/old"), Settings(home=tmp_path, fetch_allowed_networks=LOOPBACK), max_bytes=100)
        host_headers = {r.headers.get("host") for r in web.requests}
    assert fetched.data == b"moved here" and fetched.metadata["final_url"] == web.url("/new")
    assert host_headers == {web.base_url.removeprefix("http://")}
