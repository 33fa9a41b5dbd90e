//! Tollgate's request pipeline, independent of any transport.
//!
//! - [`router`]: the [`Controller`] trait and the [`Router`] (controller:action → handler, plus the HTTP
//!   routes each action declares);
//! - [`funnel`]: the [`Funnel`], the single path every request takes;
//! - [`openapi`]: the OpenAPI 3.1 document generated from the routes and declared arguments;
//! - [`gate`]: the authentication / rights / rate-limit hook points the Funnel calls before any action;
//! - [`observe`]: what the metrics layer is told of requests and connections;
//! - [`context`]: per-request state ([`Context`], [`Caller`], [`ConnectionInfo`]);
//! - [`scope`]: which request the current task serves (for the audit trail);
//! - [`shutdown`]: graceful shutdown ([`Shutdown`]);
//! - [`upgrade`]: the hand-over of upgraded HTTP connections to the WebSocket front-end.

pub mod context;
pub mod funnel;
pub mod gate;
pub mod observe;
pub mod openapi;
pub mod router;
pub mod scope;
pub mod shutdown;
pub mod upgrade;

pub use context::{
    ANONYMOUS_KUID, Caller, ConnectionInfo, Context, Protocol, ReplyHeaders, TokenLinks,
};
pub use funnel::{Funnel, FunnelConfig};
pub use gate::{Gate, OpenGate};
pub use router::{
    ActionDef, ArgDef, ArgIn, ArgType, BodyDef, Controller, Field, HttpRoute, RouteEntry, Router,
    field, route,
};
pub use shutdown::Shutdown;
pub use upgrade::{BoxedIo, Io, UpgradeAcceptor};
