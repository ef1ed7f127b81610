"""Where a webhook may point and what its secret must be.

A webhook URL must be http(s) and must not lead back into this node: every address its host
resolves to is checked, loopback and private networks are refused unless the operator allows them
(CSDR_PUSH_ALLOW_PRIVATE_TARGETS), and the node's own service ports on this machine are refused
always. The check is made when a subscription is made and again for every send (`Pinned`): a
delivery goes to an address just checked, by IP with the URL's host in `Host` and TLS SNI, so a
host name that later resolves elsewhere (DNS rebinding) cannot turn a delivery inward.
The secret follows the Standard Webhooks format: `whsec_` + base64 of 24 to 64 bytes
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
"""

import asyncio
import base64
import binascii
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from csdr_push.errors import InvalidWebhook
from csdr_push.settings import Settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_secret(secret: str) -> None:
    """Raise InvalidWebhook unless `secret` is `whsec_` + base64 of 24..64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhook("webhook.secret must start with 'whsec_' (Standard Webhooks)")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhook("webhook.secret after 'whsec_' must be base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise InvalidWebhook(
            f"webhook.secret must encode {low} to {high} random bytes, not {len(key)}"
        )


def _is_private(ip: IPAddress) -> bool:
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def _resolve(host: str, port: int) -> set[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidWebhook(f"webhook.url host {host!r} does not resolve: {exc}") from None
    return {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}


async def _own_addresses() -> set[IPAddress]:
    """The addresses of this machine's host name (besides loopback and 0.0.0.0)."""
    try:
        return await _resolve(socket.gethostname(), 0)
    except InvalidWebhook:
        return set()


async def check_url(url: str, settings: Settings) -> list[IPAddress]:
    """The addresses `url` leads to; InvalidWebhook unless it is http(s) and all of them are
    outside this node."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhook(f"webhook.url must be an http or https URL, not {parts.scheme!r}")
    if not parts.hostname:
        raise InvalidWebhook("webhook.url has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidWebhook("webhook.url has an invalid port") from None
    addresses = await _resolve(parts.hostname, port)
    own = await _own_addresses()
    for ip in addresses:
        this_machine = ip.is_loopback or ip.is_unspecified or ip in own
        if this_machine and port in settings.node_ports:
            raise InvalidWebhook(
                f"webhook.url points at this node itself ({ip} port {port}): "
                "deliveries must go to the subscriber's own endpoint"
            )
        if _is_private(ip) and not settings.allow_private_targets:
            raise InvalidWebhook(
                f"webhook.url host {parts.hostname!r} resolves to {ip}, a loopback or private "
                "address; this node only delivers to public addresses"
            )
    return sorted(addresses, key=str)


@dataclass(frozen=True)
class Target:
    """Where one send goes: the URL with a checked address for its host, and the host name for
    the `Host` header and TLS (SNI and certificate)."""

    url: str
    host: str
    sni: str | None


class Pinned:
    """Webhook URLs checked again before sends and pinned to the address checked; a check is
    reused for `ttl_s` seconds (the address stays the checked one, whatever DNS says since)."""

    def __init__(self, settings: Settings, ttl_s: float = 30.0) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self._checked: dict[str, tuple[float, Target]] = {}

    async def target(self, url: str) -> Target:
        """The target of a send to `url`; InvalidWebhook when it leads into this node now."""
        hit = self._checked.get(url)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        address = (await check_url(url, self.settings))[0]
        parts = urlsplit(url)
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{host}:{parts.port}" if parts.port else host
        if "@" in parts.netloc:  # credentials in the URL stay with it
            netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
        target = Target(
            url=parts._replace(netloc=netloc).geturl(),
            host=parts.netloc.rsplit("@", 1)[-1],
            sni=parts.hostname if parts.scheme == "https" else None,
        )
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[url] = (time.monotonic() + self.ttl_s, target)
        return target
