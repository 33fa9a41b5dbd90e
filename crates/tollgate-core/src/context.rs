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

/// Tokens that authenticated requests on one WebSocket, with their expiry (epoch ms). The socket sends
/// a `TokenExpired` notification when one expires; `auth:logout` unlinks its token.
#[derive(Debug, Default)]
pub struct TokenLinks {
    links: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    changed: tokio::sync::Notify,
}

impl TokenLinks {
    /// Links `token` (expiring at `expires_at` ms) to the socket.
    pub fn link(&self, token: &str, expires_at: u64) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.insert(token.to_owned(), expires_at).is_none() {
            self.changed.notify_one();
        }
    }

    /// Unlinks `token` (logout).
    pub fn unlink(&self, token: &str) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.remove(token);
    }

    /// The earliest expiry among linked tokens.
    pub fn next_expiry(&self) -> Option<u64> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.values().min().copied()
    }

    /// Removes and counts the tokens expired at `now` (epoch ms).
    pub fn take_expired(&self, now: u64) -> usize {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let before = links.len();
        links.retain(|_, expires| *expires > now);
        before - links.len()
    }

    /// Resolves when a token is linked.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// What is known about the connection a request came from.
#[derive(Clone)]
pub struct ConnectionInfo {
    /// A UUID v4 per connection (per socket on WebSocket, per TCP connection on HTTP).
    pub id: String,
    pub protocol: Protocol,
    pub peer: Option<SocketAddr>,
    /// The `Origin` header of the request, or of the WebSocket upgrade.
    pub origin: Option<String>,
    /// WebSocket only: tokens used on this socket, for the `TokenExpired` notification.
    pub token_links: Option<Arc<TokenLinks>>,
    /// The `Cookie` header of the request, or of the WebSocket upgrade, as received (several
    /// `Cookie` fields joined by `; `), for cookie authentication (`protocol.md` §6.1). Read by the
    /// gate only; never logged.
    pub cookie: Option<Vec<u8>>,
}

impl std::fmt::Debug for ConnectionInfo {
    /// The cookie holds a token: only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .field("peer", &self.peer)
            .field("origin", &self.origin)
            .field("token_links", &self.token_links)
            .field("cookie_bytes", &self.cookie.as_ref().map(Vec::len))
            .finish()
    }
}

impl ConnectionInfo {
    pub fn new(protocol: Protocol, peer: Option<SocketAddr>, origin: Option<String>) -> Self {
        Self {
            id: tollgate_protocol::new_request_id(),
            protocol,
            peer,
            origin,
            token_links: None,
            cookie: None,
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
    /// When that token expires (epoch ms); `None` for anonymous or a token that never expires.
    pub expires_at: Option<u64>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            kuid: ANONYMOUS_KUID.to_owned(),
            token: None,
            expires_at: None,
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

/// Protocol headers an action sets on its response (`Set-Cookie`), collected by the Funnel into
/// [`tollgate_protocol::Response::headers`]; the HTTP front-end sends them, WebSocket ignores them.
#[derive(Debug, Default)]
pub struct ReplyHeaders(std::sync::Mutex<Vec<(String, String)>>);

impl ReplyHeaders {
    /// Adds a header (a repeated name is sent as several fields).
    pub fn add(&self, name: &str, value: String) {
        let mut headers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        headers.push((name.to_owned(), value));
    }

    /// The headers added so far, emptied.
    pub fn take(&self) -> Vec<(String, String)> {
        let mut headers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *headers)
    }
}

/// Everything a controller may know about the request besides its envelope.
#[derive(Debug, Clone)]
pub struct Context {
    pub connection: Arc<ConnectionInfo>,
    pub caller: Caller,
    /// Headers of the response being built.
    pub reply: Arc<ReplyHeaders>,
}
