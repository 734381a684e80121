//! The gate: one call per request joins CORS and rate limiting, and says what to answer.
//!
//! A [`Gate`] is built from a [`Config`]: it owns the limiter of every policy and the CORS
//! policy. [`Gate::decide`] takes the request's method, path, CORS headers, client address,
//! principal and tier, and returns an [`Outcome`]: the status (pass, 204 preflight, 403 CORS
//! refusal, 429 limited), every header to add, a delay for shaping, the concurrency leases to
//! give back when the response is done, and a reason.
//!
//! What it gets right that stacks of middleware get wrong:
//!
//! * preflights are answered before any limit and never charged;
//! * a 429 to an allowed origin carries the CORS headers, so the browser shows the 429 and not a
//!   CORS error;
//! * the rate-limit headers are listed in `Access-Control-Expose-Headers`, so pages can read
//!   them;
//! * several limits on one request are all-or-nothing: when one denies, what the others took is
//!   refunded and their leases released;
//! * a limit in shadow mode is decided and counted but never enforced;
//! * requests without a principal get the route's `anonymous` limits.
//!
//! ```
//! use portcullis::config::Config;
//! use portcullis::gate::{Gate, GateRequest, Action};
//! use portcullis::ManualClock;
//!
//! let config: Config = r#"
//!     [[policy]]
//!     name = "login"
//!     algorithm = "fixed_window"
//!     limit = "5/15m"
//!     block = "15m"
//!
//!     [[route]]
//!     match = "POST /api/v1/auth/login"
//!     limits = [{ policy = "login", key = "ip" }]
//!
//!     [cors]
//!     allowed_origins = ["https://app.example.com"]
//! "#.parse()?;
//! let gate = Gate::builder(config).clock(ManualClock::new(1_700_000_000_000_000_000)).build()?;
//!
//! let login = GateRequest::new("POST", "/api/v1/auth/login")
//!     .origin("https://app.example.com")
//!     .ip("203.0.113.9".parse()?);
//! for _ in 0..5 {
//!     assert_eq!(gate.decide(&login).action(), Action::Pass);
//! }
//! let refused = gate.decide(&login);
//! assert_eq!(refused.action(), Action::Limited);
//! assert_eq!(refused.status_code(), Some(429));
//! assert_eq!(refused.header("Retry-After"), Some("900"));
//! // The browser can read the 429 and its headers.
//! assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example.com"));
//! assert!(refused.header("access-control-expose-headers").unwrap().contains("Retry-After"));
//!
//! // A preflight is answered at once and charges nothing.
//! let preflight = GateRequest::new("OPTIONS", "/api/v1/auth/login")
//!     .origin("https://app.example.com")
//!     .request_method("POST");
//! assert_eq!(gate.decide(&preflight).status_code(), Some(204));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Reload.** [`Gate::reload`] swaps in a new config while requests run. The compiled config
//! sits behind a `parking_lot::RwLock<Arc<_>>`, and a reload takes the write lock only to swap
//! the pointer, then bumps a generation number. [`Gate::decide`] takes the read lock for its
//! decision; [`Gate::decide_into`] takes none while the outcome it reuses holds the config of the
//! current generation (one plain load). Policies whose definition did not change keep their
//! limiter, so their counters carry over; new or changed policies start fresh. An invalid config
//! never reaches the gate: [`Config`] refuses it first.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::config::{Config, KeyKind, MissingKey, StoreKind};
use crate::core::clock::Clock;
use crate::core::clock::TimeSource;
use crate::core::stats::{Outcome as CountedAs, PolicyStats};
use crate::cors::{CorsRequest, RequestKind};
use crate::limit::decision::render_with_main;
use crate::limit::decision::Decision;
use crate::limit::error::Error;
use crate::limit::limiter::Limiter;
use crate::store::redis::RedisStore;
use crate::store::{Board, Durability, SharedStore, SledStore, Store};

mod abuse;
mod compile;
mod headers;
mod keys;
mod metrics;
mod outcome;
mod path;
mod stats;

use abuse::Abuse;
use compile::{compile, Inner, Select, Stores};
use headers::{CorsInto, HeaderBuf};
use keys::{key_bytes, key_display};
use outcome::KeptConfig;
use stats::millis;

