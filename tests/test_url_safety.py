"""SSRF guard for callback URLs: syntax, literal addresses and (fake) DNS answers."""

from __future__ import annotations

import pytest

from service.url_safety import UnsafeURLError, check_callback_url, resolve_callback_url
from tests.support.fake_resolver import FakeResolver

DNS = FakeResolver(
    {
        "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
        "internal.example.com": ["10.0.0.5"],
        "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
        "mixed6.example.com": ["93.184.216.34", "fd12:3456::1"],
        "metadata.example.com": ["169.254.169.254"],
        "cgnat.example.com": ["100.64.1.1"],
        "mapped.example.com": ["::ffff:10.0.0.1"],
        "linklocal6.example.com": ["fe80::1%eth0"],
        "empty.example.com": [],
    }
)


def refused(url: str, *, allow_private: bool = False) -> UnsafeURLError:
    with pytest.raises(UnsafeURLError) as info:
        check_callback_url(url, allow_private=allow_private, resolver=DNS)
    return info.value


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/webhooks",
        "http://hooks.example.com:8080/a?b=c",
        "HTTPS://HOOKS.EXAMPLE.COM/",
        "https://93.184.216.34/hook",
        "https://[2606:4700:4700::1111]/hook",
    ],
)
def test_public_urls_pass(url: str) -> None:
    check_callback_url(url, allow_private=False, resolver=DNS)


def test_resolve_returns_every_checked_address() -> None:
    addresses = resolve_callback_url("https://hooks.example.com/x", allow_private=False, resolver=DNS)
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    assert DNS.calls[-1] == ("hooks.example.com", 443)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fd00::1]/",
        "http://[fc00::1]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fec0::1]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:a00:1::]/",
    ],
)
def test_private_literal_addresses_refused(url: str) -> None:
    assert refused(url).code == "private_address"


@pytest.mark.parametrize("url", ["http://2130706433/", "http://127.1/", "http://0x7f.0.0.1/"])
def test_odd_ipv4_spellings_resolve_to_loopback(url: str) -> None:
    """The system resolver accepts these inet_aton spellings; the check sees the resolved address."""
    with pytest.raises(UnsafeURLError) as info:
        check_callback_url(url, allow_private=False)
    assert info.value.code == "private_address"


@pytest.mark.parametrize(
    "host",
    [
        "internal.example.com",
        "mixed.example.com",
        "mixed6.example.com",
        "metadata.example.com",
        "cgnat.example.com",
        "mapped.example.com",
        "linklocal6.example.com",
    ],
)
def test_names_resolving_to_any_private_address_refused(host: str) -> None:
    error = refused(f"https://{host}/hook")
    assert error.code == "private_address"
    assert host in error.message


def test_allow_private_lifts_address_check_only() -> None:
    for url in ("http://127.0.0.1:9000/hook", "http://[::1]/", "https://internal.example.com/"):
        check_callback_url(url, allow_private=True, resolver=DNS)
    assert refused("ftp://127.0.0.1/", allow_private=True).code == "unsupported_scheme"
    assert refused("http://nowhere.invalid/", allow_private=True).code == "unresolvable_host"


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/", "file:///etc/passwd", "gopher://hooks.example.com/", "hooks.example.com/x"],
)
def test_unsupported_schemes(url: str) -> None:
    assert refused(url).code == "unsupported_scheme"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://",
        "http:///path",
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://hooks.example.com@127.0.0.1/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:port/",
        "https://hooks.example.com/a b",
        "https://hooks.example.com/\r\nX-Injected: 1",
        "https://hooks.example.com/" + "a" * 3000,
    ],
)
def test_invalid_urls(url: str) -> None:
    assert refused(url).code == "invalid_url"


@pytest.mark.parametrize("host", ["nowhere.invalid", "empty.example.com"])
def test_unresolvable_hosts(host: str) -> None:
    assert refused(f"https://{host}/hook").code == "unresolvable_host"


def test_error_carries_code_and_message() -> None:
    error = refused("http://169.254.169.254/")
    assert isinstance(error, ValueError)
    assert "link-local" in error.message and str(error) == error.message
