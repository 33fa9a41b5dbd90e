//! The OpenAPI 3.1 document of the HTTP API (`server:openapi`), generated from the router: one
//! operation per HTTP route of each implemented action, with the arguments the action declares
//! ([`ActionDef::arg`], [`ActionDef::body`], …). Nothing in it is written by hand but the envelope
//! and error schemas, which are the same for every action.

use serde_json::{Map, Value, json};

use crate::router::{ActionDef, ArgDef, ArgIn, ArgType, Router};

/// The OpenAPI version of the generated document.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// What the document describes besides the routes.
#[derive(Debug, Clone, Copy)]
pub struct DocInfo<'a> {
    /// `info.title`.
    pub title: &'a str,
    /// `info.version`: the application's version.
    pub version: &'a str,
    /// The Kuzzle API level implemented, reported as `info.x-kuzzle-version`.
    pub kuzzle_version: &'a str,
}

/// The JSON Schema of an argument type.
pub fn schema(ty: ArgType) -> Value {
    match ty {
        ArgType::String => json!({"type": "string"}),
        ArgType::Boolean => json!({"type": "boolean"}),
        ArgType::Integer => json!({"type": "integer"}),
        ArgType::IntegerIn(min, max) => {
            let mut s = json!({"type": "integer", "minimum": min});
            if max < i64::MAX
                && let Value::Object(s) = &mut s
            {
                s.insert("maximum".into(), json!(max));
            }
            s
        }
        ArgType::Nullable(inner) => {
            let mut s = schema(*inner);
            if let Value::Object(map) = &mut s {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                        if let Some(Value::Array(values)) = map.get_mut("enum") {
                            values.push(Value::Null);
                        }
                    }
                    _ => s = json!({}),
                }
            }
            s
        }
        ArgType::Object => json!({"type": "object"}),
        ArgType::Array => json!({"type": "array"}),
        ArgType::StringList => json!({"type": "array", "items": {"type": "string"}}),
        ArgType::ArrayOf(items) => json!({"type": "array", "items": schema(*items)}),
        ArgType::ObjectOf(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|f| (f.name.to_owned(), schema(f.ty)))
                .collect();
            let required: Vec<&str> = fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.name)
                .collect();
            let mut s = json!({"type": "object", "properties": properties});
            if !required.is_empty()
                && let Value::Object(s) = &mut s
            {
                s.insert("required".into(), json!(required));
            }
            s
        }
        ArgType::MapOf(values) => {
            json!({"type": "object", "additionalProperties": schema(*values)})
        }
        ArgType::OneOf(values) => json!({"type": "string", "enum": values}),
        ArgType::Any => json!({}),
    }
}

/// The `:name` placeholders of a route path, in order.
pub fn placeholders(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix(':'))
        .collect()
}

/// A route path in OpenAPI form: `/profiles/:_id` → `/profiles/{_id}`.
pub fn template(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The `operationId` of the `n`-th route (from 0) of `controller:action`: `controller:action` for
/// the first, then `controller:action:2`, `controller:action:3`…
pub fn operation_id(controller: &str, action: &str, n: usize) -> String {
    if n == 0 {
        format!("{controller}:{action}")
    } else {
        format!("{controller}:{action}:{}", n + 1)
    }
}

/// The whole document. With `with_routes` false (scope `app`: the application's own routes, of
/// which Tollgate has none) it has no paths.
pub fn document(router: &Router, info: DocInfo<'_>, with_routes: bool) -> Value {
    let mut paths = Map::new();
    let mut tags = Vec::new();
    if with_routes {
        for (controller, actions) in router.definitions() {
            tags.push(json!({"name": controller}));
            for action in actions {
                for (n, route) in action.http.iter().enumerate() {
                    let op = operation(controller, action, route.path, n);
                    let entry = paths
                        .entry(template(route.path))
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(item) = entry {
                        item.insert(route.verb.to_ascii_lowercase(), op);
                    }
                }
            }
        }
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": info.title,
            "version": info.version,
            "description": "The HTTP API: one operation per route of each implemented Kuzzle action. \
                Generated from the router's routes and each action's declared arguments.",
            "x-kuzzle-version": info.kuzzle_version,
        },
        "tags": tags,
        "paths": paths,
        "components": components(),
        // A token is optional: without one the request runs as the anonymous user.
        "security": [{}, {"bearer": []}],
    })
}

fn operation(controller: &str, action: &ActionDef, path: &str, n: usize) -> Value {
    let in_path = placeholders(path);
    let mut parameters: Vec<Value> = in_path
        .iter()
        .map(|name| {
            let declared = action
                .args
                .iter()
                .find(|a| a.place == ArgIn::Query && a.name == *name);
            let mut schema = declared.map_or_else(|| schema(ArgType::String), |a| schema(a.ty));
            // A placeholder never matches an empty segment.
            if let Value::Object(s) = &mut schema
                && s.get("type") == Some(&json!("string"))
                && !s.contains_key("enum")
            {
                s.insert("minLength".into(), json!(1));
            }
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": declared.map_or("", |a| a.description),
                "schema": schema,
            })
        })
        .collect();
    parameters.extend(
        action
            .args
            .iter()
            .filter(|a| a.place == ArgIn::Query && !in_path.contains(&a.name))
            .map(query_parameter),
    );

    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(operation_id(controller, action.name, n)),
    );
    op.insert(
        "summary".into(),
        json!(format!("{controller}:{}", action.name)),
    );
    if !action.description.is_empty() {
        op.insert("description".into(), json!(action.description));
    }
    op.insert("tags".into(), json!([controller]));
    op.insert("x-kuzzle-controller".into(), json!(controller));
    op.insert("x-kuzzle-action".into(), json!(action.name));
    op.insert("parameters".into(), Value::Array(parameters));
    if let Some(body) = &action.body {
        op.insert(
            "requestBody".into(),
            request_body(action, body.required, body.description),
        );
    }
    op.insert("responses".into(), responses(controller, action));
    Value::Object(op)
}

