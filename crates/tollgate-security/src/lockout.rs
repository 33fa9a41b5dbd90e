//! The lock-out guard: a role, profile or user change after which no user could call both
//! `security:updateProfile` and `security:updateRole` (no administrator left to undo it) is refused
//! with `security.rights.lockout` (412), unless the request says `allowLockout: true`.
//!
//! Most changes cannot lock anyone out, and are checked from the cache alone: a change that takes
//! administration away from no profile and from no user needs nothing more. Only a change that does
//! looks for another administrator among the stored users (page by page, stopping at the first),
//! and then returns guards for the batch (the kinds `user`, `profile` and `role` unchanged since the
//! check), so that two concurrent changes cannot together remove the last administrator.

use std::collections::HashSet;

use serde_json::Value;
use tollgate_protocol::errors::SECURITY_RIGHTS_LOCKOUT;
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::{Doc, Kind, Op, Store};

use crate::cache::{SecurityCache, SecuritySnapshot};
use crate::{PROFILE, ROLE, USER, profile_ids_of, scan, store_error};

/// The actions whose holders can repair any mistake.
const ADMIN_ACTIONS: [(&str, &str); 2] =
    [("security", "updateProfile"), ("security", "updateRole")];

/// One change of a batch, as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Planned<'a> {
    /// A role or profile written (`Some` source) or deleted (`None`).
    Definition {
        kind: Kind,
        id: &'a str,
        source: Option<&'a Value>,
    },
    /// A user's profiles after the change; `None`: the user is deleted.
    User {
        id: &'a str,
        profile_ids: Option<&'a [String]>,
    },
}

/// `allowLockout`: a boolean, `false` by default.
pub(crate) fn allowed(req: &Request) -> Result<bool, KuzzleError> {
    Ok(req.boolean("allowLockout")?.unwrap_or(false))
}

/// The profiles of `snapshot` that grant every admin action.
fn admin_profiles(snapshot: &SecuritySnapshot) -> HashSet<String> {
    snapshot
        .profiles
        .iter()
        .filter(|(_, p)| {
            ADMIN_ACTIONS
                .iter()
                .all(|(c, a)| p.rights.allows(snapshot, c, a, None, None))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Checks `changes` (unless `allow`); returns the guards to add at the end of their batch (empty
/// when the change could not lock anyone out), or `security.rights.lockout`.
pub(crate) async fn guard(
    cache: &SecurityCache,
    store: &dyn Store,
    changes: &[Planned<'_>],
    allow: bool,
) -> Result<Vec<Op>, KuzzleError> {
    if allow {
        return Ok(Vec::new());
    }
    let before = cache.snapshot();
    // Settled from the profiles the change touches only, so the common case costs a few rights
    // checks: nobody can lose administration through a profile that did not grant it.
    let administers = |snapshot: &SecuritySnapshot, id: &str| {
        snapshot.profiles.get(id).is_some_and(|p| {
            ADMIN_ACTIONS
                .iter()
                .all(|(c, a)| p.rights.allows(snapshot, c, a, None, None))
        })
    };
    // The profiles that administer now and that the change may take it from.
    let mut touched: Vec<String> = Vec::new();
    let mut users_losing = false;
    // Each changed user's profiles before the change, read once.
    let mut old_profiles: Vec<Vec<String>> = Vec::new();
    for change in changes {
        match *change {
            Planned::Definition { kind, id, .. } if kind == PROFILE => {
                if administers(&before, id) {
                    touched.push(id.to_owned());
                }
            }
            Planned::Definition { id, .. } => {
                touched.extend(
                    before
                        .profiles
                        .iter()
                        .filter(|(pid, p)| {
                            p.rights.policies.iter().any(|q| q.role_id == id)
                                && administers(&before, pid)
                        })
                        .map(|(pid, _)| pid.clone()),
                );
            }
            Planned::User { id, .. } => {
                let old = cache
                    .user(id)
                    .await
                    .map_err(store_error)?
                    .map(|u| u.profile_ids.to_vec())
                    .unwrap_or_default();
                users_losing |= old.iter().any(|p| administers(&before, p));
                old_profiles.push(old);
            }
        }
    }
    if touched.is_empty() && !users_losing {
        return Ok(Vec::new());
    }
    // Everyone, even without a token, administers now, and the change leaves the anonymous
    // profile and its roles alone: it still will (a fresh install, before its rights are restricted).
    let anonymous_kept = before.profiles.get("anonymous").is_some_and(|p| {
        changes.iter().all(|c| match *c {
            Planned::Definition { kind, id, .. } if kind == PROFILE => id != "anonymous",
            Planned::Definition { id, .. } => p.rights.policies.iter().all(|q| q.role_id != id),
            Planned::User { .. } => true,
        })
    });
    if anonymous_kept && administers(&before, "anonymous") {
        return Ok(Vec::new());
    }
    let mut after = (*before).clone();
    for change in changes {
        if let Planned::Definition { kind, id, source } = *change {
            let doc = source.map(|body| Doc {
                id: id.to_owned(),
                version: 0,
                body: body.clone(),
            });
            after.apply_rights(kind, id, doc.as_ref());
        }
    }
    // Everyone, even without a token, can administer: nobody is locked out.
    if administers(&after, "anonymous") {
        return Ok(Vec::new());
    }
    let mut at_risk = touched.iter().any(|id| !administers(&after, id));
    let users = changes.iter().filter_map(|c| match *c {
        Planned::User { profile_ids, .. } => Some(profile_ids),
        Planned::Definition { .. } => None,
    });
    for (profile_ids, old) in users.zip(&old_profiles) {
        let was = old.iter().any(|p| administers(&before, p));
        let keeps = profile_ids.is_some_and(|ids| ids.iter().any(|p| administers(&after, p)));
        at_risk |= was && !keeps;
    }
    if !at_risk {
        return Ok(Vec::new());
    }
    let admin = admin_profiles(&after);
    let holds = |ids: &[String], set: &HashSet<String>| ids.iter().any(|p| set.contains(p));
    // Someone may lose administration: is anyone left with it? The guards make the batch fail if
    // users, profiles or roles change meanwhile (it is then checked again).
    let seq = store.current_seq().await.map_err(store_error)?;
    let planned_user = |id: &str| {
        changes.iter().find_map(|c| match *c {
            Planned::User {
                id: changed,
                profile_ids,
            } if changed == id => Some(profile_ids),
            _ => None,
        })
    };
    let mut found = false;
    scan(store, USER, "", |docs| {
        found = docs.iter().any(|doc| match planned_user(&doc.id) {
            Some(Some(ids)) => holds(ids, &admin),
            Some(None) => false,
            None => holds(&profile_ids_of(doc), &admin),
        });
        !found
    })
    .await
    .map_err(store_error)?;
    if !found {
        return Err(KuzzleError::plain(&SECURITY_RIGHTS_LOCKOUT));
    }
    Ok([USER, PROFILE, ROLE]
        .into_iter()
        .map(|kind| Op::KindUnchanged { kind, since: seq })
        .collect())
}
