//! Local credentials: argon2id password hashes in PHC string format, computed off the async runtime
//! on a small pool of dedicated threads. A login for an unknown username verifies against a dummy
//! hash, so it takes as long as a wrong password.
//!
//! The pool (one thread per core, at most 4) bounds both the CPU that hashing takes and its memory:
//! each hash needs `memory_kib` (19 MiB by default), and a thread that hashes again reuses the block
//! it freed, where hashing on the runtime's blocking threads left one such block behind in the
//! allocator for every thread that ever hashed (RSS grew by hundreds of MiB under steady logins).

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB (default 19 MiB).
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashCost {
    /// Whether argon2 accepts these parameters.
    pub fn is_valid(&self) -> bool {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).is_ok()
    }

    fn hasher(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| e.to_string())?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; they end when the last [`Passwords`] is dropped.
#[derive(Debug)]
struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    fn start() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("tollgate-argon2-{i}"))
                .spawn(move || {
                    loop {
                        // A panic of another job cannot leave the queue inconsistent.
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        job();
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Self { jobs: tx }
    }

    /// Runs `f` on a hashing thread; `None` if the pool is gone or `f` panicked.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }
}

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub struct Passwords {
    cost: HashCost,
    dummy: Arc<OnceLock<String>>,
    pool: Arc<Pool>,
    /// Fewest characters a new password may have (`security.password_min_length`).
    min_length: usize,
}

impl Passwords {
    pub fn new(cost: HashCost) -> Self {
        Self {
            cost,
            dummy: Arc::default(),
            pool: Arc::new(Pool::start()),
            min_length: 1,
        }
    }

    /// The same, refusing new passwords of fewer than `min_length` characters.
    pub fn with_min_length(mut self, min_length: usize) -> Self {
        self.min_length = min_length;
        self
    }

    /// Fewest characters a new password may have.
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, String> {
        let cost = self.cost;
        self.pool
            .run(move || hash_now(cost, &password))
            .await
            .unwrap_or_else(|| Err("password hashing failed".to_owned()))
    }

    /// Verifies `password` against `phc`, or against a dummy hash when there is no stored hash.
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let cost = self.cost;
        let dummy = Arc::clone(&self.dummy);
        let outcome = self.pool.run(move || {
            let (phc, real) = match phc {
                Some(phc) => (phc, true),
                None => (
                    dummy
                        .get_or_init(|| {
                            hash_now(cost, "tollgate dummy password").unwrap_or_default()
                        })
                        .clone(),
                    false,
                ),
            };
            let matches = PasswordHash::new(&phc)
                .ok()
                .and_then(|parsed| {
                    cost.hasher()
                        .ok()
                        .map(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
                })
                .unwrap_or(false);
            real && matches
        });
        outcome.await.unwrap_or(false)
    }
}

fn hash_now(cost: HashCost, password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    cost.hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(HashCost {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        });
        let phc = p.hash("s3cret".into()).await.unwrap_or_default();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(p.verify("s3cret".into(), Some(phc.clone())).await);
        assert!(!p.verify("wrong".into(), Some(phc)).await);
        assert!(!p.verify("tollgate dummy password".into(), None).await);
        assert!(
            !HashCost {
                memory_kib: 1,
                iterations: 0,
                parallelism: 1
            }
            .is_valid()
        );
    }
}
