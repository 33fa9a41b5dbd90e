//! HTTP route matching (`protocol.md` §7.1): a tree walked one path segment at a time, where a static
//! segment beats a placeholder and there is no backtracking.

// Randomly seeded foldhash: the keys are the route table's own segments, fixed at start-up; a
// client's path segments are only looked up.
use foldhash::HashMap;

use percent_encoding::percent_decode_str;
use tollgate_core::RouteEntry;

/// What a matched route resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub controller: &'static str,
    pub action: &'static str,
}

#[derive(Debug, Default)]
struct Node {
    statics: HashMap<String, Node>,
    placeholder: Option<Box<Node>>,
    /// The target, with the names of the route's placeholders in path order: each route names its
    /// own (`/users/:_id` and `/users/:userId/api-keys/_create` share the placeholder node).
    target: Option<(Target, Vec<String>)>,
}

/// Placeholder values of a matched route, in path order.
pub type Params = Vec<(String, String)>;

/// Why a path could not be matched.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No route for this path under this verb.
    NotFound,
    /// A segment has a bad percent-escape or is not UTF-8 once decoded.
    BadEncoding,
}

/// The route table of one server, by verb.
#[derive(Debug, Default)]
pub struct RouteTree {
    verbs: HashMap<&'static str, Node>,
}

impl RouteTree {
    /// Builds the tree. When two routes collide, the first one registered wins.
    pub fn new(routes: &[RouteEntry]) -> Self {
        let mut tree = Self::default();
        for r in routes {
            let mut node = tree.verbs.entry(r.verb).or_default();
            let mut names = Vec::new();
            for segment in r.path.split('/').filter(|s| !s.is_empty()) {
                node = match segment.strip_prefix(':') {
                    Some(name) => {
                        names.push(name.to_owned());
                        node.placeholder.get_or_insert_with(Box::default)
                    }
                    None => node.statics.entry(segment.to_owned()).or_default(),
                };
            }
            node.target.get_or_insert((
                Target {
                    controller: r.controller,
                    action: r.action,
                },
                names,
            ));
        }
        tree
    }

    /// Matches a raw (still percent-encoded) path; returns the target and the placeholder values.
    pub fn find(&self, verb: &str, raw_path: &str) -> Result<(Target, Params), RouteError> {
        // Every segment is decoded before matching: a bad escape anywhere is reported as such.
        let segments = raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|raw| {
                if !valid_escapes(raw) {
                    return Err(RouteError::BadEncoding);
                }
                percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| RouteError::BadEncoding)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut node = self.verbs.get(verb).ok_or(RouteError::NotFound)?;
        let mut values = Vec::new();
        for segment in segments {
            if let Some(next) = node.statics.get(segment.as_ref()) {
                node = next;
            } else if let Some(next) = &node.placeholder {
                values.push(segment.into_owned());
                node = next;
            } else {
                return Err(RouteError::NotFound);
            }
        }
        let (target, names) = node.target.as_ref().ok_or(RouteError::NotFound)?;
        let params = names.iter().cloned().zip(values).collect();
        Ok((target.clone(), params))
    }
}

/// Every `%` must start a two-hex-digit escape.
fn valid_escapes(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verb: &'static str, path: &'static str, action: &'static str) -> RouteEntry {
        RouteEntry {
            verb,
            path,
            controller: "c",
            action,
            listed: true,
        }
    }

    fn tree() -> RouteTree {
        RouteTree::new(&[
            entry("PUT", "/profiles/:_id", "createOrReplaceProfile"),
            entry("PUT", "/:index/:collection", "collectionCreate"),
            entry("PUT", "/profiles/:_id/_update", "updateProfile"),
            entry("GET", "/_now", "now"),
            entry("GET", "/profiles/:_id", "getProfile"),
            entry("GET", "/:index/_exists", "indexExists"),
            entry("GET", "/:index/:collection/_exists", "collectionExists"),
            entry("DELETE", "/users/:_id", "deleteUser"),
            entry("DELETE", "/users/:userId/api-keys/:_id", "deleteApiKey"),
        ])
    }

    fn action(verb: &str, path: &str) -> Result<(&'static str, Params), RouteError> {
        tree().find(verb, path).map(|(t, p)| (t.action, p))
    }

    #[test]
    fn static_segment_beats_placeholder() {
        assert_eq!(
            action("PUT", "/profiles/x").map(|a| a.0),
            Ok("createOrReplaceProfile")
        );
        assert_eq!(
            action("PUT", "/nyc/taxi").map(|a| a.0),
            Ok("collectionCreate")
        );
    }

    #[test]
    fn no_backtracking_into_placeholders() {
        // `/profiles/x/_exists` takes the static `profiles` branch, which has no `_exists` below `:_id`.
        assert_eq!(
            action("GET", "/profiles/x/_exists"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            action("GET", "/x/y/_exists").map(|a| a.0),
            Ok("collectionExists")
        );
    }

    #[test]
    fn empty_segments_are_skipped_and_values_decoded() {
        let (a, params) = action("PUT", "//profiles///p%2F1/_update/").unwrap_or(("", vec![]));
        assert_eq!(a, "updateProfile");
        assert_eq!(params, vec![("_id".to_owned(), "p/1".to_owned())]);
        let (_, params) = action("PUT", "/profiles/a+b").unwrap_or(("", vec![]));
        assert_eq!(params, vec![("_id".to_owned(), "a+b".to_owned())]);
    }

    #[test]
    fn each_route_names_its_own_placeholders() {
        assert_eq!(
            action("DELETE", "/users/u1"),
            Ok(("deleteUser", vec![("_id".to_owned(), "u1".to_owned())]))
        );
        assert_eq!(
            action("DELETE", "/users/u1/api-keys/k1"),
            Ok((
                "deleteApiKey",
                vec![
                    ("userId".to_owned(), "u1".to_owned()),
                    ("_id".to_owned(), "k1".to_owned())
                ]
            ))
        );
    }

    #[test]
    fn bad_escapes_and_unknown_paths() {
        assert_eq!(action("PUT", "/profiles/%zz"), Err(RouteError::BadEncoding));
        assert_eq!(action("PUT", "/profiles/%ff"), Err(RouteError::BadEncoding));
        assert_eq!(action("GET", "/nope/%zz"), Err(RouteError::BadEncoding));
        assert_eq!(action("GET", "/_NOW"), Err(RouteError::NotFound));
        assert_eq!(action("DELETE", "/_now"), Err(RouteError::NotFound));
        assert_eq!(action("GET", "/"), Err(RouteError::NotFound));
    }
}
