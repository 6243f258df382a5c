"""The two MLflow plugins: a request auth provider and a request header provider.

- `MLFLOW_TRACKING_AUTH=oidc` selects :class:`OidcRequestAuthProvider` (entry point group
  `mlflow.request_auth_provider`). Its `requests` auth object is applied last, so it wins over
  `MLFLOW_TRACKING_TOKEN` and friends, and a failure stops the request with a clear message.
- :class:`OidcRequestHeaderProvider` (group `mlflow.request_header_provider`) needs no setting:
  it adds `Authorization` whenever mlflow-oidc has a server configured for the current tracking
  URI, so plain `mlflow …` commands work with only a pyproject block and MLFLOW_TRACKING_URI, as
  they did with mlflow-oidc-client. MLflow users without such a configuration are untouched.

Both get their tokens from :data:`mlflow_oidc._token.CACHE`, one in-process cache per server.
The auth provider sees each request's URL and adds a token only within the tracking or registry
URI (origin and path prefix, :mod:`mlflow_oidc._match`); the header provider cannot see it (its
class doc says what it sends where).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from requests.auth import AuthBase

from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider
from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider

from mlflow_oidc import _guard, _match
from mlflow_oidc._token import CACHE, MlflowOidcError

_logger = logging.getLogger("mlflow_oidc")

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


def _server_for(url: str) -> Optional[str]:
    """The server whose token a request to `url` may carry: the tracking URI, else the model
    registry URI, when `url` is within it (same origin, path under its path: see _match); else None."""
    target = _match.scope(url)
    if target is None:
        return None
    tracking = _tracking_uri()
    # The common case first: a request to the tracking server. Looking up the registry URI costs ~45 µs
    # (MLflow tries `import pyspark` each time), most of this function's cost per request.
    if _match.within(target, _match.server_scope(tracking)):
        return tracking
    registry = _registry_uri()
    if registry and registry != tracking and _match.within(target, _match.server_scope(registry)):
        return registry
    return None


class OidcAuth(AuthBase):
    """`Authorization: Bearer <token>` from mlflow-oidc, on requests to the server it is for.

    `OidcAuth(uri)` decorates requests within `uri` only; `OidcAuth()` (the auth provider's)
    those within MLflow's tracking or registry URI. Any other request (an artifact store on another
    origin, a look-alike host) passes untouched and no token is fetched for it.
    """

    def __init__(self, server: str | None = None) -> None:
        if server and _match.server_scope(server) is None:
            # Would silently match nothing: every request would then get a 401 with no hint why.
            raise MlflowOidcError(f"OidcAuth({server!r}): not an http(s) URL that requests can be matched against")
        self.server = server

    def __call__(self, r):
        url = r.url or ""
        if self.server:
            server = self.server if _match.matches(url, self.server) else None
        else:
            server = _server_for(url)
        if server is None:
            if _logger.isEnabledFor(logging.DEBUG):
                target = _match.scope(url)
                _logger.debug("no mlflow-oidc token for a request to %s: not within %s",
                              target.origin() if target else "a URL that is not plain http(s)",
                              self.server or "the tracking or registry URI")
            return r
        token = CACHE.token(server)
        r.headers["Authorization"] = f"Bearer {token}"

        def explain(resp, *args, **kwargs):
            if resp.status_code == 401:
                CACHE.explain_rejection(server, token)
            # Raised before requests follows the redirect: the login page never reaches MLflow's JSON parser.
            login = _guard.diagnose(resp.status_code, resp.headers.get("Location"), resp.headers.get("Content-Type"))
            if login is not None:
                raise MlflowOidcError(f"{server}: {login}. {_guard.FIX}")
            return resp

        r.register_hook("response", explain)
        return r


class OidcRequestAuthProvider(RequestAuthProvider):
    """Selected with MLFLOW_TRACKING_AUTH=oidc."""

    def get_name(self) -> str:
        return NAME

    def get_auth(self) -> AuthBase:
        return OidcAuth()


class OidcRequestHeaderProvider(RequestHeaderProvider):
    """Active when mlflow-oidc is configured for the current tracking URI (asked once per URI).

    What it sends where (issue 12): MLflow asks header providers for headers without saying which
    URL they are for (`mlflow.utils.rest_utils.http_request` calls `resolve_request_headers()` with
    no argument, for every server it talks to), so this provider cannot check the destination the
    way :class:`OidcAuth` does. While it is active, every request MLflow makes through
    `http_request` carries `Authorization: Bearer <token for the tracking URI>`: the tracking
    server, the model registry even when MLFLOW_REGISTRY_URI names another server, an artifact
    location with an `http(s)://` URI on any host (HttpArtifactRepository), and the deployments
    client. Not covered: requests MLflow makes with plain `requests` (presigned cloud-storage URLs,
    `HTTPDatasetSource`, telemetry) and the cloud SDKs. The destination check comes with
    MLFLOW_TRACKING_AUTH=oidc, which turns this provider off.
    """

    def in_context(self) -> bool:
        env = os.environ
        if env.get("MLFLOW_TRACKING_AUTH") == NAME:
            return False  # the auth provider does it (and would override us anyway)
        if env.get("MLFLOW_TRACKING_TOKEN") or (env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")):
            return False  # MLflow puts these in Authorization after us: don't fetch a token for nothing
        uri = _tracking_uri()
        return _match.server_scope(uri) is not None and CACHE.configured(uri)

    def request_headers(self) -> dict:
        # No URL here (see the class doc): the token of the tracking URI, whatever the destination.
        return {"Authorization": f"Bearer {CACHE.token(_tracking_uri())}"}
