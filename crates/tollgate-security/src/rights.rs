//! The rights decision (`security-model.md` §4) and the rights listings (§9), on parsed roles and
//! profiles.

use foldhash::HashMap;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A role as the rights check reads it: controller → action → allowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleRights {
    pub controllers: HashMap<String, HashMap<String, bool>>,
    /// The same entries in stored key order, for listings.
    pub ordered: Vec<(String, Vec<(String, bool)>)>,
}

impl RoleRights {
    /// Reads `controllers` of a stored role (already validated; anything malformed is skipped).
    pub fn from_source(source: &Map<String, Value>) -> Self {
        let mut rights = Self::default();
        let Some(Value::Object(controllers)) = source.get("controllers") else {
            return rights;
        };
        for (c, entry) in controllers {
            let actions: Vec<(String, bool)> = entry
                .get("actions")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .filter_map(|(name, v)| v.as_bool().map(|b| (name.clone(), b)))
                        .collect()
                })
                .unwrap_or_default();
            rights
                .controllers
                .insert(c.clone(), actions.iter().cloned().collect());
            rights.ordered.push((c.clone(), actions));
        }
        rights
    }

    /// `roleAllows(role, c, a)`: exact controller entry, else `*`; then exact action, else `*`.
    pub fn allows(&self, controller: &str, action: &str) -> bool {
        let ms = matches!(controller, "ms" | "memoryStorage");
        let entry = if ms {
            self.controllers
                .get("ms")
                .or_else(|| self.controllers.get("memoryStorage"))
                .or_else(|| self.controllers.get("*"))
        } else {
            self.controllers
                .get(controller)
                .or_else(|| self.controllers.get("*"))
        };
        let Some(actions) = entry else { return false };
        actions
            .get(action)
            .or_else(|| actions.get("*"))
            .copied()
            .unwrap_or(false)
    }
}

/// Where a policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No restriction: every index.
    Everywhere,
    /// index → `None` for all its collections, or the listed collections.
    Indexes(BTreeMap<String, Option<BTreeSet<String>>>),
}

impl Scope {
    /// Builds the map `M` of §4 from a `restrictedTo` value (absent, null and `[]` → everywhere).
    pub fn from_restricted_to(value: Option<&Value>) -> Self {
        let Some(Value::Array(items)) = value else {
            return Scope::Everywhere;
        };
        let mut map: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for item in items {
            let Some(index) = item.get("index").and_then(Value::as_str) else {
                continue;
            };
            let collections: Vec<String> = item
                .get("collections")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let slot = map
                .entry(index.to_owned())
                .or_insert_with(|| Some(BTreeSet::new()));
            if collections.is_empty() {
                *slot = None;
            } else if let Some(set) = slot {
                set.extend(collections);
            }
        }
        if map.is_empty() {
            Scope::Everywhere
        } else {
            Scope::Indexes(map)
        }
    }

    /// `restrictionsAllow(restrictedTo, index, collection)`.
    pub fn allows(&self, index: Option<&str>, collection: Option<&str>) -> bool {
        let Scope::Indexes(map) = self else {
            return true;
        };
        let Some(index) = index.filter(|i| !i.is_empty()) else {
            return true;
        };
        match map.get(index) {
            None => false,
            Some(None) => true,
            Some(Some(set)) => collection.is_none_or(|c| set.contains(c)),
        }
    }

    /// The (index, collection) pairs of a rights listing.
    fn pairs(&self) -> Vec<(String, String)> {
        match self {
            Scope::Everywhere => vec![("*".into(), "*".into())],
            Scope::Indexes(map) => map
                .iter()
                .flat_map(|(index, cols)| match cols {
                    None => vec![(index.clone(), "*".to_owned())],
                    Some(set) => set.iter().map(|c| (index.clone(), c.clone())).collect(),
                })
                .collect(),
        }
    }
}

