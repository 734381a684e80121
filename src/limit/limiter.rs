//! Named policies over keyed tables: check, peek, penalize, refund, reset, acquire, release.

use std::sync::Arc;

use crate::core::clock::{Clock, Nanos, TimeSource};
use crate::core::stats::{DecisionCounts, PolicyStats};
use crate::core::table::{Fingerprint, Reclaim, Table};
use crate::limit::algo::{Algo, Rule, Step, Verdict, BLOCKED};
use crate::limit::decision::{
    render_headers, Decision, FromVerdict, Header, HeaderStyle, PolicyId, PolicyMeta,
};
use crate::limit::error::Error;
use crate::limit::policy::{Algorithm, Policy, PolicyError};
use crate::limit::remote::{Reached, Remote};
use crate::store::redis::{Failure, OnError};
use crate::store::writer::Writer;
use crate::store::{Durability, SharedStore, StoreConfig, StoreError};

/// The persistence side of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Writes of changed pages (each followed by a flush).
    pub flushes: u64,
    /// Pages written.
    pub pages_written: u64,
    /// Key names not recorded because the writer's queue was full.
    pub names_dropped: u64,
    /// Failed writes (retried in full at the next interval).
    pub write_errors: u64,
    /// Bytes of the store on disk.
    pub size_on_disk: u64,
    /// Time since the writer last had every change written (within one flush interval when
    /// healthy; grows while writes fail). Zero for a shared store, whose tables are the files.
    pub write_lag: std::time::Duration,
}

/// Slots per policy unless set: about 16 MiB of table per policy.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
const MAX_CAPACITY: usize = 1 << 30;

impl Reclaim for Rule {
    #[inline]
    fn recovered(&self, state: u64, now: Nanos) -> bool {
        Rule::recovered(self, state, now)
    }

    fn debt(&self, state: u64, now: Nanos) -> u64 {
        Rule::debt(self, state, now)
    }
}

struct Entry {
    policy: Policy,
    /// The policy's algorithm and block, copied into each decision that may need its numbers.
    rule: Rule,
    /// What a fresh key may use at once: the largest affordable cost.
    max_cost: u32,
    durability: Durability,
    /// An immediate policy whose table is a shared store's file: a decision that changed a key
    /// returns after the file is synced. (Other shared tables need nothing after a check.)
    sync_shared: bool,
    signature: String,
    /// For a Redis store, the local table is the deny cache (states Redis denied, in server
    /// time) and this decides.
    table: Table,
    /// Decisions, and leases given back (an expired lease is never counted there).
    counts: DecisionCounts,
    remote: Option<Box<Remote>>,
}

impl Entry {
    /// Errors are built out of line, so the check path carries no string handling.
    #[cold]
    #[inline(never)]
    fn too_costly(&self, cost: u32) -> Error {
        Error::CostTooHigh {
            policy: self.policy.name().into(),
            cost,
            max_cost: self.max_cost,
        }
    }

    #[cold]
    #[inline(never)]
    fn needs_lease(&self) -> Error {
        Error::NeedsLease(self.policy.name().into())
    }

    #[cold]
    #[inline(never)]
    fn not_concurrency(&self) -> Error {
        Error::NotConcurrency(self.policy.name().into())
    }
}

/// A concurrency lease: give it back with [`Limiter::release`]. A lease never released expires
/// after the policy's lease timeout (to twice that).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease holds a concurrency slot until released or expired"]
pub struct Lease {
    policy: PolicyId,
    key: Fingerprint,
    epoch: u32,
    cost: u32,
    /// Taken on Redis: the client key, to release it there.
    remote: Option<Box<[u8]>>,
    /// Taken while Redis was away: released into the local fallback table, if any.
    fallback: bool,
}

impl Lease {
    /// The policy the lease belongs to.
    pub fn policy(&self) -> PolicyId {
        self.policy
    }
}

/// A keyed rate limiter over named policies. Cheap to share: every method takes `&self` and
/// is safe from any number of threads at once.
///
/// ```
/// use portcullis::{Limiter, Policy, Quota};
/// let limiter = Limiter::builder()
///     .policy(Policy::gcra("api", Quota::per_second(2)?))
///     .build()?;
/// let api = limiter.policy_id("api").unwrap();
/// assert!(limiter.check(api, "alice", 1)?.allowed);
/// assert!(limiter.check(api, "alice", 1)?.allowed);
/// let third = limiter.check(api, "alice", 1)?;
/// assert!(!third.allowed);
/// assert!(third.retry_after().as_millis() > 0);
/// assert!(limiter.check(api, "bob", 1)?.allowed); // keys are independent
/// # Ok::<(), portcullis::Error>(())
/// ```
pub struct Limiter {
    inner: Arc<Inner>,
    /// Present when a store persists the tables.
    writer: Option<Writer>,
    /// Present when the tables live in a shared store's files.
    shared: Option<Arc<SharedStore>>,
}