pub use crate::config::RoutePattern;
pub use abuse::{Denial, Offender, RECENT_DENIALS, TOP_KEYS};
pub use keys::{describe_key, limiter_key};
pub use metrics::MetricsFormat;
pub use outcome::{Action, Applied, GateRequest, Leases, Outcome, Reason};
pub use stats::{GateStats, KeyState, LimitStats, PolicyStatsView};

/// Why a gate could not be built or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// The limiter refused a policy or a setting.
    #[error(transparent)]
    Limiter(#[from] Error),
    /// The CORS policy, extended with the rate-limit headers, was refused.
    #[error("{0}")]
    Cors(#[from] crate::cors::CorsConfigErrors),
    /// A setting that cannot change while the gate runs.
    #[error("{0}")]
    Reload(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Builds a [`Gate`].
pub struct GateBuilder {
    config: Config,
    clock: Option<TimeSource>,
}

impl GateBuilder {
    /// The clock every limiter reads (default: [`crate::core::clock::CoarseClock`]); tests pass a
    /// [`crate::core::clock::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(TimeSource::of(clock));
        self
    }

    /// A shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(TimeSource::Custom(clock));
        self
    }

    /// Builds the limiters and the CORS policy.
    pub fn build(self) -> Result<Gate, GateError> {
        let clock = self.clock.unwrap_or_else(TimeSource::coarse);
        let store: Option<Arc<dyn Store>> = match (&self.config.store.kind, &self.config.store.path)
        {
            (StoreKind::Sled, Some(path)) => Some(Arc::new(SledStore::open(
                path,
                self.config.store.cache_capacity.unwrap_or(64 << 20),
            )?)),
            _ => None,
        };
        let shared = match (&self.config.store.kind, &self.config.store.path) {
            (StoreKind::Shared, Some(path)) => Some(Arc::new(SharedStore::open(path)?)),
            _ => None,
        };
        let redis = match (&self.config.store.kind, &self.config.store.redis) {
            (StoreKind::Redis, Some(o)) => Some(Arc::new(RedisStore::open(o.clone())?)),
            _ => None,
        };
        let abuse = Arc::new(Abuse::restore(store.as_deref())?);
        let shared_stores = Stores {
            store: store.clone(),
            shared: shared.clone(),
            redis: redis.clone(),
        };
        let inner = compile(self.config, None, &clock, &shared_stores)?;
        static GATES: AtomicU64 = AtomicU64::new(0);
        let persistent = store.is_some() || shared.is_some();
        // Mapped now, by the process that reads the config: workers it forks (nginx's
        // master does) use this mapping, even when they run as a user who could not open the
        // file. A slot is claimed at a process's first publish, so the master holds none.
        // Without a board (it could not be created) counters are this process's own.
        let board = shared.as_ref().and_then(|s| Board::open(s.path()).ok());
        Ok(Gate {
            waits_on_disk: AtomicBool::new(persistent && any_immediate(&inner)),
            has_tier_header: AtomicBool::new(inner.config.tier_header.is_some()),
            inner: RwLock::new(Arc::new(inner)),
            generation: AtomicU64::new(0),
            id: GATES.fetch_add(1, Ordering::Relaxed),
            clock,
            abuse,
            store,
            next_publish: AtomicU64::new(if board.is_some() { 0 } else { u64::MAX }),
            board: Mutex::new(board),
            shared,
            retired: Mutex::default(),
            last_values: Mutex::default(),
            redis,
        })
    }
}

/// CORS and rate limiting for every request, from one config. `Send + Sync`: share it.
pub struct Gate {
    inner: RwLock<Arc<Inner>>,
    /// Bumped after every reload, so an outcome that kept this gate's config knows whether it
    /// is still the one in force.
    generation: AtomicU64,
    /// Whether the config names a `tier_header`: front ends ask per request.
    has_tier_header: AtomicBool,
    /// Whether some policy has immediate durability over a persistent store.
    waits_on_disk: AtomicBool,
    /// Tells this gate's configs apart from other gates' in an outcome.
    id: u64,
    clock: TimeSource,
    abuse: Arc<Abuse>,
    /// Opened once and shared by every limiter the gate builds, reloads included.
    store: Option<Arc<dyn Store>>,
    /// The shared store, when the config names one: new and changed policies get its tables.
    shared: Option<Arc<SharedStore>>,
    /// The shared store's board, where this process publishes its counters.
    board: Mutex<Option<Board>>,
    /// When a decision next publishes this process's counters to the board (gate clock, ns;
    /// never without a board).
    next_publish: AtomicU64,
    /// Counts of limits and policies that reloads dropped or restarted, by series.
    retired: Mutex<HashMap<u64, u64>>,
    /// The last value reported of each counter series, so none ever goes down.
    last_values: Mutex<HashMap<u64, u64>>,
    /// The Redis store, when the config names one: opened once, used by every policy.
    redis: Option<Arc<RedisStore>>,
}

/// How often a decision publishes this process's counters to the shared store's board.
const PUBLISH_EVERY_NS: u64 = 1_000_000_000;

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("Gate")
            .field("policies", &inner.policies.len())
            .field("routes", &inner.routes.len())
            .field("cors", &inner.cors.is_some())
            .finish()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // The log of recent denials outlives the process, as the counters do.
        if let Some(store) = &self.store {
            let _ = self.abuse.save(store.as_ref(), self.clock.now());
        }
        self.publish_last();
    }
}

