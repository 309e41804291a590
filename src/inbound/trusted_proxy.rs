//! Which direct peers are trusted front proxies, whose client-certificate header the router
//! believes: an allowlist of IP ranges (CIDR) and/or identities of the proxy's own client
//! certificate on the router's TLS listener. When both are configured, a peer must satisfy
//! both. Everyone else's client-certificate headers are stripped.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::client_cert::ClientCertificate;
use super::forwarded::ForwardedFormat;
use super::reverify::ForwardedCertVerifier;

/// An IPv4 or IPv6 network, `addr/prefix` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRange {
    V4 { network: u32, prefix: u8 },
    V6 { network: u128, prefix: u8 },
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpRangeError {
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("`{0}` is not a prefix length (0–32 for IPv4, 0–128 for IPv6)")]
    Prefix(String),
    #[error("`{given}` has host bits set: the network is `{network}`")]
    HostBits { given: String, network: String },
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| IpRangeError::Address(addr.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(IpRangeError::Prefix(p.to_owned())),
            },
        };
        let range = match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let network = bits & mask_v4(prefix);
                if network != bits {
                    return Err(host_bits(text, IpAddr::V4(network.into()), prefix));
                }
                Self::V4 { network, prefix }
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let network = bits & mask_v6(prefix);
                if network != bits {
                    return Err(host_bits(text, IpAddr::V6(network.into()), prefix));
                }
                Self::V6 { network, prefix }
            }
        };
        Ok(range)
    }
}

fn host_bits(given: &str, network: IpAddr, prefix: u8) -> IpRangeError {
    IpRangeError::HostBits {
        given: given.to_owned(),
        network: format!("{network}/{prefix}"),
    }
}

impl IpRange {
    /// Whether `addr` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr.to_canonical()) {
            (Self::V4 { network, prefix }, IpAddr::V4(a)) => {
                u32::from(a) & mask_v4(*prefix) == *network
            }
            (Self::V6 { network, prefix }, IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(*prefix) == *network
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4 { network, prefix } => {
                write!(f, "{}/{prefix}", std::net::Ipv4Addr::from(*network))
            }
            Self::V6 { network, prefix } => {
                write!(f, "{}/{prefix}", std::net::Ipv6Addr::from(*network))
            }
        }
    }
}

/// An identity of a trusted proxy's own client certificate (verified in the TLS handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyIdentity {
    /// SHA-256 of the certificate's DER.
    Sha256([u8; 32]),
    /// The subject as xsrouter writes it (RFC 4514, e.g. `CN=envoy,O=mesh`), exactly.
    Subject(String),
    /// A URI subject alternative name (e.g. a SPIFFE id).
    Uri(String),
    /// A DNS subject alternative name.
    Dns(String),
}

impl ProxyIdentity {
    pub fn matches(&self, certificate: &ClientCertificate) -> bool {
        match self {
            Self::Sha256(hash) => certificate.sha256() == hash,
            Self::Subject(subject) => certificate.subject() == subject,
            Self::Uri(uri) => certificate.uris().iter().any(|u| u == uri),
            Self::Dns(dns) => certificate
                .dns_names()
                .iter()
                .any(|d| d.eq_ignore_ascii_case(dns)),
        }
    }
}

/// Whether a forwarded certificate is re-verified or the proxy's verification is trusted.
#[derive(Debug, Clone)]
pub enum ForwardedVerification {
    /// Verified again against the router's client CA bundles (the default).
    Reverify(ForwardedCertVerifier),
    /// Believed as verified by the proxy (an explicit choice).
    TrustProxy,
}

/// The trusted front proxies and how their forwarded certificates are read.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    /// Peers must be in one of these ranges (when any are configured).
    pub ranges: Vec<IpRange>,
    /// Peers must present a verified certificate matching one of these (when any are
    /// configured).
    pub identities: Vec<ProxyIdentity>,
    /// The header format the proxies forward.
    pub format: ForwardedFormat,
    pub verification: ForwardedVerification,
}

