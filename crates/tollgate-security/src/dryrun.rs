//! Dry runs of role and profile changes (`dryRun: true`): the change is validated in full, nothing is
//! written, and the answer shows the would-be document and, for every user whose rights change, what
//! it would be granted and what it would lose (`docs/api/security.md` §1.10).
//!
//! Rights are compared action by action, over every action of the Kuzzle API table and every action
//! a role involved names, at each place a policy involved is restricted to: no index (a request
//! without one), each named index, each named collection, and `*` for any index none of them names.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Value, json};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::Store;

use crate::cache::SecuritySnapshot;
use crate::native::NATIVE;
use crate::rights::Scope;
use crate::store_error;
use crate::{USER, profile_ids_of, scan};

/// Users listed in a dry run's answer at most (`total` counts them all).
pub const LISTED_USERS: usize = 1_000;

/// The index that stands for "any index no policy names".
const OTHER_INDEX: &str = "*";

/// `dryRun`: a boolean, `false` by default.
pub(crate) fn requested(req: &Request) -> Result<bool, KuzzleError> {
    Ok(req.boolean("dryRun")?.unwrap_or(false))
}

/// Where rights are compared: (index, collection); `None` index = a request without one.
type Place = (Option<String>, Option<String>);

/// One right: controller, action, place.
type Right = (String, String, Place);

/// A user's profiles before and after the change.
type ProfileChange = (Vec<String>, Vec<String>);

/// What a change of profiles does: granted, revoked, whether anything changes.
type Diff = (Value, Value, bool);

fn places(snapshots: [&SecuritySnapshot; 2], profiles: &BTreeSet<String>) -> Vec<Place> {
    let mut out: BTreeSet<Place> = BTreeSet::new();
    out.insert((None, None));
    let mut restricted = false;
    for snapshot in snapshots {
        for id in profiles {
            let Some(profile) = snapshot.profiles.get(id) else {
                continue;
            };
            for policy in &profile.rights.policies {
                if let Scope::Indexes(map) = &policy.scope {
                    restricted = true;
                    for (index, collections) in map {
                        out.insert((Some(index.clone()), None));
                        for c in collections.iter().flatten() {
                            out.insert((Some(index.clone()), Some(c.clone())));
                        }
                    }
                }
            }
        }
    }
    if restricted {
        out.insert((Some(OTHER_INDEX.to_owned()), None));
    }
    out.into_iter().collect()
}

/// Every (controller, action) to compare: the API table's, and those the roles involved name.
fn actions(
    snapshots: [&SecuritySnapshot; 2],
    profiles: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out: BTreeSet<(String, String)> = NATIVE
        .iter()
        .flat_map(|(c, acts)| acts.iter().map(move |a| ((*c).to_owned(), (*a).to_owned())))
        .collect();
    for snapshot in snapshots {
        for id in profiles {
            let Some(profile) = snapshot.profiles.get(id) else {
                continue;
            };
            for policy in &profile.rights.policies {
                let Some(role) = snapshot.roles.get(&policy.role_id) else {
                    continue;
                };
                for (controller, acts) in &role.rights.controllers {
                    for action in acts.keys() {
                        if controller != "*" && action != "*" {
                            out.insert((controller.clone(), action.clone()));
                        }
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

fn rights(
    snapshot: &SecuritySnapshot,
    profile_ids: &[String],
    actions: &[(String, String)],
    places: &[Place],
) -> BTreeSet<Right> {
    let profiles: Vec<_> = profile_ids
        .iter()
        .filter_map(|id| snapshot.profiles.get(id))
        .collect();
    let mut out = BTreeSet::new();
    for (controller, action) in actions {
        for place in places {
            let allowed = profiles.iter().any(|p| {
                p.rights.allows(
                    snapshot,
                    controller,
                    action,
                    place.0.as_deref(),
                    place.1.as_deref(),
                )
            });
            if allowed {
                out.insert((controller.clone(), action.clone(), place.clone()));
            }
        }
    }
    out
}

fn listing(rights: impl Iterator<Item = Right>) -> Value {
    Value::Array(
        rights
            .map(|(controller, action, (index, collection))| {
                json!({"action": action, "collection": collection, "controller": controller, "index": index})
            })
            .collect(),
    )
}

/// What changes for the users of the profiles `changed`, between `before` and `after`:
/// `{"total", "truncated", "users": [{"_id", "granted", "revoked"}]}`. `new_profiles` gives the
/// users whose own profile lists the change edits (deleteProfile removing assignments).
pub(crate) async fn impact(
    before: &SecuritySnapshot,
    after: &SecuritySnapshot,
    store: &dyn Store,
    changed: &HashSet<String>,
    new_profiles: &HashMap<String, Vec<String>>,
) -> Result<Value, KuzzleError> {
    let involved: BTreeSet<String> = changed.iter().cloned().collect();
    // Every profile a user of a changed profile holds matters too: collect them as users are read.
    let mut holders: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    if changed.contains("anonymous") {
        let anonymous = vec!["anonymous".to_owned()];
        holders.push(("-1".to_owned(), anonymous.clone(), anonymous));
    }
    scan(store, USER, "", |docs| {
        for doc in docs {
            let ids = profile_ids_of(&doc);
            if ids.iter().any(|p| changed.contains(p)) {
                let next = new_profiles
                    .get(&doc.id)
                    .cloned()
                    .unwrap_or_else(|| ids.clone());
                holders.push((doc.id, ids, next));
            }
        }
        true
    })
    .await
    .map_err(store_error)?;
    let mut all: BTreeSet<String> = involved;
    for (_, was, will) in &holders {
        all.extend(was.iter().cloned());
        all.extend(will.iter().cloned());
    }
    let snapshots = [before, after];
    let actions = actions(snapshots, &all);
    let places = places(snapshots, &all);
    // Users holding the same profiles get the same answer: computed once per profile list.
    let mut diffs: BTreeMap<ProfileChange, Diff> = BTreeMap::new();
    let mut users = Vec::new();
    let mut total = 0;
    for (id, was, will) in holders {
        let key = (was, will);
        let (granted, revoked, changes) = diffs
            .entry(key.clone())
            .or_insert_with(|| {
                let old = rights(before, &key.0, &actions, &places);
                let new = rights(after, &key.1, &actions, &places);
                let granted: Vec<Right> = new.difference(&old).cloned().collect();
                let revoked: Vec<Right> = old.difference(&new).cloned().collect();
                let changes = !granted.is_empty() || !revoked.is_empty();
                (
                    listing(granted.into_iter()),
                    listing(revoked.into_iter()),
                    changes,
                )
            })
            .clone();
        if !changes {
            continue;
        }
        total += 1;
        if users.len() < LISTED_USERS {
            users.push(json!({"_id": id, "granted": granted, "revoked": revoked}));
        }
    }
    Ok(json!({"total": total, "truncated": total > users.len(), "users": users}))
}
