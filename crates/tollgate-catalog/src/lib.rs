//! The index/collection catalog (`routes.md` §6): names only, no documents. It is what profile
//! `restrictedTo` entries refer to, and what `force`-less profile writes are checked against.
//!
//! Stored as documents of kind [`INDEX`] (id = index name) and [`COLLECTION`] (id = `index/collection`;
//! `/` is not allowed in names, so ids cannot collide).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tollgate_core::{ActionDef, ArgType, Context, Controller, Gate, route};
use tollgate_protocol::errors::{
    SERVICES_STORAGE_INDEX_ALREADY_EXISTS, SERVICES_STORAGE_INVALID_COLLECTION_NAME,
    SERVICES_STORAGE_INVALID_INDEX_NAME, SERVICES_STORAGE_TOO_MANY_CHANGES,
    SERVICES_STORAGE_UNKNOWN_COLLECTION, SERVICES_STORAGE_UNKNOWN_INDEX,
    SERVICES_STORAGE_WRITE_LIMIT_EXCEEDED,
};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::{Expect, Op, Store, StoreError};

pub const INDEX: &str = "index";
pub const COLLECTION: &str = "collection";

/// Attempts of a catalog write racing with other writers.
const ATTEMPTS: usize = 20;

/// Whether `name` is a valid index or collection name.
pub fn valid_name(name: &str) -> bool {
    const FORBIDDEN: &[char] = &[
        '\\', '/', '*', '?', '"', '<', '>', '|', ',', '+', '#', ':', '.', '&', '%', ' ', '\t',
        '\r', '\n',
    ];
    !name.is_empty()
        && name.len() <= 126
        && name != "_all"
        && !name.contains(FORBIDDEN)
        && name
            .chars()
            .all(|c| c.to_lowercase().eq(std::iter::once(c)))
}

/// Maps a store failure to the wire error.
pub fn store_error(e: StoreError) -> KuzzleError {
    e.to_wire()
}

fn collection_id(index: &str, collection: &str) -> String {
    format!("{index}/{collection}")
}

