"""Which Host headers the viewer answers, and whether a bound address serves this machine only."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "[::]", "")


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def allowed_hosts(host: str, extra: list[str] | None = None) -> list[str]:
    """The Host headers the viewer answers: loopback names, this machine's names, the bound address, --allow-host.

    Always a list (never "any"): a web page that rebinds its own domain name to this machine's
    address must not read the runs through a visitor's browser, on any interface.
    """
    names = [*LOOPBACK, host]
    with contextlib.suppress(OSError):
        names += [socket.gethostname(), socket.getfqdn()]
        names += socket.gethostbyname_ex(socket.gethostname())[2]  # the addresses a colleague would type
    names += extra or []
    out: list[str] = []
    for n in names:
        n = n.strip().lower()
        if ":" in n and not n.startswith("["):
            n = f"[{n}]"  # an IPv6 literal arrives bracketed in the Host header
        if n and n.strip("[]") not in ANY_ADDRESS and n not in out:
            out.append(n)
    return out