/// What a reload kept and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// Policies whose counters carried over.
    pub kept: Vec<String>,
    /// Policies new or changed, starting fresh.
    pub fresh: Vec<String>,
    /// Policies no longer in the config.
    pub removed: Vec<String>,
}

impl Gate {
    /// Starts a gate from a validated config.
    pub fn builder(config: Config) -> GateBuilder {
        GateBuilder {
            config,
            clock: None,
        }
    }

    /// A gate with the default clock.
    pub fn new(config: Config) -> Result<Gate, GateError> {
        Self::builder(config).build()
    }

    /// Decides one request.
    pub fn decide(&self, req: &GateRequest<'_>) -> Outcome {
        self.decide_at(req, self.clock.now())
    }

    /// [`Gate::decide`] at an explicit time (Unix-epoch nanoseconds), for deterministic tests.
    pub fn decide_at(&self, req: &GateRequest<'_>, now: u64) -> Outcome {
        let mut out = Outcome::new();
        self.decide_into(req, now, &mut out);
        out
    }

    /// [`Gate::decide_at`] into an outcome the caller reuses (one per worker thread, say): no
    /// allocation once its buffers have grown, and no lock: the outcome keeps the config it
    /// was last decided under and takes the new one after a [`Gate::reload`]. Whatever `out`
    /// held is replaced, and its concurrency leases are released first, so reuse an outcome
    /// only once its response is done.
    pub fn decide_into(&self, req: &GateRequest<'_>, now: u64, out: &mut Outcome) {
        out.clear();
        // A reload swaps the config, then bumps the generation (release): an outcome that
        // sees the bump reads the new config; one that does not decides under the old one,
        // as a request that started just before the reload would.
        let generation = self.generation.load(Ordering::Acquire);
        let config = match out.config.take() {
            Some(kept) if kept.gate == self.id && kept.generation == generation => kept,
            _ => KeptConfig {
                gate: self.id,
                generation,
                inner: self.inner.read().clone(),
            },
        };
        self.decide_in(&config.inner, req, now, out);
        out.config = Some(config);
        // One load and compare unless a shared store's board is due a publish.
        if now >= self.next_publish.load(Ordering::Relaxed) {
            self.publish_due(now);
        }
    }

