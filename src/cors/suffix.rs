//! A small built-in list of public suffixes: the domains under which unrelated parties register
//! names, so that `*.suffix` would trust strangers.
//!
//! This is not the full Public Suffix List: it holds the common multi-label suffixes (country
//! second levels and hosting platforms), and every single-label suffix (`com`, `io`, `uk`, ...)
//! counts as public. A pattern on a suffix missing here is accepted, so review patterns on
//! shared hosting domains yourself.

/// Multi-label public suffixes, lower case, sorted for binary search.
const MULTI_LABEL: &[&str] = &[
    "ac.in",
    "ac.jp",
    "ac.nz",
    "ac.uk",
    "ac.za",
    "amplifyapp.com",
    "appspot.com",
    "azurestaticapps.net",
    "azurewebsites.net",
    "bitbucket.io",
    "blob.core.windows.net",
    "blogspot.com",
    "cloudapp.net",
    "cloudfront.net",
    "co.id",
    "co.il",
    "co.in",
    "co.jp",
    "co.kr",
    "co.nz",
    "co.th",
    "co.uk",
    "co.za",
    "codeberg.page",
    "com.ar",
    "com.au",
    "com.br",
    "com.cn",
    "com.co",
    "com.eg",
    "com.hk",
    "com.mx",
    "com.my",
    "com.ng",
    "com.pe",
    "com.ph",
    "com.pk",
    "com.sa",
    "com.sg",
    "com.tr",
    "com.tw",
    "com.ua",
    "com.vn",
    "deno.dev",
    "edu.au",
    "edu.cn",
    "elasticbeanstalk.com",
    "firebaseapp.com",
    "fly.dev",
    "github.io",
    "githubusercontent.com",
    "gitlab.io",
    "glitch.me",
    "go.jp",
    "gov.au",
    "gov.cn",
    "gov.uk",
    "herokuapp.com",
    "ltd.uk",
    "me.uk",
    "ne.jp",
    "net.au",
    "net.br",
    "net.cn",
    "net.in",
    "netlify.app",
    "ngrok-free.app",
    "ngrok.io",
    "now.sh",
    "onrender.com",
    "or.jp",
    "or.kr",
    "org.au",
    "org.br",
    "org.cn",
    "org.in",
    "org.nz",
    "org.uk",
    "org.za",
    "pages.dev",
    "plc.uk",
    "pythonanywhere.com",
    "r2.dev",
    "readthedocs.io",
    "repl.co",
    "s3.amazonaws.com",
    "sch.uk",
    "surge.sh",
    "trycloudflare.com",
    "up.railway.app",
    "vercel.app",
    "web.app",
    "workers.dev",
];

/// Whether `host` (lower-case ASCII, no trailing dot) is a public suffix.
pub(crate) fn is_public_suffix(host: &str) -> bool {
    // `localhost` is one label but only ever names this machine.
    if host == "localhost" {
        return false;
    }
    !host.contains('.') || MULTI_LABEL.binary_search(&host).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_lower_case() {
        assert!(MULTI_LABEL.windows(2).all(|w| w[0] < w[1]));
        assert!(MULTI_LABEL
            .iter()
            .all(|s| s.bytes().all(|b| !b.is_ascii_uppercase())));
    }

    #[test]
    fn suffixes() {
        assert!(is_public_suffix("com"));
        assert!(is_public_suffix("github.io"));
        assert!(is_public_suffix("co.uk"));
        assert!(!is_public_suffix("example.com"));
        assert!(!is_public_suffix("me.github.io"));
        assert!(!is_public_suffix("localhost"));
    }
}