/// The catalog, shared by its controllers and by profile validation.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn index_exists(&self, index: &str) -> Result<bool, KuzzleError> {
        Ok(self
            .store
            .get(INDEX, index)
            .await
            .map_err(store_error)?
            .is_some())
    }

    /// The names of `collections` that do not exist in `index`, in the order given (duplicates kept).
    pub async fn missing_collections(
        &self,
        index: &str,
        collections: &[String],
    ) -> Result<Vec<String>, KuzzleError> {
        let ids: Vec<String> = collections
            .iter()
            .map(|c| collection_id(index, c))
            .collect();
        let found = self
            .store
            .mget(COLLECTION, &ids)
            .await
            .map_err(store_error)?;
        Ok(collections
            .iter()
            .zip(found)
            .filter(|(_, doc)| doc.is_none())
            .map(|(c, _)| c.clone())
            .collect())
    }

    /// Collection names of `index`, sorted.
    pub async fn collections(&self, index: &str) -> Result<Vec<String>, KuzzleError> {
        let prefix = format!("{index}/");
        let page = self
            .store
            .list(COLLECTION, &prefix, 0, None)
            .await
            .map_err(store_error)?;
        Ok(page
            .docs
            .into_iter()
            .map(|d| d.id[prefix.len()..].to_owned())
            .collect())
    }

    pub async fn indexes(&self) -> Result<Vec<String>, KuzzleError> {
        let page = self
            .store
            .list(INDEX, "", 0, None)
            .await
            .map_err(store_error)?;
        Ok(page.docs.into_iter().map(|d| d.id).collect())
    }

    async fn create_index(&self, index: &str) -> Result<(), KuzzleError> {
        let op = Op::Put {
            kind: INDEX,
            id: index.to_owned(),
            body: json!({}),
            expect: Expect::Absent,
        };
        match self.store.commit(vec![op]).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(KuzzleError::new(
                &SERVICES_STORAGE_INDEX_ALREADY_EXISTS,
                vec![json!("public"), json!(index)],
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn delete_index(&self, index: &str) -> Result<(), KuzzleError> {
        for _ in 0..ATTEMPTS {
            let Some(doc) = self.store.get(INDEX, index).await.map_err(store_error)? else {
                return Err(KuzzleError::new(
                    &SERVICES_STORAGE_UNKNOWN_INDEX,
                    vec![json!(index)],
                ));
            };
            let seq = self.store.snapshot(&[]).await.map_err(store_error)?.seq;
            let mut ops = vec![
                Op::KindUnchanged {
                    kind: COLLECTION,
                    since: seq,
                },
                Op::Delete {
                    kind: INDEX,
                    id: index.to_owned(),
                    expect: Expect::Version(doc.version),
                },
            ];
            for c in self.collections(index).await? {
                ops.push(Op::Delete {
                    kind: COLLECTION,
                    id: collection_id(index, &c),
                    expect: Expect::Any,
                });
            }
            match self.store.commit(ops).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(index)],
        ))
    }

    /// Removes `collection` from `index`: `unknown_index` / `unknown_collection` (412) when either
    /// is not in the catalog. Profiles naming it keep their `restrictedTo` entries, as with
    /// `index:delete`.
    async fn delete_collection(&self, index: &str, collection: &str) -> Result<(), KuzzleError> {
        let ops = vec![
            Op::Check {
                kind: INDEX,
                id: index.to_owned(),
                expect: Expect::Present,
            },
            Op::Delete {
                kind: COLLECTION,
                id: collection_id(index, collection),
                expect: Expect::Present,
            },
        ];
        match self.store.commit(ops).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { index: 0 }) => Err(KuzzleError::new(
                &SERVICES_STORAGE_UNKNOWN_INDEX,
                vec![json!(index)],
            )),
            Err(StoreError::Conflict { .. }) => Err(KuzzleError::new(
                &SERVICES_STORAGE_UNKNOWN_COLLECTION,
                vec![json!(index), json!(collection)],
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn create_collection(&self, index: &str, collection: &str) -> Result<(), KuzzleError> {
        for _ in 0..ATTEMPTS {
            let mut ops = Vec::new();
            if !self.index_exists(index).await? {
                ops.push(Op::Put {
                    kind: INDEX,
                    id: index.to_owned(),
                    body: json!({}),
                    expect: Expect::Absent,
                });
            } else {
                ops.push(Op::Check {
                    kind: INDEX,
                    id: index.to_owned(),
                    expect: Expect::Present,
                });
            }
            let id = collection_id(index, collection);
            if self
                .store
                .get(COLLECTION, &id)
                .await
                .map_err(store_error)?
                .is_some()
            {
                return Ok(());
            }
            ops.push(Op::Put {
                kind: COLLECTION,
                id,
                body: json!({}),
                expect: Expect::Absent,
            });
            match self.store.commit(ops).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(index)],
        ))
    }
}

/// The request's `index` (or `collection`) envelope field, required.
fn required_field<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, KuzzleError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| KuzzleError::missing_argument(name))
}

/// The `index` controller.
pub struct IndexController {
    catalog: Catalog,
    /// Decides which indexes of an `mDelete` the caller may delete (`index:delete` on each); without
    /// one, every index may be.
    gate: Option<Arc<dyn Gate>>,
    /// Most indexes one `mDelete` may name (`limits.documentsWriteCount`).
    write_limit: u64,
}

impl IndexController {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            gate: None,
            write_limit: 200,
        }
    }

    /// `index:mDelete` deletes only the indexes `gate` lets the caller delete.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// At most `limit` indexes per `index:mDelete` (413 `write_limit_exceeded` past it).
    pub fn with_write_limit(mut self, limit: u64) -> Self {
        self.write_limit = limit;
        self
    }

    /// `index:mDelete`: the listed indexes that exist and that the caller may delete
    /// (`index:delete` on that index), deleted; `{"deleted": [...]}` in index order. Unknown names
    /// and forbidden indexes are skipped, as Kuzzle does.
    async fn m_delete(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let wanted = match req.body.as_ref().and_then(|b| b.get("indexes")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(names)) => {
                if names.len() as u64 > self.write_limit {
                    return Err(KuzzleError::plain(&SERVICES_STORAGE_WRITE_LIMIT_EXCEEDED));
                }
                names
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| KuzzleError::invalid_type("body.indexes", "string[]"))?
            }
            Some(_) => return Err(KuzzleError::invalid_type("body.indexes", "array")),
        };
        let mut deleted = Vec::new();
        for index in self.catalog.indexes().await? {
            if !wanted.contains(&index.as_str()) {
                continue;
            }
            if let Some(gate) = &self.gate {
                let check = Request::from_json(
                    json!({"controller": "index", "action": "delete", "index": index}),
                    Some(String::new()),
                )
                .map_err(|e| e.error)?;
                if gate.authorize(&check, &ctx.caller).await.is_err() {
                    continue;
                }
            }
            match self.catalog.delete_index(&index).await {
                Ok(()) => deleted.push(index),
                // Deleted meanwhile by another request: not deleted by this one.
                Err(e) if e.id() == SERVICES_STORAGE_UNKNOWN_INDEX.id => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({ "deleted": deleted }))
    }
}
/// The `collection` controller.
pub struct CollectionController(pub Catalog);

