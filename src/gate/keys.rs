//! The keys a limit counts: namespaced bytes for the limiter, and text for people.

use std::net::IpAddr;

use crate::config::KeyKind;
use crate::limit::keys::IpKeyer;

/// A limiter key: a namespace byte, then the key, so keys of different kinds never collide.
#[derive(Debug)]
pub(super) struct KeyBuf {
    inline: [u8; 64],
    len: usize,
    spill: Vec<u8>,
}

impl KeyBuf {
    pub(super) fn new() -> Self {
        Self {
            inline: [0; 64],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn set(&mut self, tag: u8, bytes: &[u8]) -> &[u8] {
        if bytes.len() < self.inline.len() {
            self.inline[0] = tag;
            self.inline[1..=bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len() + 1;
            &self.inline[..self.len]
        } else {
            self.spill.clear();
            self.spill.push(tag);
            self.spill.extend_from_slice(bytes);
            &self.spill
        }
    }
}

const TAG_IP: u8 = b'i';
const TAG_PRINCIPAL: u8 = b'p';
const TAG_ROUTE: u8 = b'r';
const TAG_GLOBAL: u8 = b'g';

/// The namespaced limiter key of a request for a key kind: what the gate passes to the
/// limiter, and what [`super::Gate::reset`] needs.
pub fn limiter_key(
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> Vec<u8> {
    let mut buf = KeyBuf::new();
    key_bytes(&mut buf, kind, route, ip, principal, keyer).to_vec()
}

pub(super) fn key_bytes<'b>(
    buf: &'b mut KeyBuf,
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> &'b [u8] {
    match (kind, principal) {
        (KeyKind::Principal, Some(p)) => buf.set(TAG_PRINCIPAL, p.as_bytes()),
        // Without a principal, a principal limit counts the client address.
        (KeyKind::Ip | KeyKind::Principal, _) => match ip {
            Some(ip) => buf.set(TAG_IP, keyer.key(ip).as_bytes()),
            None => buf.set(TAG_IP, b""),
        },
        (KeyKind::Route, _) => buf.set(TAG_ROUTE, route.as_bytes()),
        (KeyKind::Global, _) => buf.set(TAG_GLOBAL, b""),
    }
}

/// The key as people read it, for logs and reports.
pub(super) fn key_display(
    kind: KeyKind,
    route: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
    keyer: IpKeyer,
) -> String {
    match (kind, principal) {
        (KeyKind::Principal, Some(p)) => format!("principal:{p}"),
        (KeyKind::Ip | KeyKind::Principal, _) => match ip {
            Some(ip) => format!("ip:{}", keyer.key(ip)),
            None => "ip:unknown".into(),
        },
        (KeyKind::Route, _) => format!("route:{route}"),
        (KeyKind::Global, _) => "global".into(),
    }
}

/// Reads a limiter key written by the gate back as people write it (`ip:203.0.113.9`,
/// `ip:2001:db8::/64`, `principal:alice`, `route:/api/`, `global`).
pub fn describe_key(bytes: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match bytes.split_first() {
        Some((&TAG_PRINCIPAL, rest)) => format!("principal:{}", text(rest)),
        Some((&TAG_ROUTE, rest)) => format!("route:{}", text(rest)),
        Some((&TAG_GLOBAL, _)) => "global".into(),
        Some((&TAG_IP, [])) => "ip:unknown".into(),
        Some((&TAG_IP, [4, a, b, c, d])) => format!("ip:{a}.{b}.{c}.{d}"),
        Some((&TAG_IP, [6, prefix, rest @ ..])) if rest.len() == 16 => {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(rest);
            format!("ip:{}/{prefix}", std::net::Ipv6Addr::from(raw))
        }
        _ => format!("raw:{}", text(bytes)),
    }
}
