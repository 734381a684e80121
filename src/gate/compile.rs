//! A config compiled for deciding: policies bound to their limiters, routes to indices.

use std::collections::HashMap;
use std::sync::Arc;

use super::stats::Counters;
use super::GateError;
use crate::config::{Config, KeyKind, LimitSettings, PolicySelect, PolicySettings};
use crate::config::{MissingKey, RoutePattern, TrustedProxies};
use crate::core::clock::TimeSource;
use crate::core::stats::OutcomeCounts;
use crate::core::texts::Texts;
use crate::cors::CorsPolicy;
use crate::limit::decision::IetfTexts;
use crate::limit::decision::{HeaderStyle, PolicyId, PolicyMeta};
use crate::limit::error::Error;
use crate::limit::keys::IpKeyer;
use crate::limit::limiter::Limiter;
use crate::limit::policy::Algorithm;
use crate::store::redis::RedisStore;
use crate::store::{SharedStore, Store, StoreConfig};

pub(super) struct PolicySlot {
    pub(super) name: &'static str,
    /// What the rate-limit headers say of the policy.
    pub(super) meta: PolicyMeta<'static>,
    /// The policy's limit and its decimal text, rendered once for `X-RateLimit-Limit`.
    pub(super) limit_text: Option<(u32, &'static str)>,
    /// The policy's IETF header texts, rendered once when the config sends them.
    pub(super) ietf: Option<IetfTexts>,
    pub(super) settings: PolicySettings,
    pub(super) limiter: Arc<Limiter>,
    pub(super) id: PolicyId,
    pub(super) concurrency: bool,
}

pub(super) enum Select {
    Fixed(usize),
    Tiers {
        /// Each tier's policy index.
        tiers: Vec<(String, usize)>,
        /// The position in `tiers` of the default tier.
        default: usize,
    },
}

pub(super) struct Limit {
    pub(super) select: Select,
    pub(super) key: KeyKind,
    pub(super) shadow: bool,
    pub(super) label: String,
    pub(super) counters: Arc<Counters>,
}

pub(super) struct Route {
    pub(super) pattern: RoutePattern,
    pub(super) text: &'static str,
    pub(super) limits: Vec<Limit>,
    pub(super) anonymous: Option<Vec<Limit>>,
    pub(super) on_missing_key: MissingKey,
}

/// A compiled config. Its `&'static str` fields are views into `texts`, valid while this
/// `Inner` lives: every outcome that holds one of them also holds an `Arc` of this `Inner`
/// (see `KeptConfig`).
pub(super) struct Inner {
    pub(super) config: Config,
    pub(super) policies: Vec<PolicySlot>,
    pub(super) routes: Vec<Route>,
    pub(super) cors: Option<CorsPolicy>,
    pub(super) style: HeaderStyle,
    pub(super) keyer: IpKeyer,
    /// Whose forwarding headers name the client.
    pub(super) trusted: TrustedProxies,
    /// Tiers by principal (`[principals]`).
    pub(super) principals: HashMap<Box<str>, Box<str>>,
    /// Owns every text the fields above view.
    #[expect(
        dead_code,
        reason = "read only through the views the other fields hold"
    )]
    pub(super) texts: Texts,
}

/// The header names a style can send, to expose them to pages.
fn rate_limit_header_names(style: HeaderStyle) -> &'static [&'static str] {
    match style {
        HeaderStyle::Legacy => &[
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
        ],
        HeaderStyle::Ietf => &["RateLimit-Policy", "RateLimit", "Retry-After"],
        HeaderStyle::Both => &[
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "RateLimit-Policy",
            "RateLimit",
            "Retry-After",
        ],
        HeaderStyle::RetryAfterOnly => &["Retry-After"],
    }
}

