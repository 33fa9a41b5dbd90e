//! The pipeline's observation point: what the metrics layer is told about every request the Funnel
//! answers and every connection the front-ends open or close. The Funnel and the front-ends call it;
//! they know nothing of how it is counted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::Protocol;

/// One answered request.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub controller: &'a str,
    pub action: &'a str,
    pub protocol: Protocol,
    pub status: u16,
    /// The error id, when the answer is an error.
    pub error: Option<&'static str>,
    pub elapsed: Duration,
}

/// Told about requests and connections.
pub trait Observer: Send + Sync + 'static {
    fn answered(&self, answer: &Answered<'_>);
    fn connection(&self, protocol: Protocol, opened: bool);
}

/// Who may read the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Open,
    /// A token whose user may call `server:metrics`.
    Token,
}

/// The metrics, rendered for `GET /_metrics` (Prometheus text exposition format).
#[async_trait]
pub trait Exposition: Send + Sync + 'static {
    fn access(&self) -> Access;
    async fn render(&self) -> String;
}

/// Counts one open connection for the metrics while it lives.
pub struct Counted {
    observer: Arc<dyn Observer>,
    protocol: Protocol,
}

impl Counted {
    pub fn new(observer: Arc<dyn Observer>, protocol: Protocol) -> Self {
        observer.connection(protocol, true);
        Self { observer, protocol }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.observer.connection(self.protocol, false);
    }
}
