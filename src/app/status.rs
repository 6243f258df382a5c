//! `status` and `status --check`: the configuration with the source of each value, who is logged in and until
//! when, where the credentials are, and (with `--check`) whether the provider can serve this configuration.

use super::{Deps, flush_store_warnings, http_for, setup, token_kind, write_out};
use crate::cli::StatusArgs;
use crate::config::Flags;
use crate::error::{Error, Result};
use crate::output;
use crate::store::{self, TokenStore};

pub(super) fn status(flags: &Flags, args: &StatusArgs, deps: &mut Deps) -> Result<()> {
    let (resolved, store) = setup(flags, deps)?;
    let c = &resolved.server;
    let now = deps.now();
    let entry = match store.load(&store::server_key(c)) {
        Ok(e) => e,
        Err(e) => {
            deps.note(format!("warning: {e}"));
            None
        }
    };
    let rt_held = entry
        .as_ref()
        .is_some_and(|e| e.tokens.refresh_token.is_some() || e.refresh_token_in.as_deref() == Some("keyring"));
    let (backend, why) = store.backend();
    flush_store_warnings(&store, deps);
    let store_info = output::StoreInfo { backend: backend.as_str(), location: store.describe(), reason: why };
    let login = output::LoginState::new(
        entry.as_ref().map(|e| &e.tokens),
        rt_held,
        token_kind(c),
        now,
        c.is_machine(),
        store_info,
    );
    let checks = if args.check {
        let http = http_for(Some(c), &deps.env)?;
        let mut checks = crate::check::run(c, &http, now);
        if let Some(uri) = c.uri.as_deref() {
            // Only a token good for a few more seconds is sent: --check neither logs in nor refreshes.
            let token = entry
                .as_ref()
                .filter(|e| e.tokens.freshness(token_kind(c), now, crate::token::MinValid::Exactly(5)).is_ok())
                .and_then(|e| e.tokens.token(token_kind(c)));
            checks.push(crate::check::tracking_check(uri, &http, token.map(|t| t.expose().as_str())));
        }
        Some(checks)
    } else {
        None
    };
    if args.json {
        let mut v = serde_json::json!({
            "config": output::config_json(c),
            "login": login.json(),
            "store": login.store_json(),
            "skipped": output::skipped_json(&resolved.skipped),
        });
        if let Some(checks) = &checks {
            v["checks"] = output::checks_json(checks);
        }
        write_out(deps, format!("{v}\n").as_bytes())?;
    } else {
        let mut text = output::config_text(c) + &output::skipped_text(&resolved.skipped) + &login.text(c);
        if let Some(checks) = &checks {
            text.push_str(&output::checks_text(checks, deps.color_out));
        }
        write_out(deps, text.as_bytes())?;
    }
    match checks {
        Some(checks) if checks.iter().any(|c| !c.ok) => {
            let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
            Err(Error::provider(format!("status --check: {} failed: {}", failed.len(), failed.join(", "))))
        }
        _ => Ok(()),
    }
}
