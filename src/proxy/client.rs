//! Who the client is: its address, believing X-Forwarded-For only from trusted proxies.

use crate::config::model::ProxySettings;
use http::{HeaderMap, HeaderValue};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;

pub struct Client {
    /// The client's address: the peer, or the first untrusted hop of X-Forwarded-For
    /// when the peer is a trusted proxy.
    pub ip: Option<IpAddr>,
    /// The X-Forwarded-For to send upstream.
    pub forwarded_for: Option<ForwardedFor>,
}

/// The X-Forwarded-For to send upstream. The common case (an untrusted peer) keeps
/// just the address: it is written out only when the request is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedFor {
    /// The peer alone.
    Peer(IpAddr),
    /// A trusted proxy's chain with the peer appended.
    Chain(String),
}

impl ForwardedFor {
    /// The header value, formatted without an intermediate `String`.
    pub fn header_value(&self) -> Option<HeaderValue> {
        match self {
            ForwardedFor::Peer(IpAddr::V4(ip)) => {
                HeaderValue::from_bytes(Ipv4Text::new(ip).as_bytes()).ok()
            }
            ForwardedFor::Peer(ip) => {
                // The longest address text (IPv6 with an embedded IPv4) is 45 bytes.
                let mut buf = [0u8; 45];
                let len = {
                    let mut rest = &mut buf[..];
                    write!(rest, "{ip}").ok()?;
                    45 - rest.len()
                };
                HeaderValue::from_bytes(&buf[..len]).ok()
            }
            ForwardedFor::Chain(chain) => HeaderValue::from_str(chain).ok(),
        }
    }
}

/// Dotted-quad text of an IPv4 address, on the stack (`core::fmt` costs several times
/// more, and this runs for every forwarded request).
struct Ipv4Text {
    buf: [u8; 15],
    len: usize,
}

impl Ipv4Text {
    fn new(ip: &std::net::Ipv4Addr) -> Self {
        let mut t = Ipv4Text {
            buf: [0; 15],
            len: 0,
        };
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                t.push(b'.');
            }
            if octet >= 100 {
                t.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                t.push(b'0' + octet / 10 % 10);
            }
            t.push(b'0' + octet % 10);
        }
        t
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Display for ForwardedFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardedFor::Peer(ip) => ip.fmt(f),
            ForwardedFor::Chain(chain) => f.write_str(chain),
        }
    }
}

pub fn identify(peer: Option<IpAddr>, headers: &HeaderMap, proxy: &ProxySettings) -> Client {
    let Some(peer) = peer else {
        return Client {
            ip: None,
            forwarded_for: None,
        };
    };
    if proxy.trusted_proxies.is_empty() || !proxy.is_trusted(peer) {
        return Client {
            ip: Some(peer),
            forwarded_for: Some(ForwardedFor::Peer(peer)),
        };
    }
    // All X-Forwarded-For headers, in order, as one chain.
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // Walk back from the nearest hop; the first address not in a trusted range is the
    // client. A malformed entry ends the walk: nothing before it can be believed.
    let mut ip = peer;
    for hop in chain.iter().rev() {
        match hop_address(hop) {
            Some(addr) => {
                ip = addr;
                if !proxy.is_trusted(addr) {
                    break;
                }
            }
            None => break,
        }
    }
    let mut forwarded = chain.join(", ");
    if !forwarded.is_empty() {
        forwarded.push_str(", ");
    }
    forwarded.push_str(&peer.to_string());
    Client {
        ip: Some(ip),
        forwarded_for: Some(ForwardedFor::Chain(forwarded)),
    }
}