/// One policy of a profile. Its role is looked up when rights are computed, so a role change applies
/// to every profile at once.
#[derive(Debug, Clone)]
pub struct Policy {
    pub role_id: String,
    pub scope: Scope,
}

/// A profile as the rights check reads it.
#[derive(Debug, Clone, Default)]
pub struct ProfileRights {
    pub policies: Vec<Policy>,
    pub rate_limit: u64,
}

/// Resolves a role id to its rights.
pub trait RoleLookup {
    fn role(&self, id: &str) -> Option<&RoleRights>;
}

impl ProfileRights {
    /// Reads `policies` and `rateLimit` of a stored profile (already validated).
    pub fn from_source(source: &Map<String, Value>) -> Self {
        let policies = source
            .get("policies")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|policy| {
                        Some(Policy {
                            role_id: policy.get("roleId")?.as_str()?.to_owned(),
                            scope: Scope::from_restricted_to(policy.get("restrictedTo")),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rate_limit = source.get("rateLimit").and_then(Value::as_u64).unwrap_or(0);
        Self {
            policies,
            rate_limit,
        }
    }

    /// `profileAllows(p, req)`.
    pub fn allows(
        &self,
        roles: &impl RoleLookup,
        controller: &str,
        action: &str,
        index: Option<&str>,
        collection: Option<&str>,
    ) -> bool {
        self.policies.iter().any(|p| {
            roles
                .role(&p.role_id)
                .is_some_and(|r| r.allows(controller, action))
                && p.scope.allows(index, collection)
        })
    }

    /// The rights items of this profile, before merging (§9 step 1).
    fn items(&self, roles: &impl RoleLookup, out: &mut Vec<Item>) {
        for policy in &self.policies {
            let Some(role) = roles.role(&policy.role_id) else {
                continue;
            };
            let pairs = policy.scope.pairs();
            for (controller, actions) in &role.ordered {
                for (action, value) in actions {
                    for (index, collection) in &pairs {
                        out.push(Item {
                            action: action.clone(),
                            collection: collection.clone(),
                            controller: controller.clone(),
                            index: index.clone(),
                            value: *value,
                        });
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    action: String,
    collection: String,
    controller: String,
    index: String,
    value: bool,
}

impl Item {
    /// murmurhash3_x86_32 (seed 0) of the item serialized with sorted keys.
    fn key(&self) -> u32 {
        let text = json!({
            "action": self.action,
            "collection": self.collection,
            "controller": self.controller,
            "index": self.index,
            "value": self.value,
        })
        .to_string();
        murmur3::murmur3_32(&mut std::io::Cursor::new(text.as_bytes()), 0).unwrap_or(0)
    }
}

/// The rights listing of one or more profiles: `{"hits":[…],"total":n}` (§9).
pub fn rights_listing<'a>(
    roles: &impl RoleLookup,
    profiles: impl IntoIterator<Item = &'a ProfileRights>,
) -> Value {
    let mut items = Vec::new();
    for p in profiles {
        p.items(roles, &mut items);
    }
    let mut merged: BTreeMap<u32, (Item, bool)> = BTreeMap::new();
    for item in items {
        let key = item.key();
        let allowed = item.value;
        merged
            .entry(key)
            .and_modify(|(_, a)| *a = *a || allowed)
            .or_insert((item, allowed));
    }
    let hits: Vec<Value> = merged
        .into_values()
        .map(|(item, allowed)| {
            json!({
                "action": item.action,
                "collection": item.collection,
                "controller": item.controller,
                "index": item.index,
                "value": if allowed { "allowed" } else { "denied" },
            })
        })
        .collect();
    let total = hits.len();
    json!({"hits": hits, "total": total})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(v: Value) -> RoleRights {
        RoleRights::from_source(v.as_object().unwrap_or(&Map::new()))
    }

    fn item(c: &str, a: &str, i: &str, col: &str, v: bool) -> u32 {
        Item {
            action: a.into(),
            collection: col.into(),
            controller: c.into(),
            index: i.into(),
            value: v,
        }
        .key()
    }

    #[test]
    fn item_keys_match_the_spec_vectors() {
        assert_eq!(item("auth", "login", "*", "*", true), 1388220132);
        assert_eq!(item("document", "get", "nyc", "bus", true), 268269191);
        assert_eq!(item("document", "delete", "mtp", "*", false), 4244633980);
        assert_eq!(item("auth", "logout", "*", "*", true), 913511701);
    }

    #[test]
    fn no_fallback_from_an_exact_entry() {
        let r = role(
            json!({"controllers":{"auth":{"actions":{"login":true}},"*":{"actions":{"*":true}}}}),
        );
        assert!(r.allows("auth", "login"));
        assert!(!r.allows("auth", "logout"));
        assert!(r.allows("document", "get"));
        let r = role(json!({"controllers":{"document":{"actions":{"*":true,"delete":false}}}}));
        assert!(r.allows("document", "get"));
        assert!(!r.allows("document", "delete"));
        assert!(!r.allows("server", "now"));
        let r = role(json!({"controllers":{"memoryStorage":{"actions":{"get":true}}}}));
        assert!(r.allows("ms", "get"));
    }

    #[test]
    fn restrictions() {
        let s = Scope::from_restricted_to(Some(
            &json!([{"index":"nyc","collections":["taxi"]},{"index":"mtp"}]),
        ));
        assert!(s.allows(None, None));
        assert!(s.allows(Some(""), None));
        assert!(s.allows(Some("nyc"), Some("taxi")));
        assert!(s.allows(Some("nyc"), None));
        assert!(!s.allows(Some("nyc"), Some("bus")));
        assert!(s.allows(Some("mtp"), Some("anything")));
        assert!(!s.allows(Some("paris"), None));
        // An index listed both with and without collections means all of it.
        let s = Scope::from_restricted_to(Some(
            &json!([{"index":"x"},{"index":"x","collections":["a"]}]),
        ));
        assert!(s.allows(Some("x"), Some("b")));
        assert_eq!(
            Scope::from_restricted_to(Some(&json!([]))),
            Scope::Everywhere
        );
        assert_eq!(
            Scope::from_restricted_to(Some(&Value::Null)),
            Scope::Everywhere
        );
    }

    #[test]
    fn listing_of_the_restricted_anonymous_profile() {
        struct One(RoleRights);
        impl RoleLookup for One {
            fn role(&self, id: &str) -> Option<&RoleRights> {
                (id == "anonymous").then_some(&self.0)
            }
        }
        let roles = One(role(
            json!({"controllers":{"auth":{"actions":{"checkToken":true,"getCurrentUser":true,"getMyRights":true,"login":true}},"server":{"actions":{"publicApi":true,"openapi":true}}}}),
        ));
        let p = ProfileRights::from_source(
            json!({"policies":[{"roleId":"anonymous"}],"rateLimit":200})
                .as_object()
                .unwrap_or(&Map::new()),
        );
        assert_eq!(p.rate_limit, 200);
        assert!(p.allows(&roles, "auth", "login", Some("any"), None));
        assert!(!p.allows(&roles, "auth", "logout", None, None));
        assert_eq!(
            rights_listing(&roles, [&p]).to_string(),
            r#"{"hits":[{"action":"getCurrentUser","collection":"*","controller":"auth","index":"*","value":"allowed"},{"action":"publicApi","collection":"*","controller":"server","index":"*","value":"allowed"},{"action":"login","collection":"*","controller":"auth","index":"*","value":"allowed"},{"action":"checkToken","collection":"*","controller":"auth","index":"*","value":"allowed"},{"action":"openapi","collection":"*","controller":"server","index":"*","value":"allowed"},{"action":"getMyRights","collection":"*","controller":"auth","index":"*","value":"allowed"}],"total":6}"#
        );
    }
}
