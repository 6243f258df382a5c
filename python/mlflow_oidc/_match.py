"""Which requests a server's token may go to: the server's own origin and path prefix (issue 12).

A token for `https://m.example.com/mlflow` is for the origin (RFC 6454: scheme, host, port) of that
URI and for paths at or below `/mlflow` on a `/` boundary. String prefixes are not enough:
`https://m.example.com` is a prefix of `https://m.example.com.evil.test/` and of
`https://m.example.com:8443/` (uv's `matches_domain` tests exactly that).

Hosts are compared as `urllib.parse` gives them, lower-cased, with no IDNA or percent decoding:
requests sends IDNA hosts as `xn--…`, so a tracking URI spelt in Unicode matches nothing here and
gets no token (closed, not open). Anything ambiguous (whitespace, control characters, a backslash,
a `%` in the host, a port that is not plain digits) matches nothing.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Optional
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

# Not in a host name we are willing to compare: urllib and urllib3 disagree on where the host of
# `https://evil.test\@m.example.com/` ends (urllib3 stops at the backslash, as browsers do), and a
# `%` would be decoded by someone else after we compared.
_NOT_IN_HOST = frozenset("%\\/@?#[]")

# Space, controls, DEL and the backslash (the fast path, per request); beyond ASCII, see _unsafe.
_ASCII_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def _unsafe(c: str) -> bool:
    return c.isspace() or not c.isprintable() or c == "\\"


class Scope(NamedTuple):
    """An origin and a path: for a server, the path prefix without its trailing `/`."""

    scheme: str
    host: str
    port: int
    path: str

    def origin(self) -> str:
        """`scheme://host:port`, for log lines (never the path or query, which may carry a signature)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def scope(url: str) -> Optional[Scope]:
    """The origin and path of an http(s) URL; None for any other URL or one we will not interpret."""
    if not isinstance(url, str) or not url:
        return None
    # Before urlsplit: it silently drops tab, CR and LF (bpo-43882), so it would compare a URL
    # other than the one given. A backslash is a `/` to browsers and urllib3, not to urllib.
    unsafe = _ASCII_UNSAFE.search(url) if url.isascii() else any(_unsafe(c) for c in url)
    if unsafe:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number or out of range
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    default = DEFAULT_PORTS.get(scheme)
    if default is None:
        return None
    # `hostname` is what follows the last `@` (the userinfo is not the host), lower-cased,
    # without the brackets of an IPv6 literal.
    host = parts.hostname
    if not host or any(c in _NOT_IN_HOST for c in host):
        return None
    if port is not None and not _plain_port(parts.netloc):
        return None  # "+443", "٤٤٣": int() takes them, a connection library may not
    return Scope(scheme, host, default if port is None else port, parts.path)


def _plain_port(netloc: str) -> bool:
    hostport = netloc.rpartition("@")[2]
    text = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    digits = text.rpartition(":")[2]
    return digits.isascii() and digits.isdigit()


@functools.lru_cache(maxsize=32)
def server_scope(uri: str) -> Optional[Scope]:
    """What a token for the server at `uri` may be sent to (cached: the same few URIs, every request)."""
    s = scope(uri)
    return None if s is None else s._replace(path=s.path.rstrip("/"))


def within(target: Optional[Scope], server: Optional[Scope]) -> bool:
    """Whether a request to `target` is for `server`: the same origin, and a path at or below the
    server's path on a `/` boundary (`/mlflow` holds `/mlflow` and `/mlflow/x`, not `/mlflowx`)."""
    if target is None or server is None or target[:3] != server[:3]:
        return False
    prefix, path = server.path, target.path
    if not prefix:
        return True
    if path != prefix and not path.startswith(prefix + "/"):
        return False
    # `/mlflow/../admin` (or `%2e%2e`, or `..%2f`) is below the prefix as a string but not once the
    # server has decoded and normalised it (RFC 3986 §5.2.4); MLflow never sends such paths.
    rest = unquote(path[len(prefix):]).replace("\\", "/")
    return not any(seg in (".", "..") for seg in rest.split("/"))


def matches(url: str, server: str) -> bool:
    """Whether a request to `url` may carry the token of the server at `server`."""
    return within(scope(url), server_scope(server))
