//! The Funnel: the one path every request takes, whatever its transport (`protocol.md` §4).
//!
//! controller/action present → origin → admission → authenticate → authorize → rate limit →
//! resolve → action. A controller is only reachable through [`Funnel::execute`], after the gate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tollgate_protocol::errors::{
    API_PROCESS_OVERLOADED, API_PROCESS_SHUTTING_DOWN, API_PROCESS_UNAUTHORIZED_ORIGIN,
};
use tollgate_protocol::{KuzzleError, Payload, Request, Response};

use crate::context::{ConnectionInfo, Context, ReplyHeaders};
use crate::gate::Gate;
use crate::observe::{Answered, Observer};
use crate::router::Router;
use crate::shutdown::Shutdown;

/// Limits and policies of the pipeline.
#[derive(Debug, Clone)]
pub struct FunnelConfig {
    /// Requests running at once (`limits.concurrentRequests`).
    pub concurrent_requests: usize,
    /// Requests waiting for a slot before `api.process.overloaded` (`limits.requestsBufferSize`).
    pub requests_buffer_size: usize,
    /// Allowed origins; `None` allows every origin.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for FunnelConfig {
    fn default() -> Self {
        Self {
            concurrent_requests: 100,
            requests_buffer_size: 50_000,
            allowed_origins: None,
        }
    }
}

/// The request pipeline, shared by every front-end.
pub struct Funnel {
    router: Arc<Router>,
    gate: Arc<dyn Gate>,
    slots: Semaphore,
    waiting: AtomicUsize,
    config: FunnelConfig,
    shutdown: Shutdown,
    /// Whether the services the node needs (its store) answer, as last checked by whoever owns
    /// this flag; `/_ready` follows it.
    services_up: Arc<AtomicBool>,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Funnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Funnel")
            .field("router", &self.router)
            .field("config", &self.config)
            .finish()
    }
}

impl Funnel {
    pub fn new(
        router: Arc<Router>,
        gate: Arc<dyn Gate>,
        config: FunnelConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            router,
            gate,
            slots: Semaphore::new(config.concurrent_requests.max(1)),
            waiting: AtomicUsize::new(0),
            config,
            shutdown,
            services_up: Arc::new(AtomicBool::new(true)),
            observer: None,
        }
    }

    /// Tells `observer` of every answered request (the metrics layer).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The observer of the pipeline, for the front-ends' connection counts.
    pub fn observer(&self) -> Option<&Arc<dyn Observer>> {
        self.observer.as_ref()
    }

    /// Authenticates `req` and checks its caller's rights, without running it (endpoints outside
    /// the router that are guarded by an action's right, such as `/_metrics`).
    pub async fn check_access(
        &self,
        req: &Request,
        conn: &Arc<ConnectionInfo>,
    ) -> Result<(), KuzzleError> {
        let caller = self.gate.authenticate(req, conn).await?;
        self.gate.authorize(req, &caller).await
    }

    /// Makes `/_ready` follow `up` too (set by a task that checks the store).
    pub fn with_services_up(mut self, up: Arc<AtomicBool>) -> Self {
        self.services_up = up;
        self
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Whether the node accepts requests (`GET /_ready`): not shutting down, its services answer,
    /// and the wait queue is not full.
    pub fn is_ready(&self) -> bool {
        !self.shutdown.is_triggered()
            && self.services_up.load(Ordering::Relaxed)
            && (self.slots.available_permits() > 0
                || self.waiting.load(Ordering::Relaxed) < self.config.requests_buffer_size)
    }

    /// Runs a request through the pipeline and returns its one response.
    pub async fn execute(&self, req: Request, conn: &Arc<ConnectionInfo>) -> Response {
        let started = self.observer.as_ref().map(|_| std::time::Instant::now());
        let reply = Arc::new(ReplyHeaders::default());
        let outcome = self.run(&req, conn, &reply).await;
        let mut response = Response::answer(req, outcome);
        response.headers = reply.take();
        if let (Some(observer), Some(started)) = (&self.observer, started) {
            observer.answered(&Answered {
                controller: response.controller.as_deref().unwrap_or_default(),
                action: response.action.as_deref().unwrap_or_default(),
                protocol: conn.protocol,
                status: response.status,
                error: response.error.as_ref().map(KuzzleError::id),
                elapsed: started.elapsed(),
            });
        }
        response
    }

    async fn run(
        &self,
        req: &Request,
        conn: &Arc<ConnectionInfo>,
        reply: &Arc<ReplyHeaders>,
    ) -> Result<Payload, KuzzleError> {
        let controller = match req.controller.as_deref() {
            None | Some("") => return Err(KuzzleError::missing_argument("controller")),
            Some(c) => c,
        };
        let action = match req.action.as_deref() {
            None | Some("") => return Err(KuzzleError::missing_argument("action")),
            Some(a) => a,
        };
        self.check_origin(conn)?;
        let _slot = self.admit().await?;

        let caller = self.gate.authenticate(req, conn).await?;
        if let (Some(links), Some(token), Some(expires_at)) =
            (&conn.token_links, &caller.token, caller.expires_at)
        {
            links.link(token, expires_at);
        }
        self.gate.authorize(req, &caller).await?;
        self.gate.rate_limit(req, &caller, conn).await?;

        let target = self.router.resolve(controller, action)?;
        let ctx = Context {
            connection: Arc::clone(conn),
            caller,
            reply: Arc::clone(reply),
        };
        if let Some(answer) = target.cached(action, req, &ctx) {
            return answer;
        }
        let scope = Arc::new(crate::scope::RequestScope {
            controller: controller.to_owned(),
            action: action.to_owned(),
            kuid: ctx.caller.kuid.clone(),
        });
        // A panic in an action must not drop the request: it is answered as an unexpected error.
        match std::panic::AssertUnwindSafe(crate::scope::run(scope, target.call(action, req, &ctx)))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome.map(Payload::Value),
            Err(_) => {
                tracing::error!(controller, action, "action panicked");
                Err(KuzzleError::internal(format!(
                    "{controller}:{action} failed"
                )))
            }
        }
    }

    fn check_origin(&self, conn: &ConnectionInfo) -> Result<(), KuzzleError> {
        let (Some(allowed), Some(origin)) = (&self.config.allowed_origins, &conn.origin) else {
            return Ok(());
        };
        if allowed.iter().any(|a| a == origin) {
            Ok(())
        } else {
            Err(KuzzleError::new(
                &API_PROCESS_UNAUTHORIZED_ORIGIN,
                vec![json!(origin)],
            ))
        }
    }

    async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, KuzzleError> {
        if self.shutdown.is_triggered() {
            return Err(KuzzleError::plain(&API_PROCESS_SHUTTING_DOWN));
        }
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = WaitGuard(&self.waiting);
        if queued >= self.config.requests_buffer_size {
            return Err(KuzzleError::plain(&API_PROCESS_OVERLOADED));
        }
        self.slots
            .acquire()
            .await
            .map_err(|_| KuzzleError::plain(&API_PROCESS_SHUTTING_DOWN))
    }
}

