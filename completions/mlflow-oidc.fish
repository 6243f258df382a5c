# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mlflow_oidc_global_optspecs
    string join \n server= config= store= v/verbose h/help V/version
end

function __fish_mlflow_oidc_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mlflow_oidc_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mlflow_oidc_using_subcommand
    set -l cmd (__fish_mlflow_oidc_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "login" -d 'Log in to the tracking server\'s identity provider and store the credentials'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "token" -d 'Print a valid bearer token (from cache, by silent refresh, or by logging in)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "logout" -d 'Forget the stored credentials of a server (or of all servers)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "status" -d 'Show the resolved configuration and who is logged in (no network unless --check)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "exec" -d 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "proxy" -d 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "trust" -d 'Trust a project\'s pyproject.toml as it is now, so that it may use your key files, variables and commands'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l timeout -d 'How long to wait for the login, e.g. 300, 90s, 5m' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l flow -d 'Which flow: auth-code (browser + loopback redirect) or device (a code to enter on any device) [default: auth-code when a local browser is plausible, else device when the provider supports it]' -r -f -a "auth-code\t'Authorization code with PKCE and a loopback redirect'
device\t'Device authorization grant (RFC 8628)'"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l device -d 'Use the device authorization flow (same as --flow device)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -l no-browser -d 'Do not open a browser: print the URL, and accept the redirected URL pasted on stdin'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand login" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l format -d 'Output format' -r -f -a "raw\t'The token alone'
header\t'`Authorization: Bearer <token>`'
json\t'One JSON object with the token, its kind and expiry'
env\t'`export MLFLOW_TRACKING_URI=… MLFLOW_TRACKING_TOKEN=…` lines for eval'"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l min-valid -d 'Refresh a token that expires within this duration, e.g. 60, 2m [default: 60s, or half the token\'s lifetime when that is shorter]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l timeout -d 'How long to wait for a browser login if one is needed' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -l no-login -d 'Never start an interactive login; exit 3 when one would be needed'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand token" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -l all -d 'Log out of every server with stored credentials'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -l end-session -d 'Also open the provider\'s end-session page to end the browser session (RP-initiated logout)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand logout" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -l json -d 'Print one JSON object instead of text'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -l check -d 'Also check the provider over the network: discovery, issuer, endpoints, redirect port, clock skew'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand status" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l warn-within -d 'Warn when the token expires within this duration' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l min-valid -d 'Refresh a token that expires within this duration first' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l timeout -d 'How long to wait for a browser login if one is needed' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l no-login -d 'Never start an interactive login; exit 3 when one would be needed'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l proxy -d 'Run a local proxy for the command instead: MLFLOW_TRACKING_URI is the proxy\'s URI, tokens stay fresh for any run length and any MLflow client, and MLFLOW_TRACKING_TOKEN is not set'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -l allow-plain-http -d 'With --proxy: forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand exec" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l listen -d 'Address to listen on; port 0 picks a free one' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l timeout -d 'How long to wait for a browser login if one is needed for the first token' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l allow-non-loopback -d 'Allow a listen address that is not a loopback one (other machines may then reach the proxy)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l allow-plain-http -d 'Forward to a plain http:// tracking server that is not on loopback (the token then crosses the network unencrypted)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -l no-login -d 'Never start an interactive login for the first token'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand proxy" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -l list -d 'List the trusted files, and whether each still has the content that was trusted'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -l revoke -d 'Stop trusting the file'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand trust" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand completions" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -l server -d 'Tracking server URI to work on [default: MLFLOW_TRACKING_URI, or the only configured server]' -r
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -l config -d 'Configuration file (pyproject.toml style or user config style) [env: MLFLOW_OIDC_CONFIG]' -r -F
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -l store -d 'Where credentials are kept: auto (keyring, else file), keyring, file or memory [env: MLFLOW_OIDC_STORE]' -r -f -a "auto\t''
keyring\t''
file\t''
memory\t''"
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -s v -l verbose -d 'Explain what happens on stderr (tokens and secrets are never logged)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -s h -l help -d 'Print help'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand man" -s V -l version -d 'Print version'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "login" -d 'Log in to the tracking server\'s identity provider and store the credentials'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "token" -d 'Print a valid bearer token (from cache, by silent refresh, or by logging in)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "logout" -d 'Forget the stored credentials of a server (or of all servers)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "status" -d 'Show the resolved configuration and who is logged in (no network unless --check)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "exec" -d 'Run a command with MLFLOW_TRACKING_TOKEN and MLFLOW_TRACKING_URI set'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "proxy" -d 'Serve the tracking server on a loopback port, adding a fresh token to every request (any MLflow client)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "trust" -d 'Trust a project\'s pyproject.toml as it is now, so that it may use your key files, variables and commands'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c mlflow-oidc -n "__fish_mlflow_oidc_using_subcommand help; and not __fish_seen_subcommand_from login token logout status exec proxy trust completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