struct Inner {
    entries: Box<[Entry]>,
    clock: TimeSource,
    hash_key: [u8; 16],
}

/// Builds a [`Limiter`].
pub struct LimiterBuilder {
    policies: Vec<(Policy, Option<usize>)>,
    store: StoreConfig,
    capacity: usize,
    clock: Option<TimeSource>,
    hash_key: Option<[u8; 16]>,
}

impl LimiterBuilder {
    /// Adds a policy with the default table capacity.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push((policy, None));
        self
    }

    /// Adds a policy whose table holds `capacity` keys.
    pub fn policy_with_capacity(mut self, policy: Policy, capacity: usize) -> Self {
        self.policies.push((policy, Some(capacity)));
        self
    }

    /// Keys per policy table (rounded up to a power of two); fixed for the limiter's life.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock (default: [`crate::core::clock::CoarseClock`], millisecond ticks read in a nanosecond; use
    /// [`crate::core::clock::FastClock`] for nanosecond resolution at about ten nanoseconds a read).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(TimeSource::of(clock));
        self
    }

    /// A shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(TimeSource::Custom(clock));
        self
    }

    /// The gate's clock, shared with its limiters.
    pub(crate) fn time_source(mut self, clock: TimeSource) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Where state is kept (default: memory only). A persisted limiter restores every live
    /// key at build time and writes changes behind, or at once for immediate policies.
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// The secret key of the key hash (default: random). Persisted stores pass the saved key
    /// so fingerprints stay stable across restarts.
    pub fn hash_key(mut self, key: [u8; 16]) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// Validates every policy, allocates the tables and, with a store, restores their state.
    pub fn build(self) -> Result<Limiter, Error> {
        if self.policies.is_empty() {
            return Err(Error::NoPolicies);
        }
        let store = self.store.open()?;
        let shared = match &self.store {
            StoreConfig::Shared(s) => Some(Arc::clone(s)),
            _ => None,
        };
        let redis = match &self.store {
            StoreConfig::Redis(s) => Some(Arc::clone(s)),
            _ => None,
        };
        let saved_key = match (&store, &shared) {
            (Some((s, _)), _) => s.hash_key()?,
            (None, Some(s)) => Some(s.hash_key()),
            (None, None) => None,
        };
        let hash_key = match saved_key.or(self.hash_key) {
            Some(k) => k,
            None => {
                let mut k = [0u8; 16];
                getrandom::getrandom(&mut k).map_err(|e| Error::Random(e.to_string()))?;
                k
            }
        };
        let mut entries = Vec::with_capacity(self.policies.len());
        for (policy, capacity) in self.policies {
            if entries
                .iter()
                .any(|e: &Entry| e.policy.name() == policy.name())
            {
                return Err(PolicyError::Duplicate {
                    name: policy.name().into(),
                }
                .into());
            }
            let rule = policy.rule()?;
            let capacity = capacity.unwrap_or(self.capacity);
            if !(4..=MAX_CAPACITY).contains(&capacity) {
                return Err(Error::Capacity(capacity));
            }
            let signature = format!("v2 {:?}", rule);
            let table = match (&store, &shared) {
                (_, Some(s)) => Ok(s.table(policy.name(), &signature, capacity)?),
                (Some(_), None) => Table::with_dirty_tracking(capacity, hash_key),
                (None, None) => Table::try_new(capacity, hash_key),
            }
            .map_err(|bytes| Error::OutOfMemory {
                policy: policy.name().into(),
                bytes,
            })?;
            let remote = match &redis {
                Some(r) => Some(Box::new(Remote::new(
                    Arc::clone(r),
                    &policy,
                    &rule,
                    &signature,
                    capacity,
                    hash_key,
                )?)),
                None => None,
            };
            entries.push(Entry {
                remote,
                table,
                max_cost: rule.algo.max_cost(),
                durability: policy.durability_level(),
                sync_shared: shared.is_some() && policy.durability_level() == Durability::Immediate,
                signature,
                rule,
                policy,
                counts: DecisionCounts::new(),
            });
        }
        let inner = Arc::new(Inner {
            entries: entries.into_boxed_slice(),
            clock: self.clock.unwrap_or_else(TimeSource::coarse),
            hash_key,
        });
        let writer = match store {
            None => None,
            Some((store, config)) => {
                if saved_key.is_none() {
                    store.set_hash_key(hash_key)?;
                }
                Some(persist::open(&inner, store, config)?)
            }
        };
        Ok(Limiter {
            inner,
            writer,
            shared,
        })
    }
}

/// Restoring a persisted limiter and wiring its writer.
mod persist {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::Inner;
    use crate::store::writer::Writer;
    use crate::store::{PolicyChanges, Store, StoreError, WriterConfig};

