//! `logout`: revoke the refresh token (best effort, RFC 7009), point at the provider's end-session page, and
//! forget the credentials locally whatever the provider says.

use super::session::{Session, http_for, store_only};
use super::{Deps, LOCK_TIMEOUT};
use crate::cli::LogoutArgs;
use crate::config::{Flags, ServerConfig};
use crate::discovery;
use crate::error::Result;
use crate::flow::ClientAuth;
use crate::store::{Entry, LockGuard, Store, TokenStore};
use crate::tokenset::Secret;

pub(super) fn logout(flags: &Flags, args: &LogoutArgs, deps: &mut Deps) -> Result<()> {
    if args.all {
        let store = store_only(flags, deps)?;
        let mut n = 0;
        for key in store.keys() {
            if logout_one(None, &store, &key, args, deps)? {
                n += 1;
            }
        }
        deps.note(if n == 0 {
            "Not logged in to any server.".to_string()
        } else {
            format!("Logged out of {n} server(s).")
        });
        return Ok(());
    }
    let session = Session::open(flags, deps)?;
    let c = &session.server;
    if logout_one(Some(c), &session.store, &session.key, args, deps)? {
        deps.note(format!("Logged out of {}.", c.display_name()));
    } else {
        deps.note(format!("Not logged in to {}: nothing to do.", c.display_name()));
    }
    Ok(())
}

/// Revoke (best effort) and forget one entry; local state is cleared whatever the provider says.
fn logout_one(c: Option<&ServerConfig>, store: &Store, key: &str, args: &LogoutArgs, deps: &mut Deps) -> Result<bool> {
    let lock: LockGuard = store.lock(key, LOCK_TIMEOUT)?;
    let entry = match store.load(key) {
        Ok(e) => e,
        Err(e) => {
            deps.warn(e.to_string());
            None
        }
    };
    if let Some(entry) = &entry {
        let rt = store.refresh_token(key, entry).unwrap_or_else(|e| {
            deps.warn(e.to_string());
            None
        });
        let issuer = c.map(|c| c.issuer.clone()).unwrap_or_else(|| entry.issuer.clone());
        let name = entry.server.clone().unwrap_or_else(|| issuer.clone());
        match revoke_and_find_end_session(c, entry, rt.as_ref(), deps) {
            Ok((revoked, end_session)) => {
                if revoked {
                    deps.note(format!("Revoked the refresh token for {name} at the provider."));
                }
                if let Some(url) = end_session {
                    if args.end_session {
                        // OIDC RP-Initiated Logout 1.0 §2 RECOMMENDS id_token_hint, and some providers end at an
                        // empty page without it (issue 16). The browser gets it; the printed URL does not.
                        let opened = match &entry.tokens.id_token {
                            Some(id) => url::Url::parse(&url)
                                .map(|mut u| {
                                    u.query_pairs_mut().append_pair("id_token_hint", id.expose());
                                    u.to_string()
                                })
                                .unwrap_or_else(|_| url.clone()),
                            None => url.clone(),
                        };
                        if let Err(why) = deps.browser.open(&opened) {
                            deps.note(format!("(could not open a browser: {why})"));
                        }
                        deps.note(format!("To end the browser session at the provider, visit:\n  {url}"));
                    } else {
                        deps.note(format!(
                            "The provider's browser session may still be active; to end it, visit (or rerun with --end-session):\n  {url}"
                        ));
                    }
                }
            }
            Err(e) => deps.warn(format!("{e}; the credentials are deleted locally anyway")),
        }
    }
    store.delete(key, &lock)
}

/// RFC 7009 revocation of `rt` (when there is one) and the RP-initiated logout URL, from the provider's metadata.
fn revoke_and_find_end_session(
    c: Option<&ServerConfig>,
    entry: &Entry,
    rt: Option<&Secret<String>>,
    deps: &mut Deps,
) -> Result<(bool, Option<String>)> {
    // `logout --all` has no configuration for most entries: only the issuer and client id they were stored with.
    let http = http_for(c, &deps.env)?;
    let issuer = c.map(|c| c.issuer.as_str()).unwrap_or(&entry.issuer);
    let cache = deps.paths.cache_dir.clone();
    let meta = discovery::discover(&http, cache.as_deref(), issuer, deps.now(), false)?.metadata;
    let end_session = meta.end_session_endpoint.as_ref().map(|e| {
        let mut u = url::Url::parse(e).ok();
        if let Some(u) = &mut u {
            u.query_pairs_mut().append_pair("client_id", &entry.client_id);
        }
        u.map(|u| u.to_string()).unwrap_or_else(|| e.clone())
    });
    let Some(rt) = rt else { return Ok((false, end_session)) };
    let endpoint = match (meta.revocation_endpoint.clone(), c.and_then(|c| c.revocation_endpoint.clone())) {
        (Some(e), _) => Some(e),
        (None, Some(configured)) => Some(configured),
        (None, None) => discovery::authorization_server_metadata(&http, issuer).and_then(|m| m.revocation_endpoint),
    };
    let Some(endpoint) = endpoint else {
        deps.warn(format!(
            "the provider {issuer} advertises no revocation endpoint (set `revocation-endpoint` in the server \
             block if it has one); the refresh token stays valid at the provider until it expires"
        ));
        return Ok((false, end_session));
    };
    let client = match c {
        Some(c) => crate::flow::client_auth(c, &meta, &http, deps.now())?,
        None => ClientAuth::public(&entry.client_id),
    };
    crate::flow::revoke(&http, &endpoint, &client, rt)?;
    Ok((true, end_session))
}
