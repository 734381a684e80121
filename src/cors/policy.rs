//! The validated policy: what [`CorsPolicyBuilder::build`] produces and [`CorsPolicy::decide`]
//! reads. Every header value it can send is rendered once here, at build time, so decisions
//! only borrow.

use super::builder::CorsPolicyBuilder;
use super::origin::OriginPattern;
use crate::core::texts::Texts;

/// A CORS policy that passed every check of [`CorsPolicyBuilder::build`].
///
/// Immutable, `Send + Sync`, cheap to share behind an `Arc`. Decide requests with
/// [`CorsPolicy::decide`].
#[derive(Clone, Debug)]
pub struct CorsPolicy {
    pub(crate) origins: Vec<OriginPattern>,
    /// Beside each pattern, once [`CorsPolicy::keep_texts`] ran: its text when it names one
    /// origin exactly, kept by the gate's config, so that the answer echoes it without copying the request's
    /// (the two are equal byte for byte). Empty otherwise.
    pub(crate) exact_texts: Vec<Option<&'static str>>,
    /// `*`: answer `Access-Control-Allow-Origin: *` to everyone, never vary.
    pub(crate) any_origin: bool,
    pub(crate) methods: NameRule,
    pub(crate) headers: NameRule,
    pub(crate) credentials: bool,
    pub(crate) private_network: bool,
    pub(crate) debug: bool,
    /// Origins as configured, for refusal reasons.
    pub(crate) origins_display: String,
    /// Methods allowed, for refusal reasons.
    pub(crate) methods_display: String,
    /// Headers allowed, for refusal reasons.
    pub(crate) headers_display: String,
    /// `Access-Control-Allow-Methods` of a `*` policy, which lists rather than echoes.
    pub(crate) allow_methods_value: Option<String>,
    /// `Access-Control-Allow-Headers` of a `*` policy, which lists rather than echoes.
    pub(crate) allow_headers_value: Option<String>,
    /// Sent to every allowed actual request: kept by [`CorsPolicy::keep_texts`], so a sink
    /// can keep it without copying.
    pub(crate) expose_value: Option<Rendered>,
    pub(crate) max_age_value: Option<String>,
    pub(crate) preflight_vary: &'static str,
    /// What it was built from, so it can be extended into a new policy.
    pub(crate) spec: CorsPolicyBuilder,
}

/// Allowed methods or header names: a list, optionally with `*`.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameRule {
    pub(crate) any: bool,
    /// Methods as written (case-sensitive); header names in lower case.
    pub(crate) names: Vec<String>,
}

impl NameRule {
    /// Method comparison: byte for byte (Fetch §4.8 step "methods").
    pub(crate) fn allows_method(&self, method: &str) -> bool {
        self.any || self.names.iter().any(|n| n == method)
    }

    /// Header comparison: byte-case-insensitive; `*` never covers `Authorization`
    /// (Fetch §4.8, CORS-preflight fetch, and §3.2.4 `Access-Control-Allow-Headers`).
    pub(crate) fn allows_header(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            || (self.any && !name.eq_ignore_ascii_case("authorization"))
    }
}

/// A header value rendered at build time: owned by the policy, or kept by the gate's compiled
/// config beside it (kept texts cost nothing to add to an answer).
#[derive(Clone, Debug)]
pub(crate) enum Rendered {
    /// Freed with the policy.
    Owned(Box<str>),
    /// Kept by the gate's compiled config (see `crate::core::texts`).
    Kept(&'static str),
}

impl Rendered {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Rendered::Owned(text) => text,
            Rendered::Kept(text) => text,
        }
    }
}

