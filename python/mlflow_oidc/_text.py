"""The one rule for text another party shaped (a provider, a tracking server's guard, the binary's captured
output) before it reaches a log line: non-printable characters dropped (controls, and the Unicode format
characters Python does not count as printable: bidi overrides, zero-width spaces), kept to `limit` characters."""

from __future__ import annotations


def printable(value, limit: int = 200) -> str:
    """`value` (a claim, a list of them, a message, or None: "-") made safe and short for a log line."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = "".join(c for c in str(value if value is not None else "-") if c.isprintable())
    return text[:limit]
