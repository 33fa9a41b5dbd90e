//! Prometheus metrics (`prometheus-client`): one layer of the pipeline, fed by the Funnel's
//! [`Observer`] hook (requests, connections) and by [`MeteredCommits`] (a commit layer of the store), never by controller
//! code. Rendered in the text exposition format for `GET /_metrics`.
//!
//! Label values come from bounded sets only: the controller:action pairs the router serves (any other
//! name counts as `unknown`), the protocols, the HTTP statuses and the error ids of the registry.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tollgate_core::Protocol;
use tollgate_core::observe::{Answered, Observer};
use tollgate_storage::layer::CommitLayer;
use tollgate_storage::{Committed, Op, Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    controller: &'static str,
    action: &'static str,
    protocol: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    controller: &'static str,
    action: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    id: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

/// The handles of one served action, per protocol, made on its first answer: the hot path then
/// counts with atomic operations on them instead of hashing a label set into a family each time.
#[derive(Default)]
struct Handles {
    /// The `status="200"` request counter (the others go through the family).
    ok: OnceLock<Counter>,
    latency: OnceLock<Histogram>,
}

/// One served controller:action, its label values interned once, and its handles (http, websocket).
struct Slot {
    controller: &'static str,
    action: &'static str,
    handles: [Handles; 2],
}

/// The served actions by controller, then action (foldhash: two cheap hashes per answer).
type Names = foldhash::HashMap<&'static str, foldhash::HashMap<&'static str, Slot>>;

type LatencyFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
    }
}

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Http => 0,
        Protocol::WebSocket => 1,
    }
}

/// Gauges set when the metrics are rendered (state read on demand rather than counted).
#[derive(Debug, Default)]
pub struct Gauges {
    pub cached_users: Gauge,
    pub cached_tokens: Gauge,
    pub roles: Gauge,
    pub profiles: Gauge,
    /// Changes committed to the store that this node's cache has not applied yet.
    pub feed_lag: Gauge,
    /// The store writer's group commits, and the batches they carried (their ratio: the mean
    /// group size).
    pub commit_groups: Counter,
    pub grouped_batches: Counter,
}

impl Gauges {
    /// Brings the group counters up to the store's own counts.
    pub fn set_groups(&self, groups: u64, batches: u64) {
        for (counter, value) in [
            (&self.commit_groups, groups),
            (&self.grouped_batches, batches),
        ] {
            let now = counter.get();
            if value > now {
                counter.inc_by(value - now);
            }
        }
    }
}

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    /// Served controller:action names, interned once (the label values of known actions).
    names: OnceLock<Names>,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    errors: Family<ErrorLabels, Counter>,
    connections: Family<ProtocolLabels, Gauge>,
    commit_latency: Histogram,
    commit_ops: Histogram,
    commit_failures: Counter,
    pub gauges: Gauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "actions",
                &self
                    .names
                    .get()
                    .map_or(0, |n| n.values().map(|slots| slots.len()).sum()),
            )
            .finish()
    }
}

impl Metrics {
    /// The metrics of a node; [`Metrics::name_actions`] tells it the actions served.
    pub fn new() -> Arc<Self> {
        // Bounded: the router's actions, named once for the life of the process.
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let connections = Family::<ProtocolLabels, Gauge>::default();
        let commit_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let commit_ops = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let commit_failures = Counter::default();
        let gauges = Gauges::default();
        let mut registry = Registry::with_prefix("tollgate");
        registry.register(
            "requests",
            "Requests answered, by controller:action, protocol and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by controller:action and protocol",
            latency.clone(),
        );
        registry.register(
            "errors",
            "Error answers by Kuzzle error id (rate limits: api.process.too_many_requests, login limits: api.process.too_many_logins_requests)",
            errors.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections, by protocol (http counts every TCP connection, websocket the upgraded ones)",
            connections.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time to commit one batch to the store (durable when it returns)",
            commit_latency.clone(),
        );
        registry.register(
            "store_commit_operations",
            "Operations per committed batch",
            commit_ops.clone(),
        );
        registry.register(
            "store_commit_failures",
            "Batches the store refused (conflicts included)",
            commit_failures.clone(),
        );
        registry.register(
            "cache_users",
            "Users held in this node's cache",
            gauges.cached_users.clone(),
        );
        registry.register(
            "cache_tokens",
            "Token records held in this node's cache",
            gauges.cached_tokens.clone(),
        );
        registry.register(
            "cache_roles",
            "Roles in this node's cache",
            gauges.roles.clone(),
        );
        registry.register(
            "cache_profiles",
            "Profiles in this node's cache",
            gauges.profiles.clone(),
        );
        registry.register(
            "store_commit_groups",
            "Group commits made by the store's writer (one transaction and one flush each)",
            gauges.commit_groups.clone(),
        );
        registry.register(
            "store_grouped_batches",
            "Batches committed in those groups (grouped_batches / commit_groups: the mean group size)",
            gauges.grouped_batches.clone(),
        );
        registry.register(
            "feed_lag",
            "Changes committed to the store not applied by this node's cache yet",
            gauges.feed_lag.clone(),
        );
        Arc::new(Self {
            registry,
            names: OnceLock::new(),
            requests,
            latency,
            errors,
            connections,
            commit_latency,
            commit_ops,
            commit_failures,
            gauges,
        })
    }

