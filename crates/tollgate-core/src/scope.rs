//! What the request being served is, for code far from the controller that needs to know it
//! without every call passing it down: the audit trail records, with each write, who asked for it
//! and through which action. The Funnel sets it around each action it runs.

use std::sync::Arc;

/// The request an action runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScope {
    pub controller: String,
    pub action: String,
    /// The caller's kuid (`-1` for anonymous).
    pub kuid: String,
}

tokio::task_local! {
    static CURRENT: Arc<RequestScope>;
}

/// Runs `f` as part of the request `scope`.
pub async fn run<F: Future>(scope: Arc<RequestScope>, f: F) -> F::Output {
    CURRENT.scope(scope, f).await
}

/// The request the current task serves, if it serves one.
pub fn current() -> Option<Arc<RequestScope>> {
    CURRENT.try_with(Arc::clone).ok()
}
