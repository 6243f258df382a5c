
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'mlflow-oidc' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'mlflow-oidc'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'mlflow-oidc' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to the tracking server''s identity provider and store the credentials')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Print a valid bearer token (from cache, by silent refresh, or by logging in)')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the stored credentials of a server (or of all servers)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the resolved configuration and who is logged in (no network unless --check)')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Trust a project''s pyproject.toml as it is now, so that it may use your key files, variables and commands')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mlflow-oidc;login' {
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for the login, e.g. 300, 90s, 5m')
            [CompletionResult]::new('--flow', '--flow', [CompletionResultType]::ParameterName, 'Which flow: auth-code (browser + loopback redirect) or device (a code to enter on any device) [default: auth-code when a local browser is plausible, else device when the provider supports it]')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'Use the device authorization flow (same as --flow device)')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'Do not open a browser: print the URL, and accept the redirected URL pasted on stdin')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;token' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--min-valid', '--min-valid', [CompletionResultType]::ParameterName, 'Refresh a token that expires within this duration, e.g. 60, 2m [default: 60s, or half the token''s lifetime when that is shorter]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for a browser login if one is needed')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never start an interactive login; exit 3 when one would be needed')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;logout' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Log out of every server with stored credentials')
            [CompletionResult]::new('--end-session', '--end-session', [CompletionResultType]::ParameterName, 'Also open the provider''s end-session page to end the browser session (RP-initiated logout)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;status' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object instead of text')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Also check the provider over the network: discovery, issuer, endpoints, redirect port, clock skew')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;exec' {
            [CompletionResult]::new('--warn-within', '--warn-within', [CompletionResultType]::ParameterName, 'Warn when the token expires within this duration')
            [CompletionResult]::new('--min-valid', '--min-valid', [CompletionResultType]::ParameterName, 'Refresh a token that expires within this duration first')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for a browser login if one is needed')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never start an interactive login; exit 3 when one would be needed')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'Run a local proxy for the command instead: MLFLOW_TRACKING_URI is the proxy''s URI, tokens stay fresh for any run length and any MLflow client, and MLFLOW_TRACKING_TOKEN is not set')
            [CompletionResult]::new('--allow-plain-http', '--allow-plain-http', [CompletionResultType]::ParameterName, 'With --proxy: forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;proxy' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on; port 0 picks a free one')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'How long to wait for a browser login if one is needed for the first token')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--allow-non-loopback', '--allow-non-loopback', [CompletionResultType]::ParameterName, 'Allow a listen address that is not a loopback one (other machines may then reach the proxy)')
            [CompletionResult]::new('--allow-plain-http', '--allow-plain-http', [CompletionResultType]::ParameterName, 'Forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)')
            [CompletionResult]::new('--no-login', '--no-login', [CompletionResultType]::ParameterName, 'Never start an interactive login for the first token')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;trust' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('--list', '--list', [CompletionResultType]::ParameterName, 'List the trusted files, and whether each still has the content that was trusted')
            [CompletionResult]::new('--revoke', '--revoke', [CompletionResultType]::ParameterName, 'Stop trusting the file')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;completions' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;man' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Explain what happens on stderr (tokens and secrets are never logged)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mlflow-oidc;help' {
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to the tracking server''s identity provider and store the credentials')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Print a valid bearer token (from cache, by silent refresh, or by logging in)')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the stored credentials of a server (or of all servers)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the resolved configuration and who is logged in (no network unless --check)')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)')
            [CompletionResult]::new('trust', 'trust', [CompletionResultType]::ParameterValue, 'Trust a project''s pyproject.toml as it is now, so that it may use your key files, variables and commands')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mlflow-oidc;help;login' {
            break
        }
        'mlflow-oidc;help;token' {
            break
        }
        'mlflow-oidc;help;logout' {
            break
        }
        'mlflow-oidc;help;status' {
            break
        }
        'mlflow-oidc;help;exec' {
            break
        }
        'mlflow-oidc;help;proxy' {
            break
        }
        'mlflow-oidc;help;trust' {
            break
        }
        'mlflow-oidc;help;completions' {
            break
        }
        'mlflow-oidc;help;man' {
            break
        }
        'mlflow-oidc;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
