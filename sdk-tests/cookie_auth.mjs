// Cookie authentication driven by the official Kuzzle JavaScript SDK (kuzzle-sdk 7.17.1) in its
// browser cookie mode (`new Kuzzle(new Http(…), { cookieAuth: true })`), against a FRESH Tollgate
// server. The SDK allows that mode only in a browser (where XMLHttpRequest exists): xhr_shim.mjs gives
// Node.js one, with a browser-like cookie jar. Checks: the login answers no jwt and sets an HttpOnly
// cookie, requests are authenticated by the cookie alone (the SDK sends no token), checkToken and
// refreshToken in cookie mode, logout clears the cookie and revokes its token.
//
// Usage: node cookie_auth.mjs <host> <port> http
//
// Prints `ok http` and exits 0 on success; prints the error and exits 1 on any failure or after a
// global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';
import { installXMLHttpRequest, jar } from './xhr_shim.mjs';

const { Kuzzle, Http } = sdk;

const { host, port, protocol } = scriptArgs('cookie_auth.mjs');
if (protocol !== 'http') fail('cookie_auth.mjs runs over http only');

installXMLHttpRequest();

const kuid = 'admin-cookie';
const username = 'admin-cookie';
const password = 'pw-cookie';
const COOKIE = /^authToken=(kauth-[A-Za-z0-9_.-]+); Path=\/; Expires=([^;]+ GMT); HttpOnly; SameSite=Strict$/;

const kuzzle = new Kuzzle(new Http(host, { port }), { cookieAuth: true });
kuzzle.autoReconnect = false;
// Another client, without cookies (its XMLHttpRequests are not credentialed).
const plain = new Kuzzle(new Http(host, { port }));

let exitCode = 1;
try {
  assertEqual(kuzzle.cookieAuthentication, true, 'kuzzle.cookieAuthentication');
  await kuzzle.connect();
  await plain.connect();
  await kuzzle.security.createFirstAdmin(
    kuid,
    { content: { name: 'Admin' }, credentials: { local: { username, password } } },
    { reset: true },
  );

  // 1. login: no jwt for the SDK (it checks that itself), the token in the cookie.
  const before = Date.now();
  const returned = await kuzzle.auth.login('local', { username, password });
  assertEqual(returned, undefined, 'login: what the SDK returns in cookie mode');
  assertEqual(kuzzle.jwt, null, 'kuzzle.jwt in cookie mode');
  assertEqual(jar.received.length, 1, `login: one Set-Cookie (${show(jar.received)})`);
  const set = COOKIE.exec(jar.received[0]);
  if (!set) fail(`login: Set-Cookie ${show(jar.received[0])}`);
  const token = set[1];
  const expires = Date.parse(set[2]);
  if (!(expires > before + 3_590_000 && expires <= Date.now() + 3_600_000)) {
    fail(`login: Expires ${set[2]} is not the token's one-hour expiry`);
  }
  assertEqual(jar.cookies.get('authToken'), token, 'the jar holds the token');

  // 2. Requests authenticated by the cookie alone, with the admin's rights.
  const me = await kuzzle.auth.getCurrentUser();
  assertEqual(me._id, kuid, 'getCurrentUser with the cookie');
  const profile = await kuzzle.security.getProfile('admin');
  assertEqual(profile._id, 'admin', 'admin-only getProfile with the cookie');
  const check = await kuzzle.auth.checkToken();
  assertEqual(check.valid, true, `checkToken in cookie mode: ${show(check)}`);
  assertEqual(check.kuid, kuid, 'checkToken in cookie mode: kuid');
  // The same request without the cookie is anonymous, and refused.
  await expectKuzzleError(
    plain.security.getProfile('admin'),
    'security.rights.unauthorized',
    401,
    'getProfile without the cookie',
  );

  // 3. refreshToken: a new cookie, no jwt in the result. Tokens change with the second of issue.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const refreshed = await kuzzle.auth.refreshToken();
  if ('jwt' in refreshed) fail(`refreshToken in cookie mode answered a jwt: ${show(refreshed)}`);
  assertEqual(refreshed._id, kuid, 'refreshToken: _id');
  const again = COOKIE.exec(jar.received.at(-1));
  if (!again || again[1] === token) fail(`refreshToken: Set-Cookie ${show(jar.received.at(-1))}`);
  const newToken = again[1];
  assertEqual((await kuzzle.auth.getCurrentUser())._id, kuid, 'getCurrentUser after refreshToken');

  // 4. logout: the cookie is cleared and its token revoked.
  await kuzzle.auth.logout();
  assertEqual(jar.cookies.has('authToken'), false, `logout clears the cookie (${show(jar.received.at(-1))})`);
  assertEqual((await kuzzle.auth.getCurrentUser())._id, '-1', 'getCurrentUser after logout');
  plain.jwt = newToken;
  await expectKuzzleError(
    plain.auth.getCurrentUser(),
    'security.token.invalid',
    401,
    'the logged-out token, as a jwt',
  );

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
  plain.disconnect();
  process.exit(exitCode);
}