/// The stores a gate opened once, for every limiter it builds (reloads included).
pub(super) struct Stores {
    pub(super) store: Option<Arc<dyn Store>>,
    pub(super) shared: Option<Arc<SharedStore>>,
    pub(super) redis: Option<Arc<RedisStore>>,
}

pub(super) fn compile(
    config: Config,
    old: Option<&Inner>,
    clock: &TimeSource,
    stores: &Stores,
) -> Result<Inner, GateError> {
    let (store, shared) = (stores.store.as_ref(), stores.shared.as_ref());
    if let Some(old) = old {
        if old.config.store != config.store {
            return Err(GateError::Reload(
                "[store] cannot change while the gate runs: restart to apply it".into(),
            ));
        }
    }
    // Policies whose definition is unchanged keep their limiter (and counters); the rest go
    // into one new limiter.
    let mut kept: Vec<Option<(Arc<Limiter>, PolicyId)>> = Vec::with_capacity(config.policies.len());
    let mut builder = Limiter::builder().time_source(clock.clone());
    if let Some(store) = store {
        // Limiters share the store; each writes the pages of its own policies.
        builder = builder
            .store(StoreConfig::custom(store.clone()).flush_interval(config.store.flush_interval));
    }
    if let Some(shared) = shared {
        builder = builder.store(StoreConfig::Shared(Arc::clone(shared)));
    }
    if let Some(redis) = &stores.redis {
        builder = builder.store(StoreConfig::Redis(Arc::clone(redis)));
    }
    let mut texts = Texts::default();
    // SAFETY (every `keep` below): the views go into the `Inner` built here, which owns
    // `texts`, and into outcomes, which hold an `Arc` of that `Inner` while they show them.
    let mut keep = |text: &str| unsafe { texts.keep(text) };
    let mut fresh = 0;
    for p in &config.policies {
        let reuse = old.and_then(|o| {
            o.policies
                .iter()
                .find(|s| s.settings == *p)
                .map(|s| (s.limiter.clone(), s.id))
        });
        if reuse.is_none() {
            builder = builder.policy_with_capacity(p.policy.clone(), p.capacity);
            fresh += 1;
        }
        kept.push(reuse);
    }
    let limiter = match fresh {
        0 => None,
        _ => Some(Arc::new(builder.build()?)),
    };
    let mut policies = Vec::with_capacity(config.policies.len());
    for (p, reuse) in config.policies.iter().zip(kept) {
        let (limiter, id) = match (reuse, &limiter) {
            (Some(r), _) => r,
            (None, Some(l)) => match l.policy_id(p.policy.name()) {
                Some(id) => (l.clone(), id),
                None => return Err(Error::UnknownPolicy(p.policy.name().into()).into()),
            },
            (None, None) => return Err(Error::UnknownPolicy(p.policy.name().into()).into()),
        };
        let name = keep(p.policy.name());
        let quota = p.policy.quota();
        let meta = PolicyMeta {
            name,
            quota: quota.count(),
            window: quota.window(),
        };
        policies.push(PolicySlot {
            name,
            meta,
            limit_text: limiter
                .limit(id)
                .map(|limit| (limit, keep(&limit.to_string()))),
            ietf: None,
            concurrency: p.policy.algorithm() == Algorithm::Concurrency,
            settings: p.clone(),
            limiter,
            id,
        });
    }
    let index = |name: &str| policies.iter().position(|p| p.name == name);
    let compile_limits = |route: &str, anonymous: bool, limits: &[LimitSettings]| {
        limits
            .iter()
            .map(|l| {
                let select = match &l.select {
                    PolicySelect::Fixed(name) => Select::Fixed(index(name).unwrap_or(0)),
                    PolicySelect::Tiers { tiers, default } => {
                        let tiers: Vec<(String, usize)> = tiers
                            .iter()
                            .map(|(t, p)| (t.clone(), index(p).unwrap_or(0)))
                            .collect();
                        let default = tiers.iter().position(|(t, _)| t == default).unwrap_or(0);
                        Select::Tiers { tiers, default }
                    }
                };
                let policy = match &l.select {
                    PolicySelect::Fixed(name) => name.clone(),
                    PolicySelect::Tiers { tiers, .. } => tiers
                        .iter()
                        .map(|(t, p)| format!("{t}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let label = format!(
                    "{route}|{}|{policy}|{}|{}",
                    if anonymous { "anonymous" } else { "limits" },
                    l.key.name(),
                    l.shadow
                );
                // Counters of a limit that survived the reload carry over.
                let policies = match &select {
                    Select::Fixed(_) => 1,
                    Select::Tiers { tiers, .. } => tiers.len().max(1),
                };
                let counters = old
                    .and_then(|o| o.find_counters(&label))
                    .filter(|c| c.len() == policies)
                    .unwrap_or_else(|| Arc::new(Counters::new(policies)));
                Limit {
                    select,
                    key: l.key,
                    shadow: l.shadow,
                    label,
                    counters,
                }
            })
            .collect::<Vec<_>>()
    };
    let routes = config
        .routes
        .iter()
        .map(|r| Route {
            pattern: r.pattern.clone(),
            text: keep(&r.text),
            limits: compile_limits(&r.text, false, &r.limits),
            anonymous: r
                .anonymous
                .as_ref()
                .map(|a| compile_limits(&r.text, true, a)),
            on_missing_key: r.on_missing_key,
        })
        .collect();
    if matches!(config.header_style, HeaderStyle::Ietf | HeaderStyle::Both) {
        for p in &mut policies {
            // SAFETY: as for `keep` above.
            p.ietf = Some(unsafe { IetfTexts::kept(&p.meta, &mut texts) });
        }
    }
    let cors = match &config.cors {
        None => None,
        Some(b) => {
            let mut policy = b
                .clone()
                .expose_headers(rate_limit_header_names(config.header_style).iter().copied())
                .build()?;
            // It answers every request until the next reload: its texts are worth keeping.
            // SAFETY: as for `keep` above.
            unsafe { policy.keep_texts(&mut texts) };
            Some(policy)
        }
    };
    let keyer = IpKeyer::new(config.ipv6_prefix).unwrap_or_default();
    Ok(Inner {
        style: config.header_style,
        trusted: config.trusted_proxies.clone(),
        principals: config
            .principals
            .iter()
            .map(|(p, t)| (p.as_str().into(), t.as_str().into()))
            .collect(),
        config,
        policies,
        routes,
        cors,
        keyer,
        texts,
    })
}

impl Inner {
    pub(super) fn find_counters(&self, label: &str) -> Option<Arc<Counters>> {
        self.routes
            .iter()
            .flat_map(|r| r.limits.iter().chain(r.anonymous.iter().flatten()))
            .find(|l| l.label == label)
            .map(|l| l.counters.clone())
    }
}

impl Limit {
    /// The index of the policy that applies to a request of `tier`, and of its counters in
    /// `counters`.
    #[inline]
    pub(super) fn policy_index(&self, tier: Option<&str>) -> (usize, usize) {
        match &self.select {
            Select::Fixed(i) => (*i, 0),
            Select::Tiers { tiers, default } => {
                let at = tier
                    .and_then(|t| tiers.iter().position(|(name, _)| name == t))
                    .unwrap_or(*default);
                (tiers.get(at).map_or(0, |(_, i)| *i), at)
            }
        }
    }

    /// Each policy the limit may apply with its counters: one for a fixed policy, one per
    /// tier.
    pub(super) fn policies(&self) -> impl Iterator<Item = (usize, &OutcomeCounts)> {
        let indices: Vec<usize> = match &self.select {
            Select::Fixed(i) => vec![*i],
            Select::Tiers { tiers, .. } => tiers.iter().map(|(_, i)| *i).collect(),
        };
        indices.into_iter().zip(self.counters.iter())
    }
}
