// A real OpenID Connect provider for tests/console_oidc.rs: the
// OpenID-certified `oidc-provider` package, over HTTPS with a certificate the
// test mints. Its protocol (discovery, authorization with PKCE, the token
// endpoint, signed ID tokens, JWKS) is the package's own; only the login
// screen is replaced: the account named in `login_hint` is logged in and
// consents at once, as a person would after typing a password.
//
// Usage: node provider.mjs CERT KEY [DEFAULT_ACCOUNT]; prints "port N" once
// listening, reads one line "redirect URI..." (the console's callbacks) from
// standard input, then prints "ready". DEFAULT_ACCOUNT logs in when a login
// has no login_hint (a browser's). Synthetic accounts only.

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import readline from 'node:readline';

import Provider from 'oidc-provider';

const [certFile, keyFile, defaultAccount] = process.argv.slice(2);
const server = https.createServer({
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
});
let handle = (_req, res) => { res.statusCode = 503; res.end(); };
server.on('request', (req, res) => handle(req, res));

// The people of the test, with the claims their organisation gives them.
const accounts = {
  'fg-idp': { ketenpoort_role: 'privacy-officer', ketenpoort_partner: 'dtv' },
  'beheer-idp': { ketenpoort_role: ['medewerker', 'policy-admin'], ketenpoort_pilot: 'proef' },
  'fg-zonder-partner': { ketenpoort_role: 'privacy-officer' },
  'geen-rol': { ketenpoort_role: 'medewerker' },
  // Claims another organisation's partner: its provider may not vouch for it.
  'fg-van-gemeente': { ketenpoort_role: 'privacy-officer', ketenpoort_partner: 'gemeente' },
};

function jwk(type, options, kid, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function start(issuer, redirects) {
  const client = (id, alg) => ({
    client_id: id,
    client_secret: 'geheim-van-de-test',
    redirect_uris: redirects,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg,
  });
  const provider = new Provider(issuer, {
    clients: [client('ketenpoort-rs', 'RS256'), client('ketenpoort-es', 'ES256')],
    jwks: {
      keys: [
        jwk('rsa', { modulusLength: 2048 }, 'rsa-1', 'RS256'),
        jwk('ec', { namedCurve: 'P-256' }, 'ec-1', 'ES256'),
      ],
    },
    pkce: { required: () => true },
    scopes: ['openid', 'ketenpoort'],
    claims: { openid: ['sub'], ketenpoort: ['ketenpoort_role', 'ketenpoort_partner', 'ketenpoort_pilot'] },
    // The role claims go in the ID token, where the gateway reads them.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    findAccount: async (_ctx, sub) => (accounts[sub]
      ? { accountId: sub, claims: async () => ({ sub, ...accounts[sub] }) }
      : undefined),
  });
  const callback = provider.callback();
  return async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      const accountId = details.params.login_hint || defaultAccount;
      if (!accounts[accountId]) {
        return provider.interactionFinished(req, res, { error: 'access_denied' }, { mergeWithLastSubmission: false });
      }
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
    } catch (e) {
      res.statusCode = 400;
      res.end(String(e));
    }
  };
}

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  console.log(`port ${port}`);
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const redirects = line.replace(/^redirect /, '').trim().split(/\s+/);
    handle = start(`https://localhost:${port}`, redirects);
    console.log('ready');
  });
  // The test ended: so does the provider.
  lines.on('close', () => process.exit(0));
});