/// The address of one X-Forwarded-For entry: `1.2.3.4`, `2001:db8::1`, or with the
/// port some proxies add (Azure Application Gateway, IIS/ARR): `1.2.3.4:4711`,
/// `[2001:db8::1]:443`, and `[2001:db8::1]`. The port is dropped; anything else is not
/// an address.
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "255.255.255.255",
            "127.0.0.1",
            "99.100.101.199",
        ] {
            let addr: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(Ipv4Text::new(&addr).as_bytes(), ip.as_bytes());
        }
    }

    fn peer(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peer_addresses_become_header_values() {
        for ip in [
            "10.1.2.3",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:255.255.255.255",
        ] {
            let v = ForwardedFor::Peer(peer(ip)).header_value().unwrap();
            assert_eq!(v.to_str().unwrap(), peer(ip).to_string());
        }
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
        let v = ForwardedFor::Peer(peer(longest)).header_value().unwrap();
        assert_eq!(v.to_str().unwrap(), peer(longest).to_string());
    }

    fn settings(trusted: &[&str]) -> ProxySettings {
        ProxySettings {
            strip_headers: vec![],
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        }
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_and_its_xff_is_ignored() {
        let c = identify(
            Some("1.2.3.4".parse().unwrap()),
            &xff("9.9.9.9"),
            &settings(&[]),
        );
        assert_eq!(c.ip, Some("1.2.3.4".parse().unwrap()));
        assert_eq!(c.forwarded_for, Some(ForwardedFor::Peer(peer("1.2.3.4"))));
        assert_eq!(
            c.forwarded_for.and_then(|f| f.header_value()),
            Some(HeaderValue::from_static("1.2.3.4"))
        );
        let c = identify(
            Some("1.2.3.4".parse().unwrap()),
            &xff("9.9.9.9"),
            &settings(&["10.0.0.0/8"]),
        );
        assert_eq!(c.ip, Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn trusted_peer_hands_over_the_first_untrusted_hop() {
        let s = settings(&["10.0.0.0/8"]);
        let c = identify(
            Some("10.0.0.5".parse().unwrap()),
            &xff("6.6.6.6, 7.7.7.7, 10.0.0.9"),
            &s,
        );
        assert_eq!(c.ip, Some("7.7.7.7".parse().unwrap()));
        assert_eq!(
            c.forwarded_for.map(|f| f.to_string()).as_deref(),
            Some("6.6.6.6, 7.7.7.7, 10.0.0.9, 10.0.0.5")
        );
        let c = identify(Some("10.0.0.5".parse().unwrap()), &HeaderMap::new(), &s);
        assert_eq!(c.ip, Some("10.0.0.5".parse().unwrap()));
        let c = identify(
            Some("10.0.0.5".parse().unwrap()),
            &xff("garbage, 7.7.7.7"),
            &s,
        );
        assert_eq!(c.ip, Some("7.7.7.7".parse().unwrap()));
    }

    #[test]
    fn hops_with_ports_are_addresses_and_garbage_is_not() {
        for (hop, want) in [
            ("203.0.113.7", Some("203.0.113.7")),
            ("203.0.113.7:4711", Some("203.0.113.7")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[::ffff:203.0.113.7]:80", Some("::ffff:203.0.113.7")),
            ("203.0.113.7:", None),
            ("203.0.113.7:99999", None),
            ("203.0.113.7:port", None),
            ("2001:db8::1:443:", None),
            ("[2001:db8::1]:", None),
            ("[203.0.113.7]:80", None),
            ("[2001:db8::1", None),
            ("2001:db8::1]", None),
            ("unknown", None),
            ("_hidden", None),
            ("1.2.3.4.5", None),
            ("", None),
        ] {
            assert_eq!(hop_address(hop), want.map(peer), "{hop:?}");
        }
        let s = settings(&["10.0.0.0/8"]);
        let c = identify(
            Some(peer("10.0.0.5")),
            &xff("203.0.113.7:4711, 10.0.0.9:80"),
            &s,
        );
        assert_eq!(c.ip, Some(peer("203.0.113.7")));
        assert_eq!(
            c.forwarded_for.map(|f| f.to_string()).as_deref(),
            Some("203.0.113.7:4711, 10.0.0.9:80, 10.0.0.5")
        );
        let c = identify(Some(peer("10.0.0.5")), &xff("[2001:db8::1]:443"), &s);
        assert_eq!(c.ip, Some(peer("2001:db8::1")));
        // A garbled hop ends the walk where it is.
        let c = identify(
            Some(peer("10.0.0.5")),
            &xff("6.6.6.6, 7.7.7.7:abc, 10.0.0.9"),
            &s,
        );
        assert_eq!(c.ip, Some(peer("10.0.0.9")));
    }
}
