"""The two MLflow plugins: a request auth provider and a request header provider.

- `MLFLOW_TRACKING_AUTH=oidc` selects :class:`OidcRequestAuthProvider` (entry point group
  `mlflow.request_auth_provider`). Its `requests` auth object is applied last, so it wins over
  `MLFLOW_TRACKING_TOKEN` and friends, and a failure stops the request with a clear message.
- :class:`OidcRequestHeaderProvider` (group `mlflow.request_header_provider`) needs no setting:
  it adds `Authorization` whenever mlflow-oidc has a server configured for the current tracking
  URI, so plain `mlflow …` commands work with only a pyproject block and MLFLOW_TRACKING_URI, as
  they did with mlflow-oidc-client. MLflow users without such a configuration are untouched.

Both get their tokens from :data:`mlflow_oidc._token.SOURCE`, one in-process cache per server.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from requests.auth import AuthBase

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider

from mlflow_oidc._token import SOURCE

NAME = "oidc"


def _tracking_uri() -> str:
    # Imported late: MLflow loads this module while it imports its own registries.
    from mlflow.tracking import get_tracking_uri

    return get_tracking_uri()


def _registry_uri() -> str:
    try:
        from mlflow.tracking import get_registry_uri

        return get_registry_uri()
    except Exception:  # noqa: BLE001 - an odd registry setting must not break tracking calls
        return ""


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _norm(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def _server_for(url: str) -> str:
    """The tracking server a request goes to: the tracking URI, or the model registry URI when
    the request is for a different registry server."""
    tracking = _tracking_uri()
    # The common case first: a request to the tracking server. Looking up the registry URI costs ~45 µs
    # (MLflow tries `import pyspark` each time), most of this function's cost per request.
    if _norm(url).startswith(_norm(tracking)):
        return tracking
    registry = _registry_uri()
    if registry and _is_http(registry) and _norm(registry) != _norm(tracking):
        target = _norm(url)
        if target.startswith(_norm(registry)) and not target.startswith(_norm(tracking)):
            return registry
    return tracking


class OidcAuth(AuthBase):
    """`Authorization: Bearer <token>` from mlflow-oidc for the server a request goes to."""

    def __init__(self, server: str | None = None) -> None:
        self.server = server

    def __call__(self, r):
        server = self.server or _server_for(r.url or "")
        r.headers["Authorization"] = f"Bearer {SOURCE.token(server)}"
        return r


class OidcRequestAuthProvider(RequestAuthProvider):
    """Selected with MLFLOW_TRACKING_AUTH=oidc."""

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> AuthBase:
        return OidcAuth()


class OidcRequestHeaderProvider(RequestHeaderProvider):
    """Active when mlflow-oidc is configured for the current tracking URI (asked once per URI)."""

    def in_context(self) -> bool:
        env = os.environ
        if env.get("MLFLOW_TRACKING_AUTH") == NAME:
            return False  # the auth provider does it (and would override us anyway)
        if env.get("MLFLOW_TRACKING_TOKEN") or (env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")):
            return False  # MLflow puts these in Authorization after us: don't fetch a token for nothing
        uri = _tracking_uri()
        return _is_http(uri) and SOURCE.configured(uri)

    def request_headers(self) -> dict:
        return {"Authorization": f"Bearer {SOURCE.token(_tracking_uri())}"}
