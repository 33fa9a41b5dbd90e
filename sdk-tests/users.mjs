// Searching and reading users, profiles and roles, driven by the official Kuzzle JavaScript SDK
// (kuzzle-sdk 7.17.1) against a FRESH Tollgate server: searchUsers with a query, paged by the SDK's
// SearchResult.next() in its three ways (from/size, sort + search_after, scroll → scrollUsers),
// mGetUsers, checkRights, getUserStrategies, searchProfiles with the query of the SDK's own
// documentation and a scroll (scrollProfiles), searchRoles with a query and a sort, the mapping
// actions and refresh, over either protocol.
//
// Usage: node users.mjs <host> <port> <websocket|http>
//
// Prints `ok <protocol>` and exits 0 on success; prints the error and exits 1 on any failure or
// after a global timeout. Run by crates/tollgate-testkit/tests/it/sdk.rs.

import sdk from 'kuzzle-sdk';

import { assertEqual, expectKuzzleError, fail, scriptArgs, show } from './common.mjs';

const { Kuzzle, WebSocket, Http, User, Profile, Role } = sdk;

const { host, port, protocol } = scriptArgs('users.mjs');

const kuzzle = new Kuzzle(
  protocol === 'websocket' ? new WebSocket(host, { port }) : new Http(host, { port }),
);
kuzzle.autoReconnect = false;

/// Every page of a search, following `next()`: the ids of the hits, page by page.
async function pages(result) {
  const out = [];
  while (result) {
    out.push(result.hits.map((h) => h._id));
    result = await result.next();
  }
  return out;
}

let exitCode = 1;
try {
  await kuzzle.connect();
  await kuzzle.security.createFirstAdmin(
    'root',
    { content: { team: 'ops' }, credentials: { local: { username: 'root', password: 'root-pw' } } },
    { reset: true },
  );
  await kuzzle.auth.login('local', { username: 'root', password: 'root-pw' });

  await kuzzle.security.createRole('reader', {
    controllers: { security: { actions: { getProfile: true, searchProfiles: true } } },
  });
  await kuzzle.security.createProfile('readers', { policies: [{ roleId: 'reader' }] });
  const people = [
    ['u1', { profileIds: ['default'], team: 'blue', age: 31 }],
    ['u2', { profileIds: ['readers'], team: 'blue', age: 25 }],
    ['u3', { profileIds: ['default', 'readers'], team: 'red', age: 25 }],
    ['u4', { profileIds: ['default'], team: 'blue' }],
    ['u5', { profileIds: ['readers'], team: 'blue', age: 40 }],
  ];
  for (const [id, content] of people) {
    await kuzzle.security.createUser(id, {
      content,
      credentials: { local: { username: id, password: `${id}-pw` } },
    });
  }

  // 1. A query on a content field; pages of 2 by from/size.
  const blue = { query: { term: { team: 'blue' } } };
  let result = await kuzzle.security.searchUsers(blue, { size: 2 });
  assertEqual(result.total, 4, 'searchUsers team blue: total');
  if (!(result.hits[0] instanceof User)) fail(`searchUsers: hits are not Users: ${show(result.hits)}`);
  assertEqual(result.hits[0].content.team, 'blue', 'searchUsers: content of a hit');
  assertEqual(await pages(result), [['u1', 'u2'], ['u4', 'u5']], 'searchUsers from/size pages');

  // 2. Sorted, paged by search_after (the SDK's next() with a sort and a size).
  result = await kuzzle.security.searchUsers(
    { query: { bool: { filter: [{ terms: { profileIds: ['default', 'readers'] } }], must_not: { term: { _id: 'root' } } } }, sort: [{ age: 'desc' }, '_id'] },
    { size: 2 },
  );
  assertEqual(result.total, 5, 'searchUsers sorted: total');
  assertEqual(await pages(result), [['u5', 'u1'], ['u2', 'u3'], ['u4']], 'searchUsers search_after pages');

  // 3. A scroll: next() calls scrollUsers.
  result = await kuzzle.security.searchUsers(
    { query: { terms: { profileIds: ['readers'] } } },
    { size: 2, scroll: '10s' },
  );
  assertEqual(result.total, 3, 'searchUsers scroll: total');
  assertEqual(await pages(result), [['u2', 'u3'], ['u5']], 'searchUsers scroll pages');
  await expectKuzzleError(
    kuzzle.security.searchUsers({}, { scroll: '1d' }),
    'services.storage.scroll_duration_too_great',
    400,
    'searchUsers with a scroll longer than the limit',
  );
  await expectKuzzleError(
    kuzzle.security.searchUsers({ query: { fuzzy: { team: 'blu' } } }),
    'api.assert.invalid_argument',
    400,
    'searchUsers with a clause outside the subset',
  );

  // 4. mGetUsers, getUserStrategies, checkRights of a given user.
  const got = await kuzzle.security.mGetUsers(['u3', 'u1']);
  assertEqual(got.map((u) => u._id), ['u3', 'u1'], 'mGetUsers: ids in the order asked');
  assertEqual(got[0].profileIds, ['default', 'readers'], 'mGetUsers: profileIds');
  assertEqual(await kuzzle.security.getUserStrategies('u2'), ['local'], 'getUserStrategies');
  assertEqual(
    await kuzzle.security.checkRights('u2', { controller: 'security', action: 'getProfile' }),
    true,
    'checkRights u2 security:getProfile',
  );
  assertEqual(
    await kuzzle.security.checkRights('u2', { controller: 'security', action: 'deleteUser' }),
    false,
    'checkRights u2 security:deleteUser',
  );

  // 5. searchProfiles with the SDK documentation's query, then with a scroll (scrollProfiles).
  let profiles = await kuzzle.security.searchProfiles({ query: { term: { 'policies.roleId': 'default' } } });
  if (!(profiles.hits[0] instanceof Profile)) fail(`searchProfiles: hits are not Profiles: ${show(profiles.hits)}`);
  assertEqual(profiles.hits.map((p) => p._id), ['default'], 'searchProfiles policies.roleId default');
  profiles = await kuzzle.security.searchProfiles({}, { size: 2, scroll: '10s' });
  assertEqual(profiles.total, 4, 'searchProfiles scroll: total (admin, anonymous, default, readers)');
  assertEqual(await pages(profiles), [['admin', 'anonymous'], ['default', 'readers']], 'searchProfiles scroll pages');

  // 6. searchRoles with a query and a sort, paged by search_after.
  const roles = await kuzzle.security.searchRoles(
    { query: { exists: { field: 'controllers.security' } }, sort: [{ _id: 'desc' }] },
    { size: 1 },
  );
  if (!(roles.hits[0] instanceof Role)) fail(`searchRoles: hits are not Roles: ${show(roles.hits)}`);
  assertEqual(await pages(roles), [['reader']], 'searchRoles exists controllers.security');

  // 7. Mappings and refresh.
  const profileMapping = await kuzzle.security.getProfileMapping();
  if (!profileMapping.mapping || !profileMapping.mapping.policies) {
    fail(`getProfileMapping: ${show(profileMapping)}`);
  }
  await kuzzle.security.updateUserMapping({ properties: { team: { type: 'keyword' } } });
  const userMapping = await kuzzle.security.getUserMapping();
  assertEqual(userMapping.mapping.team, { type: 'keyword' }, 'getUserMapping after updateUserMapping');
  await kuzzle.security.refresh('users');

  console.log(`ok ${protocol}`);
  exitCode = 0;
} catch (err) {
  console.error(`FAILED (${protocol}):`, err);
} finally {
  kuzzle.disconnect();
}
process.exit(exitCode);
