"""What the guard in front of a tracking server meant by its answer to a request carrying our token.

The Python twin of src/guard.rs (issue 22), kept to the same rule and the same words: MLflow's REST API answers
JSON and never redirects, so a 3xx on an API call, or an HTML page where JSON was due, is the proxy (oauth2-proxy
without --api-route: oauth2-proxy#2944) sending us to its login page because it did not accept the token. Without
this, MLflow follows the redirect and reports the provider's login form as a JSON decode error (mlflow/mlflow#17348).
"""

from __future__ import annotations

from typing import Optional

from mlflow_oidc._text import printable

WHY = "it did not accept the token (audience? email_verified?)"
FIX = ("give the token the audience the proxy checks (an audience mapper at the provider, or --oidc-extra-audience "
       "on oauth2-proxy), let it accept service accounts' unverified emails, and set --api-route=^/api/ so API "
       "calls get a 401 instead of a login page; see docs/guards/oauth2-proxy.md")


def diagnose(status: int, location: Optional[str], content_type: Optional[str]) -> Optional[str]:
    """The message for a login redirect or login page, else None (401/403 are explained elsewhere)."""
    html = (content_type or "").strip().lower().startswith(("text/html", "application/xhtml"))
    if 300 <= status <= 399 and status != 304:
        if location:
            # The query carries state, a nonce and our redirect: the page's path is enough to name it.
            page = printable(location.split("?", 1)[0].split("#", 1)[0][:200], 300)
            return f"the tracking server's proxy redirected to its login page (HTTP {status} to {page}): {WHY}"
        return f"the tracking server's proxy redirected to its login page (HTTP {status}): {WHY}"
    if 200 <= status <= 299 and html:
        return (f"the tracking server answered HTTP {status} with an HTML page, not MLflow's JSON: a login page "
                f"from its proxy, which means {WHY}")
    return None
