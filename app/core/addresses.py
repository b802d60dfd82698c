"""Network addresses as people write them in settings and specs (pure, stdlib only: the
operator imports it without loading the service's settings)."""

from __future__ import annotations


def parse_host_port(item: str, default_port: int | None = None) -> tuple[str, int]:
    """(host, port) of "host:port" or "[v6]:port", and of "host" or "[v6]" when there is a default
    port; ValueError naming the item otherwise."""
    text = item.strip()
    host, sep, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not sep and default_port is not None:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{item!r} is not host:port")
    return host, int(port)
