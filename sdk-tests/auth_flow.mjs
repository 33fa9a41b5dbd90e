// End-to-end check of authentication, driven by the official Kuzzle JavaScript SDK (kuzzle-sdk 7.17.1)
// against a FRESH Tollgate server (no admin yet, anonymous holding every right):
// createFirstAdmin with reset, the anonymous refusal that follows, login, checkToken, getCurrentUser,
// an admin-only write with the token, logout, and the rejection of the revoked token.
//
// Usage: node auth_flow.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

// kuzzle-sdk is CommonJS: its named exports are read from the default import.
const { Kuzzle, WebSocket, Http, Profile, User } = sdk;

const { host, port, protocol } = scriptArgs('auth_flow.mjs');

// Resolves on the next `event` of the SDK, rejects after `ms`.
function nextEvent(kuzzle, event, ms, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no "${event}" event within ${ms} ms`)), ms);
    kuzzle.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

const kuid = `admin-${protocol}`;
const username = `admin-${protocol}`;
const password = `pw-${protocol}`;

const kuzzle = new Kuzzle(
  protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
);
// Surface failures immediately instead of waiting for a reconnection.
kuzzle.autoReconnect = false;

let exitCode = 1;
try {
  await kuzzle.connect();

  // 1. createFirstAdmin, with reset: the built-in roles are restricted afterwards.
  const admin = await kuzzle.security
    .createFirstAdmin(
      kuid,
      { content: { name: 'Admin' }, credentials: { local: { username, password } } },
      { reset: true },
    )
    .catch((err) => {
      err.message = `createFirstAdmin (this script needs a fresh server): ${err.message}`;
      throw err;
    });
  if (!(admin instanceof User)) fail(`createFirstAdmin: not a User: ${show(admin)}`);
  assertEqual(admin._id, kuid, 'createFirstAdmin: _id');
  assertEqual(admin.profileIds, ['admin'], 'createFirstAdmin: profileIds');
  assertEqual(admin.content.name, 'Admin', 'createFirstAdmin: content.name');
  if ('credentials' in admin.content) fail(`createFirstAdmin: credentials leaked: ${show(admin)}`);

  // 2. Anonymous lost the right to write profiles.
  assertEqual(kuzzle.jwt, null, 'jwt before login');
  await expectKuzzleError(
    kuzzle.security.updateProfile('default', { rateLimit: 10 }),
    'security.rights.unauthorized',
    401,
    'anonymous updateProfile after createFirstAdmin with reset',
  );

  // 3. login, checkToken, getCurrentUser
  const before = Date.now();
  const jwt = await kuzzle.auth.login('local', { username, password });
  if (typeof jwt !== 'string' || !jwt.startsWith('kauth-')) fail(`login: returned ${show(jwt)}`);
  assertEqual(kuzzle.jwt, jwt, 'kuzzle.jwt after login');
  // The SDK decodes the JWT payload itself.
  const decoded = kuzzle.auth.authenticationToken;
  assertEqual(decoded.userId, kuid, 'login: JWT payload _id decoded by the SDK');
  if (typeof decoded.expiresAt !== 'number' || decoded.expired) {
    fail(`login: JWT payload exp decoded by the SDK: ${show(decoded.expiresAt)}`);
  }
  const oldToken = jwt;

  const check = await kuzzle.auth.checkToken();
  assertEqual(check.valid, true, `checkToken: valid (${show(check)})`);
  assertEqual(check.kuid, kuid, 'checkToken: kuid');
  // Default lifetime: 1 h.
  if (typeof check.expiresAt !== 'number' || check.expiresAt < before + 3_500_000) {
    fail(`checkToken: expiresAt: ${show(check)}`);
  }

  const me = await kuzzle.auth.getCurrentUser();
  if (!(me instanceof User)) fail(`getCurrentUser: not a User: ${show(me)}`);
  assertEqual(me._id, kuid, 'getCurrentUser: _id');
  assertEqual(me.profileIds, ['admin'], 'getCurrentUser: profileIds');
  assertEqual(me.content.name, 'Admin', 'getCurrentUser: content.name');
  if ('credentials' in me.content) fail(`getCurrentUser: credentials leaked: ${show(me)}`);

  // 4. With the token, the admin may write profiles; the updater is the admin.
  const updated = await kuzzle.security.updateProfile(
    'default',
    { rateLimit: 7 },
    { refresh: 'wait_for' },
  );
  if (!(updated instanceof Profile)) fail(`updateProfile: not a Profile: ${show(updated)}`);
  assertEqual(updated._id, 'default', 'updateProfile: _id');
  assertEqual(updated.rateLimit, 7, 'updateProfile: rateLimit');
  assertEqual(updated.policies, [{ roleId: 'default' }], 'updateProfile: policies');
  assertEqual(updated._kuzzle_info?.updater, kuid, 'updateProfile: _kuzzle_info.updater');
  const fetched = await kuzzle.security.getProfile('default');
  assertEqual(fetched.rateLimit, 7, 'getProfile after updateProfile: rateLimit');
  assertEqual(fetched._kuzzle_info?.updater, kuid, 'getProfile after updateProfile: _kuzzle_info.updater');

  // 5. logout: the SDK forgets its token, the server revokes it.
  await kuzzle.auth.logout();
  assertEqual(kuzzle.jwt, null, 'kuzzle.jwt after logout');

  const after = await kuzzle.auth.checkToken(oldToken);
  assertEqual(after.valid, false, `checkToken(old token) after logout: valid (${show(after)})`);

  // The old token, given back to the SDK, is refused by the server with security.token.invalid;
  // the SDK then treats the token as expired and forgets it (tokenExpired event).
  kuzzle.jwt = oldToken;
  assertEqual(kuzzle.jwt, oldToken, 'kuzzle.jwt set back to the old token');
  const expired = nextEvent(kuzzle, 'tokenExpired', 5_000, 'updateProfile with the old token');
  // Avoids an unhandled rejection should the request below fail first.
  expired.catch(() => {});
  await expectKuzzleError(
    kuzzle.security.updateProfile('default', { rateLimit: 9 }),
    'security.token.invalid',
    401,
    'updateProfile with the revoked token',
  );
  await expired;
  assertEqual(kuzzle.jwt, null, 'kuzzle.jwt after the SDK saw security.token.invalid');

  // The same with the token in a raw request.
  await expectKuzzleError(
    kuzzle.query({
      controller: 'security',
      action: 'updateProfile',
      _id: 'default',
      body: { rateLimit: 9 },
      jwt: oldToken,
    }),
    'security.token.invalid',
    401,
    'raw updateProfile with the revoked token',
  );

  // Nothing was written with the revoked token; anonymous is anonymous again.
  const meAgain = await kuzzle.auth.getCurrentUser();
  assertEqual(meAgain._id, '-1', 'getCurrentUser after logout: _id');
  await expectKuzzleError(
    kuzzle.security.getProfile('default'),
    'security.rights.unauthorized',
    401,
    'anonymous getProfile after logout',
  );
  await kuzzle.auth.login('local', { username, password }).catch(async (err) => {
    // One login per second per WebSocket connection: retry once after the window.
    if (err?.id !== 'api.process.too_many_logins_requests') throw err;
    assertEqual(err.status, 429, 'second login on the same connection: error status');
    await new Promise((r) => setTimeout(r, 1_100));
    return kuzzle.auth.login('local', { username, password });
  });
  const final = await kuzzle.security.getProfile('default');
  assertEqual(final.rateLimit, 7, 'getProfile after the refused updates: rateLimit');
  await kuzzle.auth.logout();

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
}
process.exit(exitCode);
