//! Scroll cursors of the `security` searches (searchProfiles, searchUsers with `scroll`): the hits a
//! search matched, kept on this node until read page after page or expired.
//!
//! A cursor is a snapshot: later writes do not change what it returns, as in Kuzzle. At most
//! `max_cursors` are open on a node; opening one more drops the one closest to expiry.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_protocol::KuzzleError;
use tollgate_protocol::errors::{
    SERVICES_STORAGE_SCROLL_DURATION_TOO_GREAT, SERVICES_STORAGE_UNKNOWN_SCROLL_ID,
};
use tollgate_protocol::{ArgRef, Request};

use crate::tokens::parse_timespan;

/// Lifetime of a cursor read by a scroll action without `scroll` (Kuzzle's `defaults.scrollTTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

struct Cursor {
    /// What the cursor serves: `profile` or `user`.
    kind: &'static str,
    remaining: VecDeque<Value>,
    total: usize,
    page: usize,
    expires: Instant,
}

/// The open cursors of this node.
pub struct Cursors {
    open: Mutex<HashMap<String, Cursor>>,
    max_cursors: usize,
    max_ttl: Duration,
}

impl Cursors {
    pub fn new(max_cursors: usize, max_ttl: Duration) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            max_cursors: max_cursors.max(1),
            max_ttl,
        }
    }

    /// The `scroll` argument: absent → `None`; a timespan string (`"30s"`, `"1m"`, or milliseconds)
    /// of at most the configured maximum.
    pub fn ttl_arg(&self, req: &Request) -> Result<Option<Duration>, KuzzleError> {
        let text = match req.arg("scroll") {
            None => return Ok(None),
            Some(ArgRef::Json(Value::String(s))) => s.clone(),
            Some(ArgRef::Query([Some(s)])) => s.clone(),
            Some(_) => return Err(KuzzleError::invalid_type("scroll", "string")),
        };
        let ms = parse_timespan(&text)
            .and_then(|ms| u64::try_from(ms).ok())
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                KuzzleError::invalid_argument("scroll", "a time to live such as \"30s\" or \"1m\"")
            })?;
        let ttl = Duration::from_millis(ms);
        if ttl > self.max_ttl {
            return Err(KuzzleError::new(
                &SERVICES_STORAGE_SCROLL_DURATION_TOO_GREAT,
                vec![json!(text)],
            ));
        }
        Ok(Some(ttl))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a cursor over `rest`, the hits after the first page; returns its id.
    pub fn open(
        &self,
        kind: &'static str,
        rest: Vec<Value>,
        total: usize,
        page: usize,
        ttl: Duration,
    ) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, c| c.expires > now);
        while open.len() >= self.max_cursors {
            let Some(first) = open
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            open.remove(&first);
        }
        open.insert(
            id.clone(),
            Cursor {
                kind,
                remaining: rest.into(),
                total,
                page,
                expires: now + ttl,
            },
        );
        id
    }

    /// The next page of cursor `id` as `{"hits","scrollId","total"}`; the cursor lives `ttl` more
    /// (default [`DEFAULT_TTL`], or the maximum when lower), and is closed once its last hit is served.
    pub fn next(
        &self,
        kind: &'static str,
        id: &str,
        ttl: Option<Duration>,
    ) -> Result<Value, KuzzleError> {
        let now = Instant::now();
        let mut open = self.lock();
        let unknown = || KuzzleError::plain(&SERVICES_STORAGE_UNKNOWN_SCROLL_ID);
        let cursor = open
            .get_mut(id)
            .filter(|c| c.kind == kind && c.expires > now)
            .ok_or_else(unknown)?;
        let take = cursor.page.min(cursor.remaining.len());
        let hits: Vec<Value> = cursor.remaining.drain(..take).collect();
        let total = cursor.total;
        if cursor.remaining.is_empty() {
            open.remove(id);
        } else {
            cursor.expires = now + ttl.unwrap_or(DEFAULT_TTL.min(self.max_ttl));
        }
        Ok(json!({"hits": hits, "scrollId": id, "total": total}))
    }
}