/// The origin an allowed request is answered with.
pub(crate) enum Echo<'a> {
    /// The configured exact origin (equal to the request's).
    Kept(&'static str),
    /// The request's own origin, matched by a wildcard.
    Request(&'a str),
}

impl CorsPolicy {
    /// Starts a policy. Nothing is allowed until origins are added.
    pub fn builder() -> CorsPolicyBuilder {
        CorsPolicyBuilder::default()
    }

    /// A builder holding this policy's settings, to derive a policy from it (for instance to
    /// expose more headers).
    pub fn to_builder(&self) -> CorsPolicyBuilder {
        self.spec.clone()
    }

    /// Whether a request from this `Origin` value would be allowed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`; `None` if refused.
    pub(crate) fn echo<'a>(&self, origin: &'a str) -> Option<Echo<'a>> {
        let i = self.origins.iter().position(|p| p.matches(origin))?;
        Some(match self.exact_texts.get(i).copied().flatten() {
            Some(kept) => Echo::Kept(kept),
            None => Echo::Request(origin),
        })
    }

    /// Whether allowed origins may send credentials (cookies, HTTP auth, client certificates).
    pub fn allows_credentials(&self) -> bool {
        self.credentials
    }

    /// Whether preflights asking for private network access are granted.
    pub fn allows_private_network(&self) -> bool {
        self.private_network
    }

    /// Whether refusals carry an `X-Cors-Reason` response header.
    pub fn is_debug(&self) -> bool {
        self.debug
    }

    /// The `Access-Control-Max-Age` value sent to allowed preflights, if any.
    pub fn max_age_value(&self) -> Option<&str> {
        self.max_age_value.as_deref()
    }

    /// The `Access-Control-Expose-Headers` value sent to allowed actual requests, if any.
    pub fn exposed_headers(&self) -> Option<&str> {
        self.expose_value.as_ref().map(Rendered::as_str)
    }

    /// Keeps the texts an allowed actual request is answered with (the exposed headers, the
    /// exact origins) in `texts`, for a policy that lives in a gate's compiled config beside
    /// them: answers then hold them by reference instead of copying them.
    ///
    /// # Safety
    ///
    /// As [`Texts::keep`]: the policy's answers are read only while `texts` is alive (the
    /// gate's outcomes hold the config that owns both).
    pub(crate) unsafe fn keep_texts(&mut self, texts: &mut Texts) {
        if let Some(expose) = &self.expose_value {
            // SAFETY: forwarded from the caller.
            self.expose_value = Some(Rendered::Kept(unsafe { texts.keep(expose.as_str()) }));
        }
        self.exact_texts = self
            .origins
            .iter()
            .map(|p| match p {
                // SAFETY: forwarded from the caller.
                OriginPattern::Exact(text) => Some(unsafe { texts.keep(text) }),
                _ => None,
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cors::CorsRequest;

    fn answer(policy: &CorsPolicy, origin: &str) -> Vec<(String, String)> {
        let req = CorsRequest {
            method: "GET",
            origin: Some(origin),
            access_control_request_method: None,
            access_control_request_headers: None,
            access_control_request_private_network: false,
        };
        let d = policy.decide(&req);
        d.headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    /// A policy built on its own owns its texts (dropping it frees them); kept texts change
    /// nothing in the answers.
    #[test]
    fn texts_are_kept_only_when_asked_and_answers_do_not_change() {
        let mut policy = CorsPolicy::builder()
            .allow_origins(["https://app.example.com", "https://*.example.org"])
            .expose_headers(["X-Request-Id"])
            .allow_credentials(true)
            .build()
            .expect("valid");
        assert!(policy.exact_texts.is_empty());
        assert!(matches!(policy.expose_value, Some(Rendered::Owned(_))));
        let origins = [
            "https://app.example.com",
            "https://a.example.org",
            "https://x.test",
        ];
        let before: Vec<_> = origins.iter().map(|o| answer(&policy, o)).collect();

        let mut texts = crate::core::texts::Texts::default();
        // SAFETY: the answers are read while `texts` lives.
        unsafe { policy.keep_texts(&mut texts) };
        assert_eq!(
            policy.exact_texts,
            [Some("https://app.example.com"), None],
            "only exact origins are kept"
        );
        assert!(matches!(policy.expose_value, Some(Rendered::Kept(_))));
        let after: Vec<_> = origins.iter().map(|o| answer(&policy, o)).collect();
        assert_eq!(before, after);
        assert_eq!(
            before[0][0],
            ("access-control-allow-origin".into(), origins[0].into())
        );
        assert_eq!(
            before[1][0],
            ("access-control-allow-origin".into(), origins[1].into())
        );
        assert_eq!(policy.exposed_headers(), Some("X-Request-Id"));
    }
}
