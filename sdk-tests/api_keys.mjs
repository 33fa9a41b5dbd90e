// End-to-end check of API keys, driven by the official Kuzzle JavaScript SDK (kuzzle-sdk 7.17.1)
// against a FRESH Tollgate server: createFirstAdmin with reset, auth.createApiKey (the token answered
// once), security.createApiKey for another user, searchApiKeys (no token in the hits), the key used
// as the SDK's jwt (getCurrentUser, checkToken, an admin-only read), refreshToken refused for a key,
// deleteApiKey (auth and security), and the deleted key refused.
//
// Usage: node api_keys.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

// kuzzle-sdk is CommonJS: its named exports are read from the default import.
const { Kuzzle, WebSocket, Http } = sdk;

const { host, port, protocol } = scriptArgs('api_keys.mjs');

const kuid = `admin-${protocol}`;
const username = `admin-${protocol}`;
const password = `pw-${protocol}`;

const connect = async () => {
  const k = new Kuzzle(
    protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
  );
  k.autoReconnect = false;
  await k.connect();
  return k;
};

const kuzzle = await connect();
// A second SDK instance that only ever holds API keys.
const keyed = await connect();

let exitCode = 1;
try {
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

  // 1. Anonymous has no API keys.
  await expectKuzzleError(
    kuzzle.auth.createApiKey('nope'),
    'security.rights.unauthorized',
    401,
    'anonymous createApiKey',
  );

  await kuzzle.auth.login('local', { username, password });

  // 2. auth.createApiKey: the caller's key, its token answered this once.
  const mine = await kuzzle.auth.createApiKey('sdk key', { _id: 'sdk-key', refresh: 'wait_for' });
  assertEqual(Object.keys(mine), ['_id', '_source'], 'createApiKey: keys');
  assertEqual(mine._id, 'sdk-key', 'createApiKey: _id');
  assertEqual(
    Object.keys(mine._source),
    ['userId', 'description', 'expiresAt', 'ttl', 'token'],
    'createApiKey: _source keys',
  );
  assertEqual(
    { ...mine._source, token: undefined },
    { userId: kuid, description: 'sdk key', expiresAt: -1, ttl: -1, token: undefined },
    'createApiKey: _source',
  );
  if (!mine._source.token.startsWith('kapikey-')) fail(`createApiKey: token ${show(mine._source.token)}`);

  const hourly = await kuzzle.auth.createApiKey('hourly', { expiresIn: '1h' });
  assertEqual(hourly._source.ttl, 3_600_000, 'createApiKey with expiresIn: ttl');
  if (typeof hourly._id !== 'string' || hourly._id.length !== 36) {
    fail(`createApiKey without _id: a generated id expected, got ${show(hourly._id)}`);
  }

  // 3. security.createApiKey for another user.
  await kuzzle.security.createUser('sdk-user', {
    content: { profileIds: ['default'] },
    credentials: { local: { username: 'sdk-user', password: 'sdk-user-pw' } },
  });
  const theirs = await kuzzle.security.createApiKey('sdk-user', 'for the user', { _id: 'their-key' });
  assertEqual(theirs._source.userId, 'sdk-user', 'security.createApiKey: userId');

  // 4. The searches answer no token.
  const found = await kuzzle.auth.searchApiKeys({ term: { description: 'sdk key' } });
  assertEqual(
    found,
    { hits: [{ _id: 'sdk-key', _source: { userId: kuid, description: 'sdk key', expiresAt: -1, ttl: -1 } }], total: 1 },
    'auth.searchApiKeys',
  );
  const all = await kuzzle.auth.searchApiKeys({}, { from: 0, size: 10 });
  assertEqual(all.total, 2, `auth.searchApiKeys (all): total (${show(all)})`);
  if (all.hits.some((h) => 'token' in h._source)) fail(`searchApiKeys leaked a token: ${show(all)}`);
  const user = await kuzzle.security.searchApiKeys('sdk-user', {});
  assertEqual(
    user,
    { hits: [{ _id: 'their-key', _source: { userId: 'sdk-user', description: 'for the user', expiresAt: -1, ttl: -1 } }], total: 1 },
    'security.searchApiKeys',
  );

  // 5. The key as the SDK's token.
  keyed.jwt = mine._source.token;
  const me = await keyed.auth.getCurrentUser();
  assertEqual(me._id, kuid, 'getCurrentUser with the API key');
  const check = await keyed.auth.checkToken();
  assertEqual(check, { expiresAt: -1, kuid, valid: true }, 'checkToken with the API key');
  const profile = await keyed.security.getProfile('admin');
  assertEqual(profile._id, 'admin', 'getProfile with the API key');
  await expectKuzzleError(
    keyed.auth.refreshToken(),
    'security.token.refresh_forbidden',
    401,
    'refreshToken with the API key',
  );
  keyed.jwt = theirs._source.token;
  const them = await keyed.auth.getCurrentUser();
  assertEqual(them._id, 'sdk-user', 'getCurrentUser with the user API key');

  // 6. Deleted keys stop working at once.
  await kuzzle.auth.deleteApiKey('sdk-key');
  const deleted = await kuzzle.security.deleteApiKey('sdk-user', 'their-key');
  assertEqual(deleted.result, { _id: 'their-key' }, 'security.deleteApiKey: result');
  for (const [token, what] of [
    [mine._source.token, 'the deleted key'],
    [theirs._source.token, "the deleted user's key"],
  ]) {
    const gone = await kuzzle.auth.checkToken(token);
    assertEqual(gone, { state: 'Invalid token.', valid: false }, `checkToken(${what})`);
    keyed.jwt = token;
    await expectKuzzleError(keyed.auth.getCurrentUser(), 'security.token.invalid', 401, `getCurrentUser with ${what}`);
  }
  await expectKuzzleError(
    kuzzle.auth.deleteApiKey('sdk-key'),
    'services.storage.not_found',
    404,
    'deleteApiKey twice',
  );
  const left = await kuzzle.auth.searchApiKeys();
  assertEqual(left.total, 1, `searchApiKeys after the deletions (${show(left)})`);

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
  keyed.disconnect();
}
process.exit(exitCode);
