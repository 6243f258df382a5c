//! `status` and `status --check`: the configuration with the source of each value, who is logged in and until
//! when, where the credentials are, and (with `--check`) whether the provider can serve this configuration.

use super::session::{Session, http_for};
use super::{Deps, write_out};
use crate::cli::StatusArgs;
use crate::config::Flags;
use crate::error::{Error, Result};
use crate::output;
use crate::store::{self, TokenStore};

pub(super) fn status(flags: &Flags, args: &StatusArgs, deps: &mut Deps) -> Result<()> {
    let session = Session::open(flags, deps)?;
    let (c, store) = (&session.server, &session.store);
    let now = deps.now();
    let entry = match store.load(&session.key) {
        Ok(e) => e,
        Err(e) => {
            deps.warn(e.to_string());
            None
        }
    };
    let rt_held = entry
        .as_ref()
        .is_some_and(|e| e.tokens.refresh_token.is_some() || e.refresh_token_in == Some(store::Elsewhere::Keyring));
    let (backend, why) = store.backend();
    let store_info = output::StoreInfo { backend: backend.as_str(), location: store.describe(), reason: why };
    let login = output::LoginState::new(
        entry.as_ref().map(|e| &e.tokens),
        rt_held,
        session.kind(),
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
                .filter(|e| e.tokens.freshness(session.kind(), now, crate::tokenset::MinValid::Exactly(5)).is_ok())
                .and_then(|e| e.tokens.token(session.kind()));
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
            "skipped": output::skipped_json(&session.skipped),
            "untrusted": output::untrusted_json(session.untrusted.as_ref()),
        });
        if let Some(checks) = &checks {
            v["checks"] = output::checks_json(checks);
        }
        write_out(deps, format!("{v}\n").as_bytes())?;
    } else {
        let mut text = output::config_text(c)
            + &output::skipped_text(&session.skipped)
            + &output::untrusted_text(session.untrusted.as_ref())
            + &login.text(c);
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