    /// Publishes this process's counters to the board from a decision, once a second: one
    /// caller wins, the others never wait.
    #[cold]
    #[inline(never)]
    fn publish_due(&self, now: u64) {
        let due = self.next_publish.load(Ordering::Relaxed);
        if now < due
            || self
                .next_publish
                .compare_exchange(
                    due,
                    now.saturating_add(PUBLISH_EVERY_NS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        if let Some(mut board) = self.board.try_lock() {
            self.publish_into(&mut board);
        }
    }

    /// Copies this process's counters to the shared store's board now (a no-op without a
    /// shared store). Decisions do it at most once a second and a scrape does it first; a
    /// server whose workers may sit idle calls this from a timer, so that their last counts
    /// reach the host's sums without waiting for their next request.
    pub fn publish_metrics(&self) {
        let mut board = self.board.lock();
        self.publish_into(&mut board);
    }

    /// At close and drop: the last counts reach the board, where the host's counters keep
    /// them once this process is gone. A process that never published (it made no decision:
    /// nginx's master, say) has nothing to add and takes no slot.
    fn publish_last(&self) {
        let mut board = self.board.lock();
        if board.as_ref().is_some_and(Board::claimed) {
            self.publish_into(&mut board);
        }
    }

    fn publish_into(&self, board: &mut Option<Board>) {
        if let Some(b) = board {
            let inner = self.inner.read().clone();
            let values = self.monotonic(&self.counters(&inner));
            b.publish(values.iter().map(|(k, v)| (*k, *v)));
        }
    }

    /// Publishes `values` (this process's counters) and returns the board's sums and the
    /// processes publishing, or `None` without a board or a free slot on it (every slot held
    /// by a live process: `portcullis_metrics_host_wide` then says 0).
    fn publish_values(&self, values: &HashMap<u64, u64>) -> Option<(HashMap<u64, u64>, usize)> {
        let mut board = self.board.lock();
        let b = board.as_mut()?;
        if !b.publish(values.iter().map(|(k, v)| (*k, *v))) {
            return None;
        }
        Some((b.sums(), b.processes()))
    }

    fn decide_in(&self, inner: &Inner, req: &GateRequest<'_>, now: u64, out: &mut Outcome) {
        let headers = &mut out.headers;
        let creq = CorsRequest {
            method: req.method,
            origin: req.origin,
            access_control_request_method: req.request_method,
            access_control_request_headers: req.request_headers,
            access_control_request_private_network: req.request_private_network,
        };
        if let Some(cors) = &inner.cors {
            // Written straight into the outcome's headers: CORS headers go on every answer.
            let mut sink = CorsInto {
                headers,
                refusal: None,
            };
            let kind = cors.decide_into(&creq, &mut sink);
            if let Some(refusal) = sink.refusal {
                self.abuse.cors_refused.0.add(1);
                self.abuse
                    .refusals
                    .add(refusal.code(), kind == RequestKind::Preflight);
                out.answer(
                    Action::Forbidden,
                    Reason::Cors {
                        refusal: refusal.to_string(),
                    },
                );
                return;
            }
            if kind == RequestKind::Preflight {
                // Answered here, before any route or limit: preflights are never charged.
                self.abuse.preflights.0.add(1);
                out.answer(Action::Preflight, Reason::Preflight);
                return;
            }
        }
        let Some(route) = route_of(inner, req) else {
            self.abuse.unrouted.0.add(1);
            out.answer(Action::Pass, Reason::NoRoute);
            return;
        };
        let limits = match (&route.anonymous, req.principal) {
            (Some(anon), None) => anon,
            _ => &route.limits,
        };
        let client = client_of(inner, req);
        let by_address =
            |k: KeyKind| k == KeyKind::Ip || (k == KeyKind::Principal && req.principal.is_none());
        if client.is_none()
            && route.on_missing_key == MissingKey::Deny
            && limits.iter().any(|l| by_address(l.key))
        {
            self.abuse.no_client.0.add(1);
            out.route = Some(route.text);
            out.answer(
                Action::Limited,
                Reason::NoClientAddress {
                    route: route.text.to_string(),
                },
            );
            return;
        }
        let tier = tier_of(inner, req);
        let applied = &mut out.applied;
        let leases = &mut out.leases;
        let mut denied_by = None;
        let mut store_error: Option<String> = None;
        let buf = &mut out.keys;
        for (i, limit) in limits.iter().enumerate() {
            if client.is_none() && by_address(limit.key) {
                // `on_missing_key = "skip"`: this limit does not apply.
                continue;
            }
            let (slot_index, counter_index) = limit.policy_index(tier);
            let slot = &inner.policies[slot_index];
            let key = key_bytes(
                buf,
                limit.key,
                route.text,
                client,
                req.principal,
                inner.keyer,
            );
            // A limiter error cannot happen for a validated config (cost 1, right kind of
            // call); should one happen, the limit fails closed.
            applied.push(Applied {
                policy: slot.name,
                key: limit.key,
                shadow: limit.shadow,
                decision: Decision::fail_closed(slot.id, now),
                slot: slot_index as u32,
            });
            let Some(Applied { decision, .. }) = applied.last_mut() else {
                continue;
            };
            let mut failed = false;
            if slot.concurrency {
                match slot.limiter.acquire_at(slot.id, key, 1, now) {
                    Ok((d, lease)) => {
                        *decision = d;
                        if let Some(lease) = lease {
                            leases.0.push((slot.limiter.clone(), lease));
                        }
                    }
                    Err(_) => failed = true,
                }
            } else {
                // Written where the outcome keeps it; on an error the decision stays the
                // fail-closed denial and the reason says why.
                if let Err(e) = slot
                    .limiter
                    .check_settled_into(slot.id, key, 1, now, decision)
                {
                    store_error = Some(e.to_string());
                    failed = true;
                }
            }
            let counts = limit.counters.get(counter_index);
            match (decision.allowed, counts) {
                // The allowed path counts as it always did: one word, two when delayed.
                (true, Some(c)) => c.record(CountedAs::Allowed, !decision.delay().is_zero()),
                (false, Some(c)) => count_denial(c, slot, key, now, failed, limit.shadow),
                (_, None) => {}
            }
            if !decision.allowed && !limit.shadow {
                // Indices of `applied` (skipped limits have no entry) and of `limits`.
                denied_by = Some((applied.len() - 1, i));
                break;
            }
        }
        if let Some((a_index, i)) = denied_by {
            // All or nothing: give back what the earlier limits took.
            drop(std::mem::take(leases));
            for a in applied.iter().take(a_index) {
                let slot = &inner.policies[a.slot as usize];
                if a.decision.allowed && !slot.concurrency {
                    let key = key_bytes(buf, a.key, route.text, client, req.principal, inner.keyer);
                    let _ = slot.limiter.refund_at(slot.id, key, 1, now);
                }
            }
            let limit = &limits[i];
            let key = key_display(limit.key, route.text, client, req.principal, inner.keyer);
            let policy = applied[a_index].policy.to_string();
            if let Some(message) = store_error {
                self.rate_headers(inner, applied, headers);
                out.route = Some(route.text);
                out.answer(Action::Limited, Reason::StoreError { policy, message });
                return;
            }
            self.abuse.deny(&key, &policy, route.text, now);
            if let Some(store) = &self.store {
                self.abuse.save_now_and_then(store.as_ref(), now);
            }
            self.rate_headers(inner, applied, headers);
            out.route = Some(route.text);
            out.answer(
                Action::Limited,
                Reason::Limited {
                    policy,
                    key,
                    route: route.text.to_string(),
                },
            );
            return;
        }
        let delay = applied
            .iter()
            .filter(|a| !a.shadow)
            .map(|a| a.decision.delay())
            .max()
            .unwrap_or_default();
        self.rate_headers(inner, applied, headers);
        out.delay = delay;
        out.route = Some(route.text);
        out.answer(Action::Pass, Reason::Allowed);
    }

    /// Renders the rate-limit headers of the enforced limits (shadow ones stay invisible).
    fn rate_headers(&self, inner: &Inner, applied: &[Applied], out: &mut HeaderBuf) {
        let enforced = || applied.iter().filter(|a| !a.shadow);
        // Picked by reference: only the IETF fields need every policy's item.
        let Some(main) = enforced().min_by(|a, b| a.decision.restrictiveness(&b.decision)) else {
            return;
        };
        let items = || {
            enforced().filter_map(|a| {
                let slot = inner.policies.get(a.slot as usize)?;
                Some((slot.meta, a.decision, slot.ietf))
            })
        };
        let limit_text = inner
            .policies
            .get(main.slot as usize)
            .and_then(|p| p.limit_text);
        render_with_main(inner.style, &main.decision, limit_text, items, out);
    }

    /// Applies a new config without losing the counters of policies that did not change.
    /// The old config keeps running if the new one cannot be applied.
    pub fn reload(&self, config: Config) -> Result<ReloadSummary, GateError> {
        let old = self.inner.read().clone();
        let stores = Stores {
            store: self.store.clone(),
            shared: self.shared.clone(),
            redis: self.redis.clone(),
        };
        let inner = compile(config, Some(&old), &self.clock, &stores)?;
        let mut summary = ReloadSummary::default();
        for p in &inner.policies {
            let kept = old
                .policies
                .iter()
                .any(|o| Arc::ptr_eq(&o.limiter, &p.limiter));
            match kept {
                true => summary.kept.push(p.name.to_string()),
                false => summary.fresh.push(p.name.to_string()),
            }
        }
        for o in &old.policies {
            if !inner.policies.iter().any(|p| p.name == o.name) {
                summary.removed.push(o.name.to_string());
            }
        }
        // Counters the new config drops or restarts keep counting in the metrics.
        self.retire_counters(&old, &inner);
        let has_tier_header = inner.config.tier_header.is_some();
        let waits_on_disk = self.waits_on_disk(&inner);
        *self.inner.write() = Arc::new(inner);
        self.has_tier_header
            .store(has_tier_header, Ordering::Release);
        self.waits_on_disk.store(waits_on_disk, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(summary)
    }

    /// Reads, validates and applies a config file (see [`Gate::reload`]).
    pub fn reload_file(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<ReloadSummary, GateError> {
        self.reload(Config::load(path)?)
    }

    /// Whether deciding `req` may wait: on the network (a Redis store, up to its timeout) or
    /// on the disk (its route has a policy of immediate durability over a persistent store).
    /// An async front end decides such requests off its runtime's threads (the tower layer
    /// uses `spawn_blocking`); every other decision is a few atomic operations. One atomic
    /// load for configs with neither.
    pub fn may_wait(&self, req: &GateRequest<'_>) -> bool {
        if self.redis.is_some() {
            return true;
        }
        if !self.waits_on_disk.load(Ordering::Acquire) {
            return false;
        }
        let inner = self.inner.read();
        let Some(route) = route_of(&inner, req) else {
            return false;
        };
        route
            .limits
            .iter()
            .chain(route.anonymous.iter().flatten())
            .any(|l| {
                l.policies()
                    .any(|(i, _)| inner.policies[i].settings.durability == Durability::Immediate)
            })
    }

    /// The request header the config names as carrying the tier (`tier_header`, lowercase),
    /// for front ends to fill [`GateRequest::tier_claim`]; `None` for most configs, at the cost
    /// of one atomic load.
    pub fn tier_header(&self) -> Option<String> {
        if !self.has_tier_header.load(Ordering::Acquire) {
            return None;
        }
        self.inner.read().config.tier_header.clone()
    }

    fn waits_on_disk(&self, inner: &Inner) -> bool {
        (self.store.is_some() || self.shared.is_some()) && any_immediate(inner)
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.inner.read().config.clone()
    }

    /// Forgets the state of a key under a policy (unblocks it). `key` is what the policy is
    /// keyed by: an IP address for `ip`, the principal for `principal`, the route's `match`
    /// for `route`, anything for `global`. Returns whether the key had state.
    pub fn reset(&self, policy: &str, kind: KeyKind, key: &str) -> Result<bool, Error> {
        let inner = self.inner.read();
        let slot = inner
            .policies
            .iter()
            .find(|p| p.name == policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.into()))?;
        let bytes = match kind {
            KeyKind::Ip => {
                let ip: IpAddr = key.parse().map_err(|_| {
                    Error::InvalidKey(format!("{policy}: {key:?} is not an IP address"))
                })?;
                limiter_key(kind, "", Some(ip), None, inner.keyer)
            }
            KeyKind::Principal => limiter_key(kind, "", None, Some(key), inner.keyer),
            KeyKind::Route => limiter_key(kind, key, None, None, inner.keyer),
            KeyKind::Global => limiter_key(kind, "", None, None, inner.keyer),
        };
        slot.limiter.reset(slot.id, bytes)
    }

    /// The client address the gate keys a request by: the peer, or, when the peer is one of the
    /// config's `trusted_proxies`, the rightmost untrusted hop of its forwarding headers;
    /// `None` when there is none (see [`crate::config::TrustedProxies::client`]).
    pub fn client_of(&self, req: &GateRequest<'_>) -> Option<IpAddr> {
        client_of(&self.inner.read(), req)
    }

    /// Whether `peer` is one of the config's `trusted_proxies` (whose forwarding headers are
    /// believed), e.g. for a reverse proxy deciding which headers to pass on.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.inner.read().trusted.contains(peer.to_canonical())
    }

    /// Whether a decision may wait on the network (a Redis store: up to its timeout, after
    /// which its `on_error` answers). An event loop that must never block (nginx, Node.js)
    /// cannot use such a gate.
    pub fn may_block(&self) -> bool {
        self.redis.is_some()
    }

    /// Counters per route and limit, per policy, the most limited keys and the latest denials.
    pub fn stats(&self) -> GateStats {
        let inner = self.inner.read();
        let mut limits = Vec::new();
        for r in &inner.routes {
            let lists = [(false, Some(&r.limits)), (true, r.anonymous.as_ref())];
            for (anonymous, list) in lists {
                for l in list.into_iter().flatten() {
                    let policy = match &l.select {
                        Select::Fixed(i) => inner.policies[*i].name.to_string(),
                        Select::Tiers { tiers, .. } => tiers
                            .iter()
                            .map(|(t, i)| format!("{t}:{}", inner.policies[*i].name))
                            .collect::<Vec<_>>()
                            .join(","),
                    };
                    let totals = l.counters.totals();
                    limits.push(LimitStats {
                        route: r.text.to_string(),
                        policy,
                        key: l.key.name().into(),
                        anonymous,
                        shadow: l.shadow,
                        allowed: totals.allowed,
                        denied: totals.denied,
                        delayed: totals.delayed,
                    });
                }
            }
        }
        let mut policies = Vec::new();
        for slot in &inner.policies {
            let stats: Option<PolicyStats> = slot
                .limiter
                .stats()
                .into_iter()
                .find(|s| *s.name == *slot.name);
            let q = slot.settings.policy.quota();
            if let Some(s) = stats {
                policies.push(PolicyStatsView {
                    name: s.name,
                    algorithm: slot.settings.policy.algorithm().name().into(),
                    count: q.count(),
                    window_ms: u64::try_from(q.window().as_millis()).unwrap_or(u64::MAX),
                    burst: q.burst(),
                    allowed: s.allowed,
                    denied: s.denied,
                    delayed: s.delayed,
                    live_keys: s.live_keys,
                    evictions: s.evictions,
                    limited_evictions: s.limited_evictions,
                    placed: s.placed,
                    capacity: s.capacity,
                    store_fallbacks: s.store_fallbacks,
                    deny_cache_hits: s.deny_cache_hits,
                });
            }
        }
        GateStats {
            limits,
            policies,
            unrouted: self.abuse.unrouted.0.get(),
            preflights: self.abuse.preflights.0.get(),
            cors_refused: self.abuse.cors_refused.0.get(),
            top_limited: self.abuse.top(),
            recent_denials: self.abuse.recent(),
            denials_unlogged: self.abuse.unlogged.0.get(),
        }
    }

    /// The live keys of a policy with their state, most exhausted first. Key names are known
    /// for keys seen while a store was attached (`key` is then e.g. `ip:203.0.113.9`); others
    /// show their fingerprint.
    pub fn keys(&self, policy: &str) -> Result<Vec<KeyState>, Error> {
        let inner = self.inner.read();
        let slot = inner
            .policies
            .iter()
            .find(|p| p.name == policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.into()))?;
        let mut keys: Vec<KeyState> = slot
            .limiter
            .keys(slot.id)?
            .into_iter()
            .map(|k| KeyState {
                key: match &k.name {
                    Some(name) => describe_key(name),
                    None => format!("#{:016x}", k.fingerprint),
                },
                blocked: k.blocked,
                // The listed decision is that of one more request: add it back.
                remaining: match k.decision.allowed {
                    true => k
                        .decision
                        .remaining()
                        .saturating_add(1)
                        .min(k.decision.limit),
                    false => 0,
                },
                limit: k.decision.limit,
                retry_after_ms: millis(k.decision.retry_after()),
                reset_after_ms: millis(k.decision.reset_after()),
            })
            .collect();
        keys.sort_by(|a, b| (a.remaining, &a.key).cmp(&(b.remaining, &b.key)));
        Ok(keys)
    }

    /// Writes every counter and the log of recent denials to the store and makes them durable
    /// (nothing to do in memory).
    pub fn close(&self) -> Result<(), Error> {
        self.publish_last();
        if let Some(store) = &self.store {
            self.abuse.save(store.as_ref(), self.clock.now())?;
        }
        let inner = self.inner.read();
        let mut done: Vec<&Arc<Limiter>> = Vec::new();
        for p in &inner.policies {
            if !done.iter().any(|l| Arc::ptr_eq(l, &p.limiter)) {
                p.limiter.close()?;
                done.push(&p.limiter);
            }
        }
        if let Some(store) = &self.store {
            // The limiters sync only what they wrote; the log is the gate's own.
            store.sync(true)?;
        }
        Ok(())
    }

    /// The gate's clock reading, Unix nanoseconds.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The key display of a request under a key kind, as logs and stats show it.
    pub fn key_display(
        &self,
        kind: KeyKind,
        route: &str,
        ip: Option<IpAddr>,
        principal: Option<&str>,
    ) -> String {
        key_display(kind, route, ip, principal, self.inner.read().keyer)
    }
}

/// The first route that matches the request's path as the backend resolves it (see `path`:
/// allocates only for a target that needs a change).
#[inline]
fn route_of<'a>(inner: &'a Inner, req: &GateRequest<'_>) -> Option<&'a compile::Route> {
    let mut scratch = String::new();
    let path = path::normalize(req.path, &mut scratch);
    inner
        .routes
        .iter()
        .find(|r| r.pattern.matches(req.method, path))
}

fn any_immediate(inner: &Inner) -> bool {
    inner
        .policies
        .iter()
        .any(|p| p.settings.durability == Durability::Immediate)
}

/// The request's tier: the application's, a trusted proxy's claim, the principal's listed
/// tier, in that order (a limit falls back to its default tier).
fn tier_of<'a>(inner: &'a Inner, req: &GateRequest<'a>) -> Option<&'a str> {
    if req.tier.is_some() {
        return req.tier;
    }
    if let (Some(claim), Some(peer)) = (req.tier_claim, req.client_ip) {
        if inner.config.tier_header.is_some() && inner.trusted.contains(peer.to_canonical()) {
            return Some(claim);
        }
    }
    if inner.principals.is_empty() {
        return None;
    }
    inner.principals.get(req.principal?).map(|t| &**t)
}

/// Counts a denial by its kind. Out of line, off the allowed path: telling a lockout from a
/// plain limit reads the key's slot again.
#[cold]
#[inline(never)]
fn count_denial(
    counts: &crate::core::stats::OutcomeCounts,
    slot: &compile::PolicySlot,
    key: &[u8],
    now: u64,
    failed: bool,
    shadow: bool,
) {
    let kind = match (failed, shadow) {
        (true, _) => CountedAs::Error,
        (false, true) => CountedAs::ShadowLimited,
        (false, false) => match slot.limiter.is_blocked_at(slot.id, key, now) {
            true => CountedAs::Blocked,
            false => CountedAs::Limited,
        },
    };
    counts.record(kind, false);
}

/// The client: the peer, or, from a trusted proxy, the rightmost untrusted hop.
#[inline]
fn client_of(inner: &Inner, req: &GateRequest<'_>) -> Option<IpAddr> {
    match req.client_ip {
        Some(peer) if !inner.trusted.is_empty() => {
            inner.trusted.client(peer, req.forwarded_for, req.forwarded)
        }
        peer => peer.map(|ip| ip.to_canonical()),
    }
}
