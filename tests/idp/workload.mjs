// A stand-in workload identity issuer for the tests: GitHub Actions' OIDC token service (same request shape),
// and the signer of Kubernetes-style projected tokens and GitLab-style id_tokens that tests put in files and
// variables. The test provider (idp.mjs, IDP_WORKLOAD_ISSUER) trusts its /jwks.
// Usage: node workload.mjs   (ephemeral port on 127.0.0.1; writes "<url>\n" to WL_READY_FILE)
//   GET /jwks                               the public signing key (ES256, kid "wl-es256")
//   GET /.well-known/openid-configuration   {issuer, jwks_uri}
//   GET /token?audience=A[&sub=S&iss=I&ttl=N&exp_offset=N]
//       with "Authorization: Bearer $WL_REQUEST_TOKEN" (default gh-request-token): {"value": JWT}, as
//       ACTIONS_ID_TOKEN_REQUEST_URL answers. Claims: iss (default: this issuer), sub (default
//       repo:octo/repo:ref:refs/heads/main), aud, iat, nbf, exp = now + ttl (default 300) + exp_offset, jti.
// Knobs: WL_READY_FILE, WL_REQUEST_LOG (one JSON line per /token request: audience, authorized),
//        WL_REQUEST_TOKEN, WL_EXIT_ON_STDIN_CLOSE=1.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { SignJWT, exportJWK } from 'jose';

const env = process.env;
const REQUEST_TOKEN = env.WL_REQUEST_TOKEN || 'gh-request-token';
if (env.WL_EXIT_ON_STDIN_CLOSE === '1') {
  for (const ev of ['end', 'close', 'error']) process.stdin.on(ev, () => process.exit(0));
  process.stdin.resume();
}
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...(await exportJWK(publicKey)), kid: 'wl-es256', use: 'sig', alg: 'ES256' };

let issuer = '';
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  const json = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === '/jwks') return json(200, { keys: [jwk] });
  if (url.pathname === '/.well-known/openid-configuration') return json(200, { issuer, jwks_uri: `${issuer}/jwks` });
  if (url.pathname === '/token') {
    const authorized = req.headers.authorization === `Bearer ${REQUEST_TOKEN}`;
    const q = url.searchParams;
    if (env.WL_REQUEST_LOG) {
      fs.appendFileSync(env.WL_REQUEST_LOG, `${JSON.stringify({ audience: q.get('audience'), authorized })}\n`);
    }
    if (!authorized) return json(401, { message: 'bad request token' });
    const now = Math.floor(Date.now() / 1000);
    const exp = now + Number(q.get('ttl') || 300) + Number(q.get('exp_offset') || 0);
    const value = await new SignJWT({ repository: 'octo/repo' })
      .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
      .setIssuer(q.get('iss') || issuer)
      .setSubject(q.get('sub') || 'repo:octo/repo:ref:refs/heads/main')
      .setAudience(q.get('audience') || 'https://github.com/octo')
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(exp)
      .setJti(crypto.randomUUID())
      .sign(privateKey);
    return json(200, { count: 1, value });
  }
  json(404, { message: 'not found' });
});
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  if (env.WL_READY_FILE) fs.writeFileSync(env.WL_READY_FILE, `${issuer}\n`);
  console.log(`WL_READY issuer=${issuer}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
