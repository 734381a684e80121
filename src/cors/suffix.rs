//! Public suffixes: the domains under which unrelated parties register names (`com`, `co.uk`,
//! and hosting platforms such as `github.io` or `s3.amazonaws.com`), from the full Public Suffix
//! List with its private section, as the maintained `psl` crate carries it.
//!
//! Two questions are asked of it:
//!
//! * at build time, whether a wildcard's base is itself a public suffix (`*.github.io`), which
//!   with credentials is refused;
//! * at match time, whether an origin matched by a wildcard lies under a public suffix nested
//!   inside the wildcard's base (`evil.s3.amazonaws.com` under `*.amazonaws.com`): such an
//!   origin belongs to whoever registered it there, not to the base's owner, so the wildcard
//!   never matches it. (The list cannot be asked which suffixes lie under a base, so a base
//!   that is only the parent of public suffixes is caught here, per origin, instead of at build
//!   time.)

/// Whether `host` (lower-case ASCII, no trailing dot) is a public suffix.
pub(crate) fn is_public_suffix(host: &str) -> bool {
    // `localhost` is one label but only ever names this machine.
    if host == "localhost" {
        return false;
    }
    match psl::suffix(host.as_bytes()) {
        Some(suffix) => suffix.as_bytes() == host.as_bytes(),
        None => !host.contains('.'),
    }
}

/// Whether `host`, matched by a wildcard on `base`, lies under a public suffix longer than
/// `base` (a suffix nested inside it): then the wildcard must not match it.
pub(crate) fn crosses_public_suffix(host: &str, base: &str) -> bool {
    psl::suffix(host.as_bytes()).is_some_and(|s| s.as_bytes().len() > base.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        for public in [
            "com",
            "github.io",
            "co.uk",
            "s3.amazonaws.com",
            "pages.dev",
            "web.app",
        ] {
            assert!(is_public_suffix(public), "{public}");
        }
        for private in [
            "example.com",
            "me.github.io",
            "localhost",
            "amazonaws.com",
            "app.co.uk",
        ] {
            assert!(!is_public_suffix(private), "{private}");
        }
    }

    #[test]
    fn nested_suffixes_are_crossed() {
        assert!(crosses_public_suffix(
            "evil.s3.amazonaws.com",
            "amazonaws.com"
        ));
        assert!(crosses_public_suffix("someone.github.io", "io"));
        assert!(!crosses_public_suffix("api.example.com", "example.com"));
        assert!(!crosses_public_suffix("a.b.example.co.uk", "example.co.uk"));
        assert!(!crosses_public_suffix("me.github.io", "github.io"));
    }
}
