
use builtin;
use str;

set edit:completion:arg-completer[mlflow-oidc] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'mlflow-oidc'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'mlflow-oidc'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand login 'Log in to the tracking server''s identity provider and store the credentials'
            cand token 'Print a valid bearer token (from cache, by silent refresh, or by logging in)'
            cand logout 'Forget the stored credentials of a server (or of all servers)'
            cand status 'Show the resolved configuration and who is logged in (no network unless --check)'
            cand exec 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set'
            cand proxy 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)'
            cand trust 'Trust a project''s pyproject.toml as it is now, so that it may use your key files, variables and commands'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page (roff)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mlflow-oidc;login'= {
            cand --timeout 'How long to wait for the login, e.g. 300, 90s, 5m'
            cand --flow 'Which flow: auth-code (browser + loopback redirect) or device (a code to enter on any device) [default: auth-code when a local browser is plausible, else device when the provider supports it]'
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --device 'Use the device authorization flow (same as --flow device)'
            cand --no-browser 'Do not open a browser: print the URL, and accept the redirected URL pasted on stdin'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;token'= {
            cand --format 'Output format'
            cand --min-valid 'Refresh a token that expires within this duration, e.g. 60, 2m [default: 60s, or half the token''s lifetime when that is shorter]'
            cand --timeout 'How long to wait for a browser login if one is needed'
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --no-login 'Never start an interactive login; exit 3 when one would be needed'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;logout'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --all 'Log out of every server with stored credentials'
            cand --end-session 'Also open the provider''s end-session page to end the browser session (RP-initiated logout)'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;status'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --json 'Print one JSON object instead of text'
            cand --check 'Also check the provider over the network: discovery, issuer, endpoints, redirect port, clock skew'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;exec'= {
            cand --warn-within 'Warn when the token expires within this duration'
            cand --min-valid 'Refresh a token that expires within this duration first'
            cand --timeout 'How long to wait for a browser login if one is needed'
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --no-login 'Never start an interactive login; exit 3 when one would be needed'
            cand --proxy 'Run a local proxy for the command instead: MLFLOW_TRACKING_URI is the proxy''s URI, tokens stay fresh for any run length and any MLflow client, and MLFLOW_TRACKING_TOKEN is not set'
            cand --allow-plain-http 'With --proxy: forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;proxy'= {
            cand --listen 'Address to listen on; port 0 picks a free one'
            cand --timeout 'How long to wait for a browser login if one is needed for the first token'
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --allow-non-loopback 'Allow a listen address that is not a loopback one (other machines may then reach the proxy)'
            cand --allow-plain-http 'Forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)'
            cand --no-login 'Never start an interactive login for the first token'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;trust'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand --list 'List the trusted files, and whether each still has the content that was trusted'
            cand --revoke 'Stop trusting the file'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;completions'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;man'= {
            cand --server 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]'
            cand --config 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]'
            cand --store 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]'
            cand -v 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand --verbose 'Explain what happens on stderr (tokens and secrets are never logged)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mlflow-oidc;help'= {
            cand login 'Log in to the tracking server''s identity provider and store the credentials'
            cand token 'Print a valid bearer token (from cache, by silent refresh, or by logging in)'
            cand logout 'Forget the stored credentials of a server (or of all servers)'
            cand status 'Show the resolved configuration and who is logged in (no network unless --check)'
            cand exec 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set'
            cand proxy 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)'
            cand trust 'Trust a project''s pyproject.toml as it is now, so that it may use your key files, variables and commands'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page (roff)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mlflow-oidc;help;login'= {
        }
        &'mlflow-oidc;help;token'= {
        }
        &'mlflow-oidc;help;logout'= {
        }
        &'mlflow-oidc;help;status'= {
        }
        &'mlflow-oidc;help;exec'= {
        }
        &'mlflow-oidc;help;proxy'= {
        }
        &'mlflow-oidc;help;trust'= {
        }
        &'mlflow-oidc;help;completions'= {
        }
        &'mlflow-oidc;help;man'= {
        }
        &'mlflow-oidc;help;help'= {
        }
    ]
    $completions[$command]
}
