"""mlflow-oidc: OpenID Connect tokens for MLflow tracking servers behind an OAuth proxy.

The package ships the `mlflow-oidc` executable (installed into your environment's scripts
folder) and two MLflow plugins that ask it for tokens, so long runs stay authenticated:

- `MLFLOW_TRACKING_AUTH=oidc`: the request auth provider (recommended for long runs);
- without any setting: a request header provider, active only when mlflow-oidc has a server
  configured for the current tracking URI (a `[[tool.mlflow-oidc-client.tracking-servers]]`
  block or MLFLOW_TRACKING_OIDC_* variables).

Outside MLflow, :func:`get_token` and :class:`OidcAuth` give the same tokens to your own code::

    requests.get(f"{uri}/api/2.0/mlflow/experiments/search", auth=mlflow_oidc.OidcAuth(uri))
"""

from __future__ import annotations

from mlflow_oidc._token import CACHE, MlflowOidcError, find_binary

__all__ = ["MlflowOidcError", "OidcAuth", "find_binary", "get_token"]


def get_token(server: str | None = None) -> str:
    """A bearer token for `server` (default: MLflow's current tracking URI), cached in process."""
    if server is None:
        from mlflow.tracking import get_tracking_uri

        server = get_tracking_uri()
    return CACHE.token(server)


def __getattr__(name: str):
    # OidcAuth needs `requests` (an MLflow dependency); import it only when asked for.
    if name == "OidcAuth":
        from mlflow_oidc.plugin import OidcAuth

        return OidcAuth
    raise AttributeError(name)
