//! Texts a compiled config owns, handed out as plain references.
//!
//! A gate's answers carry configured texts (policy names, route patterns, header values) on
//! every request. Copying them, or counting references to them, would cost every decision a
//! copy or an atomic on a line shared by every thread. Instead the compiled config keeps each
//! text once in a [`Texts`], and whoever shows one also holds the config (an outcome keeps an
//! `Arc` of the config it was decided under), so the text outlives every reader. When the
//! config is dropped, after a reload or with its gate, its texts go with it: memory follows the
//! configs alive, not every config a process ever built.

/// The texts of one compiled config. Each `keep` allocates once; nothing is ever removed
/// before the whole set is dropped.
#[derive(Default)]
pub(crate) struct Texts {
    kept: Vec<Box<str>>,
}

impl Texts {
    /// Keeps a copy of `text` and returns a view of it.
    ///
    /// # Safety
    ///
    /// The view is valid for as long as this `Texts` is alive, not for `'static`: the caller
    /// must only read it through something that also keeps this `Texts` alive (the compiled
    /// config holding both, or an outcome holding an `Arc` of that config), and must never
    /// hand it out with a lifetime longer than such a borrow.
    pub(crate) unsafe fn keep(&mut self, text: &str) -> &'static str {
        let owned: Box<str> = text.into();
        // SAFETY: the box's heap allocation never moves or is freed while `self.kept` holds
        // it (pushing moves the box pointer, not the bytes), and `self.kept` is only dropped
        // with `self`; the caller promises not to read the view after that.
        let view: &'static str = unsafe { &*(&*owned as *const str) };
        self.kept.push(owned);
        view
    }

    /// Bytes kept, for tests and stats.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.kept.iter().map(|t| t.len()).sum()
    }
}

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texts")
            .field("kept", &self.kept.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_text_reads_back_while_its_owner_lives() {
        let mut texts = Texts::default();
        // SAFETY: both views are read only while `texts` is alive.
        let (a, b) = unsafe { (texts.keep("login"), texts.keep("api-free")) };
        for i in 0..100 {
            // Growing the owner's list moves the boxes, never their bytes.
            // SAFETY: as above.
            let _ = unsafe { texts.keep(&format!("filler-{i}")) };
        }
        assert_eq!((a, b), ("login", "api-free"));
        assert!(texts.bytes() >= "loginapi-free".len());
    }
}
