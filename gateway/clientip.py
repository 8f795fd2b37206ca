"""Who the client is on the network: the peer, or what trusted proxies say it was."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from aiohttp import web


def client_ip_resolver(trusted_proxies: Sequence[str]) -> Callable[[web.BaseRequest], str]:
    """The client address: the TCP peer, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    def resolve(request: web.BaseRequest) -> str:
        peer = request.remote or "unknown"
        if not networks or not trusted(peer):
            return peer
        hops = [
            h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")
        ]
        for hop in reversed(hops):
            if not trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer

    return resolve
