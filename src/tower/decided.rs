//! What the gate decided, for the inner service to read (opt-in:
//! [`super::GateLayer::expose_decisions`]).

use crate::config::KeyKind;
use crate::gate::{Gate, GateRequest, Outcome};
use crate::Decision;

/// The gate's decisions on a request that passed, as an extension of the request the inner
/// service receives: e.g. to show the client its remaining quota, or count by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    /// The route that matched.
    pub route: Option<String>,
    /// One entry per limit that applied.
    pub limits: Vec<DecidedLimit>,
}

/// One limit's decision in [`Decided`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidedLimit {
    /// The policy.
    pub policy: String,
    /// What it is keyed by.
    pub kind: KeyKind,
    /// The key as `inspect` shows it: `ip:203.0.113.9`, `principal:alice`, `route:/api/`.
    pub key: String,
    /// Shadow mode: counted, not enforced.
    pub shadow: bool,
    /// The decision.
    pub decision: Decision,
}

impl Decided {
    pub(super) fn of(gate: &Gate, req: &GateRequest<'_>, outcome: &Outcome) -> Self {
        let route = outcome.route().map(str::to_owned);
        let ip = gate.client_of(req);
        let limits = outcome
            .applied()
            .iter()
            .map(|a| DecidedLimit {
                policy: a.policy().to_owned(),
                kind: a.key,
                key: gate.key_display(a.key, route.as_deref().unwrap_or(""), ip, req.principal),
                shadow: a.shadow,
                decision: a.decision,
            })
            .collect();
        Self { route, limits }
    }
}
