//! The searches of the `security` controller over the query engine ([`crate::query`]):
//! searchProfiles, searchRoles, searchUsers, and their scroll actions (scrollProfiles, scrollUsers);
//! mGetUsers.
//!
//! Profiles and roles are searched in this node's cache; users are read from the store a page at a
//! time ([`crate::scan`]), keeping only the hits of the requested window (or, for a scroll, every hit,
//! at most `documents_fetch_count`).

use std::cmp::Ordering;

use serde_json::{Value, json};
use tollgate_protocol::errors::{
    API_ASSERT_MUTUALLY_EXCLUSIVE, SERVICES_STORAGE_GET_LIMIT_EXCEEDED,
};
use tollgate_protocol::{ArgRef, KuzzleError, Request};

use crate::controller::{SecurityController, doc_result};
use crate::query::{self, Field, Query, SortKey};
use crate::{PROFILE, USER, scan, store_error};

/// Largest `from + size` of a search read from the store (users), as Elasticsearch's
/// `index.max_result_window`; raised to `documents_fetch_count` when that is higher.
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// What one search action accepts.
pub(crate) struct SearchSpec {
    /// The legacy body filter (`roles` or `controllers`), if the action has one.
    pub filter: Option<&'static str>,
    /// Whether `scroll` opens a cursor (else it is refused with `unexpected_argument`).
    pub scroll: bool,
    /// Whether `body.search_after` pages the hits (else it is refused with `unexpected_argument`).
    pub search_after: bool,
}

/// The checked arguments of a search.
pub(crate) struct Search {
    pub from: usize,
    pub size: usize,
    pub scroll: Option<std::time::Duration>,
    pub query: Query,
    pub sort: Vec<SortKey>,
    /// The names of the legacy filter (empty: none).
    pub names: Vec<String>,
    /// `body.search_after`: only the hits sorting after these values (one per sort key).
    pub after: Option<Vec<Value>>,
}

impl Search {
    /// Whether a hit comes after `search_after` (always, without it).
    pub fn is_after(&self, id: &str, source: &Value) -> bool {
        self.after
            .as_ref()
            .is_none_or(|after| query::sorts_after(&self.sort, after, id, source))
    }
}

pub(crate) fn non_negative(req: &Request, name: &str) -> Result<Option<i64>, KuzzleError> {
    match req.integer(name)? {
        Some(n) if n < 0 => Err(KuzzleError::invalid_argument(
            name,
            "positive integer, or zero",
        )),
        n => Ok(n),
    }
}

