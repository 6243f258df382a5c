#!/usr/bin/env bash
# Headless "browser" for the idp.mjs dev interactions, usable as $BROWSER.
#   browser-curl.sh <authorization-or-verification-url>
# Follows redirects inside the IdP origin with a cookie jar, submits each HTML form it
# meets (login: any user/password, consent, device user-code confirm, logout "yes"),
# and stops at the first redirect that leaves the IdP origin (the client's loopback
# redirect_uri): it GETs that URL once (delivering ?code=&state= to the waiting client)
# and prints it on stdout as "CALLBACK <url>". Device flow ends at "Sign-in Success".
# Env: IDP_LOGIN_USER (default alice), IDP_LOGIN_PASSWORD (default secret),
#      IDP_USER_CODE (device code to type if the page asks for one),
#      IDP_DENY=1 (refuse consent through the page's abort link, or abort a device login),
#      IDP_NO_CALLBACK=1 (print the final redirect as CALLBACK but do not GET it: a page that fails to load),
#      BROWSER_LOG (append a trace here; stdout/stderr are /dev/null under webbrowser).
set -euo pipefail
url="${1:?usage: $0 URL}"
user="${IDP_LOGIN_USER:-alice}"; pass="${IDP_LOGIN_PASSWORD:-secret}"
[ -n "${BROWSER_LOG:-}" ] && exec 2>>"$BROWSER_LOG"
log() { echo "[browser-curl] $*" >&2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
jar="$work/jar"; body="$work/body"
origin_of() { printf '%s' "$1" | sed -E 's#^([a-zA-Z]+://[^/?#]+).*#\1#'; }
unhtml() { sed -e 's/&quot;/"/g' -e "s/&#39;/'/g" -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&amp;/\&/g'; }
idp_origin=$(origin_of "$url")
method=GET; args=()
for _ in $(seq 1 25); do
  log "$method $url"
  out=$(curl -sS -b "$jar" -c "$jar" -o "$body" -w '%{http_code} %{redirect_url}' \
        -A 'browser-curl/1' --max-time 20 "${args[@]}" "$url")
  code=${out%% *}; loc=${out#* }
  if [ "${denied:-}" = 1 ]; then log "device login denied"; echo "DENIED"; exit 0; fi
  case "$code" in
    30[1237])
      if [ "$(origin_of "$loc")" != "$idp_origin" ]; then
        log "leaving IdP -> $loc"
        if [ "${IDP_NO_CALLBACK:-}" = 1 ]; then
          log "IDP_NO_CALLBACK: not delivering the callback"
        else
          curl -sS --max-time 20 -o /dev/null "$loc" || log "callback GET failed (no listener?)"
        fi
        echo "CALLBACK $loc"; exit 0
      fi
      url=$loc; method=GET; args=(); continue ;;
    200|400) ;;
    *) log "unexpected HTTP $code"; cat "$body" >&2; exit 1 ;;
  esac
  html=$(tr '\n\r' '  ' < "$body")
  form=$(printf '%s' "$html" | grep -oiE '<form[^>]*>' | head -1 || true)
  if [ -z "$form" ]; then
    if grep -q 'Sign-in Success\|Sign-out Success' "$body"; then
      log "done: $(grep -o 'Sign-[a-z]* Success' "$body" | head -1)"; echo "DONE"; exit 0
    fi
    log "no form on page (HTTP $code)"; sed -e 's/<[^>]*>/ /g' "$body" | tr -s ' \n' | head -c 600 >&2; exit 1
  fi
  # IDP_DENY=1: the person refuses consent (the dev pages' "abort" link after the login step).
  if [ "${IDP_DENY:-}" = 1 ] && ! printf '%s' "$html" | grep -qE 'name="login"'; then
    abort=$(printf '%s' "$html" | grep -oE 'href="[^"]*/abort"' | head -1 | sed -E 's/^href="(.*)"$/\1/' | unhtml || true)
    if [ -n "$abort" ]; then
      case "$abort" in /*) abort="$idp_origin$abort" ;; esac
      log "deny consent -> $abort"; url=$abort; method=GET; args=(); continue
    fi
  fi
  action=$(printf '%s' "$form" | grep -oiE 'action="[^"]*"' | sed -E 's/^action="(.*)"$/\1/' | unhtml)
  case "$action" in "") action=$url ;; /*) action="$idp_origin$action" ;; esac
  args=()
  # hidden inputs (attribute order as oidc-provider renders them: type, name, value)
  while IFS= read -r inp; do
    n=$(printf '%s' "$inp" | grep -oE 'name="[^"]*"' | head -1 | sed -E 's/name="(.*)"/\1/')
    v=$(printf '%s' "$inp" | grep -oE 'value="[^"]*"' | head -1 | sed -E 's/value="(.*)"/\1/' | unhtml)
    [ -n "$n" ] && args+=(--data-urlencode "$n=$v")
  done < <(printf '%s' "$html" | grep -oiE '<input[^>]*type="hidden"[^>]*>' || true)
  if printf '%s' "$html" | grep -qE 'name="login"'; then
    args+=(--data-urlencode "login=$user" --data-urlencode "password=$pass"); log "login as $user"
  fi
  if printf '%s' "$html" | grep -qE 'id="op.deviceInputForm"'; then
    args+=(--data-urlencode "user_code=${IDP_USER_CODE:?page asks for a user code; set IDP_USER_CODE}")
  fi
  if [ "${IDP_DENY:-}" = 1 ] && printf '%s' "$html" | grep -qE 'id="op.deviceConfirmForm"'; then
    args+=(--data-urlencode "abort=yes"); log "deny the device login"; denied=1
  fi
  if printf '%s' "$html" | grep -qE 'id="op.logoutForm"'; then args+=(--data-urlencode "logout=yes"); fi
  url=$action; method=POST
done
log "too many steps"; exit 1
