//! Controllers and the router: `controller:action` → handler, plus the HTTP routes each action declares.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tollgate_protocol::errors::{API_PROCESS_ACTION_NOT_FOUND, API_PROCESS_CONTROLLER_NOT_FOUND};
use tollgate_protocol::{KuzzleError, Payload, Request};

use crate::context::Context;

/// An HTTP route of an action: a verb and a path whose `:name` segments are placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRoute {
    pub verb: &'static str,
    pub path: &'static str,
}

/// Shorthand for an [`HttpRoute`].
pub const fn route(verb: &'static str, path: &'static str) -> HttpRoute {
    HttpRoute { verb, path }
}

/// Where an action reads an argument. Path placeholders are not declared apart: an argument whose
/// name is a `:name` segment of a route is read from the path on that route, and from the query
/// string (or the WebSocket payload) elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgIn {
    /// A request argument: the query string or a path placeholder on HTTP, a top-level key on WS.
    Query,
    /// A field of the JSON body.
    Body,
}

/// The JSON type of a declared argument, as the OpenAPI document describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    String,
    Boolean,
    Integer,
    /// An integer within these bounds (inclusive).
    IntegerIn(i64, i64),
    Object,
    Array,
    /// An array of strings; on HTTP, comma-separated values.
    StringList,
    /// An array of values of one type.
    ArrayOf(&'static ArgType),
    /// An object with these keys (others may be refused by the action).
    ObjectOf(&'static [Field]),
    /// An object whose values all have one type, whatever their keys.
    MapOf(&'static ArgType),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A value of the type, or `null` (which the action takes as absent).
    Nullable(&'static ArgType),
    /// Any JSON value.
    Any,
}

/// A key of an [`ArgType::ObjectOf`] object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
}

/// Shorthand for a [`Field`].
pub const fn field(name: &'static str, ty: ArgType, required: bool) -> Field {
    Field { name, ty, required }
}

/// One argument an action reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgDef {
    pub name: &'static str,
    pub place: ArgIn,
    pub ty: ArgType,
    pub required: bool,
    pub description: &'static str,
}

/// The JSON body an action reads: always an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDef {
    pub required: bool,
    pub description: &'static str,
}

/// One action of a controller: its HTTP routes and the arguments it reads. The arguments are
/// declarations for the OpenAPI document (`server:openapi`); the action still checks what it reads.
#[derive(Debug, Clone)]
pub struct ActionDef {
    pub name: &'static str,
    pub http: Vec<HttpRoute>,
    pub args: Vec<ArgDef>,
    pub body: Option<BodyDef>,
    pub description: &'static str,
    /// The content types of a success answered over HTTP as a bare text body instead of an envelope
    /// (the action sets `Content-Type`); empty for envelope answers.
    pub text_body: &'static [&'static str],
}

impl ActionDef {
    pub fn new(name: &'static str, http: &[HttpRoute]) -> Self {
        Self {
            name,
            http: http.to_vec(),
            args: Vec::new(),
            body: None,
            description: "",
            text_body: &[],
        }
    }

    /// A success is answered over HTTP as a text body of one of `content_types` (the action's
    /// result, a string, with the `Content-Type` it sets), not as an envelope.
    pub fn text_body(mut self, content_types: &'static [&'static str]) -> Self {
        self.text_body = content_types;
        self
    }

    /// A short description of what the action does.
    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// An optional argument (query string, path placeholder or WS payload key).
    pub fn arg(mut self, name: &'static str, ty: ArgType, description: &'static str) -> Self {
        self.args.push(ArgDef {
            name,
            place: ArgIn::Query,
            ty,
            required: false,
            description,
        });
        self
    }

    /// A required argument (query string, path placeholder or WS payload key).
    pub fn required(mut self, name: &'static str, ty: ArgType, description: &'static str) -> Self {
        self.args.push(ArgDef {
            name,
            place: ArgIn::Query,
            ty,
            required: true,
            description,
        });
        self
    }

    /// The action reads a JSON object body; `required` when it refuses a request without one.
    pub fn body(mut self, required: bool, description: &'static str) -> Self {
        self.body = Some(BodyDef {
            required,
            description,
        });
        self
    }

    /// An optional field of the body.
    pub fn field(self, name: &'static str, ty: ArgType, description: &'static str) -> Self {
        self.body_field(name, ty, false, description)
    }

    /// A required field of the body.
    pub fn required_field(
        self,
        name: &'static str,
        ty: ArgType,
        description: &'static str,
    ) -> Self {
        self.body_field(name, ty, true, description)
    }

    fn body_field(
        mut self,
        name: &'static str,
        ty: ArgType,
        required: bool,
        description: &'static str,
    ) -> Self {
        if self.body.is_none() {
            self.body = Some(BodyDef {
                required,
                description: "",
            });
        }
        self.args.push(ArgDef {
            name,
            place: ArgIn::Body,
            ty,
            required,
            description,
        });
        self
    }
}

