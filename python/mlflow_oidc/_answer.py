"""What `mlflow-oidc token --format json` prints on success, read strictly: a token that is a bearer
credential and an expiry, or a ValueError whose message never contains the token."""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import NamedTuple


class Answer(NamedTuple):
    token: str
    expires_at: float
    kind: str


# RFC 3339 §5.6 as the binary prints it ("2026-11-26T14:12:45Z"), parsed by hand: fromisoformat
# takes "Z" only from 3.11, and takes other ISO 8601 shapes (and local times) RFC 3339 does not.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_time(text: str) -> float:
    """Unix time of an RFC 3339 date-time with its offset; ValueError if it is not one."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError("not an RFC 3339 date-time")
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    offset = datetime.timedelta(0)
    if m.group(8):
        offset = datetime.timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
        offset = -offset if m.group(8) == "-" else offset
    tz = datetime.timezone(offset)  # ValueError past ±24 h
    when = datetime.datetime(y, mo, d, h, mi, sec, tzinfo=tz)  # ValueError on month 13, year 0...
    return when.timestamp() + float(m.group(7) or 0)


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


def is_bearer_token(value: object) -> bool:
    # RFC 6750 §2.1: a bearer credential is a b64token, all visible ASCII (VCHAR, %x21-7E). Anything
    # else (CR/LF above all: header injection, a space, a control or non-ASCII character) is refused.
    return isinstance(value, str) and value != "" and all("!" <= c <= "~" for c in value)


def read_answer(out: str, started: float) -> Answer:
    """The token, its expiry (Unix time) and kind from
    `{"token": "…", "token_type": "Bearer", "kind": …, "expires_at": "<RFC 3339>", "expires_in": <s>,
    "server": …}`. Unknown fields are ignored; `started` is when the binary was asked (for `expires_in`)."""
    try:
        obj = json.loads(out)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    token = obj.get("token")
    if not isinstance(token, str):
        raise ValueError("`token` is missing" if token is None else "`token` is not a string")
    if not is_bearer_token(token):
        raise ValueError("`token` is empty" if token == "" else "`token` has characters a bearer token cannot have")
    kind = obj.get("kind")
    kind = kind if kind in ("access_token", "id_token") else "token"
    at, left = obj.get("expires_at"), obj.get("expires_in")
    if left is not None and not _is_seconds(left):
        raise ValueError("`expires_in` is not a number of seconds")
    if at is not None:
        if not isinstance(at, str):
            raise ValueError("`expires_at` is not a string")
        try:
            return Answer(token, parse_time(at), kind)
        except (ValueError, OverflowError, OSError):
            raise ValueError("`expires_at` is not an RFC 3339 date-time") from None
    if left is None:
        raise ValueError("neither `expires_at` nor `expires_in`")
    return Answer(token, started + float(left), kind)
