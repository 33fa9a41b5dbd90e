// End-to-end check of the local strategy's credentials API, driven by the official Kuzzle JavaScript
// SDK (kuzzle-sdk 7.17.1) against a FRESH Tollgate server: the security controller's credentials
// actions on another user, the auth controller's actions on the caller's own credentials, updateSelf,
// and a password change that revokes the caller's other token.
//
// Usage: node credentials.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

const { Kuzzle, WebSocket, Http, User } = sdk;

const { host, port, protocol } = scriptArgs('credentials.mjs');

function client() {
  const k = new Kuzzle(protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }));
  k.autoReconnect = false;
  return k;
}

const clients = [];

// A new connection logged in as `username` (one login per connection: the per-connection limit).
async function session(username, password, expiresIn) {
  const k = client();
  clients.push(k);
  await k.connect();
  await k.auth.login('local', { username, password }, expiresIn);
  return k;
}

const kuid = `user-${protocol}`;
const username = `user-${protocol}`;
const password = 'first-password';
const me = { username, kuid };

const kuzzle = client();
clients.push(kuzzle);

let exitCode = 1;
try {
  await kuzzle.connect();
  await kuzzle.security.createFirstAdmin(
    'admin',
    { content: {}, credentials: { local: { username: 'admin', password: 'admin-password' } } },
    { reset: true },
  );
  // The anonymous user (after the reset) cannot read its own credentials.
  await expectKuzzleError(
    kuzzle.auth.getMyCredentials('local'),
    'security.rights.unauthorized',
    401,
    'anonymous getMyCredentials',
  );
  await kuzzle.auth.login('local', { username: 'admin', password: 'admin-password' });

  // A role granting the caller's own credentials actions (Kuzzle's default role does not).
  await kuzzle.security.createRole('self', {
    controllers: {
      auth: {
        actions: {
          createMyCredentials: true,
          credentialsExist: true,
          deleteMyCredentials: true,
          getMyCredentials: true,
          updateMyCredentials: true,
          validateMyCredentials: true,
        },
      },
    },
  });
  await kuzzle.security.createProfile('self', { policies: [{ roleId: 'self' }] });
  await kuzzle.security.createUser(kuid, { content: { profileIds: ['default', 'self'] } });

  // 1. The security controller on another user's credentials.
  assertEqual(await kuzzle.auth.getStrategies(), ['local'], 'getStrategies');
  assertEqual(
    await kuzzle.security.getAllCredentialFields(),
    { local: ['username', 'password'] },
    'getAllCredentialFields',
  );
  assertEqual(
    await kuzzle.security.getCredentialFields('local'),
    ['username', 'password'],
    'getCredentialFields',
  );
  assertEqual(await kuzzle.security.hasCredentials('local', kuid), false, 'hasCredentials before');
  assertEqual(await kuzzle.security.getUserStrategies(kuid), [], 'getUserStrategies before');
  assertEqual(
    await kuzzle.security.validateCredentials('local', kuid, { username, password }),
    true,
    'validateCredentials',
  );
  await expectKuzzleError(
    kuzzle.security.validateCredentials('local', kuid, { username: 'admin', password }),
    'security.credentials.rejected',
    400,
    'validateCredentials with a taken username',
  );
  await expectKuzzleError(
    kuzzle.security.createCredentials('facebook', kuid, { username, password }),
    'security.credentials.unknown_strategy',
    400,
    'createCredentials with an unknown strategy',
  );
  assertEqual(
    await kuzzle.security.createCredentials('local', kuid, { username, password }),
    me,
    'createCredentials',
  );
  assertEqual(await kuzzle.security.hasCredentials('local', kuid), true, 'hasCredentials after');
  assertEqual(await kuzzle.security.getCredentials('local', kuid), me, 'getCredentials');
  assertEqual(await kuzzle.security.getCredentialsById('local', username), me, 'getCredentialsById');
  assertEqual(await kuzzle.security.getUserStrategies(kuid), ['local'], 'getUserStrategies after');
  // No SDK method: a raw query, routed (on HTTP) from server:publicApi.
  const found = await kuzzle.query({
    controller: 'security',
    action: 'searchUsersByCredentials',
    strategy: 'local',
    body: { query: { prefix: { username: 'user-' } } },
  });
  assertEqual(found.result, { hits: [me], total: 1 }, 'searchUsersByCredentials');

  // 2. The user's own credentials and content.
  const user = await session(username, password);
  assertEqual(await user.auth.getMyCredentials('local'), me, 'getMyCredentials');
  assertEqual(await user.auth.credentialsExist('local'), true, 'credentialsExist');
  assertEqual(
    await user.auth.validateMyCredentials('local', { username, password: 'another-password' }),
    true,
    'validateMyCredentials',
  );
  const updated = await user.auth.updateSelf({ nickname: 'Neo' });
  if (!(updated instanceof User)) fail(`updateSelf: not a User: ${show(updated)}`);
  assertEqual(updated._id, kuid, 'updateSelf: _id');
  assertEqual(updated.content.nickname, 'Neo', 'updateSelf: content.nickname');
  assertEqual(updated.profileIds, ['default', 'self'], 'updateSelf: profileIds');
  await expectKuzzleError(
    user.auth.updateSelf({ profileIds: ['admin'] }),
    'api.assert.forbidden_argument',
    400,
    'updateSelf with profileIds',
  );

  // 3. A password change keeps the calling token and revokes the other one.
  const other = await session(username, password, '2h');
  assertEqual((await other.auth.getCurrentUser())._id, kuid, 'the other session before');
  assertEqual(
    await user.auth.updateMyCredentials('local', { password: 'second-password' }),
    me,
    'updateMyCredentials',
  );
  assertEqual((await user.auth.getCurrentUser())._id, kuid, 'the calling session after');
  await expectKuzzleError(
    other.auth.getMyCredentials('local'),
    'security.token.invalid',
    401,
    'the other session after the password change',
  );
  await expectKuzzleError(
    session(username, password),
    'plugin.strategy.missing_user',
    401,
    'login with the old password',
  );
  const again = await session(username, 'second-password');
  assertEqual(await again.auth.getMyCredentials('local'), me, 'login with the new password');

  // 4. Delete and create again, then the admin renames and deletes.
  assertEqual(await user.auth.deleteMyCredentials('local'), true, 'deleteMyCredentials');
  assertEqual(await user.auth.credentialsExist('local'), false, 'credentialsExist after delete');
  assertEqual(
    await user.auth.createMyCredentials('local', { username, password: 'third-password' }),
    me,
    'createMyCredentials',
  );
  const renamed = { username: `renamed-${protocol}`, kuid };
  assertEqual(
    await kuzzle.security.updateCredentials('local', kuid, { username: renamed.username }),
    renamed,
    'updateCredentials (username)',
  );
  assertEqual(await user.auth.getMyCredentials('local'), renamed, 'getMyCredentials after rename');
  assertEqual(
    await kuzzle.security.deleteCredentials('local', kuid),
    { acknowledged: true },
    'deleteCredentials',
  );
  assertEqual(await kuzzle.security.hasCredentials('local', kuid), false, 'hasCredentials at the end');

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  for (const k of clients) k.disconnect();
}
process.exit(exitCode);