    /// The controller:action pairs the router serves (the only ones counted under their names; any
    /// other is `unknown`). Set once, when the router is complete.
    pub fn name_actions(&self, actions: impl IntoIterator<Item = (String, String)>) {
        let mut names = Names::default();
        for (c, a) in actions {
            if names
                .get(c.as_str())
                .is_some_and(|slots| slots.contains_key(a.as_str()))
            {
                continue;
            }
            // Bounded: the router's actions, named once for the life of the process.
            let controller: &'static str = match names.get_key_value(c.as_str()) {
                Some((&name, _)) => name,
                None => Box::leak(c.into_boxed_str()),
            };
            let action: &'static str = Box::leak(a.into_boxed_str());
            names.entry(controller).or_default().insert(
                action,
                Slot {
                    controller,
                    action,
                    handles: Default::default(),
                },
            );
        }
        let _ = self.names.set(names);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn slot(&self, controller: &str, action: &str) -> Option<&Slot> {
        self.names.get()?.get(controller)?.get(action)
    }
}

impl Observer for Metrics {
    fn answered(&self, answer: &Answered<'_>) {
        let slot = self.slot(answer.controller, answer.action);
        let (controller, action) =
            slot.map_or(("unknown", "unknown"), |s| (s.controller, s.action));
        let protocol = protocol(answer.protocol);
        let handles = slot.map(|s| &s.handles[protocol_index(answer.protocol)]);
        let requests = |status| {
            self.requests
                .get_or_create(&RequestLabels {
                    controller,
                    action,
                    protocol,
                    status,
                })
                .clone()
        };
        match handles {
            Some(h) if answer.status == 200 => {
                h.ok.get_or_init(|| requests(200)).inc();
            }
            _ => {
                requests(answer.status).inc();
            }
        }
        let latency = || {
            self.latency
                .get_or_create(&LatencyLabels {
                    controller,
                    action,
                    protocol,
                })
                .clone()
        };
        let elapsed = answer.elapsed.as_secs_f64();
        match handles {
            Some(h) => h.latency.get_or_init(latency).observe(elapsed),
            None => latency().observe(elapsed),
        }
        if let Some(id) = answer.error {
            self.errors.get_or_create(&ErrorLabels { id }).inc();
        }
    }

    fn connection(&self, p: Protocol, opened: bool) {
        let gauge = self.connections.get_or_create(&ProtocolLabels {
            protocol: protocol(p),
        });
        if opened {
            gauge.inc();
        } else {
            gauge.dec();
        }
    }
}

/// The commit layer that times each batch.
pub struct MeteredCommits(pub Arc<Metrics>);

#[async_trait]
impl CommitLayer for MeteredCommits {
    async fn commit(&self, below: &dyn Store, ops: Vec<Op>) -> Result<Committed, StoreError> {
        let count = ops.len();
        let started = Instant::now();
        let outcome = below.commit(ops).await;
        let metrics = &self.0;
        metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        metrics.commit_ops.observe(count as f64);
        if outcome.is_err() {
            metrics.commit_failures.inc();
        }
        outcome
    }
}