impl TrustedProxies {
    /// Start-up warnings: settings that let any peer, or any certificate, through.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.identities.is_empty() {
            for range in &self.ranges {
                let everyone = matches!(
                    range,
                    IpRange::V4 { prefix: 0, .. } | IpRange::V6 { prefix: 0, .. }
                );
                if everyone {
                    out.push(format!(
                        "XSROUTER_TRUSTED_PROXIES contains {range}: every peer may claim a client certificate; list only the proxies' addresses"
                    ));
                }
            }
        }
        if matches!(self.verification, ForwardedVerification::TrustProxy) {
            out.push(
                "XSROUTER_FORWARDED_CLIENT_CERT_VERIFY=trust-proxy: forwarded client certificates are not verified by xsrouter".to_owned(),
            );
        }
        out
    }

    /// The verifier of forwarded certificates, unless the proxy's verification is trusted; run
    /// [`super::reverify::watch`] on it to pick up changed trust files.
    pub fn reverifier(&self) -> Option<&ForwardedCertVerifier> {
        match &self.verification {
            ForwardedVerification::Reverify(verifier) => Some(verifier),
            ForwardedVerification::TrustProxy => None,
        }
    }

    /// Whether the direct peer is a trusted proxy: `peer` is its address, `certificate` the
    /// certificate it presented and the handshake verified.
    pub fn trusts(&self, peer: IpAddr, certificate: Option<&ClientCertificate>) -> bool {
        if self.ranges.is_empty() && self.identities.is_empty() {
            return false;
        }
        let in_range = self.ranges.is_empty() || self.ranges.iter().any(|r| r.contains(peer));
        let identified = self.identities.is_empty()
            || certificate.is_some_and(|c| self.identities.iter().any(|i| i.matches(c)));
        in_range && identified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> IpRange {
        text.parse().expect("range")
    }

    #[test]
    fn cidr_matching() {
        let ten = range("10.0.0.0/8");
        assert!(ten.contains("10.255.1.2".parse().expect("ip")));
        assert!(!ten.contains("11.0.0.1".parse().expect("ip")));
        // IPv4-mapped IPv6 peers (dual-stack sockets) count as IPv4.
        assert!(ten.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!ten.contains("2001:db8::1".parse().expect("ip")));
        let host = range("127.0.0.1");
        assert!(host.contains("127.0.0.1".parse().expect("ip")));
        assert!(!host.contains("127.0.0.2".parse().expect("ip")));
        let all = range("0.0.0.0/0");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        let v6 = range("2001:db8::/32");
        assert!(v6.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        assert!(range("::/0").contains("::1".parse().expect("ip")));
        assert_eq!(range("fd00::/8").to_string(), "fd00::/8");
    }

    #[test]
    fn trusting_everyone_is_a_warning() {
        let proxies = |ranges: &[&str], verification| TrustedProxies {
            ranges: ranges.iter().map(|r| range(r)).collect(),
            identities: Vec::new(),
            format: ForwardedFormat::CloudFoundry,
            verification,
        };
        let warnings =
            proxies(&["10.0.0.0/8", "::/0"], ForwardedVerification::TrustProxy).warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("contains ::/0"), "{warnings:?}");
        assert!(warnings[1].contains("trust-proxy"), "{warnings:?}");
        assert_eq!(
            proxies(
                &["10.0.0.0/8", "0.0.0.1"],
                ForwardedVerification::TrustProxy
            )
            .warnings()
            .len(),
            1
        );
        assert!(
            proxies(&["0.0.0.0/0"], ForwardedVerification::TrustProxy)
                .warnings()
                .iter()
                .any(|w| w.contains("0.0.0.0/0"))
        );
    }

    #[test]
    fn bad_cidrs() {
        assert_eq!(
            "10.0.0.1/8".parse::<IpRange>(),
            Err(IpRangeError::HostBits {
                given: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }
}
