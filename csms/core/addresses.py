"""What a per-address limit counts by. Pure.

An IPv4 address is one client; an IPv6 client is handed a whole /64 (SLAAC, privacy addresses), so keying
by the full IPv6 address would let one client take 2^64 keys and walk around every per-address limit.
"""

from __future__ import annotations

import ipaddress

__all__ = ["address_key"]


def address_key(host: str) -> str:
    """The key one client's attempts are counted under: an IPv4 address as is, an IPv4-mapped IPv6 address as
    its IPv4 address, any other IPv6 address as its /64 ("2001:db8:1:2::/64"); what is not an IP address
    (a Unix socket, "?") as given."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
