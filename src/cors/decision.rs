//! The answer to one request: its kind, allowed or refused (and why), the preflight status, and
//! the headers to add. It borrows from the request and the policy; an allowed actual request
//! owns no heap memory at all.

use std::borrow::Cow;

use super::headers::{Header, HeaderList, DEBUG_REASON};
use super::reason::CorsRefusal;
use super::request::RequestKind;

/// What the engine decided for one request.
///
/// For a [`RequestKind::Preflight`], answer at once with [`status`](Self::status) and the
/// headers, without calling the handler. Otherwise call the handler and add the headers to its
/// response. `Vary` must be appended to the response's existing `Vary`, never replace it.
#[derive(Clone, Debug)]
#[must_use]
pub struct CorsDecision<'a> {
    kind: RequestKind,
    refusal: Option<CorsRefusal<'a>>,
    headers: HeaderList<'a>,
}

/// Where the engine writes a decision as it makes it: the headers to add and, if refused,
/// why. [`CorsDecision`] keeps them; the gate writes them straight into its response headers.
pub(crate) trait DecisionSink<'a> {
    /// Adds a header.
    fn push(&mut self, name: &'static str, value: impl Into<Cow<'a, str>>);

    /// Adds a header whose value lives for the whole process (a sink may keep it uncopied).
    fn push_static(&mut self, name: &'static str, value: &'static str) {
        self.push(name, value);
    }

    /// Records a refusal; in debug mode its sentence goes out as `X-Cors-Reason`.
    fn refuse(&mut self, refusal: CorsRefusal<'a>, debug: bool);
}

impl<'a> DecisionSink<'a> for CorsDecision<'a> {
    fn push(&mut self, name: &'static str, value: impl Into<Cow<'a, str>>) {
        self.headers.push(name, value.into());
    }

    fn refuse(&mut self, refusal: CorsRefusal<'a>, debug: bool) {
        if debug {
            self.headers
                .push(DEBUG_REASON, Cow::Owned(refusal.to_string()));
        }
        self.refusal = Some(refusal);
    }
}

impl<'a> CorsDecision<'a> {
    pub(crate) const fn new(kind: RequestKind) -> Self {
        Self {
            kind,
            refusal: None,
            headers: HeaderList::new(),
        }
    }

    /// The kind of request decided.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// Whether the request is allowed (always true for a request that is not CORS).
    pub fn is_allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// For a preflight, the status to answer with: 204 when allowed, 403 when refused. `None`
    /// for other requests: the handler answers them.
    pub fn status(&self) -> Option<u16> {
        match (self.kind, self.is_allowed()) {
            (RequestKind::Preflight, true) => Some(204),
            (RequestKind::Preflight, false) => Some(403),
            _ => None,
        }
    }

    /// Why the request was refused, if it was. Display it for the sentence.
    pub fn reason(&self) -> Option<&CorsRefusal<'a>> {
        self.refusal.as_ref()
    }

    /// The headers to add, as (lower-case name, value).
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> + '_ {
        self.headers
            .as_slice()
            .iter()
            .map(|(name, value)| (*name, value.as_ref()))
    }

    /// The value of one header to add, by lower-case name (see [`super::headers`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The headers to add, by value, for callers that outlive the decision.
    pub fn into_headers(self) -> impl Iterator<Item = Header<'a>> {
        self.headers.into_headers()
    }
}
