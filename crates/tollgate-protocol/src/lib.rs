//! Tollgate's wire vocabulary, shared by every other crate.
//!
//! - [`request`]: the request envelope and the typed argument getters (JSON and query-string typing);
//! - [`response`]: the response envelope and its serialization in Kuzzle's key order;
//! - [`cookie`]: the `authToken` cookie of cookie authentication (reading `Cookie`, writing
//!   `Set-Cookie`);
//! - [`errors`]: the Kuzzle error registry and [`KuzzleError`], the one error type that reaches the wire.
//!
//! This crate has no I/O: no tokio, no hyper. Everything here is unit-tested against the bytes of
//! `shared/spec`.

pub mod cookie;
pub mod envelope;
pub mod errors;
pub mod request;
pub mod response;

pub use envelope::Envelope;
pub use errors::KuzzleError;
pub use request::{ArgRef, Args, ConstructionError, Request, new_request_id};
pub use response::{Encoding, Payload, Response, to_json_bytes};
