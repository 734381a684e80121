//! Route patterns: which requests a route's limits apply to.

/// A route's `match`: an optional method and a path pattern.
///
/// `"POST /api/v1/auth/login"` matches that method and path exactly; `"/api/"` (ending in `/`)
/// matches `/api` and every path under it, any method; `"GET /api/v1/users/{id}"` matches one
/// path segment in place of `{id}`. Empty segments in request paths (`//`) are skipped and the
/// query string is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<String>,
    segments: Vec<Segment>,
    prefix: bool,
    /// `/a/b` when every segment is a literal: most requests match by one prefix comparison.
    literal: Option<String>,
    /// Letters match whatever their case (for backends that ignore case).
    case_insensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl RoutePattern {
    /// Parses a pattern; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (method, path) = match text.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m), p.trim()),
            None if text.starts_with('/') => (None, text),
            None => {
                return Err(format!(
                    "route \"{text}\" has no path: write \"/path\" or \"METHOD /path\", e.g. \"POST /api/v1/auth/login\""
                ))
            }
        };
        let method = match method {
            Some(m) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            Some(m) if m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                return Err(format!(
                    "route method \"{m}\" must be upper case, as clients send it: write \"{}\"",
                    m.to_ascii_uppercase()
                ))
            }
            Some(m) => {
                return Err(format!(
                    "route method \"{m}\" is not a method: write one method such as GET or POST, then the path"
                ))
            }
            None => None,
        };
        if !path.starts_with('/') {
            return Err(format!(
                "route path \"{path}\" must start with '/': write \"/{}\"",
                path.trim_start_matches('/')
            ));
        }
        let prefix = path.ends_with('/');
        let mut segments = Vec::new();
        let inner = path.trim_start_matches('/').trim_end_matches('/');
        if !inner.is_empty() {
            for seg in inner.split('/') {
                segments.push(Self::segment(path, seg)?);
            }
        }
        let literal = (!segments.is_empty()
            && segments.iter().all(|s| matches!(s, Segment::Literal(_))))
        .then(|| {
            inner
                .split('/')
                .fold(String::new(), |acc, seg| acc + "/" + seg)
        });
        Ok(Self {
            method,
            segments,
            prefix,
            literal,
            case_insensitive: false,
        })
    }

    /// The same pattern, matching paths whatever the case of their letters (`/API/Login`
    /// matches `/api/login`): for backends that route paths without regard to case.
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    fn segment(path: &str, seg: &str) -> Result<Segment, String> {
        if seg.is_empty() {
            return Err(format!(
                "route path \"{path}\" has an empty segment (//): write single slashes"
            ));
        }
        if let Some(name) = seg.strip_prefix('{') {
            let valid = name.strip_suffix('}').filter(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            return match valid {
                Some(_) => Ok(Segment::Param),
                None => Err(format!(
                    "route segment \"{seg}\" is not a parameter: write a whole segment such as {{id}}"
                )),
            };
        }
        if let Some(bad) = seg
            .chars()
            .find(|c| matches!(c, '{' | '}' | '?' | '#' | '*') || c.is_whitespace())
        {
            let hint = match bad {
                '*' => "end the path with '/' to match everything under it",
                '?' | '#' => "routes match the path only; remove the query or fragment",
                '{' | '}' => "a parameter is a whole segment such as {id}",
                _ => "remove the space",
            };
            return Err(format!("route path \"{path}\" contains '{bad}': {hint}"));
        }
        Ok(Segment::Literal(seg.to_owned()))
    }

    /// Whether a request matches. Empty segments (`//`) are skipped, as in the pattern, and the
    /// path ends at the first `?` or `#`. One pass over the bytes: this runs on every request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        // A path spelled like the pattern, followed by its end, a query, a fragment or (for a
        // prefix) a slash, matches; any other spelling (`//`, a trailing `/`) takes the walk.
        let rest = self.literal.as_deref().and_then(|l| {
            if self.case_insensitive {
                let head = path.get(..l.len())?;
                head.eq_ignore_ascii_case(l).then(|| &path[l.len()..])
            } else {
                path.strip_prefix(l)
            }
        });
        if let Some(rest) = rest {
            match rest.as_bytes().first() {
                None | Some(b'?' | b'#') => return true,
                Some(b'/') if self.prefix => return true,
                _ => {}
            }
        }
        let bytes = path.as_bytes();
        let ends = |i: usize| bytes.get(i).is_none_or(|&b| b == b'?' || b == b'#');
        let skip_slashes = |mut i: usize| {
            while bytes.get(i) == Some(&b'/') {
                i += 1;
            }
            i
        };
        let mut i = 0;
        for seg in &self.segments {
            i = skip_slashes(i);
            if ends(i) {
                return false;
            }
            let start = i;
            while !ends(i) && bytes[i] != b'/' {
                i += 1;
            }
            if let Segment::Literal(l) = seg {
                let got = &bytes[start..i];
                let same = if self.case_insensitive {
                    l.as_bytes().eq_ignore_ascii_case(got)
                } else {
                    l.as_bytes() == got
                };
                if !same {
                    return false;
                }
            }
        }
        self.prefix || ends(skip_slashes(i))
    }
}
