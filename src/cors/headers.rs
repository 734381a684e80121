//! Response header names the engine writes, and the fixed-capacity list a decision carries them
//! in (no heap: a decision holds at most [`MAX_HEADERS`] headers).
//!
//! Values that never change (`true`, `*` and the `Vary` values below) are `&'static str`
//! constants, so an integration can map them to pre-built header values without copying.
//!
//! Names are lower case: HTTP/2 and HTTP/3 require it, HTTP/1.1 ignores case, and
//! `http::HeaderName::from_static` accepts only lower case.

use std::borrow::Cow;

/// `Access-Control-Allow-Origin`.
pub const ALLOW_ORIGIN: &str = "access-control-allow-origin";
/// `Access-Control-Allow-Credentials`.
pub const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
/// `Access-Control-Allow-Methods`.
pub const ALLOW_METHODS: &str = "access-control-allow-methods";
/// `Access-Control-Allow-Headers`.
pub const ALLOW_HEADERS: &str = "access-control-allow-headers";
/// `Access-Control-Allow-Private-Network`.
pub const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";
/// `Access-Control-Expose-Headers`.
pub const EXPOSE_HEADERS: &str = "access-control-expose-headers";
/// `Access-Control-Max-Age`.
pub const MAX_AGE: &str = "access-control-max-age";
/// `Vary`: append its value to any `Vary` the response already has; never replace it.
pub const VARY: &str = "vary";
/// `X-Cors-Reason`: the refusal reason, only when the policy's debug mode is on.
pub const DEBUG_REASON: &str = "x-cors-reason";

/// `Vary` value of actual and non-CORS responses.
pub const VARY_ACTUAL: &str = "Origin";
/// `Vary` value of preflight responses.
pub const VARY_PREFLIGHT: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
/// `Vary` value of preflight responses when private network access is enabled.
pub const VARY_PREFLIGHT_PRIVATE_NETWORK: &str = "Origin, Access-Control-Request-Method, \
     Access-Control-Request-Headers, Access-Control-Request-Private-Network";

/// Most headers one decision can carry (an allowed preflight uses seven).
pub const MAX_HEADERS: usize = 8;

/// A header to add to the response: lower-case name and value.
pub type Header<'a> = (&'static str, Cow<'a, str>);

const EMPTY: Header<'static> = ("", Cow::Borrowed(""));

/// Up to [`MAX_HEADERS`] headers, inline.
#[derive(Clone, Debug)]
pub(crate) struct HeaderList<'a> {
    items: [Header<'a>; MAX_HEADERS],
    len: usize,
}

impl<'a> HeaderList<'a> {
    pub(crate) const fn new() -> Self {
        Self {
            items: [EMPTY; MAX_HEADERS],
            len: 0,
        }
    }

    /// Adds a header. The engine never adds more than [`MAX_HEADERS`]; were it to, the extra
    /// one would be dropped rather than panic.
    pub(crate) fn push(&mut self, name: &'static str, value: Cow<'a, str>) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[Header<'a>] {
        &self.items[..self.len]
    }

    pub(crate) fn into_headers(self) -> impl Iterator<Item = Header<'a>> {
        let len = self.len;
        self.items.into_iter().take(len)
    }
}
