//! Helpers shared by the fuzz targets: exercising every typed getter of a [`Request`], serializing
//! the answers a front-end would send, and the real route tree and security fixtures, built once.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use tollgate_catalog::{COLLECTION, Catalog, CollectionController, INDEX, IndexController};
use tollgate_core::Router;
use tollgate_http::routes::RouteTree;
use tollgate_protocol::{Args, Encoding, KuzzleError, Request, Response};
use tollgate_security::cache::SecuritySnapshot;
use tollgate_security::tokens::Secret;
use tollgate_security::{
    AuthController, AuthFailures, HashCost, Passwords, SecurityCache, SecurityConfig,
    SecurityController, TokenConfig,
};
use tollgate_server::ServerController;
use tollgate_storage::memory::MemoryStore;
use tollgate_storage::{Expect, Op, Store};

/// Argument names the controllers read, plus a few edge cases.
pub const ARG_NAMES: &[&str] = &[
    "_id",
    "force",
    "strict",
    "refresh",
    "retryOnConflict",
    "from",
    "size",
    "scroll",
    "ids",
    "strategy",
    "expiresIn",
    "reset",
    "cookieAuth",
    "onAssignedUsers",
    "lang",
    "kuid",
    "global",
    "countCollection",
    "type",
    "all",
    "jwt",
    "index",
    "collection",
    "",
];

/// Calls every typed getter on `name`. Results are dropped: only panics matter here, and the
/// getters' consistency with one another is checked.
pub fn exercise_arg(req: &Request, name: &str) {
    let present = req.arg(name).is_some();
    let string = req.string(name);
    let boolean = req.boolean(name);
    let integer = req.integer(name);
    let list = req.string_list(name);
    if !present {
        // An absent argument is absent for every getter.
        assert!(matches!(string, Ok(None)), "string of absent {name:?}");
        assert!(matches!(boolean, Ok(None)), "boolean of absent {name:?}");
        assert!(matches!(integer, Ok(None)), "integer of absent {name:?}");
        assert!(matches!(list, Ok(None)), "string_list of absent {name:?}");
    }
    for e in [string.err(), boolean.err(), integer.err(), list.err()]
        .into_iter()
        .flatten()
    {
        check_error(&e);
    }
}

/// Exercises the getters on the usual names and on every argument the request carries, then
/// serializes the success and failure envelopes as both front-ends do.
pub fn exercise_request(req: &Request) {
    assert!(!req.request_id.is_empty(), "empty request id");
    for name in ARG_NAMES {
        exercise_arg(req, name);
    }
    let names: Vec<String> = match &req.args {
        Args::Json(map) => map.keys().cloned().collect(),
        Args::Query(list) => list.iter().map(|(k, _)| k.clone()).collect(),
    };
    for name in &names {
        exercise_arg(req, name);
    }
    match req.required_id() {
        Ok(id) => assert!(!id.is_empty() && id.len() <= tollgate_protocol::request::MAX_ID_BYTES),
        Err(e) => check_error(&e),
    }
    match req.required_body() {
        Ok(body) => assert_eq!(Some(body), req.body.as_ref()),
        Err(e) => check_error(&e),
    }
    let _ = (
        req.index_name(),
        req.collection_name(),
        req.is_query_typed(),
    );

    let success = Response::success(req, json!({"echo": req.body}));
    serialize(&success);
    let failure = Response::failure(req, KuzzleError::invalid_type("x", "string"));
    serialize(&failure);
}

/// A construction or typing error is well formed: a registered status and a rendered message.
pub fn check_error(e: &KuzzleError) {
    assert!((400..600).contains(&e.status()), "status {}", e.status());
    assert!(!e.message().is_empty());
    let _ = e.to_string();
}

/// Serializes `r` as WebSocket text and as HTTP bytes (compact and pretty); every output is JSON.
pub fn serialize(r: &Response) {
    for (room, pretty) in [(true, false), (false, false), (false, true)] {
        let bytes = r.to_bytes("knode-fuzz", Encoding { room, pretty });
        if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    let _ = r.to_text("knode-fuzz", Encoding::default());
}

/// The shared fixtures: a bootstrapped in-memory store with index `nyc` (collections `taxi` and
/// `bus`) and role `editor`, the security cache, the catalog and the real HTTP route tree.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub store: Arc<dyn Store>,
    pub cache: Arc<SecurityCache>,
    pub catalog: Catalog,
    pub snapshot: Arc<SecuritySnapshot>,
    pub tree: RouteTree,
}

/// The fixtures, built on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("fuzz fixture: no runtime: {e}"),
    };
    let (store, cache, catalog, router) = runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        if let Err(e) = tollgate_security::bootstrap(store.as_ref()).await {
            panic!("fuzz fixture: bootstrap: {e}");
        }
        let ops = vec![
            put(
                "role",
                "editor",
                json!({"controllers": {"document": {"actions": {"*": true}}}}),
            ),
            put(INDEX, "nyc", json!({})),
            put(COLLECTION, "nyc/taxi", json!({})),
            put(COLLECTION, "nyc/bus", json!({})),
        ];
        if let Err(e) = store.commit(ops).await {
            panic!("fuzz fixture: fixtures: {e}");
        }
        let cache = match SecurityCache::start(Arc::clone(&store), Default::default()).await {
            Ok(c) => c,
            Err(e) => panic!("fuzz fixture: cache: {e}"),
        };
        let catalog = Catalog::new(Arc::clone(&store));
        let secret = fixed_secret();
        let passwords = Passwords::new(HashCost::default());
        // As `Server::start` registers them (no health probe: the route table does not depend on it).
        let mut router = Router::new();
        router.register(Arc::new(ServerController::new(
            Arc::from("knode-fuzz"),
            Arc::new(OnceLock::new()),
            Vec::new(),
        )));
        router.register(Arc::new(SecurityController::new(
            Arc::clone(&store),
            Arc::clone(&cache),
            catalog.clone(),
            SecurityConfig::default(),
            passwords.clone(),
        )));
        router.register(Arc::new(AuthController::new(
            Arc::clone(&store),
            Arc::clone(&cache),
            secret,
            passwords,
            TokenConfig::default(),
            Arc::new(AuthFailures::new(0)),
        )));
        router.register(Arc::new(IndexController::new(catalog.clone())));
        router.register(Arc::new(CollectionController(catalog.clone())));
        (store, cache, catalog, router)
    });
    let snapshot = cache.snapshot();
    let tree = RouteTree::new(&router.http_routes());
    Fixture {
        runtime,
        store,
        cache,
        catalog,
        snapshot,
        tree,
    }
}

fn put(kind: &'static str, id: &str, body: Value) -> Op {
    Op::Put {
        kind,
        id: id.to_owned(),
        body,
        expect: Expect::Any,
    }
}

/// The secret of the spec's examples (`update-profile.md` §11).
pub fn fixed_secret() -> Secret {
    match Secret::new(b"example-secret") {
        Some(s) => s,
        None => panic!("HMAC refused the fixed key"),
    }
}
