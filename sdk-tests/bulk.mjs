// The bulk and replace actions of the security controller, driven by the official Kuzzle JavaScript
// SDK (kuzzle-sdk 7.17.1) against a FRESH Tollgate server: createFirstAdmin, createRestrictedUser,
// replaceUser, revokeTokens, mDeleteUsers (with a partial failure), mDeleteProfiles, mDeleteRoles,
// and a security write with `refresh: true` (the SDK's documented form) over either protocol.
//
// Usage: node bulk.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

const { Kuzzle, WebSocket, Http, User } = sdk;

const { host, port, protocol } = scriptArgs('bulk.mjs');

const connect = () => {
  const k = new Kuzzle(protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }));
  k.autoReconnect = false;
  return k;
};

const kuzzle = connect();
const other = connect();

let exitCode = 1;
try {
  await kuzzle.connect();
  await other.connect();
  await kuzzle.security.createFirstAdmin(
    'root',
    { content: {}, credentials: { local: { username: 'root', password: 'root-pw' } } },
    { reset: true },
  );
  await kuzzle.auth.login('local', { username: 'root', password: 'root-pw' });

  // A role and a profile written with refresh: true.
  const role = await kuzzle.security.createRole(
    'bulk-role',
    { controllers: { auth: { actions: { getMyRights: true } } } },
    { refresh: true },
  );
  assertEqual(role._id, 'bulk-role', 'createRole with refresh: true');
  await kuzzle.security.createProfile('bulk-profile', { policies: [{ roleId: 'bulk-role' }] }, { refresh: true });

  // createRestrictedUser: the profile default, whatever the caller would like.
  const restricted = await kuzzle.security.createRestrictedUser(
    { content: { name: 'R' }, credentials: { local: { username: 'restricted', password: 'r-pw' } } },
    'restricted',
  );
  if (!(restricted instanceof User)) fail(`createRestrictedUser: not a User: ${show(restricted)}`);
  assertEqual(restricted.profileIds, ['default'], 'createRestrictedUser: profileIds');
  await expectKuzzleError(
    kuzzle.security.createRestrictedUser({ content: { profileIds: ['admin'] } }, 'sneaky'),
    'api.assert.forbidden_argument',
    400,
    'createRestrictedUser with profileIds',
  );

  // replaceUser: the content is replaced, the credentials stay.
  const replaced = await kuzzle.security.replaceUser(
    'restricted',
    { profileIds: ['bulk-profile'], nick: 'rr' },
    { refresh: true },
  );
  assertEqual(replaced.profileIds, ['bulk-profile'], 'replaceUser: profileIds');
  assertEqual(replaced.content.nick, 'rr', 'replaceUser: nick');
  if ('name' in replaced.content) fail(`replaceUser kept a replaced key: ${show(replaced)}`);
  await expectKuzzleError(
    kuzzle.security.replaceUser('nobody', { profileIds: ['default'] }),
    'security.user.not_found',
    404,
    'replaceUser of a missing user',
  );

  // revokeTokens (not wrapped by kuzzle-sdk 7.17.1: a raw query): the user's token stops working.
  await other.auth.login('local', { username: 'restricted', password: 'r-pw' });
  // bulk-profile grants auth:getMyRights only.
  const before = await other.auth.getMyRights();
  if (!Array.isArray(before) || before.length === 0) fail(`getMyRights before revokeTokens: ${show(before)}`);
  const revoked = await kuzzle.query({ controller: 'security', action: 'revokeTokens', _id: 'restricted' });
  assertEqual(revoked.result, null, 'revokeTokens: result');
  await expectKuzzleError(
    other.query({ controller: 'auth', action: 'getMyRights' }),
    'security.token.invalid',
    401,
    'getMyRights with a revoked token',
  );
  other.jwt = undefined;

  // mDeleteUsers: one missing id makes a partial error, the others are deleted.
  await kuzzle.security.createUser('gone', { content: { profileIds: ['default'] } });
  const err = await expectKuzzleError(
    kuzzle.security.mDeleteUsers(['gone', 'ghost']),
    'services.storage.incomplete_delete',
    206,
    'mDeleteUsers with a missing id',
  );
  assertEqual(err.count, 1, 'mDeleteUsers: error count');
  assertEqual(err.errors.map((e) => e.id), ['security.user.not_found'], 'mDeleteUsers: errors');
  await expectKuzzleError(kuzzle.security.getUser('gone'), 'security.user.not_found', 404, 'getUser after mDeleteUsers');
  const deleted = await kuzzle.security.mDeleteUsers(['restricted'], { refresh: true });
  assertEqual(deleted, ['restricted'], 'mDeleteUsers: result');

  // mDeleteProfiles then mDeleteRoles.
  assertEqual(await kuzzle.security.mDeleteProfiles(['bulk-profile']), ['bulk-profile'], 'mDeleteProfiles');
  assertEqual(await kuzzle.security.mDeleteRoles(['bulk-role'], { refresh: true }), ['bulk-role'], 'mDeleteRoles');
  await expectKuzzleError(kuzzle.security.getRole('bulk-role'), 'security.role.not_found', 404, 'getRole after mDeleteRoles');

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
  other.disconnect();
}
process.exit(exitCode);
