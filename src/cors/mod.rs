//! CORS decisions after the Fetch standard, from a policy that is strict by construction.
//!
//! Build a [`CorsPolicy`] once: [`CorsPolicyBuilder::build`] refuses anything insecure or
//! meaningless (`*` with credentials, the `null` origin, `https://*.com`, malformed origins,
//! forbidden header names, ...) and reports every problem at once, each naming the field and
//! what to write instead. Then [`CorsPolicy::decide`] classifies each request (not CORS,
//! preflight, actual), checks it, and returns the headers to add, `Vary` included, plus a
//! readable reason for every refusal. Deciding borrows from the request and the policy: an
//! allowed actual request allocates nothing.
//!
//! ```
//! use portcullis::cors::{headers, CorsPolicy, CorsRequest, RequestKind};
//!
//! let policy = CorsPolicy::builder()
//!     .allow_origins(["https://app.example.com", "https://*.example.com"])
//!     .allow_methods(["PUT", "DELETE"])
//!     .allow_headers(["Content-Type", "X-Request-Id"])
//!     .expose_headers(["X-RateLimit-Remaining"])
//!     .allow_credentials(true)
//!     .max_age_secs(600)
//!     .build()?;
//!
//! // A preflight: answer it at once with the status and headers.
//! let req = CorsRequest::new("OPTIONS")
//!     .with_origin("https://app.example.com")
//!     .with_request_method("PUT")
//!     .with_request_headers("content-type, x-request-id");
//! let decision = policy.decide(&req);
//! assert_eq!(decision.kind(), RequestKind::Preflight);
//! assert_eq!(decision.status(), Some(204));
//! assert_eq!(decision.header(headers::ALLOW_ORIGIN), Some("https://app.example.com"));
//! assert_eq!(decision.header(headers::ALLOW_METHODS), Some("PUT"));
//!
//! // An actual request from an origin that is not allowed: no CORS header, and a reason.
//! let req = CorsRequest::new("GET").with_origin("https://a.example");
//! let decision = policy.decide(&req);
//! assert!(!decision.is_allowed());
//! assert_eq!(decision.header(headers::ALLOW_ORIGIN), None);
//! assert_eq!(decision.header(headers::VARY), Some("Origin"));
//! assert_eq!(
//!     decision.reason().map(|r| r.to_string()).as_deref(),
//!     Some("origin https://a.example is not allowed; allowed: https://app.example.com, https://*.example.com"),
//! );
//!
//! // A policy that cannot be right is refused, with every problem listed.
//! let errors = CorsPolicy::builder()
//!     .allow_origins(["*", "null"])
//!     .allow_credentials(true)
//!     .build()
//!     .unwrap_err();
//! assert_eq!(errors.len(), 2);
//! assert!(errors.to_string().starts_with("allow_origins: `null` is the `null` origin"));
//! # Ok::<(), portcullis::cors::CorsConfigErrors>(())
//! ```
//!
//! See `docs/CORS.md` for the policy options and every refusal.

mod builder;
mod decide;
mod decision;
mod error;
pub mod headers;
mod origin;
mod policy;
mod reason;
mod request;
mod suffix;
mod token;

pub use builder::{CorsPolicyBuilder, MAX_AGE_LIMIT_SECS};
pub use decide::{MAX_REQUEST_HEADERS_LEN, MAX_REQUEST_HEADER_NAMES};
pub use decision::CorsDecision;
pub(crate) use decision::DecisionSink;
pub use error::{CorsConfigError, CorsConfigErrorKind, CorsConfigErrors};
pub use policy::CorsPolicy;
pub use reason::CorsRefusal;
pub use request::{names as request_headers, CorsRequest, RequestKind};