fn query_parameter(arg: &ArgDef) -> Value {
    let mut p = json!({
        "name": arg.name,
        "in": "query",
        "required": arg.required,
        "description": arg.description,
        "schema": schema(arg.ty),
    });
    if arg.ty == ArgType::StringList {
        // `?services=a,b`
        if let Value::Object(p) = &mut p {
            p.insert("style".into(), json!("form"));
            p.insert("explode".into(), json!(false));
        }
    }
    p
}

fn request_body(action: &ActionDef, required: bool, description: &str) -> Value {
    let fields: Vec<&ArgDef> = action
        .args
        .iter()
        .filter(|a| a.place == ArgIn::Body)
        .collect();
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| {
            let mut s = schema(f.ty);
            if let Value::Object(s) = &mut s {
                s.insert("description".into(), json!(f.description));
            }
            (f.name.to_owned(), s)
        })
        .collect();
    let names: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut schema = json!({"type": "object", "properties": properties});
    if !names.is_empty()
        && let Value::Object(s) = &mut schema
    {
        s.insert("required".into(), json!(names));
    }
    json!({
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": schema}},
    })
}

fn responses(controller: &str, def: &ActionDef) -> Value {
    let action = def.name;
    let success = if (controller, action) == ("server", "openapi") {
        json!({
            "description": "The OpenAPI document, sent as is (not in an envelope) over HTTP.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        })
    } else if !def.text_body.is_empty() {
        let content: serde_json::Map<String, Value> = def
            .text_body
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": {"type": "string"}})))
            .collect();
        json!({
            "description": "The result, a text sent as is (not in an envelope) over HTTP.",
            "content": content,
        })
    } else {
        json!({"$ref": "#/components/responses/Success"})
    };
    let mut responses = json!({
        "200": success,
        "4XX": {"$ref": "#/components/responses/Failure"},
        "5XX": {"$ref": "#/components/responses/Failure"},
    });
    // The bulk deletes answer 206 when some ids failed: `result` lists the deleted ids, `error`
    // (services.storage.incomplete_delete) the others.
    if action.starts_with("mDelete") {
        responses["206"] = json!({
            "description": "Some documents were not deleted: `result` lists the deleted ids, `error.errors` the failures.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        });
    }
    responses
}

fn components() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    let envelope = |error: Value, description: &str| {
        json!({
            "type": "object",
            "description": description,
            "required": ["action", "controller", "error", "node", "requestId", "result", "status", "volatile"],
            "properties": {
                "action": nullable_string,
                "collection": nullable_string,
                "controller": nullable_string,
                "error": error,
                "headers": {"type": "object"},
                "index": nullable_string,
                "node": {"type": "string", "description": "The id of the node that answered."},
                "requestId": {"type": "string"},
                "result": {"description": "The action's result; its shape depends on the action."},
                "status": {"type": "integer"},
                "volatile": {"type": ["object", "null"]},
                "room": {"type": "string"},
            },
        })
    };
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A token from auth:login, sent as `Authorization: Bearer <jwt>` \
                    (or as the `jwt` argument).",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "description": "A Kuzzle error.",
                "required": ["code", "id", "message", "props", "status"],
                "properties": {
                    "code": {"type": "integer"},
                    "id": {"type": "string", "description": "domain.subdomain.name"},
                    "message": {"type": "string"},
                    "props": {"type": "array"},
                    "status": {"type": "integer"},
                },
            },
            "Envelope": envelope(
                json!({"type": "null"}),
                "A successful answer: the Kuzzle response envelope.",
            ),
            "ErrorEnvelope": envelope(
                json!({"$ref": "#/components/schemas/Error"}),
                "A failed answer: the Kuzzle response envelope with its error.",
            ),
        },
        "responses": {
            "Success": {
                "description": "The action's result in the Kuzzle response envelope.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}},
            },
            "Failure": {
                "description": "The error in the Kuzzle response envelope; a body that cannot be \
                    read (size, encoding, content type, JSON) is answered with the bare error object.",
                "content": {"application/json": {"schema": {"anyOf": [
                    {"$ref": "#/components/schemas/ErrorEnvelope"},
                    {"$ref": "#/components/schemas/Error"},
                ]}}},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_operation_ids() {
        assert_eq!(
            template("/profiles/:_id/_update"),
            "/profiles/{_id}/_update"
        );
        assert_eq!(template("/"), "/");
        assert_eq!(
            placeholders("/:index/:collection"),
            vec!["index", "collection"]
        );
        assert_eq!(operation_id("auth", "login", 0), "auth:login");
        assert_eq!(operation_id("auth", "login", 1), "auth:login:2");
        assert_eq!(
            schema(ArgType::Nullable(&ArgType::String)),
            json!({"type": ["string", "null"]})
        );
        assert_eq!(
            schema(ArgType::IntegerIn(0, 100)),
            json!({"type": "integer", "minimum": 0, "maximum": 100})
        );
        assert_eq!(
            schema(ArgType::IntegerIn(0, i64::MAX)),
            json!({"type": "integer", "minimum": 0})
        );
    }
}
