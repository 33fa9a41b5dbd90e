// End-to-end check of auth:refreshToken, driven by the official Kuzzle JavaScript SDK (kuzzle-sdk
// 7.17.1) against a FRESH Tollgate server with the default refresh grace (1 s):
// createFirstAdmin with reset, login with a short expiresIn, kuzzle.auth.refreshToken(), which makes
// the SDK use the new token; the old token valid during the grace and refused after it; and, past the
// old token's own expiry, the SDK still logged in with the new one (no TokenExpired for the old token
// on WebSocket).
//
// kuzzle-sdk 7.17.1 has no timer-driven refresh: an application refreshes with
// kuzzle.auth.refreshToken(), which this script does first; then the SDK's automatic path, an
// `authenticator` function it calls when its token is refused (security.token.invalid) or, on
// WebSocket, when the server pushes TokenExpired.
//
// Usage: node refresh_token.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

// kuzzle-sdk is CommonJS: its named exports are read from the default import.
const { Kuzzle, WebSocket, Http, User } = sdk;

const { host, port, protocol } = scriptArgs('refresh_token.mjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const kuid = `admin-${protocol}`;
const username = `admin-${protocol}`;
const password = `pw-${protocol}`;

// The server's default refresh grace (`[security] refresh_grace_ms`).
const GRACE_MS = 1_000;

const kuzzle = new Kuzzle(
  protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
);
kuzzle.autoReconnect = false;

let exitCode = 1;
try {
  await kuzzle.connect();

  await kuzzle.security
    .createFirstAdmin(
      kuid,
      { content: { name: 'Admin' }, credentials: { local: { username, password } } },
      { reset: true },
    )
    .catch((err) => {
      err.message = `createFirstAdmin (this script needs a fresh server): ${err.message}`;
      throw err;
    });

  // 1. Anonymous cannot refresh.
  await expectKuzzleError(
    kuzzle.auth.refreshToken(),
    'security.rights.unauthorized',
    401,
    'anonymous refreshToken',
  );

  // 2. Login with a short lifetime, and use the token once (on WebSocket this links it to the socket).
  const oldToken = await kuzzle.auth.login('local', { username, password }, '3s');
  // `exp`, in seconds.
  const oldExp = kuzzle.auth.authenticationToken.expiresAt;
  const me = await kuzzle.auth.getCurrentUser();
  assertEqual(me._id, kuid, 'getCurrentUser with the first token: _id');

  // A second SDK instance holds the old token (an SDK puts its own token on every request).
  const other = new Kuzzle(
    protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
  );
  other.autoReconnect = false;
  await other.connect();
  other.jwt = oldToken;

  // The SDK must not see the old token expire once it refreshed.
  let tokenExpired = 0;
  kuzzle.on('tokenExpired', () => {
    tokenExpired += 1;
  });

  // 3. refreshToken: the SDK takes the new token.
  const before = Date.now();
  const refreshed = await kuzzle.auth.refreshToken({ expiresIn: '1h' });
  const after = Date.now();
  assertEqual(Object.keys(refreshed), ['_id', 'expiresAt', 'jwt', 'ttl'], 'refreshToken: result keys');
  assertEqual(refreshed._id, kuid, 'refreshToken: _id');
  assertEqual(refreshed.ttl, 3_600_000, 'refreshToken: ttl');
  if (refreshed.expiresAt < before + 3_600_000 || refreshed.expiresAt > after + 3_600_000) {
    fail(`refreshToken: expiresAt: ${show(refreshed)}`);
  }
  if (typeof refreshed.jwt !== 'string' || !refreshed.jwt.startsWith('kauth-') || refreshed.jwt === oldToken) {
    fail(`refreshToken: jwt: ${show(refreshed.jwt)}`);
  }
  assertEqual(kuzzle.jwt, refreshed.jwt, 'kuzzle.jwt after refreshToken');
  assertEqual(kuzzle.auth.authenticationToken.userId, kuid, 'refreshed JWT payload _id decoded by the SDK');
  if (kuzzle.auth.authenticationToken.expiresAt <= oldExp) {
    fail(`refreshed JWT exp decoded by the SDK: ${kuzzle.auth.authenticationToken.expiresAt} <= ${oldExp}`);
  }

  // 4. The old token, during the grace: valid until at most the end of the grace.
  const during = await kuzzle.auth.checkToken(oldToken);
  assertEqual(during.valid, true, `checkToken(old token) during the grace: valid (${show(during)})`);
  if (during.expiresAt > after + GRACE_MS) {
    fail(`checkToken(old token) during the grace: expiresAt ${during.expiresAt} after ${after + GRACE_MS}`);
  }
  const meOld = await other.auth.getCurrentUser();
  assertEqual(meOld._id, kuid, 'getCurrentUser with the old token during the grace: _id');

  // 5. The new token works, for an admin-only action too.
  const current = await kuzzle.auth.getCurrentUser();
  if (!(current instanceof User)) fail(`getCurrentUser: not a User: ${show(current)}`);
  assertEqual(current._id, kuid, 'getCurrentUser with the refreshed token: _id');
  const profile = await kuzzle.security.getProfile('admin');
  assertEqual(profile._id, 'admin', 'getProfile with the refreshed token: _id');
  const check = await kuzzle.auth.checkToken();
  assertEqual(check.valid, true, `checkToken (refreshed token): valid (${show(check)})`);
  assertEqual(check.expiresAt, refreshed.expiresAt, 'checkToken (refreshed token): expiresAt');

  // 6. After the grace, the old token is refused as revoked.
  await sleep(Math.max(0, during.expiresAt - Date.now()) + 50);
  const gone = await kuzzle.auth.checkToken(oldToken);
  assertEqual(gone, { state: 'Invalid token.', valid: false }, 'checkToken(old token) after the grace');
  await expectKuzzleError(
    other.auth.refreshToken(),
    'security.token.invalid',
    401,
    'refreshToken with the old token after the grace',
  );
  other.disconnect();

  // 7. Past the old token's own expiry, the SDK is still logged in with the new token.
  await sleep(Math.max(0, oldExp * 1000 - Date.now()) + 500);
  assertEqual(tokenExpired, 0, 'tokenExpired events after the old token expired');
  assertEqual(kuzzle.jwt, refreshed.jwt, 'kuzzle.jwt after the old token expired');
  const still = await kuzzle.auth.getCurrentUser();
  assertEqual(still._id, kuid, 'getCurrentUser after the old token expired: _id');

  await kuzzle.auth.logout();
  assertEqual(kuzzle.jwt, null, 'kuzzle.jwt after logout');

  // 8. The SDK's automatic path (kuzzle-sdk has no timer-driven refresh): with an `authenticator`,
  // the SDK logs in again by itself when its token stops working, and emits `reAuthenticated`.
  let logins = 0;
  kuzzle.authenticator = async () => {
    logins += 1;
    await kuzzle.auth.login('local', { username, password }, '2s');
  };
  const reAuthenticated = () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reAuthenticated event within 6 s (${logins} logins so far)`)),
        6_000,
      );
      kuzzle.once('reAuthenticated', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  await kuzzle.authenticate();
  assertEqual(logins, 1, 'authenticator calls after authenticate()');
  const first = kuzzle.jwt;
  // 8a. The token is revoked (every token of the user): the next request is refused with
  // security.token.invalid, on which the SDK re-authenticates.
  // The re-login must not fall within the second of the previous one: the server accepts one
  // login per second per WebSocket connection (limits.loginsPerSecond, as Kuzzle).
  await sleep(1_100);
  let again = reAuthenticated();
  await kuzzle.query({ controller: 'security', action: 'revokeTokens', _id: kuid });
  await expectKuzzleError(
    kuzzle.auth.getCurrentUser(),
    'security.token.invalid',
    401,
    'getCurrentUser with the revoked token',
  );
  await again;
  assertEqual(logins, 2, 'authenticator calls after the revocation');
  if (kuzzle.jwt === first || typeof kuzzle.jwt !== 'string') {
    fail(`kuzzle.jwt after re-authentication: ${show(kuzzle.jwt)}`);
  }
  assertEqual((await kuzzle.auth.getCurrentUser())._id, kuid, 'getCurrentUser after re-authentication');
  if (protocol === 'websocket') {
    // 8b. WebSocket: the server tells the socket its token expired (TokenExpired, 2 s), and the SDK
    // re-authenticates without a failed request.
    // The revoked first token was linked to the socket too: its TokenExpired comes first, and the
    // SDK, finding its current token valid, re-authenticates without logging in. The current
    // token's own TokenExpired then makes it log in.
    const second = kuzzle.jwt;
    const deadline = Date.now() + 6_000;
    const renewed = () => logins >= 3 && typeof kuzzle.jwt === 'string' && kuzzle.jwt !== second;
    while (!renewed() && Date.now() < deadline) await sleep(50);
    assertEqual(logins, 3, 'authenticator calls after the token expired');
    if (kuzzle.jwt === second) fail('kuzzle.jwt unchanged after TokenExpired');
    assertEqual((await kuzzle.auth.getCurrentUser())._id, kuid, 'getCurrentUser after TokenExpired');
  }
  kuzzle.authenticator = null;
  await kuzzle.auth.logout();

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
}
process.exit(exitCode);
