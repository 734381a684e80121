//! Which address a request comes from, when proxies stand in front of the server.
//!
//! The client is the rightmost address of the proxy chain that is not a trusted proxy: each
//! trusted proxy appends the address it received the request from (`X-Forwarded-For`, or RFC
//! 7239 `Forwarded: for=`), so everything left of the last untrusted hop was written by the
//! client and proves nothing. Starting from the TCP peer:
//!
//! * a peer that is not a trusted proxy is the client, whatever the headers say;
//! * otherwise the chain is walked right to left, skipping trusted proxies; the first address
//!   that is not one is the client; a chain of trusted proxies only ends at its leftmost
//!   address;
//! * an entry that is not an address (`unknown`, an obfuscated `_name`, garbage) stops the walk:
//!   the request has no client address (it never falls back to a proxy's address, which would
//!   put every such client in one bucket);
//! * IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry.

use std::net::IpAddr;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a single address; the error says what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("\"{text}\" is not an address block: write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or \"127.0.0.1\"")
        })?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Err(format!(
                        "\"{text}\": the prefix length must be a number from 0 to {max}"
                    ))
                }
            },
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// No proxy is trusted: forwarding headers are ignored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client of a request received from `peer` with these forwarding headers (`Forwarded`
    /// is preferred when both are present); `None` when the chain holds an entry that is not
    /// an address. See the module documentation.
    pub fn client(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        forwarded: Option<&str>,
    ) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut last = peer;
        let mut walk = |entry: &str| -> Result<Option<IpAddr>, ()> {
            let ip = parse_entry(entry).ok_or(())?.to_canonical();
            if self.contains(ip) {
                last = ip;
                Ok(None)
            } else {
                Ok(Some(ip))
            }
        };
        let outcome = match (forwarded, forwarded_for) {
            (Some(f), _) if !f.trim().is_empty() => {
                f.rsplit(',')
                    .map(forwarded_for_of)
                    .try_fold((), |(), e| match e.map(&mut walk) {
                        // An element without `for=` says nothing of the client.
                        None => Err(None),
                        Some(Ok(None)) => Ok(()),
                        Some(Ok(Some(ip))) => Err(Some(ip)),
                        Some(Err(())) => Err(None),
                    })
            }
            (_, Some(x)) if !x.trim().is_empty() => {
                x.rsplit(',').try_fold((), |(), e| match walk(e) {
                    Ok(None) => Ok(()),
                    Ok(Some(ip)) => Err(Some(ip)),
                    Err(()) => Err(None),
                })
            }
            _ => Ok(()),
        };
        match outcome {
            // Every hop was a trusted proxy: the leftmost is where the request began.
            Ok(()) => Some(last),
            Err(client) => client,
        }
    }
}

/// The `for=` value of one `Forwarded` element.
fn forwarded_for_of(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
    })
}

/// An address from one chain entry: `203.0.113.9`, `203.0.113.9:8080`, `2001:db8::1`,
/// `[2001:db8::1]:8080`, each possibly quoted; `None` for anything else.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim().trim_matches('"').trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if after.is_empty() || after.strip_prefix(':').is_some_and(is_port) {
            return inside.parse().ok();
        }
        return None;
    }
    let (host, port) = e.rsplit_once(':')?;
    if is_port(port) && !host.contains(':') {
        return host.parse().ok();
    }
    None
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_what_they_say() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "mapped");
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        // (peer, X-Forwarded-For, Forwarded, the client)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            // An untrusted peer is the client whatever it claims.
            ("198.51.100.7", Some("1.2.3.4"), None, Some("198.51.100.7")),
            // Spoofed leftmost entry: the proxy appended the real one.
            (
                "10.0.0.1",
                Some("6.6.6.6, 203.0.113.9"),
                None,
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.1",
                Some("203.0.113.9, 10.0.0.2"),
                None,
                Some("203.0.113.9"),
            ),
            // Only trusted hops: the leftmost.
            (
                "10.0.0.1",
                Some("10.0.0.3, 10.0.0.2"),
                None,
                Some("10.0.0.3"),
            ),
            // No header from a trusted proxy: the proxy itself.
            ("10.0.0.1", None, None, Some("10.0.0.1")),
            // Garbage stops the walk: no client address, never the proxy's.
            ("10.0.0.1", Some("203.0.113.9, garbage"), None, None),
            ("10.0.0.1", Some("unknown"), None, None),
            // Ports and brackets.
            (
                "10.0.0.1",
                Some("203.0.113.9:4711"),
                None,
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.1",
                Some("[2001:db8::1]:4711"),
                None,
                Some("2001:db8::1"),
            ),
            ("10.0.0.1", Some("2001:db8::1"), None, Some("2001:db8::1")),
            // IPv4-mapped loopback is loopback (trusted).
            (
                "::ffff:127.0.0.1",
                Some("203.0.113.9"),
                None,
                Some("203.0.113.9"),
            ),
            (
                "10.0.0.1",
                Some("203.0.113.9, ::ffff:10.0.0.9"),
                None,
                Some("203.0.113.9"),
            ),
            // RFC 7239, preferred over X-Forwarded-For.
            (
                "10.0.0.1",
                Some("6.6.6.6"),
                Some("for=6.6.6.6, for=\"[2001:db8::7]:80\";proto=https, for=10.0.0.2"),
                Some("2001:db8::7"),
            ),
            ("10.0.0.1", None, Some("for=_hidden"), None),
            ("10.0.0.1", None, Some("proto=https"), None),
        ];
        for (peer, xff, fwd, want) in cases {
            let got = t.client(ip(peer), *xff, *fwd);
            assert_eq!(got, want.map(ip), "{peer} {xff:?} {fwd:?}");
        }
        // Nothing trusted: headers are ignored.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), Some("1.2.3.4"), None),
            Some(ip("10.0.0.1"))
        );
    }
}
