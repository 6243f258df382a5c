//! Opening the system browser. Failing to open it is never fatal: the URL is always printed too.

use crate::env::Env;

pub trait Browser {
    /// Try to open `url`; `Err` says why it could not (for a message), never aborts the login.
    fn open(&self, url: &str) -> Result<(), String>;
    /// Whether opening a browser here can work at all (a display or `$BROWSER`).
    fn plausible(&self) -> bool {
        true
    }
}

/// The platform opener (`webbrowser`, which honours `$BROWSER`).
pub struct SystemBrowser {
    /// Whether a browser is plausible at all: on Linux without a display and without `$BROWSER` it is not.
    plausible: bool,
}

impl SystemBrowser {
    pub fn new(env: &Env) -> Self {
        let has_browser_var = env.get_lossy("BROWSER").is_some();
        let has_display = env.get_lossy("DISPLAY").is_some() || env.get_lossy("WAYLAND_DISPLAY").is_some();
        let plausible = !cfg!(target_os = "linux") || has_browser_var || has_display;
        SystemBrowser { plausible }
    }
}

impl Browser for SystemBrowser {
    fn plausible(&self) -> bool {
        self.plausible
    }

    fn open(&self, url: &str) -> Result<(), String> {
        if !self.plausible {
            return Err("no display and no $BROWSER".into());
        }
        webbrowser::open(url).map_err(|e| e.to_string())
    }
}
