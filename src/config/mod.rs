//! The TOML config file: store, policies, routes, CORS and header style, validated into a
//! [`Config`] that builds a [`crate::gate::Gate`].
//!
//! Parsing happens in two passes. The TOML syntax and the shape of the document (unknown keys,
//! wrong types) are checked by the TOML parser, which stops at the first problem. Everything
//! else (quotas, durations, algorithms, policy references, route patterns, CORS rules, duplicate
//! names) is then checked over the whole document, and every problem is reported at once. Each
//! [`ConfigError`] names its line and column and says what to write instead.
//!
//! ```
//! use portcullis::config::Config;
//!
//! let errors = Config::parse(r#"
//! [[policy]]
//! name = "api"
//! limit = "100/fortnight"
//!
//! [[route]]
//! match = "/api/"
//! limits = [{ policy = "apii", key = "ip" }]
//! "#).unwrap_err();
//! assert_eq!(errors.len(), 2);
//! assert_eq!(errors.errors()[0].line(), 4);
//! assert_eq!(errors.errors()[1].line(), 8);
//! ```
//!
//! See `docs/GATE.md` for every key.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cors::{CorsConfigError, CorsConfigErrors, CorsPolicy, CorsPolicyBuilder};
mod client;
mod route;

use crate::limit::decision::HeaderStyle;
use crate::limit::error::Error;
use crate::limit::limiter::Limiter;
use crate::limit::policy::{Algorithm, Policy, PolicyError};
use crate::limit::quota::{parse_duration, Quota};
use crate::store::redis::{OnError, RedisOptions};
use crate::store::StoreConfig;
pub use client::{Cidr, TrustedProxies};
pub use route::RoutePattern;

/// Keys per policy table when neither the store nor the policy says.
pub const DEFAULT_TABLE_CAPACITY: usize = 100_000;

/// One problem in a config file: where it is, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    line: usize,
    column: usize,
    message: String,
}

impl ConfigError {
    /// The line, from 1 (0 when the problem is not in the text, e.g. an unreadable file).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column in characters, from 1 (0 when the problem is not in the text).
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong and what to write instead.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file (never empty), in the order of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    source: Option<String>,
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a config without problems parses.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The file the problems are in, if the config was loaded from one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

/// One line per problem: `file:line:column: message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if let Some(source) = &self.source {
                write!(f, "{source}:")?;
            }
            fmt::Display::fmt(e, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the limiter keeps its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory only: counters start fresh at every start.
    Memory,
    /// A sled database in a folder: counters survive restarts; one process.
    Sled,
    /// Tables in files of a folder, mapped by every process that opens it: worker processes
    /// (nginx, gunicorn, uvicorn, Node cluster, pre-forking servers) share one quota.
    Shared,
    /// A Redis server every host reaches: hosts share one quota, each decision is one
    /// round trip (see docs/STORE.md).
    Redis,
}

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Memory or sled.
    pub kind: StoreKind,
    /// The sled folder (sled only).
    pub path: Option<PathBuf>,
    /// Keys per policy table, unless a policy sets its own.
    pub capacity: usize,
    /// How often changed counters are written behind (sled only).
    pub flush_interval: Duration,
    /// sled's page cache in bytes (sled only; `None`: the store's default).
    pub cache_capacity: Option<u64>,
    /// The most memory the policies' tables may take together, in bytes (default: a quarter
    /// of the machine's physical memory). Checked when the config is read, so a capacity that
    /// would not fit is an error naming the policy, never an aborted process.
    pub max_memory: u64,
    /// The Redis store's settings (Redis only): `url`, `pool_size`, `timeout`, `key_prefix`,
    /// `on_error`, `expected_hosts`, `deny_cache`.
    pub redis: Option<RedisOptions>,
}

/// A quarter of the machine's physical memory (1 GiB if it cannot be read).
pub fn default_max_memory() -> u64 {
    // SAFETY: `sysconf` has no preconditions; a negative answer means unknown.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        (pages as u64).saturating_mul(size as u64) / 4
    } else {
        1 << 30
    }
}

/// The sled-only settings present in `[store]` (with `path` too when it is asked for), and
/// where.
fn sled_only(raw: &RawStore, with_path: bool) -> Vec<(&'static str, Range<usize>)> {
    [
        (
            "path",
            raw.path.as_ref().filter(|_| with_path).map(|v| v.span()),
        ),
        (
            "flush_interval",
            raw.flush_interval.as_ref().map(|v| v.span()),
        ),
        (
            "cache_capacity",
            raw.cache_capacity.as_ref().map(|v| v.span()),
        ),
    ]
    .into_iter()
    .filter_map(|(key, span)| Some((key, span?)))
    .collect()
}

/// A byte size: `1048576`, `512KiB`, `64MiB`, `2GiB` (also KB, MB, GB as powers of 1000).
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            path: None,
            capacity: DEFAULT_TABLE_CAPACITY,
            flush_interval: Duration::from_millis(100),
            cache_capacity: None,
            max_memory: default_max_memory(),
            redis: None,
        }
    }
}

pub use crate::store::Durability;

/// One `[[policy]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// The policy (name, algorithm, quota, block).
    pub policy: Policy,
    /// How soon its decisions are durable.
    pub durability: Durability,
    /// Keys in its table.
    pub capacity: usize,
}

/// What a limit is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The client address (IPv6 by prefix), via [`crate::limit::keys::IpKeyer`].
    Ip,
    /// The principal (user id or API key); the client address when there is none.
    Principal,
    /// The route: one counter for every client of the route.
    Route,
    /// One counter for everything the policy sees.
    Global,
}

impl KeyKind {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::Principal => "principal",
            KeyKind::Route => "route",
            KeyKind::Global => "global",
        }
    }
}

