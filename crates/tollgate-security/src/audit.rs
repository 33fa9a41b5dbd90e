//! The audit trail: every write to roles, profiles, users, credentials and the catalog is recorded,
//! in the same batch (so in the same transaction) as the write itself: who asked (the caller's kuid,
//! `-1` for anonymous), when, through which action, the target, its `_version` before and after,
//! the JSON diff, and the document as written. A write that is rolled back leaves no record; a
//! credential's record carries neither the document nor a diff (password hashes never enter it).
//!
//! [`Audit`] is a commit layer of the store the controllers write through: it adds the records to
//! each batch committed while serving a request ([`tollgate_core::scope`]). Writes made outside a request (the
//! bootstrap, housekeeping) are not audited.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tollgate_catalog::{COLLECTION, INDEX};
use tollgate_storage::layer::CommitLayer;
use tollgate_storage::{Committed, Doc, Expect, Kind, Op, Store, StoreError};

use crate::apikeys::API_KEY;
use crate::{CREDENTIAL, PROFILE, ROLE, USER, now_ms};

/// Store kind of audit records (id: `<ms, 13 digits>-<writer>-<counter>`, so listing order is time
/// order).
pub const AUDIT: &str = "audit";

/// The kinds whose writes are recorded.
const AUDITED: &[Kind] = &[ROLE, PROFILE, USER, CREDENTIAL, INDEX, COLLECTION, API_KEY];

/// An audited body without its secrets: an API key's `fingerprint` (the hash of its token) never
/// enters a record.
fn redacted(kind: Kind, body: Option<&Value>) -> Option<Cow<'_, Value>> {
    let body = body?;
    if kind == API_KEY
        && let Value::Object(map) = body
        && map.contains_key("fingerprint")
    {
        let mut map = map.clone();
        map.shift_remove("fingerprint");
        return Some(Cow::Owned(Value::Object(map)));
    }
    Some(Cow::Borrowed(body))
}

/// The audit layer; see the module documentation.
pub struct Audit {
    /// Tells this writer's record ids from other nodes'.
    writer: String,
    counter: AtomicU64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("writer", &self.writer)
            .finish()
    }
}

impl Default for Audit {
    fn default() -> Self {
        Self::new()
    }
}

impl Audit {
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            writer: format!("{:08x}", nanos ^ std::process::id().rotate_left(16)),
            counter: AtomicU64::new(0),
        }
    }

    /// The records of `ops`, as puts to add to their batch.
    async fn records(
        &self,
        below: &dyn Store,
        scope: &tollgate_core::scope::RequestScope,
        ops: &[Op],
    ) -> Result<Vec<Op>, StoreError> {
        let targets: Vec<(Kind, &str, Option<&Value>)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { kind, id, body, .. } if AUDITED.contains(kind) => {
                    Some((*kind, id.as_str(), Some(body)))
                }
                Op::Delete { kind, id, .. } if AUDITED.contains(kind) => {
                    Some((*kind, id.as_str(), None))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let at = now_ms();
        let mut records = Vec::with_capacity(targets.len());
        for kind in AUDITED {
            let ids: Vec<String> = targets
                .iter()
                .filter(|t| t.0 == *kind)
                .map(|t| t.1.to_owned())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let before = below.mget(kind, &ids).await?;
            for ((_, id, after), before) in targets.iter().filter(|t| t.0 == *kind).zip(before) {
                let secret = *kind == CREDENTIAL;
                let version_after = after.map(|_| before.as_ref().map_or(1, |d| d.version + 1));
                // Borrowed unless a secret is taken out: the record copies the new document once.
                let (before_body, after_body) = (
                    redacted(kind, before.as_ref().map(|d| &d.body)),
                    redacted(kind, *after),
                );
                let diff = if secret {
                    Value::Null
                } else {
                    diff(before_body.as_deref(), after_body.as_deref())
                };
                let document = match after_body {
                    _ if secret => Value::Null,
                    Some(body) => body.into_owned(),
                    None => Value::Null,
                };
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                // Built field by field: the diff and the document move in (`json!` would copy
                // them through the serializer).
                let mut record = Map::with_capacity(9);
                let mut field = |key: &str, value: Value| record.insert(key.to_owned(), value);
                field(
                    "action",
                    format!("{}:{}", scope.controller, scope.action).into(),
                );
                field("at", at.into());
                field("author", scope.kuid.clone().into());
                field("diff", diff);
                field("document", document);
                field("kind", (*kind).into());
                field("target", (*id).into());
                field("versionAfter", version_after.into());
                field("versionBefore", before.as_ref().map(|d| d.version).into());
                records.push(Op::Put {
                    kind: AUDIT,
                    id: format!("{at:013}-{}-{n:010}", self.writer),
                    body: Value::Object(record),
                    expect: Expect::Any,
                });
            }
        }
        Ok(records)
    }
}