/// A controller: a named set of actions. Controllers never see transports; they get a typed
/// [`Request`] and a [`Context`] and answer a JSON result or a [`KuzzleError`].
#[async_trait]
pub trait Controller: Send + Sync + 'static {
    /// The controller name, e.g. `security`.
    fn name(&self) -> &'static str;
    /// The actions it implements, with their HTTP routes.
    fn actions(&self) -> Vec<ActionDef>;
    /// Runs `action`; only called for an action listed by [`Controller::actions`], after the
    /// pipeline's checks.
    async fn call(&self, action: &str, req: &Request, ctx: &Context) -> Result<Value, KuzzleError>;

    /// A fast path for answers served from memory as pre-serialized JSON (cached documents): `Some`
    /// answers the request, `None` sends it to [`Controller::call`]. Called under the same checks.
    fn cached(
        &self,
        _action: &str,
        _req: &Request,
        _ctx: &Context,
    ) -> Option<Result<Payload, KuzzleError>> {
        None
    }
}

/// An HTTP route resolved to a `controller:action`.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub verb: &'static str,
    pub path: &'static str,
    pub controller: &'static str,
    pub action: &'static str,
    /// Listed in the public route table (false for reserved Kuzzle routes).
    pub listed: bool,
}

/// Kuzzle routes of actions outside Tollgate's scope (`routes.md` §7). They are registered so they do
/// not fall into an in-scope placeholder route, and resolve to a not-found action after the rights
/// check.
pub const RESERVED_ROUTES: &[(&str, &str, &str, &str)] = &[
    ("DELETE", "/ms", "ms", "del"),
    ("GET", "/ms/_exists", "ms", "exists"),
];

struct Registered {
    controller: Arc<dyn Controller>,
    actions: Vec<ActionDef>,
    /// The actions' names, for the lookup of every request.
    names: foldhash::HashSet<&'static str>,
}

/// The registry of controllers. Built once at start, then shared read-only.
#[derive(Default)]
pub struct Router {
    /// Hashed with foldhash: a lookup per request, on names from a fixed set.
    controllers: foldhash::HashMap<&'static str, Registered>,
    order: Vec<&'static str>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("controllers", &self.order)
            .finish()
    }
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a controller. A second controller of the same name replaces the first.
    pub fn register(&mut self, controller: Arc<dyn Controller>) {
        let name = controller.name();
        let actions = controller.actions();
        if self
            .controllers
            .insert(
                name,
                Registered {
                    controller,
                    names: actions.iter().map(|a| a.name).collect(),
                    actions,
                },
            )
            .is_none()
        {
            self.order.push(name);
        }
    }

    /// Resolves `controller:action` (pipeline step 8).
    pub fn resolve(
        &self,
        controller: &str,
        action: &str,
    ) -> Result<&Arc<dyn Controller>, KuzzleError> {
        let Some(reg) = self.controllers.get(controller) else {
            return Err(KuzzleError::new(
                &API_PROCESS_CONTROLLER_NOT_FOUND,
                vec![json!(controller)],
            ));
        };
        if !reg.names.contains(action) {
            return Err(KuzzleError::new(
                &API_PROCESS_ACTION_NOT_FOUND,
                vec![json!(controller), json!(action)],
            ));
        }
        Ok(&reg.controller)
    }

    /// Every `controller:action` pair that is implemented, in registration order.
    pub fn actions(&self) -> Vec<(&'static str, &'static str)> {
        self.order
            .iter()
            .filter_map(|c| self.controllers.get(c).map(|r| (c, r)))
            .flat_map(|(c, r)| r.actions.iter().map(move |a| (*c, a.name)))
            .collect()
    }

    /// Every HTTP route: the implemented actions' routes first, then the reserved ones.
    pub fn http_routes(&self) -> Vec<RouteEntry> {
        let mut out = Vec::new();
        for c in &self.order {
            let Some(reg) = self.controllers.get(c) else {
                continue;
            };
            for a in &reg.actions {
                for r in &a.http {
                    out.push(RouteEntry {
                        verb: r.verb,
                        path: r.path,
                        controller: c,
                        action: a.name,
                        listed: true,
                    });
                }
            }
        }
        out.extend(
            RESERVED_ROUTES
                .iter()
                .map(|&(verb, path, controller, action)| RouteEntry {
                    verb,
                    path,
                    controller,
                    action,
                    listed: false,
                }),
        );
        out
    }

    /// Every implemented controller with its actions (routes and declared arguments), in
    /// registration order.
    pub fn definitions(&self) -> Vec<(&'static str, &[ActionDef])> {
        self.order
            .iter()
            .filter_map(|c| self.controllers.get(c).map(|r| (*c, r.actions.as_slice())))
            .collect()
    }

    /// The public route table (`server:publicApi`): `{controller:{action:{action,controller,http}}}`.
    pub fn route_table(&self) -> Value {
        let mut table = Map::new();
        for c in &self.order {
            let Some(reg) = self.controllers.get(c) else {
                continue;
            };
            let mut actions = Map::new();
            for a in &reg.actions {
                let http: Vec<Value> = a
                    .http
                    .iter()
                    .map(|r| json!({"path": r.path, "url": r.path, "verb": r.verb}))
                    .collect();
                actions.insert(
                    a.name.to_owned(),
                    json!({"action": a.name, "controller": c, "http": http}),
                );
            }
            table.insert((*c).to_owned(), Value::Object(actions));
        }
        Value::Object(table)
    }
}
