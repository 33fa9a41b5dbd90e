//! The hand-over from the HTTP front-end to the WebSocket front-end, so that neither depends on the
//! other: HTTP answers the upgrade handshake and passes the raw connection to an [`UpgradeAcceptor`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::context::ConnectionInfo;

/// A bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection handed over after a successful upgrade.
pub type BoxedIo = Box<dyn Io>;

/// Accepts upgraded connections (the WebSocket front-end implements it).
pub trait UpgradeAcceptor: Send + Sync + 'static {
    /// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
    fn accept_key(&self, key: &[u8]) -> String;
    /// Serves the upgraded connection until it closes.
    fn serve(
        &self,
        io: BoxedIo,
        conn: Arc<ConnectionInfo>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