/// Which policy a limit applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySelect {
    /// Always this policy.
    Fixed(String),
    /// A policy per tier; a request without a known tier gets `default`'s.
    Tiers {
        /// (tier, policy), sorted by tier.
        tiers: Vec<(String, String)>,
        /// The tier of requests without a known tier.
        default: String,
    },
}

/// One limit of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// The policy, fixed or by tier.
    pub select: PolicySelect,
    /// What it is keyed by.
    pub key: KeyKind,
    /// Decided and counted, never enforced.
    pub shadow: bool,
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// The `match` text as written.
    pub text: String,
    /// Method and path pattern.
    pub pattern: RoutePattern,
    /// Limits for requests with a principal (and without one, when `anonymous` is unset).
    pub limits: Vec<LimitSettings>,
    /// Limits for requests without a principal.
    pub anonymous: Option<Vec<LimitSettings>>,
    /// What a request gets when a limit keyed by its client address finds none.
    pub on_missing_key: MissingKey,
}

/// What a route does with a request that has no client address (a NULL address over the C
/// ABI, WSGI on a Unix socket, a forwarding chain with garbage) when one of its limits is keyed
/// by it: such requests must never share one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Refuse the request (429, with a reason saying why). The default.
    #[default]
    Deny,
    /// Skip the limits keyed by the address; the route's other limits still apply.
    Skip,
}

/// A validated config: everything a [`crate::gate::Gate`] is built from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which rate-limit headers to send.
    pub header_style: HeaderStyle,
    /// IPv6 clients are keyed by this prefix length.
    pub ipv6_prefix: u8,
    /// The store.
    pub store: StoreSettings,
    /// The policies, in file order.
    pub policies: Vec<PolicySettings>,
    /// The routes, in file order: the first that matches a request applies.
    pub routes: Vec<RouteSettings>,
    /// The CORS policy (checked), if any.
    pub cors: Option<CorsPolicyBuilder>,
    /// The proxies whose `X-Forwarded-For` / `Forwarded` headers name the client (none by
    /// default: the TCP peer is the client).
    pub trusted_proxies: TrustedProxies,
    /// Tiers by principal (`[principals]`, and `principals_file` when loaded from a file):
    /// the tier of a request that did not come with one from the application.
    pub principals: BTreeMap<String, String>,
    /// A request header naming the tier (`tier_header`), believed only from a trusted proxy.
    pub tier_header: Option<String>,
}

impl Config {
    /// Parses and validates a config text.
    /// A `principals_file` is read relative to the working directory.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Self::parse_in(text, Path::new("."))
    }

    /// Reads, parses and validates a config file; errors name the file. A `principals_file`
    /// is read relative to the config file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let source = Some(path.display().to_string());
        let text = read_text(path, "config")?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, base).map_err(|e| ConfigErrors {
            source: e.source.or(source),
            ..e
        })
    }

    /// [`Config::parse`], with a `principals_file` read relative to `base`.
    fn parse_in(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let mut ctx = Ctx {
            text,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                ctx.push(e.span().unwrap_or(0..0), explain_syntax(e.message()));
                return Err(ctx.finish());
            }
        };
        let file = raw.principals_file.clone();
        let mut config = ctx.validate(raw);
        if !ctx.errors.is_empty() {
            return Err(ctx.finish());
        }
        if let Some(file) = file {
            let path = base.join(file.get_ref());
            let listed = principals_file(&path, &config)?;
            for (principal, tier) in listed {
                config.principals.entry(principal).or_insert(tier);
            }
        }
        Ok(config)
    }

    /// The policy settings of a name.
    pub fn policy(&self, name: &str) -> Option<&PolicySettings> {
        self.policies.iter().find(|p| p.policy.name() == name)
    }

    /// A limiter of the config's policies and store, for callers that key and check limits
    /// themselves (routes and CORS are not used). Opens the sled store if there is one.
    pub fn limiter(&self) -> Result<Limiter, Error> {
        let mut builder = Limiter::builder();
        match (self.store.kind, &self.store.path) {
            (StoreKind::Sled, Some(path)) => {
                let mut store = StoreConfig::sled(path).flush_interval(self.store.flush_interval);
                if let Some(bytes) = self.store.cache_capacity {
                    store = store.cache_capacity(bytes);
                }
                builder = builder.store(store);
            }
            (StoreKind::Shared, Some(path)) => builder = builder.store(StoreConfig::shared(path)?),
            (StoreKind::Redis, _) => {
                if let Some(o) = &self.store.redis {
                    builder = builder.store(StoreConfig::redis(o.clone())?);
                }
            }
            _ => {}
        }
        for p in &self.policies {
            builder = builder.policy_with_capacity(p.policy.clone(), p.capacity);
        }
        builder.build()
    }

    /// The `[cors]` policy, built; `None` when the config has no `[cors]` table.
    pub fn cors_policy(&self) -> Result<Option<CorsPolicy>, CorsConfigErrors> {
        self.cors.as_ref().map(|b| b.build()).transpose()
    }
}

impl FromStr for Config {
    type Err = ConfigErrors;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Config::parse(s)
    }
}

fn read_text(path: &Path, what: &str) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source: None,
        errors: vec![ConfigError {
            line: 0,
            column: 0,
            message: format!("cannot read {what} file {}: {e}", path.display()),
        }],
    })
}

/// Whether `name` is a header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The tiers the routes name.
fn route_tiers(routes: &[RouteSettings]) -> Vec<&str> {
    let mut tiers: Vec<&str> = routes
        .iter()
        .flat_map(|r| r.limits.iter().chain(r.anonymous.iter().flatten()))
        .flat_map(|l| match &l.select {
            PolicySelect::Tiers { tiers, .. } => tiers.iter().map(|(t, _)| t.as_str()).collect(),
            PolicySelect::Fixed(_) => Vec::new(),
        })
        .collect();
    tiers.sort_unstable();
    tiers.dedup();
    tiers
}