/// The description of the `index` argument.
const INDEX_ARG: &str = "The index name.";
/// The description of the `collection` argument.
const COLLECTION_ARG: &str = "The collection name.";

#[async_trait]
impl Controller for IndexController {
    fn name(&self) -> &'static str {
        "index"
    }

    fn actions(&self) -> Vec<ActionDef> {
        vec![
            ActionDef::new("create", &[route("POST", "/:index/_create")])
                .describe("Creates an index.")
                .required("index", ArgType::String, INDEX_ARG),
            ActionDef::new("delete", &[route("DELETE", "/:index")])
                .describe("Deletes an index and its collections.")
                .required("index", ArgType::String, INDEX_ARG),
            ActionDef::new(
                "mDelete",
                &[route("DELETE", "/_mDelete"), route("DELETE", "/_mdelete")],
            )
            .describe(
                "Deletes the listed indexes that exist and that the caller may delete \
                 (index:delete on each); the others are skipped. `{\"deleted\": [names]}`.",
            )
            .body(false, "The indexes to delete.")
            .field(
                "indexes",
                ArgType::ArrayOf(&ArgType::String),
                "Index names (at most limits.documentsWriteCount).",
            ),
            ActionDef::new("exists", &[route("GET", "/:index/_exists")])
                .describe("Whether an index exists: true or false.")
                .required("index", ArgType::String, INDEX_ARG),
            ActionDef::new("list", &[route("GET", "/_list")])
                .describe("The indexes, sorted by name.")
                .arg(
                    "countCollection",
                    ArgType::Boolean,
                    "Also count each index's collections.",
                ),
        ]
    }

    async fn call(&self, action: &str, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let catalog = &self.catalog;
        match action {
            "mDelete" => self.m_delete(req, ctx).await,
            "create" => {
                let index = required_field(req.index_name(), "index")?;
                if !valid_name(index) {
                    return Err(KuzzleError::new(
                        &SERVICES_STORAGE_INVALID_INDEX_NAME,
                        vec![json!(index)],
                    ));
                }
                catalog.create_index(index).await?;
                Ok(Value::Null)
            }
            "delete" => {
                let index = required_field(req.index_name(), "index")?;
                catalog.delete_index(index).await?;
                Ok(json!({"acknowledged": true}))
            }
            "exists" => {
                let index = required_field(req.index_name(), "index")?;
                Ok(json!(
                    valid_name(index) && catalog.index_exists(index).await?
                ))
            }
            "list" => {
                let count = req.boolean("countCollection")?.unwrap_or(false);
                let indexes = catalog.indexes().await?;
                if !count {
                    return Ok(json!({ "indexes": indexes }));
                }
                let mut counts = Map::new();
                for index in &indexes {
                    counts.insert(
                        index.clone(),
                        json!(catalog.collections(index).await?.len()),
                    );
                }
                Ok(json!({"indexes": indexes, "collections": counts}))
            }
            other => Err(KuzzleError::internal(format!(
                "index:{other} is not routed here"
            ))),
        }
    }
}

