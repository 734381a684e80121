//! Request targets reduced to the path a server resolves them to, before routing.
//!
//! A limit on `POST /api/v1/auth/login` must hold however the client spells that path, as long
//! as the backend behind the gate would serve it as that path. So the target is reduced the way
//! servers and frameworks resolve it:
//!
//! * an absolute-form target (`http://host/path`) keeps its path;
//! * the query and the fragment are cut off;
//! * percent-encoded unreserved characters (`%6C` for `l`, `%2E` for `.`) and slashes (`%2F`)
//!   are decoded (other encoded bytes stay as they are);
//! * `;` parameters are cut from every segment (`/login;jsessionid=1`);
//! * empty segments (`//`) are dropped, and dot segments (`.`, `..`) removed (RFC 3986 §5.2.4).
//!
//! Decoding `%2F` may make a request match a route its backend would not give it (one that
//! keeps `%2F` inside a segment): that is stricter, never looser. Letter case is left to the
//! route (`case_insensitive = true` for backends that ignore it).
//!
//! Callers pass the raw target as received (nginx's `$request_uri`, WSGI's `RAW_URI` or
//! `PATH_INFO`, Node's `req.url`).

/// The normalised path of `target`, borrowed when the target needs no change (most requests),
/// else written into `buf`.
pub(crate) fn normalize<'a>(target: &'a str, buf: &'a mut String) -> &'a str {
    if let Some(path) = already_normal(target) {
        return path;
    }
    let path = strip_target(target);
    buf.clear();
    resolve(path, buf);
    buf.as_str()
}

/// The path of an origin-form target that needs no change, found in one pass over its bytes
/// (the path of nearly every request): `None` when any step of [`resolve`] would change it.
#[inline]
fn already_normal(target: &str) -> Option<&str> {
    let b = target.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut i = 1;
    let mut prev = b'/';
    while i < b.len() {
        let c = b[i];
        match c {
            b'?' | b'#' => return Some(&target[..i]),
            b'%' | b';' => return None,
            b'/' if prev == b'/' => return None,
            b'.' if prev == b'/' => {
                let next = b.get(i + 1).copied();
                let dotdot =
                    next == Some(b'.') && matches!(b.get(i + 2), None | Some(b'/' | b'?' | b'#'));
                if matches!(next, None | Some(b'/' | b'?' | b'#')) || dotdot {
                    return None;
                }
            }
            _ => {}
        }
        prev = c;
        i += 1;
    }
    Some(target)
}

/// The path of a target: the absolute form's authority dropped, the query and fragment cut.
fn strip_target(target: &str) -> &str {
    let mut path = target;
    // Origin-form targets (nearly all) start with '/': only others can be absolute-form.
    if let Some(scheme_end) = (!target.starts_with('/'))
        .then(|| target.find("://"))
        .flatten()
    {
        let scheme = &target[..scheme_end];
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            let rest = &target[scheme_end + 3..];
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    &path[..end]
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` where XX is an unreserved character or `/`; keeps every other byte.
fn decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                let c = h << 4 | l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/') {
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were decoded into ASCII; every other byte is copied: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes the resolved path of `path` into `out`.
fn resolve(path: &str, out: &mut String) {
    let decoded = decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        // `;` parameters belong to the segment, not its name.
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.ends_with('/') && !segments.is_empty();
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn n(target: &str) -> String {
        let mut buf = String::new();
        normalize(target, &mut buf).to_owned()
    }

    #[test]
    fn targets_resolve_as_servers_resolve_them() {
        let cases = [
            ("/api/v1/auth/login", "/api/v1/auth/login"),
            ("/api/v1/auth/login?x=1#f", "/api/v1/auth/login"),
            ("/api/v1/auth/%6Cogin", "/api/v1/auth/login"),
            ("/api/v1/auth%2Flogin", "/api/v1/auth/login"),
            ("/api/v1/auth%2flogin", "/api/v1/auth/login"),
            ("/api/v1/x/../auth/login", "/api/v1/auth/login"),
            ("/api/v1/%2e%2e/v1/auth/login", "/api/v1/auth/login"),
            ("/api/v1/./auth/login", "/api/v1/auth/login"),
            ("//api///v1/auth//login", "/api/v1/auth/login"),
            ("/api/v1/auth/login;jsessionid=1", "/api/v1/auth/login"),
            ("/api;x/v1/auth/login", "/api/v1/auth/login"),
            ("http://example.com/api/v1/auth/login", "/api/v1/auth/login"),
            (
                "https://example.com:8443/api/v1/auth/login?q",
                "/api/v1/auth/login",
            ),
            ("http://example.com", "/"),
            ("/../../etc", "/etc"),
            ("/api/", "/api/"),
            ("/a/b%20c", "/a/b%20c"),
            ("/a/%zz", "/a/%zz"),
            ("", "/"),
            ("/", "/"),
            ("/é/x", "/é/x"),
        ];
        for (target, want) in cases {
            assert_eq!(n(target), want, "{target}");
        }
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        let mut buf = String::new();
        let p = normalize("/api/v1/things?x=1", &mut buf);
        assert_eq!(p, "/api/v1/things");
        assert!(buf.is_empty());
    }
}