impl SecurityController {
    /// `from`, `size`, `lang`, `scroll`, then the body: the legacy filter, `query`, `sort`.
    pub(crate) fn search_request(
        &self,
        req: &Request,
        spec: &SearchSpec,
    ) -> Result<Search, KuzzleError> {
        let limit = self.config.documents_fetch_count;
        let from = non_negative(req, "from")?.unwrap_or(0);
        let size = non_negative(req, "size")?
            .unwrap_or_else(|| i64::try_from(limit.min(10_000)).unwrap_or(10_000));
        if size as u64 > limit {
            return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
        }
        if let Some(lang) = req.string("lang")?
            && lang != "elasticsearch"
            && lang != "koncorde"
        {
            return Err(KuzzleError::invalid_argument(
                "lang",
                r#""elasticsearch" or "koncorde""#,
            ));
        }
        let scroll = if spec.scroll {
            self.cursors.ttl_arg(req)?
        } else if req.arg("scroll").is_some() {
            return Err(KuzzleError::unexpected_argument(
                "scroll",
                &["from", "size", "lang"],
            ));
        } else {
            None
        };
        let mut accepted: Vec<&str> = spec.filter.into_iter().collect();
        accepted.extend(["query", "sort"]);
        if spec.search_after {
            accepted.push("search_after");
        }
        let mut names = Vec::new();
        let mut query = Query::MatchAll;
        let mut sort = Vec::new();
        let mut has_query = false;
        let mut after = None;
        if let Some(body) = &req.body {
            if let Some(key) = body.keys().find(|k| !accepted.contains(&k.as_str())) {
                return Err(KuzzleError::unexpected_argument(
                    format!("body.{key}"),
                    &accepted,
                ));
            }
            if let Some(filter) = spec.filter {
                match body.get(filter) {
                    None => {}
                    Some(Value::Array(items)) => {
                        names = items
                            .iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                KuzzleError::invalid_type(format!("body.{filter}"), "string[]")
                            })?;
                    }
                    Some(_) => {
                        return Err(KuzzleError::invalid_type(
                            format!("body.{filter}"),
                            "string[]",
                        ));
                    }
                }
            }
            if let Some(q) = body.get("query").filter(|q| !q.is_null()) {
                query = query::parse(q, "body.query")?;
                has_query = true;
            }
            if let Some(s) = body.get("sort").filter(|s| !s.is_null()) {
                sort = query::parse_sort(s, "body.sort")?;
            }
            after = match body.get("search_after").filter(|v| !v.is_null()) {
                None => None,
                Some(Value::Array(values)) if values.len() == sort.len() && !sort.is_empty() => {
                    Some(values.clone())
                }
                Some(_) => {
                    return Err(KuzzleError::invalid_argument(
                        "body.search_after",
                        "an array with one value per body.sort key",
                    ));
                }
            };
        }
        if after.is_some() && (scroll.is_some() || from != 0) {
            return Err(KuzzleError::invalid_argument(
                "body.search_after",
                "no scroll and from 0 (search_after pages by the sort values)",
            ));
        }
        if has_query && !names.is_empty() {
            let filter = spec.filter.unwrap_or("");
            return Err(KuzzleError::new(
                &API_ASSERT_MUTUALLY_EXCLUSIVE,
                vec![json!(format!("body.{filter}")), json!("body.query")],
            ));
        }
        Ok(Search {
            from: usize::try_from(from).unwrap_or(usize::MAX),
            size: usize::try_from(size).unwrap_or(usize::MAX),
            scroll,
            query,
            sort,
            names,
            after,
        })
    }

    /// The answer of a search over `matched` (`(_id, _source, _version)`, every match): sorted, then
    /// the page `from`/`size`, and with `scroll` a cursor over the rest.
    fn answer(
        &self,
        kind: &'static str,
        search: &Search,
        mut matched: Vec<(String, Value, u64)>,
        total: usize,
    ) -> Result<Value, KuzzleError> {
        matched.retain(|(id, source, _)| search.is_after(id, source));
        matched.sort_by(|a, b| query::compare(&search.sort, (&a.0, &a.1), (&b.0, &b.1)));
        let mut hits: Vec<Value> = matched
            .into_iter()
            .skip(search.from)
            .map(|(id, source, version)| doc_result(&id, version, source))
            .collect();
        let rest = hits.split_off(search.size.min(hits.len()));
        match search.scroll {
            None => Ok(json!({"hits": hits, "total": total})),
            Some(ttl) => {
                let id = self.cursors.open(kind, rest, total, search.size, ttl);
                Ok(json!({"hits": hits, "scrollId": id, "total": total}))
            }
        }
    }

    /// With a scroll, every hit is kept for the cursor: more than `documents_fetch_count` is refused.
    fn check_scroll_total(&self, search: &Search, total: usize) -> Result<(), KuzzleError> {
        if search.scroll.is_some() && total as u64 > self.config.documents_fetch_count {
            return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
        }
        Ok(())
    }

    /// `security:searchProfiles`. The legacy `roles` filter is the query
    /// `{"terms":{"policies.roleId":roles}}`.
    pub(crate) fn search_profiles(&self, req: &Request) -> Result<Value, KuzzleError> {
        let mut search = self.search_request(
            req,
            &SearchSpec {
                filter: Some("roles"),
                scroll: true,
                search_after: true,
            },
        )?;
        if !search.names.is_empty() {
            search.query = Query::Terms(
                Field::Path(vec!["policies".into(), "roleId".into()]),
                search.names.iter().map(|n| json!(n)).collect(),
            );
        }
        let snapshot = self.cache.snapshot();
        let matched: Vec<(String, Value, u64)> = snapshot
            .profiles
            .iter()
            .filter(|(id, p)| search.query.matches(id, &p.doc.body))
            .map(|(id, p)| (id.clone(), p.doc.body.clone(), p.doc.version))
            .collect();
        let total = matched.len();
        self.check_scroll_total(&search, total)?;
        self.answer(PROFILE, &search, matched, total)
    }

    /// `security:searchRoles`: `controllers` matches the roles with a key in `controllers` that is
    /// listed or is `*`. No scroll (Kuzzle has no scrollRoles).
    pub(crate) fn search_roles(&self, req: &Request) -> Result<Value, KuzzleError> {
        let search = self.search_request(
            req,
            &SearchSpec {
                filter: Some("controllers"),
                scroll: false,
                search_after: true,
            },
        )?;
        let snapshot = self.cache.snapshot();
        let matched: Vec<(String, Value, u64)> = snapshot
            .roles
            .iter()
            .filter(|(id, r)| {
                (search.names.is_empty()
                    || r.rights
                        .controllers
                        .keys()
                        .any(|c| c == "*" || search.names.contains(c)))
                    && search.query.matches(id, &r.doc.body)
            })
            .map(|(id, r)| (id.clone(), r.doc.body.clone(), r.doc.version))
            .collect();
        let total = matched.len();
        self.answer(crate::ROLE, &search, matched, total)
    }

    /// `security:searchUsers`: the stored users (not the anonymous user), read page by page.
    pub(crate) async fn search_users(&self, req: &Request) -> Result<Value, KuzzleError> {
        let mut search = self.search_request(
            req,
            &SearchSpec {
                filter: None,
                scroll: true,
                search_after: true,
            },
        )?;
        let limit = usize::try_from(self.config.documents_fetch_count).unwrap_or(usize::MAX);
        let max_window = MAX_RESULT_WINDOW.max(limit);
        // The default page ends at the window's end; an explicit one must fit in it.
        if req.arg("size").is_none() {
            search.size = search.size.min(max_window.saturating_sub(search.from));
        }
        let window = search.from.saturating_add(search.size);
        if search.scroll.is_none() && window > max_window {
            return Err(KuzzleError::invalid_argument(
                "from",
                &format!("an offset such that from + size is at most {max_window}"),
            ));
        }
        let keys = &search.sort;
        let by_sort = |a: &(String, Value, u64), b: &(String, Value, u64)| -> Ordering {
            query::compare(keys, (&a.0, &a.1), (&b.0, &b.1))
        };
        let mut kept: Vec<(String, Value, u64)> = Vec::new();
        let mut total = 0usize;
        let mut too_many = false;
        scan(self.store.as_ref(), USER, "", |docs| {
            for d in docs {
                if !search.query.matches(&d.id, &d.body) {
                    continue;
                }
                total += 1;
                // `total` counts every match; the page starts after `search_after`.
                if !search.is_after(&d.id, &d.body) {
                    continue;
                }
                if search.scroll.is_some() {
                    if total > limit {
                        too_many = true;
                        return false;
                    }
                    kept.push((d.id, d.body, d.version));
                } else if window > 0 {
                    kept.push((d.id, d.body, d.version));
                    // Only the best `window` hits can be answered: trim now and then.
                    if kept.len() >= window.saturating_mul(2).max(1_024) {
                        kept.sort_by(by_sort);
                        kept.truncate(window);
                    }
                }
            }
            true
        })
        .await
        .map_err(store_error)?;
        if too_many {
            return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
        }
        self.answer(USER, &search, kept, total)
    }

    /// `security:scrollProfiles` / `scrollUsers`: `scrollId` (required string), `scroll` (optional
    /// new lifetime).
    pub(crate) fn scroll(&self, kind: &'static str, req: &Request) -> Result<Value, KuzzleError> {
        let id = match req.string("scrollId")? {
            None | Some("") => return Err(KuzzleError::missing_argument("scrollId")),
            Some(id) => id,
        };
        let ttl = self.cursors.ttl_arg(req)?;
        self.cursors.next(kind, id, ttl)
    }

    /// `security:mGetUsers`: `body.ids`, or else the `ids` argument (an array, or comma-separated
    /// ids). Unknown ids are left out, as Kuzzle does; hits follow the request order.
    pub(crate) async fn mget_users(&self, req: &Request) -> Result<Value, KuzzleError> {
        let from_body = match req.body.as_ref().and_then(|b| b.get("ids")) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| KuzzleError::invalid_type("body.ids", "string[]"))?,
            ),
            Some(_) => return Err(KuzzleError::invalid_type("body.ids", "array")),
        };
        let ids = match from_body {
            Some(ids) => ids,
            None => match req.arg("ids") {
                None => return Err(KuzzleError::missing_argument("ids")),
                Some(ArgRef::Json(Value::String(s))) => split_ids(s),
                Some(_) => req
                    .string_list("ids")?
                    .ok_or_else(|| KuzzleError::missing_argument("ids"))?,
            },
        };
        if ids.len() as u64 > self.config.documents_fetch_count {
            return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
        }
        let found = self.store.mget(USER, &ids).await.map_err(store_error)?;
        let hits: Vec<Value> = ids
            .iter()
            .zip(found)
            .filter_map(|(id, doc)| doc.map(|d| doc_result(id, d.version, d.body)))
            .collect();
        Ok(json!({ "hits": hits }))
    }
}

fn split_ids(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
