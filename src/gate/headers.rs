//! The headers of one outcome in two allocations: every value appended to one string, and the
//! names with the spans of their values beside it. Values that live for the whole process
//! (CORS literals, the configured expose list, rendered limits) are kept by reference.

use std::borrow::Cow;
use std::fmt;

use crate::cors::headers::DEBUG_REASON;
use crate::cors::{CorsRefusal, DecisionSink};
use crate::limit::decision::HeaderSink;

/// Response headers, built without an allocation per header.
#[derive(Clone, Default)]
pub(crate) struct HeaderBuf {
    text: String,
    /// Each header's name and value.
    spans: Vec<(&'static str, Value)>,
}

/// Where a header's value is.
#[derive(Clone, Copy)]
enum Value {
    /// `text[start..end]`.
    Span(u32, u32),
    /// Text that outlives every outcome.
    Static(&'static str),
}

impl HeaderBuf {
    /// Room for a typical decision: CORS and rate-limit headers.
    pub(crate) fn new() -> Self {
        Self {
            text: String::with_capacity(256),
            spans: Vec::with_capacity(12),
        }
    }

    /// Removes every header, keeping the room.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// Adds a header.
    pub(crate) fn push(&mut self, name: &'static str, value: &str) {
        self.start(name);
        self.text.push_str(value);
        self.close();
    }

    /// Ends the value of the last header started.
    fn close(&mut self) {
        let end = self.len();
        if let Some((_, Value::Span(_, last))) = self.spans.last_mut() {
            *last = end;
        }
    }

    fn value(&self, v: Value) -> &str {
        match v {
            Value::Span(start, end) => self.text.get(start as usize..end as usize).unwrap_or(""),
            Value::Static(s) => s,
        }
    }

    fn len(&self) -> u32 {
        // Header text stays far below 4 GiB: values are bounded by the config and the engine.
        u32::try_from(self.text.len()).unwrap_or(u32::MAX)
    }

    /// The headers in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> + '_ {
        self.spans.iter().map(|&(name, v)| (name, self.value(v)))
    }

    /// Header `index`.
    pub(crate) fn get(&self, index: usize) -> Option<(&'static str, &str)> {
        self.spans
            .get(index)
            .map(|&(name, v)| (name, self.value(v)))
    }
}

impl fmt::Write for HeaderBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = self.len();
        let Some((_, value)) = self.spans.last_mut() else {
            return Err(fmt::Error);
        };
        // Appending to a value kept by reference: it moves into the text first.
        if let Value::Static(kept) = *value {
            *value = Value::Span(start, start);
            self.text.push_str(kept);
        }
        self.text.push_str(s);
        self.close();
        Ok(())
    }
}

impl HeaderSink for HeaderBuf {
    fn start(&mut self, name: &'static str) {
        let at = self.len();
        self.spans.push((name, Value::Span(at, at)));
    }

    fn push_static(&mut self, name: &'static str, value: &'static str) {
        self.spans.push((name, Value::Static(value)));
    }

    fn push_number(&mut self, name: &'static str, n: u64) {
        let start = self.len();
        self.text.push_str(itoa::Buffer::new().format(n));
        let end = self.len();
        self.spans.push((name, Value::Span(start, end)));
    }
}

/// The CORS engine writing its headers straight into an outcome's, keeping the refusal.
pub(crate) struct CorsInto<'h, 'a> {
    pub(crate) headers: &'h mut HeaderBuf,
    pub(crate) refusal: Option<CorsRefusal<'a>>,
}

impl<'a> DecisionSink<'a> for CorsInto<'_, 'a> {
    fn push(&mut self, name: &'static str, value: impl Into<Cow<'a, str>>) {
        self.headers.push(name, &value.into());
    }

    fn push_static(&mut self, name: &'static str, value: &'static str) {
        HeaderSink::push_static(self.headers, name, value);
    }

    fn refuse(&mut self, refusal: CorsRefusal<'a>, debug: bool) {
        if debug {
            self.headers.push(DEBUG_REASON, &refusal.to_string());
        }
        self.refusal = Some(refusal);
    }
}

impl fmt::Debug for HeaderBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn values_written_in_pieces_stay_apart() {
        let mut h = HeaderBuf::new();
        h.push("Vary", "Origin");
        h.start("RateLimit");
        write!(h, "\"a\";r={}", 4).unwrap();
        h.write_str(", \"b\";r=0").unwrap();
        h.start("Empty");
        h.push("Retry-After", "30");
        h.push_static("Vary", "Origin");
        h.push_static("X-Limit", "10");
        h.write_str("0").unwrap();
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                ("Vary", "Origin"),
                ("RateLimit", "\"a\";r=4, \"b\";r=0"),
                ("Empty", ""),
                ("Retry-After", "30"),
                ("Vary", "Origin"),
                ("X-Limit", "100"),
            ]
        );
        assert_eq!(h.get(1), Some(("RateLimit", "\"a\";r=4, \"b\";r=0")));
        assert_eq!(h.get(6), None);
        assert_eq!(h.iter().len(), 6);
        assert_eq!(h.get(4), Some(("Vary", "Origin")));
        assert!(HeaderBuf::new().write_str("orphan").is_err());
    }
}
