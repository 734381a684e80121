//! The headers of one outcome in two allocations: every value appended to one string, and the
//! names with the spans of their values beside it.

use std::borrow::Cow;
use std::fmt;

use crate::cors::headers::DEBUG_REASON;
use crate::cors::{CorsRefusal, DecisionSink};
use crate::decision::HeaderSink;

/// Response headers, built without an allocation per header.
#[derive(Clone, Default)]
pub(crate) struct HeaderBuf {
    text: String,
    /// (name, start, end) of each header's value in `text`.
    spans: Vec<(&'static str, u32, u32)>,
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
        if let Some(last) = self.spans.last_mut() {
            last.2 = end;
        }
    }

    fn len(&self) -> u32 {
        // Header text stays far below 4 GiB: values are bounded by the config and the engine.
        u32::try_from(self.text.len()).unwrap_or(u32::MAX)
    }

    /// The headers in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> + '_ {
        self.spans
            .iter()
            .map(|&(name, start, end)| (name, &self.text[start as usize..end as usize]))
    }

    /// Header `index`.
    pub(crate) fn get(&self, index: usize) -> Option<(&'static str, &str)> {
        self.spans
            .get(index)
            .map(|&(name, start, end)| (name, &self.text[start as usize..end as usize]))
    }
}

impl fmt::Write for HeaderBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.spans.is_empty() {
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        self.close();
        Ok(())
    }
}

impl HeaderSink for HeaderBuf {
    fn start(&mut self, name: &'static str) {
        let at = self.len();
        self.spans.push((name, at, at));
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
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                ("Vary", "Origin"),
                ("RateLimit", "\"a\";r=4, \"b\";r=0"),
                ("Empty", ""),
                ("Retry-After", "30"),
            ]
        );
        assert_eq!(h.get(1), Some(("RateLimit", "\"a\";r=4, \"b\";r=0")));
        assert_eq!(h.get(4), None);
        assert_eq!(h.iter().len(), 4);
        assert!(HeaderBuf::new().write_str("orphan").is_err());
    }
}