    /// Loads every policy's saved state into its table (dropping keys that have recovered),
    /// rewrites the store compacted, and starts the writer.
    pub(super) fn open(
        inner: &Arc<Inner>,
        store: Arc<dyn Store>,
        config: WriterConfig,
    ) -> Result<Writer, StoreError> {
        let now = inner.clock.now();
        let mut known = Vec::with_capacity(inner.entries.len());
        let mut rewrite = Vec::with_capacity(inner.entries.len());
        for e in inner.entries.iter() {
            let saved = store.load(e.policy.name(), &e.signature)?;
            for (fp, state) in saved.entries {
                e.table.restore(fp, state, now, &e.rule);
            }
            let mut live = std::collections::HashSet::new();
            e.table.for_each(|fp, _| {
                live.insert(fp);
            });
            let names: HashMap<u64, Box<[u8]>> = saved
                .names
                .into_iter()
                .filter(|(fp, _)| live.contains(fp))
                .map(|(fp, n)| (fp, n.into_boxed_slice()))
                .collect();
            let mut changes = PolicyChanges {
                policy: e.policy.name().into(),
                replace_all: true,
                pages: pages(e, now),
                names: names.iter().map(|(fp, n)| (*fp, n.to_vec())).collect(),
                forget: Vec::new(),
            };
            changes.pages.retain(|(_, entries)| !entries.is_empty());
            rewrite.push(changes);
            known.push(names);
        }
        // The compacted rewrite replaces whatever was saved, atomically per policy.
        store.write(&rewrite)?;
        store.sync(true)?;
        let capacity = inner.entries.iter().map(|e| e.table.capacity()).collect();
        let (c, r, l) = (Arc::clone(inner), Arc::clone(inner), Arc::clone(inner));
        Writer::start(
            store,
            config,
            known,
            capacity,
            Box::new(move || {
                let now = c.clock.now();
                c.entries
                    .iter()
                    .map(|e| PolicyChanges {
                        policy: e.policy.name().into(),
                        pages: pages(e, now),
                        ..PolicyChanges::default()
                    })
                    .collect()
            }),
            Box::new(move || r.entries.iter().for_each(|e| e.table.mark_all_dirty())),
            Box::new(move |p| {
                let mut fps = Vec::new();
                if let Some(e) = l.entries.get(p) {
                    e.table.for_each(|fp, _| fps.push(fp));
                }
                fps
            }),
        )
    }

    /// The dirty pages of a policy, with the keys that still carry information.
    fn pages(e: &super::Entry, now: u64) -> Vec<(u64, Vec<(u64, u64)>)> {
        e.table
            .take_dirty_pages()
            .into_iter()
            .map(|page| {
                let mut entries = Vec::new();
                e.table.page_entries(page, &mut entries);
                entries.retain(|&(_, s)| !e.rule.recovered(s, now));
                (page as u64, entries)
            })
            .collect()
    }
}

