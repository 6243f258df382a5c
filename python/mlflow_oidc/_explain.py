"""Why a tracking server may have refused a token: its claims, peeked (never verified), in words a
person can act on. The token itself is never logged."""

from __future__ import annotations

import base64
import json

from mlflow_oidc._text import printable


def peek_claims(token: str) -> dict:
    """A JWT's payload, unverified ({} when the token is not a JWT)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def rejection(server: str, token: str, kind: str, now: float) -> str:
    """The warning for a 401 from `server` to `token` (MLflow itself reports an opaque INTERNAL_ERROR, issue 16)."""
    claims = peek_claims(token)
    exp = claims.get("exp")
    when = ""
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        when = f", expires in {int(exp - now)}s" if exp > now else ", already expired"
    return (
        f"the tracking server {server} refused the mlflow-oidc {kind.replace('_', ' ')} (HTTP 401): it was issued "
        f"by {printable(claims.get('iss'))} for audience {printable(claims.get('aud'))}{when}. Likely causes: the "
        "server expects another audience (set `use-id-token`, `audience` or `resource` to give the token the `aud` "
        "it checks; mlflow-oidc-auth: OIDC_AUDIENCE), trusts another issuer (OIDC_ISSUER), or the clocks differ; "
        f"the server's log names the claim it refused; `mlflow-oidc status --server {server}` shows what is sent"
    )