/// What changed from `before` to `after` (either absent: created, deleted), `_kuzzle_info` aside:
/// `{"added": {pointer: value}, "removed": {pointer: value}, "changed": {pointer: {"from","to"}}}`,
/// objects compared key by key (JSON pointers), anything else as a whole.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Value {
    let mut out = Changes::default();
    let empty = Value::Object(Map::new());
    walk(
        "",
        before.unwrap_or(&empty),
        after.unwrap_or(&empty),
        &mut out,
    );
    let mut diff = Map::with_capacity(3);
    diff.insert("added".into(), Value::Object(out.added));
    diff.insert("changed".into(), Value::Object(out.changed));
    diff.insert("removed".into(), Value::Object(out.removed));
    Value::Object(diff)
}

/// Keys added, removed, changed (JSON pointer → value).
#[derive(Default)]
struct Changes {
    added: Map<String, Value>,
    removed: Map<String, Value>,
    changed: Map<String, Value>,
}

fn pointer(base: &str, key: &str) -> String {
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn walk(at: &str, before: &Value, after: &Value, out: &mut Changes) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, bv) in b {
                if at.is_empty() && key == "_kuzzle_info" {
                    continue;
                }
                match a.get(key) {
                    None => {
                        out.removed.insert(pointer(at, key), bv.clone());
                    }
                    // Equal values add nothing: their pointer is not even made.
                    Some(av) if av == bv => {}
                    Some(av) => walk(&pointer(at, key), bv, av, out),
                }
            }
            for (key, av) in a {
                if (at.is_empty() && key == "_kuzzle_info") || b.contains_key(key) {
                    continue;
                }
                out.added.insert(pointer(at, key), av.clone());
            }
        }
        (b, a) if b != a => {
            out.changed
                .insert(at.to_owned(), json!({"from": b, "to": a}));
        }
        _ => {}
    }
}

#[async_trait]
impl CommitLayer for Audit {
    async fn commit(&self, below: &dyn Store, mut ops: Vec<Op>) -> Result<Committed, StoreError> {
        let Some(scope) = tollgate_core::scope::current() else {
            return below.commit(ops).await;
        };
        let written = ops.len();
        let records = self.records(below, &scope, &ops).await?;
        ops.extend(records);
        let mut committed = below.commit(ops).await?;
        // The callers see the versions of their own operations only.
        committed.versions.truncate(written);
        Ok(committed)
    }
}

/// Deletes the audit records older than `before_ms` (they are listed oldest first); returns how
/// many.
pub async fn purge(store: &dyn Store, before_ms: u64) -> Result<usize, StoreError> {
    const PAGE: u64 = 1_000;
    let cutoff = format!("{before_ms:013}");
    let mut purged = 0;
    loop {
        // The oldest records first; the ones deleted by the round before are gone.
        let docs = store.list_after(AUDIT, "", None, PAGE).await?;
        let old: Vec<Op> = docs
            .iter()
            .take_while(|d| d.id.as_str() < cutoff.as_str())
            .map(|d| Op::Delete {
                kind: AUDIT,
                id: d.id.clone(),
                expect: Expect::Any,
            })
            .collect();
        let all_old = old.len() as u64 == PAGE;
        if old.is_empty() {
            return Ok(purged);
        }
        purged += old.len();
        store.commit(old).await?;
        if !all_old {
            return Ok(purged);
        }
    }
}

/// Every audit record, oldest first, that `keep` accepts.
pub async fn records(
    store: &dyn Store,
    keep: impl Fn(&Doc) -> bool,
) -> Result<Vec<Doc>, StoreError> {
    let mut out = Vec::new();
    crate::scan(store, AUDIT, "", |docs| {
        out.extend(docs.into_iter().filter(&keep));
        true
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_name_each_changed_key_by_its_pointer() {
        let before = json!({"policies":[{"roleId":"a"}],"rateLimit":1,"x":{"a/b":1,"keep":2},"_kuzzle_info":{"updatedAt":1}});
        let after = json!({"policies":[{"roleId":"b"}],"x":{"a/b":2,"keep":2,"new":null},"y":true,"_kuzzle_info":{"updatedAt":2}});
        assert_eq!(
            diff(Some(&before), Some(&after)),
            json!({
                "added": {"/x/new": null, "/y": true},
                "changed": {"/policies": {"from":[{"roleId":"a"}],"to":[{"roleId":"b"}]}, "/x/a~1b": {"from":1,"to":2}},
                "removed": {"/rateLimit": 1}
            })
        );
        assert_eq!(
            diff(None, Some(&json!({"a":1}))),
            json!({"added":{"/a":1},"changed":{},"removed":{}})
        );
        assert_eq!(
            diff(Some(&json!({"a":1})), None),
            json!({"added":{},"changed":{},"removed":{"/a":1}})
        );
    }
}
