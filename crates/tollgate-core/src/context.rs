//! Per-request state: who is calling, over which connection.

use std::net::SocketAddr;
use std::sync::Arc;

/// The transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    WebSocket,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::WebSocket => "websocket",
        }
    }
}

/// What is known about the connection a request came from.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// A UUID v4 per connection (per socket on WebSocket, per TCP connection on HTTP).
    pub id: String,
    pub protocol: Protocol,
    pub peer: Option<SocketAddr>,
    /// The `Origin` header of the request, or of the WebSocket upgrade.
    pub origin: Option<String>,
}

impl ConnectionInfo {
    pub fn new(protocol: Protocol, peer: Option<SocketAddr>, origin: Option<String>) -> Self {
        Self {
            id: tollgate_protocol::new_request_id(),
            protocol,
            peer,
            origin,
        }
    }
}

/// The kuid of the anonymous user.
pub const ANONYMOUS_KUID: &str = "-1";

/// Who is calling: the authenticated user, or anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's kuid; [`ANONYMOUS_KUID`] for anonymous callers.
    pub kuid: String,
    /// The token the request was authenticated with, if any.
    pub token: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            kuid: ANONYMOUS_KUID.to_owned(),
            token: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kuid == ANONYMOUS_KUID
    }

    /// The kuid as recorded in audit metadata: `None` for anonymous.
    pub fn audit_kuid(&self) -> Option<&str> {
        (!self.is_anonymous()).then_some(self.kuid.as_str())
    }
}

/// Everything a controller may know about the request besides its envelope.
#[derive(Debug, Clone)]
pub struct Context {
    pub connection: Arc<ConnectionInfo>,
    pub caller: Caller,
}