struct WaitGuard<'a>(&'a AtomicUsize);
impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Protocol;
    use crate::gate::OpenGate;
    use crate::router::{ActionDef, Controller};
    use async_trait::async_trait;
    use serde_json::{Value, json};

    struct Echo;
    #[async_trait]
    impl Controller for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn actions(&self) -> Vec<ActionDef> {
            vec![ActionDef::new("say", &[]), ActionDef::new("boom", &[])]
        }
        async fn call(
            &self,
            action: &str,
            req: &Request,
            _ctx: &Context,
        ) -> Result<Value, KuzzleError> {
            if action == "boom" {
                panic!("boom");
            }
            Ok(json!({"said": req.string("text")?}))
        }
    }

    fn funnel(config: FunnelConfig) -> Funnel {
        let mut router = Router::new();
        router.register(Arc::new(Echo));
        Funnel::new(
            Arc::new(router),
            Arc::new(OpenGate),
            config,
            Shutdown::new(),
        )
    }

    async fn run(f: &Funnel, payload: Value) -> Response {
        let conn = Arc::new(ConnectionInfo::new(
            Protocol::WebSocket,
            None,
            Some("http://a".into()),
        ));
        let req = Request::from_json(payload, None).unwrap_or_default();
        f.execute(req, &conn).await
    }

    fn error_id(r: &Response) -> Option<&'static str> {
        r.error.as_ref().map(|e| e.id())
    }

    #[tokio::test]
    async fn execute_dispatches_and_types_arguments() {
        let f = funnel(FunnelConfig::default());
        let r = run(&f, json!({"controller":"echo","action":"say","text":"hi"})).await;
        assert_eq!(r.result, json!({"said":"hi"}));
        let r = run(&f, json!({"controller":"echo","action":"say","text":5})).await;
        assert_eq!(error_id(&r), Some("api.assert.invalid_type"));
    }

    #[tokio::test]
    async fn execute_reports_missing_and_unknown_targets() {
        let f = funnel(FunnelConfig::default());
        let cases = [
            (
                json!({"action":"say"}),
                "api.assert.missing_argument",
                "Missing argument \"controller\".",
            ),
            (
                json!({"controller":"","action":"say"}),
                "api.assert.missing_argument",
                "Missing argument \"controller\".",
            ),
            (
                json!({"controller":"echo"}),
                "api.assert.missing_argument",
                "Missing argument \"action\".",
            ),
            (
                json!({"controller":"nope","action":"x"}),
                "api.process.controller_not_found",
                "API controller \"nope\" not found.",
            ),
            (
                json!({"controller":"echo","action":"x"}),
                "api.process.action_not_found",
                "API action \"echo\":\"x\" not found",
            ),
        ];
        for (payload, id, message) in cases {
            let r = run(&f, payload).await;
            assert_eq!(error_id(&r), Some(id));
            assert_eq!(
                r.error.as_ref().map(|e| e.message().to_owned()),
                Some(message.to_owned())
            );
        }
    }

    #[tokio::test]
    async fn execute_turns_a_panic_into_an_error() {
        let f = funnel(FunnelConfig::default());
        let r = run(&f, json!({"controller":"echo","action":"boom"})).await;
        assert_eq!(error_id(&r), Some("core.fatal.unexpected_error"));
        assert_eq!(r.status, 500);
    }

    #[tokio::test]
    async fn execute_checks_the_origin_allow_list() {
        let f = funnel(FunnelConfig {
            allowed_origins: Some(vec!["http://b".into()]),
            ..FunnelConfig::default()
        });
        let r = run(&f, json!({"controller":"echo","action":"say"})).await;
        assert_eq!(error_id(&r), Some("api.process.unauthorized_origin"));
        assert_eq!(r.status, 401);
    }

    #[tokio::test]
    async fn execute_refuses_when_full_or_shutting_down() {
        let f = funnel(FunnelConfig {
            concurrent_requests: 1,
            requests_buffer_size: 0,
            allowed_origins: None,
        });
        let held = f.slots.try_acquire();
        assert!(held.is_ok());
        let r = run(&f, json!({"controller":"echo","action":"say"})).await;
        assert_eq!(error_id(&r), Some("api.process.overloaded"));
        drop(held);
        f.shutdown.trigger();
        let r = run(&f, json!({"controller":"echo","action":"say"})).await;
        assert_eq!(error_id(&r), Some("api.process.shutting_down"));
        assert!(!f.is_ready());
    }
}
