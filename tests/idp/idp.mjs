// Loopback OpenID Connect provider for integration tests (oidc-provider 9.x).
// Usage: node idp.mjs [port]        (port 0 / unset => ephemeral port)
// Prints "IDP_READY issuer=<url> pid=<pid>" on stdout once listening.
// Test-harness knobs (besides the IdP knobs below):
//   IDP_READY_FILE=<file>          write the issuer URL there once listening
//   IDP_EXIT_ON_STDIN_CLOSE=1      exit when stdin reaches EOF (the spawning test process died)
//   IDP_REQUEST_LOG=<file>         append one JSON line per HTTP request (format: see logRequest below)
//   IDP_DEVICE_SLOW_DOWN=N         the first N device_code token polls get 400 {"error":"slow_down"}
//   IDP_EXTRA_CLIENTS=<json>       a JSON array of further client registrations (e.g. private_key_jwt clients
//                                  with an inline public `jwks` the test generated)
//   IDP_WORKLOAD_ISSUER=<url>      enable the token-exchange (RFC 8693) and jwt-bearer (RFC 7523) grants,
//                                  trusting JWTs from this issuer (its /jwks; tests/idp/workload.mjs) with
//                                  aud IDP_WORKLOAD_AUDIENCE (default mlflow-idp); a jwt-bearer assertion
//                                  whose iss is the client itself is checked against the client's jwks
//   IDP_TLS_CERT=<pem> IDP_TLS_KEY=<pem>
//                                  serve HTTPS with this certificate chain and key: the issuer becomes
//                                  https://HOST:PORT (mod_auth_openidc only fetches a JWKS over https)
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import Provider, { errors, interactionPolicy } from 'oidc-provider';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

const env = process.env;
const HOST = env.IDP_HOST || '127.0.0.1';
const PORT = Number(process.argv[2] ?? env.IDP_PORT ?? 0);
const AT_TTL = Number(env.IDP_AT_TTL || 60);              // JWT access token lifetime (s)
const RT_TTL = Number(env.IDP_RT_TTL || 24 * 3600);       // refresh token lifetime (s)
const AUDIENCE = env.IDP_AUDIENCE || 'mlflow';            // "aud" of access tokens
const RESOURCE = env.IDP_RESOURCE || 'urn:mlflow';        // RFC 8707 resource indicator (absolute URI)
const RS_SCOPES = env.IDP_RESOURCE_SCOPES || 'mlflow';    // scopes that land in the access token
const AT_FORMAT = env.IDP_AT_FORMAT || 'jwt';             // 'jwt' | 'opaque'
const PUBLIC_ID = env.IDP_PUBLIC_CLIENT_ID || 'mlflow-cli';
const CONF_ID = env.IDP_CONFIDENTIAL_CLIENT_ID || 'mlflow-service';
const CONF_SECRET = env.IDP_CONFIDENTIAL_CLIENT_SECRET || 'mlflow-service-secret';
const REDIRECTS = (env.IDP_REDIRECT_URIS
  || 'http://127.0.0.1:39303/oauth2/callback,http://localhost:39303/oauth2/callback').split(',');
const AUTO_CONSENT = env.IDP_AUTO_CONSENT === '1';       // skip the consent page
const LOG = env.IDP_LOG === '1';
const DEVICE_INTERVAL = Number(env.IDP_DEVICE_INTERVAL || 1);  // device flow polling interval (s)
const REQUEST_LOG = env.IDP_REQUEST_LOG || '';
const TLS_CERT = env.IDP_TLS_CERT || '';
const TLS_KEY = env.IDP_TLS_KEY || '';
if (Boolean(TLS_CERT) !== Boolean(TLS_KEY)) {
  console.error('[idp] IDP_TLS_CERT and IDP_TLS_KEY go together: set both or neither');
  process.exit(2);
}
const EXTRA_CLIENTS = env.IDP_EXTRA_CLIENTS ? JSON.parse(env.IDP_EXTRA_CLIENTS) : [];
const WORKLOAD_ISSUER = env.IDP_WORKLOAD_ISSUER || '';
const WORKLOAD_AUDIENCE = env.IDP_WORKLOAD_AUDIENCE || 'mlflow-idp';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
let deviceSlowDown = Number(env.IDP_DEVICE_SLOW_DOWN || 0);    // remaining forced slow_down answers
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

