"""SSRF guard for user-supplied callback URLs.

A callback URL must be plain ``http``/``https`` with a host and no userinfo, and every address its
host resolves to (IPv4 and IPv6) must be publicly routable: loopback, RFC 1918, CGNAT, link-local
(cloud metadata at 169.254.169.254), unique-local, unspecified, multicast and reserved ranges are
refused, also when wrapped in an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address. ``allow_private``
lifts the address check (local development, tests). Callers should connect to the addresses returned
by `resolve_callback_url` (pinning) so that a second DNS answer cannot differ from the checked one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """A callback URL that must not be called; `code` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse(url: str) -> SplitResult:
    """Split and syntax-check the URL (scheme, host, port, no userinfo, no control characters)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError("invalid_url", "callback URL is empty or too long")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError("invalid_url", "callback URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURLError("unsupported_scheme", f"scheme {parts.scheme!r} is not http or https")
    if "@" in parts.netloc:
        raise UnsafeURLError("invalid_url", "callback URL must not contain credentials")
    if not parts.hostname:
        raise UnsafeURLError("invalid_url", "callback URL has no host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UnsafeURLError("invalid_url", "callback URL has an invalid port") from None
    return parts


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """All addresses `host` resolves to, without duplicates, in resolver order; a literal IP is itself."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURLError("unresolvable_host", f"cannot resolve {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeURLError("unresolvable_host", f"{host!r} resolves to no IP address")
    return addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public destination (e.g. "loopback"), or None if it is one."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_ipv4(address)) is not None:
        reason = blocked_reason(inner)  # a translation of `inner`: the IPv4 address decides
        return None if reason is None else f"{reason} (IPv4 {inner} inside {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared/CGNAT", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def resolve_callback_url(
    url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo
) -> list[IPAddress]:
    """Check `url` and return the addresses its host resolves to (all of them were checked)."""
    parts = _parse(url)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    addresses = _resolve(host, port, resolver)
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                raise UnsafeURLError("private_address", f"{host!r} resolves to {address}, a {reason} address")
    return addresses


def check_callback_url(url: str, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo) -> None:
    """Raise UnsafeURLError unless `url` is a safe http(s) callback URL."""
    resolve_callback_url(url, allow_private=allow_private, resolver=resolver)
