//! Client keys from IP addresses.
//!
//! IPv4 clients are keyed by address. An IPv6 client usually owns a whole /64 (and can pick any
//! address in it), so IPv6 addresses are keyed by their prefix, /64 by default. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers) are keyed as the IPv4
//! address they carry, not collapsed into one /64.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Turns client addresses into limiter keys.
///
/// ```
/// use portcullis::IpKeyer;
/// let k = IpKeyer::default();
/// let a = k.key("2001:db8::1".parse()?);
/// let b = k.key("2001:db8::ffff:2".parse()?);
/// assert_eq!(a, b); // same /64
/// assert_eq!(k.key("::ffff:192.0.2.7".parse()?), k.key("192.0.2.7".parse()?));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpKeyer {
    v6_prefix: u8,
}

impl Default for IpKeyer {
    fn default() -> Self {
        Self { v6_prefix: 64 }
    }
}

/// Why a keyer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IPv6 prefix length must be between 1 and 128, got {0}")]
pub struct PrefixError(pub u8);

impl IpKeyer {
    /// Keys IPv6 addresses by their first `v6_prefix` bits (1 to 128).
    pub fn new(v6_prefix: u8) -> Result<Self, PrefixError> {
        if v6_prefix == 0 || v6_prefix > 128 {
            return Err(PrefixError(v6_prefix));
        }
        Ok(Self { v6_prefix })
    }

    /// The IPv6 prefix length.
    pub fn v6_prefix(&self) -> u8 {
        self.v6_prefix
    }

    /// The key for a client address.
    pub fn key(&self, ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::v4(v4),
                None => self.v6(v6),
            },
        }
    }

    fn v6(&self, ip: Ipv6Addr) -> ClientKey {
        let bits = u128::from(ip);
        let keep = u32::from(self.v6_prefix);
        let masked = if keep >= 128 {
            bits
        } else {
            bits & !(u128::MAX >> keep)
        };
        let mut bytes = [0u8; 18];
        bytes[0] = 6;
        bytes[1] = self.v6_prefix;
        bytes[2..].copy_from_slice(&masked.to_be_bytes());
        ClientKey { bytes, len: 18 }
    }
}

/// A limiter key derived from a client address; use it as bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    bytes: [u8; 18],
    len: u8,
}

impl ClientKey {
    fn v4(ip: Ipv4Addr) -> Self {
        let mut bytes = [0u8; 18];
        bytes[0] = 4;
        bytes[1..5].copy_from_slice(&ip.octets());
        Self { bytes, len: 5 }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for ClientKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bytes[0] {
            4 => write!(
                f,
                "{}",
                Ipv4Addr::new(self.bytes[1], self.bytes[2], self.bytes[3], self.bytes[4])
            ),
            _ => {
                let mut raw = [0u8; 16];
                raw.copy_from_slice(&self.bytes[2..18]);
                write!(f, "{}/{}", Ipv6Addr::from(raw), self.bytes[1])
            }
        }
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({self})")
    }
}
