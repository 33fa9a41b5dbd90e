//! Role and profile body validation (`tollgate_security::validate::{role, profile}`), as the
//! `security` controller runs it for createRole/createOrReplaceRole/updateRole and
//! createProfile/createOrReplaceProfile/updateProfile (policies, `restrictedTo`, `rateLimit`), then
//! the rights computed from an accepted definition.
//!
//! Input: one flag byte, then a JSON body. Flags: bit 0 role (1) or profile (0); bit 1 `force`;
//! bit 2 catalog checks; bit 3 known roles from the cache snapshot; bit 4 merge into the stored
//! profile as updateProfile does; bits 5–7 pick the id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tollgate_fuzz::{check_error, fixture};
use tollgate_security::rights::{ProfileRights, RoleRights, rights_listing};
use tollgate_security::validate::{self, ProfileChecks, RESERVED_KEYS, ROLE_RESERVED_KEYS};

const IDS: &[&str] = &[
    "editors",
    "anonymous",
    "admin",
    "default",
    "r",
    "",
    "with space",
    "é\u{0}\"",
];

const PAIRS: &[(&str, &str)] = &[
    ("auth", "login"),
    ("auth", "logout"),
    ("security", "updateProfile"),
    ("document", "create"),
    ("ms", "get"),
    ("memoryStorage", "set"),
    ("*", "*"),
    ("", ""),
];

fn role(id: &str, body: &Map<String, Value>, force: bool) {
    match validate::role(id, body, force) {
        Ok(stored) => {
            assert!(stored.contains_key("controllers"));
            assert_eq!(
                stored.keys().next().map(String::as_str),
                Some("controllers")
            );
            assert!(ROLE_RESERVED_KEYS.iter().all(|k| !stored.contains_key(*k)));
            let rights = RoleRights::from_source(&stored);
            for (c, a) in PAIRS {
                let _ = rights.allows(c, a);
            }
            if id == "anonymous" {
                assert!(rights.allows("auth", "login"));
            }
        }
        Err(e) => check_error(&e),
    }
}

fn profile(id: &str, doc: &Map<String, Value>, flags: u8) {
    let fx = fixture();
    let checks = ProfileChecks {
        store: fx.store.as_ref(),
        known_roles: (flags & 8 != 0).then_some(fx.snapshot.as_ref()),
        catalog: &fx.catalog,
        check_catalog: flags & 4 != 0,
    };
    let result = fx.runtime.block_on(validate::profile(id, doc, &checks));
    match result {
        Ok((stored, role_ids)) => {
            let mut keys = stored.keys().map(String::as_str);
            assert_eq!(keys.next(), Some("policies"));
            assert_eq!(keys.next(), Some("rateLimit"));
            assert!(RESERVED_KEYS.iter().all(|k| !stored.contains_key(*k)));
            let rate = stored.get("rateLimit").and_then(Value::as_i64);
            assert!(rate.is_some_and(|r| r >= 0), "rateLimit {rate:?}");
            assert!(!role_ids.is_empty());
            if id == "anonymous" {
                assert!(role_ids.iter().any(|r| r == "anonymous"));
            }
            let rights = ProfileRights::from_source(&stored);
            let policies = stored
                .get("policies")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            assert_eq!(
                rights.policies.len(),
                policies,
                "every stored policy has a roleId"
            );
            for (c, a) in PAIRS {
                for (index, collection) in [
                    (None, None),
                    (Some("nyc"), None),
                    (Some("nyc"), Some("taxi")),
                    (Some(""), Some("")),
                ] {
                    let _ = rights.allows(fx.snapshot.as_ref(), c, a, index, collection);
                }
            }
            let listing = rights_listing(fx.snapshot.as_ref(), [&rights]);
            assert!(listing.get("hits").is_some_and(Value::is_array));
        }
        Err(e) => check_error(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let id = IDS[usize::from(flags >> 5) % IDS.len()];
    let force = flags & 2 != 0;
    if flags & 1 != 0 {
        role(id, &body, force);
    } else if flags & 16 != 0 {
        // updateProfile: the body's non-reserved keys over the stored definition.
        let mut merged = match json!({"policies":[{"roleId":"editor"}],"rateLimit":10,"tags":["staff"]})
        {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in &body {
            if !RESERVED_KEYS.contains(&k.as_str()) {
                merged.insert(k.clone(), v.clone());
            }
        }
        profile(id, &merged, flags);
    } else {
        profile(id, &body, flags);
    }
});