/// A principal's tier must be one some route has: a typo would silently give the default.
fn check_tier(tier: &str, known: &[&str]) -> Result<(), String> {
    if known.contains(&tier) {
        return Ok(());
    }
    Err(match known.is_empty() {
        true => format!("tier {tier:?}: no route has tiers"),
        false => format!(
            "tier {tier:?} is not one of the routes' tiers ({})",
            known.join(", ")
        ),
    })
}

/// A principals file: `"api-key" = "tier"` lines, checked like `[principals]`, errors naming
/// the file and line.
fn principals_file(path: &Path, config: &Config) -> Result<BTreeMap<String, String>, ConfigErrors> {
    let text = read_text(path, "principals")?;
    let mut ctx = Ctx {
        text: &text,
        errors: Vec::new(),
    };
    let raw: BTreeMap<String, Spanned<String>> = match toml::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => {
            ctx.push(e.span().unwrap_or(0..0), explain_syntax(e.message()));
            return Err(ConfigErrors {
                source: Some(path.display().to_string()),
                ..ctx.finish()
            });
        }
    };
    let tiers = route_tiers(&config.routes);
    let mut out = BTreeMap::new();
    for (principal, tier) in raw {
        match check_tier(tier.get_ref(), &tiers) {
            Ok(()) => {
                out.insert(principal, tier.into_inner());
            }
            Err(e) => ctx.push(tier.span(), format!("{principal:?}: {e}")),
        }
    }
    match ctx.errors.is_empty() {
        true => Ok(out),
        false => Err(ConfigErrors {
            source: Some(path.display().to_string()),
            ..ctx.finish()
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The document as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    header_style: Option<Spanned<String>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    ipv6_prefix: Option<Spanned<i64>>,
    tier_header: Option<Spanned<String>>,
    principals_file: Option<Spanned<String>>,
    principals: Option<BTreeMap<String, Spanned<String>>>,
    store: Option<RawStore>,
    #[serde(default)]
    policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    cors: Option<Spanned<RawCors>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    capacity: Option<Spanned<i64>>,
    flush_interval: Option<Spanned<String>>,
    cache_capacity: Option<Spanned<i64>>,
    max_memory: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    pool_size: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    key_prefix: Option<Spanned<String>>,
    on_error: Option<Spanned<String>>,
    expected_hosts: Option<Spanned<i64>>,
    deny_cache: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    algorithm: Option<Spanned<String>>,
    limit: Spanned<toml::Value>,
    burst: Option<Spanned<i64>>,
    block: Option<Spanned<String>>,
    max_delay: Option<Spanned<String>>,
    lease_timeout: Option<Spanned<String>>,
    durability: Option<Spanned<String>>,
    capacity: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    #[serde(default)]
    limits: Vec<Spanned<RawLimit>>,
    anonymous: Option<Vec<Spanned<RawLimit>>>,
    /// Match paths whatever the case of their letters.
    #[serde(default)]
    case_insensitive: bool,
    /// What a request without a client address gets: `deny` (default) or `skip`.
    on_missing_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    policy: Option<Spanned<String>>,
    tiers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    default_tier: Option<Spanned<String>>,
    key: Spanned<String>,
    #[serde(default)]
    shadow: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_methods: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_headers: Vec<Spanned<String>>,
    #[serde(default)]
    exposed_headers: Vec<Spanned<String>>,
    allow_credentials: Option<Spanned<bool>>,
    max_age: Option<Spanned<String>>,
    allow_private_network: Option<Spanned<bool>>,
    debug: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------------------------------------
// Validation: collects every problem.

struct Ctx<'t> {
    text: &'t str,
    errors: Vec<(usize, ConfigError)>,
}

/// Turns the TOML parser's message into one that says what to write.
fn explain_syntax(message: &str) -> String {
    let message = message.trim();
    if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else if message.starts_with("missing field") {
        format!("{message}; add it")
    } else {
        message.to_owned()
    }
}

fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .map(|c| (strsim::levenshtein(input, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The name a policy with an invalid name is checked under, for its other problems.
const STAND_IN_NAME: &str = "policy";

/// Why a policy name is refused (the limiter's rule), if it is.
fn name_error(name: &str) -> Option<PolicyError> {
    let quota = Quota::new(1, Duration::from_secs(1)).ok()?;
    match Policy::new(name, Algorithm::Gcra, quota).validate() {
        Err(e @ PolicyError::Name { .. }) => Some(e),
        _ => None,
    }
}

/// The error of a policy checked under [`STAND_IN_NAME`], naming the policy as written.
fn named(mut e: PolicyError, as_written: &str) -> PolicyError {
    use PolicyError as P;
    match &mut e {
        P::Name { name }
        | P::Duplicate { name }
        | P::LimitTooLarge { name, .. }
        | P::WindowTooShort { name, .. }
        | P::DurationTooLong { name, .. }
        | P::BurstNotApplicable { name, .. } => as_written.clone_into(name),
    }
    e
}

fn one_of(what: &str, input: &str, allowed: &[&str]) -> String {
    let hint = match closest(input, allowed) {
        Some(c) => format!("did you mean \"{c}\"? "),
        None => String::new(),
    };
    format!(
        "unknown {what} \"{input}\": {hint}write one of {}",
        allowed
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Ctx<'_> {
    fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        self.errors.push((
            start,
            ConfigError {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    fn finish(self) -> ConfigErrors {
        let mut errors = self.errors;
        // Stable: problems found at one place keep the order they were found in.
        errors.sort_by_key(|(at, _)| *at);
        ConfigErrors {
            source: None,
            errors: errors.into_iter().map(|(_, e)| e).collect(),
        }
    }

    fn duration(&mut self, value: &Spanned<String>, what: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(value.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    fn count(&mut self, value: &Spanned<i64>, what: &str, min: i64, max: i64) -> Option<i64> {
        let v = *value.get_ref();
        if (min..=max).contains(&v) {
            Some(v)
        } else {
            self.push(
                value.span(),
                format!("{what} must be between {min} and {max}, got {v}"),
            );
            None
        }
    }

    fn validate(&mut self, raw: RawConfig) -> Config {
        let header_style = match &raw.header_style {
            None => HeaderStyle::Legacy,
            Some(s) => match s.get_ref().as_str() {
                "legacy" => HeaderStyle::Legacy,
                "ietf" => HeaderStyle::Ietf,
                "both" => HeaderStyle::Both,
                "retry_after_only" => HeaderStyle::RetryAfterOnly,
                other => {
                    self.push(
                        s.span(),
                        one_of(
                            "header_style",
                            other,
                            &["legacy", "ietf", "both", "retry_after_only"],
                        ),
                    );
                    HeaderStyle::Legacy
                }
            },
        };
        let ipv6_prefix = raw
            .ipv6_prefix
            .as_ref()
            .and_then(|p| self.count(p, "ipv6_prefix", 1, 128))
            .map_or(64, |p| p as u8);
        let store = self.store(raw.store.as_ref());
        let policies = self.policies(&raw.policy, store.capacity);
        self.check_memory(&raw, &store, &policies);
        // References are checked against every declared name: a policy with an error of its
        // own is reported once, not again at each route that uses it.
        let declared: Vec<String> = raw
            .policy
            .iter()
            .map(|p| p.get_ref().name.get_ref().clone())
            .collect();
        let routes = self.routes(&raw.route, &declared);
        let cors = raw.cors.as_ref().and_then(|c| self.cors(c));
        let mut trusted_proxies = TrustedProxies::default();
        for p in raw.trusted_proxies.iter().flatten() {
            match Cidr::parse(p.get_ref()) {
                Ok(c) => trusted_proxies.0.push(c),
                Err(e) => self.push(p.span(), format!("trusted_proxies: {e}")),
            }
        }
        let tier_header = raw.tier_header.as_ref().and_then(|h| {
            let name = h.get_ref().trim();
            if is_header_name(name) {
                Some(name.to_ascii_lowercase())
            } else {
                self.push(
                    h.span(),
                    format!("tier_header: {name:?} is not a header name"),
                );
                None
            }
        });
        if tier_header.is_some() && trusted_proxies.is_empty() {
            if let Some(h) = &raw.tier_header {
                self.push(
                    h.span(),
                    "tier_header is believed only from trusted_proxies, and there are none: \
                     list the proxies that set it, or map API keys to tiers in [principals]"
                        .to_string(),
                );
            }
        }
        let tiers = route_tiers(&routes);
        let mut principals = BTreeMap::new();
        for (principal, tier) in raw.principals.iter().flatten() {
            match check_tier(tier.get_ref(), &tiers) {
                Ok(()) => {
                    principals.insert(principal.clone(), tier.get_ref().clone());
                }
                Err(e) => self.push(tier.span(), format!("[principals] {principal:?}: {e}")),
            }
        }
        Config {
            header_style,
            ipv6_prefix,
            store,
            policies,
            routes,
            cors,
            trusted_proxies,
            principals,
            tier_header,
        }
    }

    /// The tables of every policy must fit `max_memory`: said at the largest table's policy.
    fn check_memory(
        &mut self,
        raw: &RawConfig,
        store: &StoreSettings,
        policies: &[PolicySettings],
    ) {
        let sizes: Vec<(usize, &PolicySettings)> = policies
            .iter()
            .map(|p| (Limiter::table_bytes(p.capacity), p))
            .collect();
        let total: usize = sizes.iter().map(|(b, _)| *b).fold(0, usize::saturating_add);
        if total as u64 <= store.max_memory {
            return;
        }
        let Some((bytes, biggest)) = sizes.iter().max_by_key(|(b, _)| *b) else {
            return;
        };
        let name = biggest.policy.name();
        let span = raw
            .policy
            .iter()
            .find(|p| p.get_ref().name.get_ref() == name)
            .map(|p| {
                p.get_ref()
                    .capacity
                    .as_ref()
                    .map_or_else(|| p.span(), |c| c.span())
            })
            .unwrap_or(0..0);
        self.push(
            span,
            format!(
                "the policies' tables need {total} bytes, over max_memory ({} bytes); policy \"{name}\" alone takes {bytes} bytes for {} keys: lower its capacity, or raise [store] max_memory",
                store.max_memory, biggest.capacity
            ),
        );
    }

    fn store(&mut self, raw: Option<&RawStore>) -> StoreSettings {
        let mut s = StoreSettings::default();
        let Some(raw) = raw else { return s };
        if let Some(kind) = &raw.kind {
            match kind.get_ref().as_str() {
                "memory" => s.kind = StoreKind::Memory,
                "sled" => s.kind = StoreKind::Sled,
                "shared" => s.kind = StoreKind::Shared,
                "redis" => s.kind = StoreKind::Redis,
                other => self.push(
                    kind.span(),
                    one_of("store kind", other, &["memory", "sled", "shared", "redis"]),
                ),
            }
        }
        if let Some(path) = &raw.path {
            if path.get_ref().trim().is_empty() {
                self.push(
                    path.span(),
                    "store path is empty: write a folder, e.g. path = \"portcullis-data\"",
                );
            } else {
                s.path = Some(PathBuf::from(path.get_ref()));
            }
        }
        if s.kind == StoreKind::Sled && raw.path.is_none() {
            let span = raw.kind.as_ref().map_or(0..0, |k| k.span());
            self.push(
                span,
                "a sled store needs a folder: add path = \"portcullis-data\" to [store]",
            );
        }
        if s.kind == StoreKind::Shared {
            if raw.path.is_none() {
                let span = raw.kind.as_ref().map_or(0..0, |k| k.span());
                self.push(
                    span,
                    "a shared store needs a folder: add path = \"/dev/shm/portcullis/myapp\" \
                     (tmpfs: survives process restarts, not reboots) or a folder on a local disk \
                     to [store]",
                );
            }
            for (key, span) in sled_only(raw, false) {
                self.push(
                    span,
                    format!(
                        "{key} applies to sled stores only: a shared store's state is in its \
                         mapped files at once (use durability = \"immediate\" on a policy to \
                         sync its decisions to disk)"
                    ),
                );
            }
        }
        if let Some(c) = &raw.capacity {
            if let Some(c) = self.count(c, "store capacity (keys per policy)", 4, 1 << 30) {
                s.capacity = c as usize;
            }
        }
        if let Some(f) = &raw.flush_interval {
            if let Some(d) = self.duration(f, "flush_interval") {
                if d.is_zero() {
                    self.push(
                        f.span(),
                        "flush_interval must be longer than zero, e.g. \"100ms\"",
                    );
                } else {
                    s.flush_interval = d;
                }
            }
        }
        if let Some(m) = &raw.max_memory {
            match parse_bytes(m.get_ref()) {
                Some(bytes) if bytes > 0 => s.max_memory = bytes,
                _ => self.push(
                    m.span(),
                    format!(
                        "max_memory \"{}\" is not a size: write bytes with a unit, e.g. \"512MiB\" or \"2GiB\"",
                        m.get_ref()
                    ),
                ),
            }
        }
        if let Some(c) = &raw.cache_capacity {
            if let Some(c) = self.count(c, "cache_capacity (bytes)", 1 << 20, i64::MAX) {
                s.cache_capacity = Some(c as u64);
            }
        }
        self.redis_store(raw, &mut s);
        if s.kind == StoreKind::Memory {
            for (key, span) in sled_only(raw, true) {
                self.push(
                    span,
                    format!(
                        "{key} applies to sled stores only: remove it, or write kind = \"sled\""
                    ),
                );
            }
        }
        s
    }

    /// The Redis settings: checked here, so a bad URL or key prefix names its line.
    fn redis_store(&mut self, raw: &RawStore, s: &mut StoreSettings) {
        let redis_keys = [
            ("url", raw.url.as_ref().map(|v| v.span())),
            ("pool_size", raw.pool_size.as_ref().map(|v| v.span())),
            ("timeout", raw.timeout.as_ref().map(|v| v.span())),
            ("key_prefix", raw.key_prefix.as_ref().map(|v| v.span())),
            ("on_error", raw.on_error.as_ref().map(|v| v.span())),
            (
                "expected_hosts",
                raw.expected_hosts.as_ref().map(|v| v.span()),
            ),
            ("deny_cache", raw.deny_cache.as_ref().map(|v| v.span())),
        ];
        if s.kind != StoreKind::Redis {
            for (key, span) in redis_keys {
                if let Some(span) = span {
                    self.push(
                        span,
                        format!("{key} applies to Redis stores only: remove it, or write kind = \"redis\""),
                    );
                }
            }
            return;
        }
        for (key, span) in sled_only(raw, true) {
            self.push(
                span,
                format!(
                    "{key} applies to sled stores only: a Redis store's state is on the server"
                ),
            );
        }
        let Some(url) = &raw.url else {
            let span = raw.kind.as_ref().map_or(0..0, |k| k.span());
            self.push(
                span,
                "a Redis store needs a server: add url = \"redis://127.0.0.1:6379/0\" to [store]",
            );
            return;
        };
        let mut o = RedisOptions::new(url.get_ref().trim());
        if let Some(e) = crate::store::redis::url_error(&o.url) {
            self.push(url.span(), e);
        }
        if let Some(p) = &raw.pool_size {
            if let Some(n) = self.count(p, "pool_size (connections per process)", 1, 1024) {
                o.pool_size = n as usize;
            }
        }
        if let Some(t) = &raw.timeout {
            if let Some(d) = self.duration(t, "timeout") {
                if d.is_zero() {
                    self.push(t.span(), "timeout must be longer than zero, e.g. \"50ms\"");
                } else {
                    o.timeout = d;
                }
            }
        }
        if let Some(p) = &raw.key_prefix {
            match crate::store::redis::prefix_error(p.get_ref()) {
                Some(e) => self.push(p.span(), e),
                None => o.key_prefix = p.get_ref().clone(),
            }
        }
        if let Some(m) = &raw.on_error {
            match m.get_ref().as_str() {
                "fail_closed" => o.on_error = OnError::FailClosed,
                "fail_open" => o.on_error = OnError::FailOpen,
                "local" => o.on_error = OnError::Local,
                other => self.push(
                    m.span(),
                    one_of("on_error", other, &["fail_closed", "fail_open", "local"]),
                ),
            }
        }
        if let Some(h) = &raw.expected_hosts {
            if let Some(n) = self.count(h, "expected_hosts", 1, 100_000) {
                o.expected_hosts = n as u32;
            }
            if o.on_error != OnError::Local {
                self.push(
                    h.span(),
                    "expected_hosts divides the quota of on_error = \"local\" only: remove it, or write on_error = \"local\"",
                );
            }
        }
        if let Some(d) = &raw.deny_cache {
            o.deny_cache = *d.get_ref();
        }
        s.redis = Some(o);
    }

    fn policies(&mut self, raw: &[Spanned<RawPolicy>], capacity: usize) -> Vec<PolicySettings> {
        let mut out: Vec<PolicySettings> = Vec::new();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for p in raw {
            let p = p.get_ref();
            let name = p.name.get_ref();
            let line_of = |ctx: &Ctx<'_>, at: usize| {
                ctx.text
                    .get(..at)
                    .map_or(0, |b| b.matches('\n').count() + 1)
            };
            let duplicate = seen.iter().find(|(n, _)| n == name).map(|(_, at)| *at);
            if let Some(first) = duplicate {
                let line = line_of(self, first);
                self.push(
                    p.name.span(),
                    format!(
                        "policy \"{name}\" is already defined on line {line}: give each policy its own name"
                    ),
                );
            } else {
                seen.push((name.clone(), p.name.span().start));
            }
            // Every setting is checked, whatever else is wrong with the policy.
            let policy = self.policy(p);
            let capacity = match &p.capacity {
                None => Some(capacity),
                Some(c) => self
                    .count(c, "policy capacity (keys)", 4, 1 << 30)
                    .map(|c| c as usize),
            };
            let durability = match &p.durability {
                None => Some(Durability::WriteBehind),
                Some(d) => match d.get_ref().as_str() {
                    "immediate" => Some(Durability::Immediate),
                    "write_behind" => Some(Durability::WriteBehind),
                    other => {
                        self.push(
                            d.span(),
                            one_of("durability", other, &["immediate", "write_behind"]),
                        );
                        None
                    }
                },
            };
            if let (None, Some(policy), Some(capacity), Some(durability)) =
                (duplicate, policy, capacity, durability)
            {
                out.push(PolicySettings {
                    policy: policy.durability(durability),
                    durability,
                    capacity,
                });
            }
        }
        out
    }

    /// Checks one policy's name, algorithm, limit and options, reporting every problem; the
    /// policy when there is none.
    fn policy(&mut self, p: &RawPolicy) -> Option<Policy> {
        const ALGORITHMS: [&str; 5] = [
            "gcra",
            "fixed_window",
            "sliding_window",
            "leaky_bucket",
            "concurrency",
        ];
        let name = p.name.get_ref().clone();
        let mut ok = true;
        // The name is checked on its own; the rest is checked under a stand-in name when it is
        // invalid, so that a bad name hides no other problem.
        let checked_as = match name_error(&name) {
            None => name.clone(),
            Some(e) => {
                self.push(p.name.span(), e.to_string());
                ok = false;
                STAND_IN_NAME.to_owned()
            }
        };
        // `None` for an unknown algorithm: what does not depend on it is still checked.
        let algorithm = match &p.algorithm {
            None => Some(Algorithm::Gcra),
            Some(a) => match a.get_ref().as_str() {
                "gcra" => Some(Algorithm::Gcra),
                "fixed_window" => Some(Algorithm::FixedWindow),
                "sliding_window" => Some(Algorithm::SlidingWindow),
                "leaky_bucket" => Some(Algorithm::LeakyBucket { max_delay: None }),
                "concurrency" => Some(Algorithm::Concurrency),
                other => {
                    self.push(a.span(), one_of("algorithm", other, &ALGORITHMS));
                    ok = false;
                    None
                }
            },
        };
        let quota = if algorithm == Some(Algorithm::Concurrency) {
            let max = match p.limit.get_ref() {
                toml::Value::Integer(n) if (1..=i64::from(u32::MAX)).contains(n) => Some(*n as u32),
                _ => {
                    self.push(
                        p.limit.span(),
                        "a concurrency limit is a number of requests in flight: write e.g. limit = 4",
                    );
                    None
                }
            };
            let timeout = match &p.lease_timeout {
                None => Some(Duration::from_secs(60)),
                Some(t) => self.duration(t, "lease_timeout"),
            };
            match (max, timeout) {
                (Some(max), Some(timeout)) => match Quota::new(max, timeout) {
                    Ok(q) => Some(q),
                    Err(e) => {
                        let span = p
                            .lease_timeout
                            .as_ref()
                            .map_or(p.limit.span(), |t| t.span());
                        self.push(span, format!("policy \"{name}\": {e}"));
                        None
                    }
                },
                _ => None,
            }
        } else {
            if let Some(t) = &p.lease_timeout {
                if algorithm.is_some() {
                    self.push(
                        t.span(),
                        "lease_timeout applies to concurrency policies only: remove it, or write algorithm = \"concurrency\"",
                    );
                    ok = false;
                } else {
                    ok &= self.duration(t, "lease_timeout").is_some();
                }
            }
            match p.limit.get_ref() {
                toml::Value::String(s) => match s.parse::<Quota>() {
                    Ok(q) => Some(q),
                    Err(e) => {
                        self.push(p.limit.span(), format!("policy \"{name}\": {e}"));
                        None
                    }
                },
                // A concurrency limit, perhaps: the unknown algorithm is the problem.
                toml::Value::Integer(_) if algorithm.is_none() => None,
                _ => {
                    self.push(
                        p.limit.span(),
                        "limit is a quota string COUNT/WINDOW: write e.g. limit = \"100/h\"",
                    );
                    None
                }
            }
        };
        let burst = p
            .burst
            .as_ref()
            .and_then(|b| match u32::try_from(*b.get_ref()) {
                Ok(v) if v >= 1 => Some((v, b.span())),
                _ => {
                    self.push(
                        b.span(),
                        format!(
                            "burst must be between 1 and {}, got {}",
                            u32::MAX,
                            b.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            });
        let block = p.block.as_ref().and_then(|b| {
            let d = self.duration(b, "block");
            ok &= d.is_some();
            Some((d?, b.span()))
        });
        let max_delay = match &p.max_delay {
            Some(m) if algorithm.is_some_and(|a| !matches!(a, Algorithm::LeakyBucket { .. })) => {
                self.push(
                    m.span(),
                    "max_delay applies to leaky_bucket policies only: remove it, or write algorithm = \"leaky_bucket\"",
                );
                ok = false;
                None
            }
            Some(m) => {
                let d = self.duration(m, "max_delay");
                ok &= d.is_some();
                d.map(|d| (d, m.span()))
            }
            None => None,
        };
        let (Some(algorithm), Some(quota)) = (algorithm, quota) else {
            return None;
        };
        // What the algorithm can represent: the limit first, then each option on a policy known
        // to be valid, so each refusal is the option's own.
        let mut policy = Policy::new(checked_as.clone(), algorithm, quota);
        if let Err(e) = policy.validate() {
            self.push(p.limit.span(), named(e, &name).to_string());
            return None;
        }
        if let Some((burst, span)) = burst {
            match quota.with_burst(burst) {
                Ok(q) => {
                    let bursty = Policy::new(checked_as, algorithm, q);
                    ok &= self.refine(&mut policy, bursty, span, &name);
                }
                Err(e) => {
                    self.push(span, format!("policy \"{name}\": {e}"));
                    ok = false;
                }
            }
        }
        if let Some((d, span)) = block {
            let blocking = policy.clone().block(d);
            ok &= self.refine(&mut policy, blocking, span, &name);
        }
        if let Some((d, span)) = max_delay {
            let bounded = policy.clone().max_delay(d);
            ok &= self.refine(&mut policy, bounded, span, &name);
        }
        ok.then_some(policy)
    }

    /// Takes `refined` (a valid `policy` with one more option) if the algorithm can represent
    /// it; else reports why at the option's `span`, in the words of the policy `name`.
    fn refine(
        &mut self,
        policy: &mut Policy,
        refined: Policy,
        span: Range<usize>,
        name: &str,
    ) -> bool {
        match refined.validate() {
            Ok(()) => {
                *policy = refined;
                true
            }
            Err(e) => {
                self.push(span, named(e, name).to_string());
                false
            }
        }
    }

    fn routes(&mut self, raw: &[Spanned<RawRoute>], policies: &[String]) -> Vec<RouteSettings> {
        let mut out = Vec::new();
        let mut seen: Vec<(RoutePattern, usize)> = Vec::new();
        for r in raw {
            let r = r.get_ref();
            let pattern = match RoutePattern::parse(r.pattern.get_ref()) {
                Ok(p) => p.case_insensitive(r.case_insensitive),
                Err(e) => {
                    self.push(r.pattern.span(), e);
                    continue;
                }
            };
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == pattern) {
                let line = self
                    .text
                    .get(..*first)
                    .map_or(0, |b| b.matches('\n').count() + 1);
                self.push(
                    r.pattern.span(),
                    format!(
                        "route \"{}\" is already defined on line {line}: merge their limits into one [[route]]",
                        r.pattern.get_ref()
                    ),
                );
                continue;
            }
            seen.push((pattern.clone(), r.pattern.span().start));
            let limits = self.limits(&r.limits, policies);
            let anonymous = r.anonymous.as_ref().map(|a| self.limits(a, policies));
            let on_missing_key = match r.on_missing_key.as_ref().map(|v| (v, v.get_ref().as_str()))
            {
                None | Some((_, "deny")) => MissingKey::Deny,
                Some((_, "skip")) => MissingKey::Skip,
                Some((v, other)) => {
                    self.push(v.span(), one_of("on_missing_key", other, &["deny", "skip"]));
                    MissingKey::Deny
                }
            };
            out.push(RouteSettings {
                text: r.pattern.get_ref().clone(),
                pattern,
                limits,
                anonymous,
                on_missing_key,
            });
        }
        out
    }

    fn limits(&mut self, raw: &[Spanned<RawLimit>], policies: &[String]) -> Vec<LimitSettings> {
        let names: Vec<&str> = policies.iter().map(String::as_str).collect();
        // Hints name only the policies that can be used: each once, none with an invalid name.
        let mut usable: Vec<&str> = Vec::new();
        for n in &names {
            if !usable.contains(n) && name_error(n).is_none() {
                usable.push(n);
            }
        }
        let mut out = Vec::new();
        for l in raw {
            let span = l.span();
            let l = l.get_ref();
            let key = match l.key.get_ref().as_str() {
                "ip" => Some(KeyKind::Ip),
                "principal" => Some(KeyKind::Principal),
                "route" => Some(KeyKind::Route),
                "global" => Some(KeyKind::Global),
                other => {
                    self.push(
                        l.key.span(),
                        one_of("key", other, &["ip", "principal", "route", "global"]),
                    );
                    None
                }
            };
            let check_policy = |ctx: &mut Self, p: &Spanned<String>| -> bool {
                if names.contains(&p.get_ref().as_str()) {
                    return true;
                }
                let hint = match closest(p.get_ref(), &usable) {
                    Some(c) => format!("did you mean \"{c}\"?"),
                    None if usable.is_empty() => "define it in a [[policy]] table".into(),
                    None => format!("defined policies: {}", usable.join(", ")),
                };
                ctx.push(
                    p.span(),
                    format!("unknown policy \"{}\": {hint}", p.get_ref()),
                );
                false
            };
            let select = match (&l.policy, &l.tiers) {
                (Some(p), None) => {
                    if let Some(d) = &l.default_tier {
                        self.push(
                            d.span(),
                            "default_tier goes with tiers only: remove it, or write tiers = { ... }",
                        );
                    }
                    check_policy(self, p).then(|| PolicySelect::Fixed(p.get_ref().clone()))
                }
                (None, Some(tiers)) => {
                    let mut ok = true;
                    if tiers.get_ref().is_empty() {
                        self.push(
                            tiers.span(),
                            "tiers is empty: write e.g. tiers = { free = \"api-free\", premium = \"api-premium\" }",
                        );
                        ok = false;
                    }
                    for p in tiers.get_ref().values() {
                        ok &= check_policy(self, p);
                    }
                    let tier_names: Vec<&str> =
                        tiers.get_ref().keys().map(String::as_str).collect();
                    let default = match &l.default_tier {
                        Some(d) if tier_names.contains(&d.get_ref().as_str()) => {
                            Some(d.get_ref().clone())
                        }
                        Some(d) => {
                            self.push(
                                d.span(),
                                format!(
                                    "default_tier \"{}\" is not one of the tiers: write one of {}",
                                    d.get_ref(),
                                    tier_names.join(", ")
                                ),
                            );
                            None
                        }
                        None => {
                            self.push(
                                tiers.span(),
                                format!(
                                    "tiers need a default_tier for requests without a known tier: add default_tier = \"{}\"",
                                    tier_names.first().copied().unwrap_or("free")
                                ),
                            );
                            None
                        }
                    };
                    match (ok, default) {
                        (true, Some(default)) => Some(PolicySelect::Tiers {
                            tiers: tiers
                                .get_ref()
                                .iter()
                                .map(|(t, p)| (t.clone(), p.get_ref().clone()))
                                .collect(),
                            default,
                        }),
                        _ => None,
                    }
                }
                (Some(p), Some(_)) => {
                    self.push(
                        p.span(),
                        "a limit has either policy or tiers, not both: remove one",
                    );
                    None
                }
                (None, None) => {
                    self.push(
                        span,
                        "a limit needs a policy: write { policy = \"api\", key = \"ip\" } or { tiers = { ... }, default_tier = \"free\", key = \"principal\" }",
                    );
                    None
                }
            };
            if let (Some(select), Some(key)) = (select, key) {
                out.push(LimitSettings {
                    select,
                    key,
                    shadow: l.shadow,
                });
            }
        }
        out
    }

    fn cors(&mut self, raw: &Spanned<RawCors>) -> Option<CorsPolicyBuilder> {
        let c = raw.get_ref();
        let strings = |v: &[Spanned<String>]| -> Vec<String> {
            v.iter().map(|s| s.get_ref().clone()).collect()
        };
        let mut b = CorsPolicy::builder()
            .allow_origins(strings(&c.allowed_origins))
            .allow_methods(strings(&c.allowed_methods))
            .allow_headers(strings(&c.allowed_headers))
            .expose_headers(strings(&c.exposed_headers))
            .allow_credentials(c.allow_credentials.as_ref().is_some_and(|v| *v.get_ref()))
            .allow_private_network(
                c.allow_private_network
                    .as_ref()
                    .is_some_and(|v| *v.get_ref()),
            )
            .debug(c.debug.as_ref().is_some_and(|v| *v.get_ref()));
        let mut ok = true;
        if let Some(m) = &c.max_age {
            match self.duration(m, "max_age") {
                Some(d) => b = b.max_age(d),
                None => ok = false,
            }
        }
        if let Err(errors) = b.build() {
            for e in errors {
                let span = self.cors_span(raw, &e);
                self.push(span, cors_message(&e));
            }
            return None;
        }
        ok.then_some(b)
    }

    /// The place in `[cors]` a policy error is about: the element it quotes, else its key.
    fn cors_span(&self, raw: &Spanned<RawCors>, e: &CorsConfigError) -> Range<usize> {
        let c = raw.get_ref();
        let list = match e.field() {
            "allow_origins" => Some(&c.allowed_origins),
            "allow_methods" => Some(&c.allowed_methods),
            "allow_headers" => Some(&c.allowed_headers),
            "expose_headers" => Some(&c.exposed_headers),
            _ => None,
        };
        // The value quoted first is the one at fault (a later quote is the suggestion).
        let quoted_at = |v: &Spanned<String>| e.message().find(&format!("`{}`", v.get_ref()));
        let first_quoted = |l: &[Spanned<String>]| {
            l.iter()
                .filter_map(|v| quoted_at(v).map(|at| (at, v.span())))
                .min_by_key(|(at, _)| *at)
                .map(|(_, span)| span)
        };
        if let Some(span) = list.and_then(|l| first_quoted(l)) {
            return span;
        }
        // Origin errors that concern credentials or private network quote an origin too.
        if let Some(span) = first_quoted(&c.allowed_origins) {
            return span;
        }
        let key = match e.field() {
            "allow_credentials" => c.allow_credentials.as_ref().map(|v| v.span()),
            "max_age" => c.max_age.as_ref().map(|v| v.span()),
            "allow_private_network" => c.allow_private_network.as_ref().map(|v| v.span()),
            _ => None,
        };
        let first = list.and_then(|l| l.first()).map(|v| v.span());
        key.or(first).unwrap_or_else(|| raw.span())
    }
}

/// A CORS builder message in the config's own words.
fn cors_message(e: &CorsConfigError) -> String {
    let key = config_key(e.field());
    let message = e
        .message()
        .replace("allow_credentials(false)", "allow_credentials = false")
        .replace(
            "allow_private_network(true)",
            "allow_private_network = true",
        )
        .replace(
            "allow_origin(\"https://app.example.com\")",
            "allowed_origins = [\"https://app.example.com\"]",
        );
    format!("cors.{key}: {message}")
}

fn config_key(field: &str) -> &str {
    match field {
        "allow_origins" => "allowed_origins",
        "allow_methods" => "allowed_methods",
        "allow_headers" => "allowed_headers",
        "expose_headers" => "exposed_headers",
        other => other,
    }
}
