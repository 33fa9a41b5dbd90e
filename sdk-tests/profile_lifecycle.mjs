// End-to-end check of the security profile lifecycle, driven by the official Kuzzle JavaScript SDK
// (kuzzle-sdk 7.17.1) against a running Tollgate server.
//
// Usage: node profile_lifecycle.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

// kuzzle-sdk is CommonJS: its named exports are read from the default import.
const { Kuzzle, WebSocket, Http, Profile, Role } = sdk;

const { host, port, protocol } = scriptArgs('profile_lifecycle.mjs');

const suffix = `${protocol}-${process.pid}-${Date.now()}`;
const roleId = `sdk-role-${suffix}`;
const profileId = `sdk-profile-${suffix}`;
const missingRoleId = `sdk-missing-role-${suffix}`;

const kuzzle = new Kuzzle(
  protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
);
// Surface failures immediately instead of waiting for a reconnection.
kuzzle.autoReconnect = false;

let exitCode = 1;
let roleCreated = false;
let profileCreated = false;
try {
  await kuzzle.connect();

  // createRole
  const role = await kuzzle.security.createRole(roleId, {
    controllers: { document: { actions: { get: true } } },
  });
  roleCreated = true;
  if (!(role instanceof Role)) fail(`createRole: not a Role: ${show(role)}`);
  assertEqual(role._id, roleId, 'createRole: _id');
  assertEqual(role.controllers, { document: { actions: { get: true } } }, 'createRole: controllers');

  // createProfile
  const created = await kuzzle.security.createProfile(profileId, {
    policies: [{ roleId }],
    rateLimit: 5,
  });
  profileCreated = true;
  if (!(created instanceof Profile)) fail(`createProfile: not a Profile: ${show(created)}`);
  assertEqual(created._id, profileId, 'createProfile: _id');
  assertEqual(created.policies, [{ roleId }], 'createProfile: policies');
  assertEqual(created.rateLimit, 5, 'createProfile: rateLimit');

  // updateProfile, with the refresh and retryOnConflict options
  const updated = await kuzzle.security.updateProfile(
    profileId,
    { rateLimit: 20, tags: ['x'] },
    { refresh: 'wait_for', retryOnConflict: 3 },
  );
  if (!(updated instanceof Profile)) fail(`updateProfile: not a Profile: ${show(updated)}`);
  assertEqual(updated._id, profileId, 'updateProfile: _id');
  assertEqual(updated.policies, [{ roleId }], 'updateProfile: policies');
  assertEqual(updated.rateLimit, 20, 'updateProfile: rateLimit');
  assertEqual(updated.tags, ['x'], 'updateProfile: tags');

  // getProfile. Profile keeps _id, rateLimit, policies, and copies every other key of _source
  // (here tags and _kuzzle_info).
  const fetched = await kuzzle.security.getProfile(profileId);
  if (!(fetched instanceof Profile)) fail(`getProfile: not a Profile: ${show(fetched)}`);
  assertEqual(fetched._id, profileId, 'getProfile: _id');
  assertEqual(fetched.policies, [{ roleId }], 'getProfile: policies');
  assertEqual(fetched.rateLimit, 20, 'getProfile: rateLimit');
  assertEqual(fetched.tags, ['x'], 'getProfile: tags');
  assertEqual(
    Object.keys(fetched).sort(),
    ['_id', '_kuzzle_info', 'policies', 'rateLimit', 'tags'],
    'getProfile: keys of the Profile object',
  );
  const info = fetched._kuzzle_info;
  if (typeof info !== 'object' || info === null) fail(`getProfile: _kuzzle_info: ${show(info)}`);
  for (const key of ['createdAt', 'updatedAt']) {
    if (typeof info[key] !== 'number') fail(`getProfile: _kuzzle_info.${key}: ${show(info)}`);
  }
  if (info.updatedAt < info.createdAt) fail(`getProfile: updatedAt < createdAt: ${show(info)}`);
  assertEqual(fetched.serialize(), { _id: profileId, policies: [{ roleId }], rateLimit: 20 }, 'getProfile: serialize()');

  // updateProfile with a policy on an unknown role: refused, profile unchanged
  await expectKuzzleError(
    kuzzle.security.updateProfile(profileId, { policies: [{ roleId: missingRoleId }] }),
    'security.role.not_found',
    404,
    'updateProfile with an unknown role',
  );
  const unchanged = await kuzzle.security.getProfile(profileId);
  assertEqual(unchanged.policies, [{ roleId }], 'getProfile after the refused update: policies');
  assertEqual(unchanged.rateLimit, 20, 'getProfile after the refused update: rateLimit');

  // deleteProfile, deleteRole
  const deletedProfile = await kuzzle.security.deleteProfile(profileId);
  profileCreated = false;
  assertEqual(deletedProfile?._id, profileId, 'deleteProfile: result._id');
  const deletedRole = await kuzzle.security.deleteRole(roleId);
  roleCreated = false;
  assertEqual(deletedRole?._id, roleId, 'deleteRole: result._id');

  // The profile is gone
  await expectKuzzleError(
    kuzzle.security.getProfile(profileId),
    'security.profile.not_found',
    404,
    'getProfile after deleteProfile',
  );

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
  // Best-effort cleanup, so that a failure leaves nothing behind on a shared server.
  try {
    if (profileCreated) await kuzzle.security.deleteProfile(profileId);
    if (roleCreated) await kuzzle.security.deleteRole(roleId);
  } catch {
    // ignored: the original error is what matters
  }
} finally {
  kuzzle.disconnect();
}
process.exit(exitCode);
