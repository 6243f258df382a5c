//! `token`'s command line parsed by hand, for the hot path: clap's command tree costs about a fifth of a cached
//! `token` (BENCHMARKS.md).

use super::*;

/// The hot path without clap: `token` with the flags scripts and the Python plugin pass (`--format`, `--server`,
/// `--min-valid`, `--no-login`, `--store`, `-v`) is parsed by hand, because building clap's command tree costs
/// about a fifth of a cached `token` (BENCHMARKS.md). Anything else — another command, help, a repeated, unknown
/// or odd flag — returns `None` and goes to clap, which alone reports errors. A test holds the two to the same
/// result.
pub fn parse_fast(args: &[std::ffi::OsString]) -> Option<Cli> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    if words.next()? != Some("token") {
        return None;
    }
    let mut global = GlobalArgs { server: None, config: None, store: None, verbose: false };
    let mut t = TokenArgs { format: Format::Raw, min_valid: None, no_login: false, timeout: 300 };
    let mut seen = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for w in words {
        rest.push(w?);
    }
    let mut i = 0;
    while i < rest.len() {
        let (flag, inline) = match rest[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (rest[i], None),
        };
        if seen.contains(&flag) {
            return None;
        }
        seen.push(flag);
        let mut value = || -> Option<&str> {
            if let Some(v) = inline {
                return Some(v);
            }
            i += 1;
            rest.get(i).copied().filter(|v| !v.starts_with('-') && !v.is_empty())
        };
        match flag {
            "--format" => {
                t.format = match value()? {
                    "raw" => Format::Raw,
                    "header" => Format::Header,
                    "json" => Format::Json,
                    "env" => Format::Env,
                    _ => return None,
                }
            }
            "--server" => global.server = Some(value()?.to_string()),
            "--store" => {
                let v = value()?;
                ["auto", "keyring", "file", "memory"].contains(&v).then_some(())?;
                global.store = Some(v.to_string());
            }
            "--min-valid" => t.min_valid = Some(parse_duration(value()?).ok()?),
            "--no-login" if inline.is_none() => t.no_login = true,
            "-v" | "--verbose" if inline.is_none() => global.verbose = true,
            _ => return None,
        }
        i += 1;
    }
    Some(Cli { global, command: Some(Command::Token(t)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_parses_exactly_as_clap_does_or_declines() {
        let cases: &[&[&str]] = &[
            &["token"],
            &["token", "--format", "json", "--server", "https://m.example.com"],
            &["token", "--format=header", "--min-valid", "2m", "--no-login"],
            &["token", "--server=https://m/x", "--store", "file", "-v", "--min-valid=90"],
            &["token", "--format", "env", "--verbose"],
        ];
        for argv in cases {
            let args: Vec<std::ffi::OsString> =
                std::iter::once("mlflow-oidc").chain(argv.iter().copied()).map(Into::into).collect();
            let fast = parse_fast(&args).unwrap_or_else(|| panic!("{argv:?} should take the fast path"));
            let clap = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{argv:?}");
        }
        let declined: &[&[&str]] = &[
            &["status"],
            &["token", "--help"],
            &["token", "--format", "yaml"],
            &["token", "--format", "json", "--format", "raw"],
            &["token", "--server"],
            &["token", "--server", "--no-login"],
            &["token", "--timeout", "10"],
            &["token", "--no-login=yes"],
            &["token", "extra"],
            &["-v", "token"],
        ];
        for argv in declined {
            let args: Vec<std::ffi::OsString> =
                std::iter::once("mlflow-oidc").chain(argv.iter().copied()).map(Into::into).collect();
            assert!(parse_fast(&args).is_none(), "{argv:?} must go to clap");
        }
    }
}