#[async_trait]
impl Controller for CollectionController {
    fn name(&self) -> &'static str {
        "collection"
    }

    fn actions(&self) -> Vec<ActionDef> {
        vec![
            ActionDef::new("create", &[route("PUT", "/:index/:collection")])
                .describe("Creates a collection, and its index if needed.")
                .required("index", ArgType::String, INDEX_ARG)
                .required("collection", ArgType::String, COLLECTION_ARG)
                .body(
                    false,
                    "Accepted and ignored: the catalog stores names only.",
                )
                .field("mappings", ArgType::Object, "Ignored.")
                .field("settings", ArgType::Object, "Ignored."),
            ActionDef::new("delete", &[route("DELETE", "/:index/:collection")])
                .describe("Deletes a collection from the catalog. The result is null.")
                .required("index", ArgType::String, INDEX_ARG)
                .required("collection", ArgType::String, COLLECTION_ARG),
            ActionDef::new("exists", &[route("GET", "/:index/:collection/_exists")])
                .describe("Whether a collection exists: true or false.")
                .required("index", ArgType::String, INDEX_ARG)
                .required("collection", ArgType::String, COLLECTION_ARG),
            ActionDef::new("list", &[route("GET", "/:index/_list")])
                .describe("The collections of an index, sorted by name.")
                .required("index", ArgType::String, INDEX_ARG)
                .arg(
                    "from",
                    ArgType::IntegerIn(0, i64::MAX),
                    "Collections skipped (default 0).",
                )
                .arg(
                    "size",
                    ArgType::IntegerIn(0, i64::MAX),
                    "Collections returned at most (default 0: all).",
                )
                .arg(
                    "type",
                    ArgType::OneOf(&["all", "stored", "realtime"]),
                    "Which collections: all (default), stored or realtime (none).",
                ),
        ]
    }

    async fn call(
        &self,
        action: &str,
        req: &Request,
        _ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let catalog = &self.0;
        match action {
            "create" => {
                let index = required_field(req.index_name(), "index")?;
                let collection = required_field(req.collection_name(), "collection")?;
                if !valid_name(index) {
                    return Err(KuzzleError::new(
                        &SERVICES_STORAGE_INVALID_INDEX_NAME,
                        vec![json!(index)],
                    ));
                }
                if !valid_name(collection) {
                    return Err(KuzzleError::new(
                        &SERVICES_STORAGE_INVALID_COLLECTION_NAME,
                        vec![json!(collection)],
                    ));
                }
                catalog.create_collection(index, collection).await?;
                Ok(json!({"acknowledged": true}))
            }
            "delete" => {
                let index = required_field(req.index_name(), "index")?;
                let collection = required_field(req.collection_name(), "collection")?;
                catalog.delete_collection(index, collection).await?;
                Ok(Value::Null)
            }
            "exists" => {
                let index = required_field(req.index_name(), "index")?;
                let collection = required_field(req.collection_name(), "collection")?;
                if !valid_name(index) || !valid_name(collection) {
                    return Ok(json!(false));
                }
                let missing = catalog
                    .missing_collections(index, &[collection.to_owned()])
                    .await?;
                Ok(json!(missing.is_empty()))
            }
            "list" => {
                let index = required_field(req.index_name(), "index")?;
                let from = non_negative(req.integer("from")?, "from")?;
                let size = non_negative(req.integer("size")?, "size")?;
                let kind = req.string("type")?.unwrap_or("all");
                if !matches!(kind, "all" | "stored" | "realtime") {
                    return Err(KuzzleError::invalid_argument(
                        "type",
                        r#""all", "stored" or "realtime""#,
                    ));
                }
                if !catalog.index_exists(index).await? {
                    return Err(KuzzleError::new(
                        &SERVICES_STORAGE_UNKNOWN_INDEX,
                        vec![json!(index)],
                    ));
                }
                let names = if kind == "realtime" {
                    Vec::new()
                } else {
                    catalog.collections(index).await?
                };
                let skip = usize::try_from(from).unwrap_or(usize::MAX);
                let take = if size == 0 {
                    usize::MAX
                } else {
                    usize::try_from(size).unwrap_or(usize::MAX)
                };
                let collections: Vec<Value> = names
                    .into_iter()
                    .skip(skip)
                    .take(take)
                    .map(|name| json!({"name": name, "type": "stored"}))
                    .collect();
                let mut out = Map::new();
                out.insert("collections".into(), Value::Array(collections));
                out.insert("type".into(), json!(kind));
                if from != 0 || size != 0 {
                    out.insert("from".into(), json!(from));
                    if size != 0 {
                        out.insert("size".into(), json!(size));
                    }
                }
                Ok(Value::Object(out))
            }
            other => Err(KuzzleError::internal(format!(
                "collection:{other} is not routed here"
            ))),
        }
    }
}

fn non_negative(value: Option<i64>, name: &str) -> Result<i64, KuzzleError> {
    match value {
        None => Ok(0),
        Some(v) if v >= 0 => Ok(v),
        Some(_) => Err(KuzzleError::invalid_argument(
            name,
            "positive integer, or zero",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for ok in ["nyc", "a_b-c", "é", "x".repeat(126).as_str()] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "_all",
            "Nyc",
            "a.b",
            "a/b",
            "a b",
            "a%b",
            "a\tb",
            "x".repeat(127).as_str(),
            "É",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