if (env.IDP_EXIT_ON_STDIN_CLOSE === '1') {
  // The parent holds our stdin pipe; when it dies (even by SIGKILL) we see EOF and leave.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

function autoConsentPolicy() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('native_client_prompt');
  return policy;
}

// Signing key: stable across restarts if IDP_JWKS_FILE is given, else fresh per process.
// The file is written atomically (tmp + rename), and an unreadable one is replaced, so IdPs
// started in parallel with the same file never see a half-written key.
function loadJwks() {
  const file = env.IDP_JWKS_FILE;
  if (file && fs.existsSync(file)) {
    try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch { /* regenerate below */ }
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'idp-rs256', use: 'sig', alg: 'RS256' }] };
  if (file) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(jwks), { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
  return jwks;
}

const configuration = {
  clients: [
    {
      // RFC 8252 native public client: PKCE S256, no secret. Because application_type is
      // "native", oidc-provider accepts ANY port on a registered http loopback redirect URI
      // (host and path must still match exactly).
      client_id: PUBLIC_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: REDIRECTS,
      post_logout_redirect_uris: REDIRECTS,
    },
    {
      // Confidential client. Registered as client_secret_basic, but oidc-provider 9.x
      // accepts the secret via Basic header OR POST body for either *_secret_basic/post.
      client_id: CONF_ID,
      client_secret: CONF_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    ...EXTRA_CLIENTS,
  ],
  jwks: loadJwks(),
  cookies: { keys: [env.IDP_COOKIE_KEY || crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  async findAccount(ctx, sub) {                // any login name is a valid account
    const claims = { sub, email: `${sub}@example.test`, email_verified: true, name: sub, preferred_username: sub };
    return { accountId: sub, claims: async () => claims };
  },
  pkce: { required: () => true },              // S256 is the only method 9.x supports
  features: {
    devInteractions: { enabled: true },        // built-in login (any user/any password) + consent
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No "resource" param from the client => use RESOURCE (auth request, device request, CC).
      defaultResource: async (ctx, client, oneOf) => (oneOf ? oneOf[0] : RESOURCE),
      // Token endpoint: reuse the granted resource even when scope contains "openid",
      // otherwise the AT would be an opaque userinfo-only token.
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => ({
        scope: RS_SCOPES,
        audience: resourceIndicator === RESOURCE ? AUDIENCE : resourceIndicator,
        accessTokenTTL: AT_TTL,
        accessTokenFormat: AT_FORMAT,
        ...(AT_FORMAT === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
      }),
    },
  },
  // Refresh tokens for every client allowed the refresh_token grant, not only with offline_access.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,                    // every refresh_token grant returns a new RT
  // Tokens of grants without offline_access would otherwise die with the browser session
  // (offline_access is silently dropped unless the auth request also has prompt=consent).
  expiresWithSession: async () => false,
  async extraTokenClaims(ctx, token) {
    if (ctx?.state?.exchangedSubject) return { exchanged_sub: ctx.state.exchangedSubject };
    if (token.accountId) return { preferred_username: token.accountId, email: `${token.accountId}@example.test` };
    return undefined;
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || AT_TTL,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || AT_TTL,
    AuthorizationCode: 60, DeviceCode: Number(env.IDP_DEVICE_CODE_TTL || 600), IdToken: 3600,
    RefreshToken: RT_TTL, Grant: RT_TTL, Interaction: 3600, Session: 24 * 3600,
  },
  clientBasedCORS: () => true,
  responseTypes: ['code'],                     // authorization code only (no implicit/hybrid)
  ...(AUTO_CONSENT ? {
    // Skip the consent page: (1) drop the "native clients always get a consent prompt" check
    // (RFC 8252 8.6 behaviour of the default policy), (2) pre-build the grant.
    interactions: { policy: autoConsentPolicy() },
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant || grant.accountId !== oidc.session.accountId) {
        grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
      }
      grant.addOIDCScope('openid email profile offline_access');
      grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name', 'preferred_username']);
      grant.addResourceScope(oidc.params?.resource || RESOURCE, RS_SCOPES);
      await grant.save();
      return grant;
    },
  } : {}),
};

// --- request log: one JSON object per line, appended synchronously -----------------------
//   method, path (no query), status, route (oidc-provider route name, if any),
//   params      query string of a GET, or form body of a POST (object; absent if empty),
//   grant_type  from the form body (token endpoint),
//   client_id   from the form body or the Basic authorization header,
//   auth        "basic" | "post" | "none": client authentication at token, introspection,
//               revocation and device authorization endpoints,
//   error       the OAuth "error" code of a JSON error response.
const TOKEN_PATH = '/token';
const CLIENT_AUTH_ROUTES = new Set(['token', 'introspection', 'revocation', 'device_authorization',
  'pushed_authorization_request']);
const CLIENT_AUTH_PATHS = new Set([TOKEN_PATH, '/token/introspection', '/token/revocation', '/device/auth',
  '/request']);

function basicCredentials(header) {
  const m = /^basic\s+(\S+)$/i.exec(header || '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  const dec = (v) => { try { return decodeURIComponent(v.replace(/\+/g, '%20')); } catch { return v; } };
  return { clientId: dec(decoded.slice(0, i)) };
}

function plainObject(o) {
  if (!o || typeof o !== 'object') return undefined;
  const out = {};
  for (const [k, v] of Object.entries(o)) out[k] = v;
  return Object.keys(out).length ? out : undefined;
}

function logRequest(ctx, failedStatus) {
  try {
    const body = ctx.state.forcedBody || (ctx.method === 'GET' ? undefined : ctx.oidc?.body);
    const params = ctx.method === 'GET' ? plainObject(ctx.query) : plainObject(body);
    const basic = basicCredentials(ctx.get('authorization'));
    const route = ctx.oidc?.route;
    const entry = {
      method: ctx.method,
      path: ctx.path,
      status: failedStatus ?? ctx.status,
      route,
      params,
      grant_type: body?.grant_type,
      client_id: body?.client_id || basic?.clientId,
    };
    if (ctx.method === 'POST' && (CLIENT_AUTH_ROUTES.has(route) || CLIENT_AUTH_PATHS.has(ctx.path))) {
      entry.auth = ctx.get('authorization') ? 'basic' : body?.client_secret ? 'post'
        : body?.client_assertion ? 'private_key_jwt' : 'none';
    }
    // What the provider saw in JWTs it was sent: header (alg, kid, typ) and claims, never verified here.
    for (const [field, param] of [['client_assertion', 'client_assertion'], ['subject_token', 'subject_token'],
      ['assertion', 'assertion']]) {
      if (typeof body?.[param] === 'string') {
        try {
          entry[field] = { header: decodeProtectedHeader(body[param]), claims: decodeJwt(body[param]) };
        } catch { entry[field] = { invalid: true }; }
      }
    }
    const resBody = ctx.body;
    if (ctx.status >= 400 && resBody && typeof resBody === 'object' && typeof resBody.error === 'string') {
      entry.error = resBody.error;
    }
    fs.appendFileSync(REQUEST_LOG, `${JSON.stringify(entry)}\n`);
  } catch (e) {
    console.error('[idp] request log failed:', e.message);
  }
}

// Listen first (port may be 0), then build the Provider with the real issuer URL.
let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = TLS_CERT
  ? https.createServer({ cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) },
    (req, res) => handler(req, res))
  : http.createServer((req, res) => handler(req, res));
server.listen(PORT, HOST, () => {
  const { port } = server.address();
  const issuer = env.IDP_ISSUER || `${TLS_CERT ? 'https' : 'http'}://${HOST}:${port}`;
  const provider = new Provider(issuer, configuration);
  if (LOG) {
    provider.on('grant.success', (ctx) => console.error(`[idp] grant ${ctx.oidc?.params?.grant_type ?? '?'}`));
    for (const ev of ['grant.success', 'grant.error', 'grant.revoked', 'server_error', 'authorization.error',
      'end_session.success', 'revocation.error', 'introspection.error']) {
      provider.on(ev, (...args) => console.error(`[idp] ${ev}`, args.at(-1)?.message ?? ''));
    }
  }
  // Outermost middleware (provider.use inserts before oidc-provider's router): request log and
  // the forced device-flow slow_down. Runs before the response bytes are written, so a client
  // that has received its response can already read the log line.
  provider.use(async (ctx, next) => {
    if (deviceSlowDown > 0 && ctx.method === 'POST' && ctx.path === TOKEN_PATH
        && ctx.is('application/x-www-form-urlencoded')) {
      // Peek at grant_type: read the raw body here and hand the string to oidc-provider's
      // body parser through its documented fallback (req.body, used when req is consumed).
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      ctx.req.body = Buffer.concat(chunks).toString('utf8');
      if (new URLSearchParams(ctx.req.body).get('grant_type') === DEVICE_GRANT) {
        deviceSlowDown -= 1;
        ctx.status = 400;
        ctx.set('cache-control', 'no-store');
        ctx.body = { error: 'slow_down', error_description: 'forced by IDP_DEVICE_SLOW_DOWN' };
        ctx.state.forcedBody = Object.fromEntries(new URLSearchParams(ctx.req.body));
        if (REQUEST_LOG) logRequest(ctx);
        return;
      }
    }
    try {
      await next();
    } catch (err) {
      if (REQUEST_LOG) logRequest(ctx, err.status || err.statusCode || 500);
      throw err;
    }
    if (REQUEST_LOG) logRequest(ctx);
  });
  // RFC 8628 "interval" (oidc-provider omits it => clients fall back to 5 s). Post-middleware.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body) {
      ctx.body.interval = DEVICE_INTERVAL;
    }
  });
  if (WORKLOAD_ISSUER) registerWorkloadGrants(provider);
  handler = provider.callback();
  if (env.IDP_READY_FILE) fs.writeFileSync(env.IDP_READY_FILE, `${issuer}\n`);
  console.log(`IDP_READY issuer=${issuer} pid=${process.pid}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.closeAllConnections(); process.exit(0); });

// --- token exchange (RFC 8693) and JWT bearer (RFC 7523 §2.1), through registerGrantType --------------
// Both issue a JWT access token for RESOURCE (aud AUDIENCE), as client credentials would, with the
// subject of the exchanged token in `exchanged_sub`. Reasons for refusals go to the log (IDP_LOG=1).
function registerWorkloadGrants(provider) {
  const workloadKeys = createRemoteJWKSet(new URL(`${WORKLOAD_ISSUER}/jwks`));
  const verifyWorkload = (jwt) => jwtVerify(jwt, workloadKeys, { issuer: WORKLOAD_ISSUER, audience: WORKLOAD_AUDIENCE });
  async function issue(ctx, subject, tokenType) {
    const { client } = ctx.oidc;
    const info = await configuration.features.resourceIndicators.getResourceServerInfo(ctx, RESOURCE, client);
    ctx.state.exchangedSubject = subject;
    const token = new provider.ClientCredentials({ client, scope: RS_SCOPES });
    token.resourceServer = { ...info, identifier: () => RESOURCE, scopes: new Set(info.scope.split(' ')) };
    ctx.oidc.entity('ClientCredentials', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      ...(tokenType ? { issued_token_type: tokenType } : {}),
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }
  const refuse = (what, e) => {
    if (LOG) console.error(`[idp] ${what} refused: ${e.message}`);
    throw new errors.InvalidGrant(`${what} is invalid`);
  };
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt'
        && p.subject_token_type !== 'urn:ietf:params:oauth:token-type:id_token') {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    let payload;
    try { ({ payload } = await verifyWorkload(p.subject_token)); } catch (e) { refuse('subject_token', e); }
    await issue(ctx, payload.sub, 'urn:ietf:params:oauth:token-type:access_token');
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
    'actor_token', 'actor_token_type'], ['audience', 'resource']);
  provider.registerGrantType(JWT_BEARER, async (ctx) => {
    const { assertion } = ctx.oidc.params;
    const { client } = ctx.oidc;
    let payload;
    try {
      if (decodeJwt(assertion).iss === client.clientId) {
        // Self-issued with the client's own key (the one it authenticates with).
        ({ payload } = await jwtVerify(assertion, createLocalJWKSet(client.jwks), {
          issuer: client.clientId, audience: [provider.issuer, `${provider.issuer}${TOKEN_PATH}`],
        }));
      } else {
        ({ payload } = await verifyWorkload(assertion));
      }
    } catch (e) { refuse('assertion', e); }
    await issue(ctx, payload.sub);
  }, ['assertion', 'audience', 'resource', 'scope'], ['audience', 'resource']);
}