impl Limiter {
    /// Starts a builder.
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder {
            policies: Vec::new(),
            store: StoreConfig::Memory,
            capacity: DEFAULT_CAPACITY,
            clock: None,
            hash_key: None,
        }
    }

    /// The id of a policy by name.
    pub fn policy_id(&self, name: &str) -> Option<PolicyId> {
        self.inner
            .entries
            .iter()
            .position(|e| e.policy.name() == name)
            .map(|i| PolicyId(i as u32))
    }

    /// A policy by id.
    pub fn policy(&self, id: PolicyId) -> Option<&Policy> {
        self.inner.entries.get(id.index()).map(|e| &e.policy)
    }

    /// Every policy with its id.
    pub fn policies(&self) -> impl Iterator<Item = (PolicyId, &Policy)> {
        self.inner
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (PolicyId(i as u32), &e.policy))
    }

    /// The most a key of a policy can have available at once: the `limit` of its decisions.
    pub fn limit(&self, id: PolicyId) -> Option<u32> {
        self.inner.entries.get(id.index()).map(|e| e.max_cost)
    }

    /// Bytes of memory a policy table of `capacity` keys takes (its slots, rounded up to a
    /// power of two buckets of four, and its claim flags): what `max_memory` budgets.
    pub fn table_bytes(capacity: usize) -> usize {
        Table::bytes_for(capacity)
    }

    /// The limiter's clock reading.
    #[inline]
    pub fn now(&self) -> Nanos {
        self.inner.clock.now()
    }

    /// The secret key of the key hash (to persist beside the state).
    pub fn hash_key(&self) -> [u8; 16] {
        self.inner.hash_key
    }

    /// Writes every change to the store and makes it durable (a no-op without a store).
    /// Dropping the limiter does the same.
    pub fn close(&self) -> Result<(), Error> {
        if let Some(s) = &self.shared {
            s.sync()?;
        }
        match &self.writer {
            Some(w) => Ok(w.wait_durable()?),
            None => Ok(()),
        }
    }

    /// The keys of a policy that still carry information, with their names when known and
    /// what a request of cost 1 would get now. Scans the table.
    pub fn keys(&self, id: PolicyId) -> Result<Vec<KeyInfo>, Error> {
        let e = self.entry(id)?;
        let now = self.inner.clock.now();
        let mut out = Vec::new();
        e.table.for_each(|fp, state| {
            if !e.rule.recovered(state, now) {
                out.push(KeyInfo {
                    name: self.writer.as_ref().and_then(|w| w.name(id.index(), fp)),
                    fingerprint: fp,
                    blocked: e.rule.is_blocked(state, now),
                    decision: Self::decision(e, id, &e.rule.peek(state, now, 1), now),
                });
            }
        });
        Ok(out)
    }

    /// The writer's counters and the store's size, when a store is attached.
    pub fn store_stats(&self) -> Option<StoreStats> {
        if let Some(s) = &self.shared {
            return Some(StoreStats {
                flushes: 0,
                pages_written: 0,
                names_dropped: 0,
                write_errors: 0,
                size_on_disk: s.size_on_disk(),
                write_lag: std::time::Duration::ZERO,
            });
        }
        let w = self.writer.as_ref()?;
        let s = w.stats();
        Some(StoreStats {
            flushes: s.flushes,
            pages_written: s.pages,
            names_dropped: s.names_dropped,
            write_errors: s.errors,
            size_on_disk: w.size_on_disk().unwrap_or(0),
            write_lag: w.lag(),
        })
    }

    /// Records a new key's name and, after a state change of an immediate policy, waits
    /// until it is on disk. Kept out of line so the memory-only check path stays small.
    #[inline(never)]
    fn persist(
        &self,
        e: &Entry,
        id: PolicyId,
        key: &[u8],
        f: &Fingerprint,
        up: (bool, bool),
    ) -> Result<(), Error> {
        let (wrote, placed) = up;
        let Some(w) = &self.writer else {
            // Shared tables are their own state: only immediate durability has work to do.
            if let Some(s) = &self.shared {
                if wrote && e.durability == Durability::Immediate {
                    s.sync()?;
                }
            }
            return Ok(());
        };
        if w.forked() {
            return Err(w.forked_error().into());
        }
        if placed {
            w.record_name(id.index(), f.fp, key);
        }
        if wrote && e.durability == Durability::Immediate {
            w.wait_durable()?;
        }
        Ok(())
    }

    #[inline]
    fn entry(&self, id: PolicyId) -> Result<&Entry, Error> {
        // Not `ok_or`: its eager error is dropped on every call (an out-of-line drop per check).
        match self.inner.entries.get(id.index()) {
            Some(e) => Ok(e),
            None => Err(Error::BadPolicyId(id.0)),
        }
    }

    #[inline]
    fn affordable(&self, e: &Entry, cost: u32) -> Result<(), Error> {
        if cost > e.max_cost {
            return Err(e.too_costly(cost));
        }
        Ok(())
    }

    #[inline(always)]
    fn decision(e: &Entry, id: PolicyId, v: &Verdict, now: Nanos) -> Decision {
        Decision::from_verdict(e.max_cost, id, v, now)
    }

    #[inline]
    fn count(e: &Entry, v: &Verdict) {
        e.counts.record(v.allowed, v.allowed && v.delay > 0);
    }

    /// The one check path, from key to answer, for every algorithm and every output: the
    /// policy's algorithm is matched once here, and each arm runs [`Limiter::check_body`]
    /// monomorphic in the algorithm's step and the output, so the compiler keeps each in
    /// registers. A new algorithm is one `Step` and one arm; a new output, one [`Answer`].
    /// Concurrency policies answer only outputs that carry leases, the others only those that
    /// do not. The answer is written into `out` (on success only), where its caller keeps it:
    /// a decision built in one place and copied to another is read back with wider loads than
    /// it was written with, a store-forwarding stall.
    #[inline(always)]
    pub(crate) fn check_into_as<A: Answer>(
        &self,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        out: &mut impl Slot<A>,
    ) -> Result<(), Error> {
        self.check_with(id, key, cost, now, |answer: A| out.put(answer))
    }

    /// [`Limiter::check_into_as`] returning the answer.
    #[inline(always)]
    pub(crate) fn check_as<A: Answer>(
        &self,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
    ) -> Result<A, Error> {
        self.check_with(id, key, cost, now, |answer: A| answer)
    }

    /// The match of [`Limiter::check_into_as`]; `finish` takes the answer where it goes.
    #[inline(always)]
    fn check_with<A: Answer, R>(
        &self,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        finish: impl FnOnce(A) -> R,
    ) -> Result<R, Error> {
        let e = self.entry(id)?;
        // One branch per check, on the policy: a local policy's path is unchanged.
        if let Some(r) = &e.remote {
            return self.remote_check(e, r, id, key, cost, now, finish);
        }
        match &e.rule.algo {
            Algo::Concurrency(a) if A::LEASES => self.check_body(e, a, id, key, cost, now, finish),
            Algo::Concurrency(_) => Err(e.needs_lease()),
            _ if A::LEASES => Err(e.not_concurrency()),
            Algo::Gcra(a) => self.check_body(e, a, id, key, cost, now, finish),
            Algo::FixedWindow(a) => self.check_body(e, a, id, key, cost, now, finish),
            Algo::SlidingWindow(a) => self.check_body(e, a, id, key, cost, now, finish),
            Algo::Leaky(a) => self.check_body(e, a, id, key, cost, now, finish),
        }
    }

    /// [`Limiter::check_into_as`] under one algorithm: the key's fingerprint, the CAS loop with
    /// the step inlined, the counts, persistence, and the answer. Inlined into its caller: the
    /// call and its arguments cost a check about a fifth of its instructions.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn check_body<A: Answer, R>(
        &self,
        e: &Entry,
        algo: &impl Step,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        finish: impl FnOnce(A) -> R,
    ) -> Result<R, Error> {
        self.affordable(e, cost)?;
        let f = e.table.fingerprint(key);
        let rule = &e.rule;
        // The verdict is written through a local rather than returned from the loop: returning
        // the struct made the compiler bounce it through the stack with mismatched store and
        // load widths, a store-forwarding stall on every check.
        let mut verdict = Verdict::default();
        let mut seen = 0;
        let up = e.table.update(
            &f,
            now,
            rule,
            #[inline(always)]
            |s| {
                let (n, v) = rule.check_with(algo, s, now, cost);
                verdict = v;
                seen = s;
                (n, ())
            },
        );
        Self::count(e, &verdict);
        if self.writer.is_some() || e.sync_shared {
            self.persist(e, id, key, &f, (up.wrote, up.placed))?;
        }
        Ok(finish(A::answer(&Checked {
            rule,
            max_cost: e.max_cost,
            id,
            key: f,
            verdict,
            seen,
            cost,
            now,
            remote_key: None,
            fallback: false,
        })))
    }

    /// [`Limiter::check_with`] for a policy on Redis: the deny cache, one script run, or the
    /// configured fallback when Redis does not answer. Out of line: the local path stays as
    /// it was.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn remote_check<A: Answer, R>(
        &self,
        e: &Entry,
        r: &Remote,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        finish: impl FnOnce(A) -> R,
    ) -> Result<R, Error> {
        match (&e.rule.algo, A::LEASES) {
            (Algo::Concurrency(_), false) => return Err(e.needs_lease()),
            (Algo::Concurrency(_), true) => {}
            (_, true) => return Err(e.not_concurrency()),
            _ => {}
        }
        self.affordable(e, cost)?;
        let f = e.table.fingerprint(key);
        let rule = &e.rule;
        let answer = |rule: &Rule,
                      max_cost: u32,
                      verdict: Verdict,
                      seen: u64,
                      at: Nanos,
                      remote_key: Option<&[u8]>,
                      fallback: bool| {
            Self::count(e, &verdict);
            finish(A::answer(&Checked {
                rule,
                max_cost,
                id,
                key: f,
                verdict,
                seen,
                cost,
                now: at,
                remote_key,
                fallback,
            }))
        };
        if r.deny_cache {
            // A key Redis denied is denied here until its state would let this request
            // through: no round trip (other hosts only ever make it stricter).
            let at = r.server_now(now);
            if let Some(s) = e.table.read(&f) {
                let (n, v) = rule.check(s, at, cost);
                // A denial that would start a block changes the state: only Redis may.
                if !v.allowed && n == s {
                    r.cache_hits.add(1);
                    return Ok(answer(rule, e.max_cost, v, s, at, None, false));
                }
            }
        }
        match r.check(key, cost, now) {
            Ok(Reached {
                allowed,
                seen,
                now: at,
            }) => {
                let (new, mut v) = rule.check(seen, at, cost);
                // The script decided; the numbers come from the same step on its state.
                v.allowed = allowed;
                // A denial is cached; a key already cached follows Redis's state, so a later
                // cached denial shows the numbers Redis would.
                if r.deny_cache && (!allowed || e.table.read(&f).is_some()) {
                    e.table.update(&f, at, rule, |_| (new, ()));
                }
                Ok(answer(rule, e.max_cost, v, seen, at, Some(key), false))
            }
            Err(failure) => {
                r.fallbacks.add(1);
                match (r.on_error, &r.fallback) {
                    (OnError::Local, Some(fb)) => {
                        let mut verdict = Verdict::default();
                        let mut seen = 0;
                        fb.table.update(&f, now, &fb.rule, |s| {
                            let (n, v) = fb.rule.check(s, now, cost);
                            verdict = v;
                            seen = s;
                            (n, ())
                        });
                        Ok(answer(
                            &fb.rule,
                            fb.max_cost,
                            verdict,
                            seen,
                            now,
                            None,
                            true,
                        ))
                    }
                    (OnError::FailOpen, _) => {
                        let (_, v) = rule.check(0, now, cost);
                        Ok(answer(rule, e.max_cost, v, 0, now, None, true))
                    }
                    _ => {
                        // Denied until the next reconnect attempt, at least a second: a block.
                        let wait = failure.retry_in.max(std::time::Duration::from_secs(1));
                        let until = now.saturating_add(wait.as_nanos() as u64);
                        let s = BLOCKED | until.min(BLOCKED - 1);
                        let (_, v) = rule.check(s, now, cost);
                        Ok(answer(rule, e.max_cost, v, s, now, None, true))
                    }
                }
            }
        }
    }

    /// Turns a Redis failure on an operation without a fallback into an error.
    #[cold]
    fn unavailable(r: &Remote, f: Failure) -> Error {
        Error::Store(StoreError::Unavailable {
            url: r.store.url().into(),
            detail: f.detail,
        })
    }

    /// Applies `op` to a key's state on Redis (read with the server time, then compare and
    /// set, again if the key moved meanwhile); returns the new state and the server time.
    fn remote_modify(
        &self,
        e: &Entry,
        r: &Remote,
        key: &[u8],
        now: Nanos,
        op: impl Fn(&Rule, u64, Nanos) -> u64,
    ) -> Result<(u64, Nanos), Error> {
        // A refund or release may lift a denial the deny cache still holds.
        e.table.remove(&e.table.fingerprint(key));
        for _ in 0..16 {
            let (raw, seen, at) = r.peek(key, now).map_err(|f| Self::unavailable(r, f))?;
            let new = op(&e.rule, seen, at);
            if new == seen {
                return Ok((new, at));
            }
            if r.replace(key, &raw, &e.rule, new, at)
                .map_err(|f| Self::unavailable(r, f))?
            {
                return Ok((new, at));
            }
        }
        Err(Self::unavailable(
            r,
            Failure {
                detail: "the key kept changing under 16 compare-and-set attempts".into(),
                retry_in: std::time::Duration::ZERO,
            },
        ))
    }

    /// Decides a request of `cost` for `key` now, consuming quota when allowed.
    #[inline(always)]
    pub fn check(&self, id: PolicyId, key: impl AsRef<[u8]>, cost: u32) -> Result<Decision, Error> {
        self.check_at(id, key, cost, self.inner.clock.now())
    }

    /// [`Limiter::check`] at an explicit time (Unix-epoch nanoseconds).
    #[inline(always)]
    pub fn check_at(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        self.check_as(id, key.as_ref(), cost, now)
    }

    /// [`Limiter::check_at`] for a caller that reads every number (the gate): the decision's
    /// numbers are worked out at once.
    #[inline]
    pub(crate) fn check_settled_into(
        &self,
        id: PolicyId,
        key: &[u8],
        cost: u32,
        now: Nanos,
        out: &mut Decision,
    ) -> Result<(), Error> {
        self.check_into_as::<Settled<Decision>>(id, key, cost, now, out)
    }

    /// [`Limiter::check`] by policy name.
    pub fn check_named(
        &self,
        policy: &str,
        key: impl AsRef<[u8]>,
        cost: u32,
    ) -> Result<Decision, Error> {
        let id = self
            .policy_id(policy)
            .ok_or_else(|| Error::UnknownPolicy(policy.into()))?;
        self.check(id, key, cost)
    }

    /// What [`Limiter::check`] would answer, consuming nothing.
    pub fn peek(&self, id: PolicyId, key: impl AsRef<[u8]>, cost: u32) -> Result<Decision, Error> {
        self.peek_at(id, key, cost, self.inner.clock.now())
    }

    /// [`Limiter::peek`] at an explicit time.
    pub fn peek_at(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        let e = self.entry(id)?;
        self.affordable(e, cost)?;
        if let Some(r) = &e.remote {
            let (_, state, at) = r
                .peek(key.as_ref(), now)
                .map_err(|f| Self::unavailable(r, f))?;
            return Ok(Self::decision(e, id, &e.rule.peek(state, at, cost), at));
        }
        let f = e.table.fingerprint(key.as_ref());
        let state = e.table.read(&f).unwrap_or(0);
        Ok(Self::decision(e, id, &e.rule.peek(state, now, cost), now))
    }

    fn modify(
        &self,
        id: PolicyId,
        key: &[u8],
        now: Nanos,
        op: impl Fn(&Rule, u64, Nanos) -> u64,
    ) -> Result<Decision, Error> {
        let e = self.entry(id)?;
        if let Some(r) = &e.remote {
            let (state, at) = self.remote_modify(e, r, key, now, &op)?;
            return Ok(Self::decision(e, id, &e.rule.peek(state, at, 1), at));
        }
        let f = e.table.fingerprint(key);
        let rule = &e.rule;
        let up = e.table.update(&f, now, rule, |s| {
            let n = op(rule, s, now);
            (n, n)
        });
        if self.writer.is_some() || self.shared.is_some() {
            self.persist(e, id, key, &f, (up.wrote, up.placed))?;
        }
        Ok(Self::decision(e, id, &rule.peek(up.value, now, 1), now))
    }

    /// Consumes `cost` whatever the verdict (count failed logins only, say). A key left
    /// exhausted is blocked if the policy blocks. Returns what a request of cost 1 would now get.
    pub fn penalize(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
    ) -> Result<Decision, Error> {
        self.penalize_at(id, key, cost, self.inner.clock.now())
    }

    /// [`Limiter::penalize`] at an explicit time.
    pub fn penalize_at(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        self.modify(id, key.as_ref(), now, |r, s, t| r.penalize(s, t, cost))
    }

    /// Gives back `cost` (the backend failed, so the request should not count). Never makes a
    /// key fresher than fresh, and never lifts a block. Returns what a request of cost 1 would
    /// now get.
    pub fn refund(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
    ) -> Result<Decision, Error> {
        self.refund_at(id, key, cost, self.inner.clock.now())
    }

    /// [`Limiter::refund`] at an explicit time.
    pub fn refund_at(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
        now: Nanos,
    ) -> Result<Decision, Error> {
        self.modify(id, key.as_ref(), now, |r, s, t| r.refund(s, t, cost))
    }

    /// Forgets a key (unblocks a user): its next request starts fresh. Returns whether the key
    /// had state.
    pub fn reset(&self, id: PolicyId, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let e = self.entry(id)?;
        let f = e.table.fingerprint(key.as_ref());
        let removed = e.table.remove(&f);
        if let Some(r) = &e.remote {
            if let Some(fb) = &r.fallback {
                fb.table.remove(&f);
            }
            return r
                .store
                .delete(&r.key(key.as_ref()))
                .map_err(|f| Self::unavailable(r, f));
        }
        self.persist(e, id, key.as_ref(), &f, (removed, false))?;
        Ok(removed)
    }

    /// Takes `cost` leases of a concurrency policy. When allowed, the lease must be given back
    /// with [`Limiter::release`] (or it expires after the lease timeout).
    pub fn acquire(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
    ) -> Result<(Decision, Option<Lease>), Error> {
        self.acquire_at(id, key, cost, self.inner.clock.now())
    }

    /// [`Limiter::acquire`] at an explicit time.
    pub fn acquire_at(
        &self,
        id: PolicyId,
        key: impl AsRef<[u8]>,
        cost: u32,
        now: Nanos,
    ) -> Result<(Decision, Option<Lease>), Error> {
        let Acquired(decision, lease) = self.check_as(id, key.as_ref(), cost, now)?;
        Ok((decision, lease))
    }

    /// Gives a lease back.
    pub fn release(&self, lease: Lease) -> Result<(), Error> {
        self.release_at(lease, self.inner.clock.now())
    }

    /// [`Limiter::release`] at an explicit time.
    pub fn release_at(&self, lease: Lease, now: Nanos) -> Result<(), Error> {
        let e = self.entry(lease.policy)?;
        if let Some(r) = &e.remote {
            if let Some(key) = &lease.remote {
                let (epoch, cost) = (lease.epoch, lease.cost);
                self.remote_modify(e, r, key, now, |rule, s, t| rule.release(s, t, epoch, cost))?;
            } else if let (true, Some(fb)) = (lease.fallback, &r.fallback) {
                fb.table.update(&lease.key, now, &fb.rule, |s| {
                    (fb.rule.release(s, now, lease.epoch, lease.cost), ())
                });
            }
            return Ok(());
        }
        let rule = &e.rule;
        let up = e.table.update(&lease.key, now, rule, |s| {
            (rule.release(s, now, lease.epoch, lease.cost), ())
        });
        e.counts.released();
        self.persist(e, lease.policy, &[], &lease.key, (up.wrote, false))?;
        Ok(())
    }

    /// Whether a key is blocked (locked out) now. Reads its slot, changes nothing: the gate
    /// asks only after a denial, to count lockouts apart from plain limits. Out of line: the
    /// allowed path must not carry a second table lookup's code.
    #[cold]
    #[inline(never)]
    pub(crate) fn is_blocked_at(&self, id: PolicyId, key: &[u8], now: Nanos) -> bool {
        let Ok(e) = self.entry(id) else {
            return false;
        };
        let f = e.table.fingerprint(key);
        e.table
            .read(&f)
            .is_some_and(|state| e.rule.is_blocked(state, now))
    }

    /// Whether a check may wait on the network (a policy on a Redis store: up to the store's
    /// timeout, after which its `on_error` answers). An event loop that must never block
    /// (nginx, Node.js) cannot use such a limiter.
    pub fn may_block(&self) -> bool {
        self.inner.entries.iter().any(|e| e.remote.is_some())
    }

    /// Counters and table occupancy per policy. Counting live keys scans the tables.
    pub fn stats(&self) -> Vec<PolicyStats> {
        self.inner
            .entries
            .iter()
            .map(|e| Self::entry_stats(e, Some(self.inner.clock.now())))
            .collect()
    }

    /// One policy's counters; its live keys too (a scan of its table) when `scan_at` gives
    /// the time to judge them at, else `live_keys` is 0.
    pub(crate) fn policy_stats(&self, id: PolicyId, scan_at: Option<Nanos>) -> Option<PolicyStats> {
        let e = self.inner.entries.get(id.index())?;
        Some(Self::entry_stats(e, scan_at))
    }

    fn entry_stats(e: &Entry, scan_at: Option<Nanos>) -> PolicyStats {
        let totals = e.counts.get();
        PolicyStats {
            name: e.policy.name().into(),
            allowed: totals.allowed,
            denied: totals.denied,
            delayed: totals.delayed,
            live_keys: scan_at.map_or(0, |now| e.table.live(now, &e.rule)),
            evictions: e.table.evictions(),
            limited_evictions: e.table.limited_evictions(),
            placed: e.table.placed(),
            leases_released: e.counts.leases_released(),
            capacity: e.table.capacity(),
            memory_bytes: e.table.memory_bytes(),
            store_fallbacks: e.remote.as_ref().map_or(0, |r| r.fallbacks.get()),
            deny_cache_hits: e.remote.as_ref().map_or(0, |r| r.cache_hits.get()),
        }
    }

    /// Renders the response headers for the decisions that applied to one request.
    pub fn headers(&self, style: HeaderStyle, decisions: &[Decision]) -> Vec<Header> {
        let items: Vec<(PolicyMeta<'_>, Decision)> = decisions
            .iter()
            .filter_map(|d| {
                let p = self.policy(d.policy)?;
                Some((
                    PolicyMeta {
                        name: p.name(),
                        quota: p.quota().count(),
                        window: p.quota().window(),
                    },
                    *d,
                ))
            })
            .collect();
        render_headers(style, &items)
    }

    /// The algorithm kind of a policy.
    pub fn algorithm(&self, id: PolicyId) -> Option<Algorithm> {
        self.policy(id).map(|p| p.algorithm())
    }
}

