//! The security hook points of the pipeline (`protocol.md` §4, steps 5–7): authentication,
//! authorization and rate limiting. The Funnel calls them, in that order, before any controller code.

use async_trait::async_trait;
use tollgate_protocol::{KuzzleError, Request};

use crate::context::{Caller, ConnectionInfo};

/// Decides who the caller is and whether it may run the request.
#[async_trait]
pub trait Gate: Send + Sync + 'static {
    /// Step 5: resolve the caller from the request's token (`None` → anonymous).
    async fn authenticate(
        &self,
        req: &Request,
        conn: &ConnectionInfo,
    ) -> Result<Caller, KuzzleError>;
    /// Step 6: may `caller` run `req.controller:req.action` on the request's index/collection?
    async fn authorize(&self, req: &Request, caller: &Caller) -> Result<(), KuzzleError>;
    /// Step 7: the caller's rate limit.
    async fn rate_limit(
        &self,
        req: &Request,
        caller: &Caller,
        conn: &ConnectionInfo,
    ) -> Result<(), KuzzleError>;
}

/// The gate of a fresh install before users exist: every request runs as the anonymous user, which
/// has every right and no rate limit (`shared/spec/README.md`, phase a). Replaced by the security
/// crate's gate once users, tokens and rights exist.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

#[async_trait]
impl Gate for OpenGate {
    async fn authenticate(
        &self,
        _req: &Request,
        _conn: &ConnectionInfo,
    ) -> Result<Caller, KuzzleError> {
        Ok(Caller::anonymous())
    }
    async fn authorize(&self, _req: &Request, _caller: &Caller) -> Result<(), KuzzleError> {
        Ok(())
    }
    async fn rate_limit(
        &self,
        _req: &Request,
        _caller: &Caller,
        _conn: &ConnectionInfo,
    ) -> Result<(), KuzzleError> {
        Ok(())
    }
}
