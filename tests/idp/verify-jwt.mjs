#!/usr/bin/env node
// verify-jwt.mjs ISSUER TOKEN [AUDIENCE] [TYP] -- what a resource server does: JWKS + iss/aud/exp/typ.
// TYP defaults to at+jwt (RFC 9068 access tokens); "-" skips the typ check (ID tokens carry none).
import { createRemoteJWKSet, jwtVerify } from 'jose';
const [iss, token, aud = 'mlflow', typ = 'at+jwt'] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${iss}/jwks`));
const options = { issuer: iss, audience: aud, ...(typ === '-' ? {} : { typ }) };
const { payload, protectedHeader } = await jwtVerify(token, jwks, options);
console.log(JSON.stringify({ alg: protectedHeader.alg, kid: protectedHeader.kid, ...payload }));