/// A check as it happened, for an [`Answer`] to be built from.
pub(crate) struct Checked<'a> {
    rule: &'a Rule,
    max_cost: u32,
    id: PolicyId,
    key: Fingerprint,
    verdict: Verdict,
    /// The state the step decided on.
    seen: u64,
    cost: u32,
    now: Nanos,
    /// Decided on Redis: the client key (a lease is released there).
    remote_key: Option<&'a [u8]>,
    /// Decided while Redis was away.
    fallback: bool,
}

/// What a check is handed out as (see [`Limiter::check_as`]).
pub(crate) trait Answer: Sized {
    /// Answers concurrency policies (with leases) rather than the others.
    const LEASES: bool;

    /// The output for one check.
    fn answer(c: &Checked<'_>) -> Self;
}

/// The Rust API's decision: its numbers are worked out from the rule's step on the state it
/// decided on, when read, so a caller that needs only the verdict does not pay for them.
impl Answer for Decision {
    const LEASES: bool = false;

    #[inline(always)]
    fn answer(c: &Checked<'_>) -> Self {
        Decision::stepped(
            c.rule,
            c.seen,
            c.cost,
            c.verdict.allowed,
            c.max_cost,
            c.id,
            c.now,
        )
    }
}

/// Where a check's answer is written, in place (see [`Limiter::check_into_as`]).
pub(crate) trait Slot<A> {
    /// Stores the answer.
    fn put(&mut self, answer: A);
}

/// A settled answer written straight into the caller's own value (the gate's decision, the C
/// struct).
impl<D> Slot<Settled<D>> for D {
    #[inline(always)]
    fn put(&mut self, answer: Settled<D>) {
        *self = answer.0;
    }
}

/// An output with every number worked out at once, straight from the verdict's nanoseconds
/// (the gate's decision, the C ABI's struct).
pub(crate) struct Settled<D>(pub(crate) D);

impl<D: FromVerdict> Answer for Settled<D> {
    const LEASES: bool = false;

    #[inline(always)]
    fn answer(c: &Checked<'_>) -> Self {
        Settled(D::from_verdict(c.max_cost, c.id, &c.verdict, c.now))
    }
}

/// An acquire's decision and, when admitted, its lease.
struct Acquired(Decision, Option<Lease>);

impl Answer for Acquired {
    const LEASES: bool = true;

    #[inline(always)]
    fn answer(c: &Checked<'_>) -> Self {
        let lease = c.verdict.allowed.then_some(Lease {
            policy: c.id,
            key: c.key,
            epoch: c.verdict.lease_epoch,
            cost: c.cost,
            remote: c.remote_key.map(Into::into),
            fallback: c.fallback,
        });
        Acquired(
            Decision::from_verdict(c.max_cost, c.id, &c.verdict, c.now),
            lease,
        )
    }
}

/// A key as listed by [`Limiter::keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's bytes, when known (names are kept for keys placed while a store was attached).
    pub name: Option<Vec<u8>>,
    /// The keyed hash the table holds.
    pub fingerprint: u64,
    /// Whether the key is blocked.
    pub blocked: bool,
    /// What a request of cost 1 would get now.
    pub decision: Decision,
}
