//! Name resolution for the router's HTTP clients with RFC 6761 §6.3 `localhost` names: a name
//! ending in `.localhost` (like `tenant1.localhost`) always means the loopback address, as
//! browsers treat it, whatever the system resolver knows. Other names go to the system resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The resolver: `*.localhost` → 127.0.0.1 and ::1, everything else through `getaddrinfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackNames;

/// Whether `host` is a `localhost` name (`localhost` itself or below it).
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host
            .len()
            .checked_sub(".localhost".len())
            .is_some_and(|at| host[at..].eq_ignore_ascii_case(".localhost"))
}

impl Resolve for LoopbackNames {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost_name(&host) {
                let addrs: Addrs = Box::new(
                    [
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                    ]
                    .into_iter(),
                );
                return Ok(addrs);
            }
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(found.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names() {
        for yes in [
            "localhost",
            "tenant1.localhost",
            "A.B.LOCALHOST",
            "x.localhost.",
        ] {
            assert!(is_localhost_name(yes), "{yes}");
        }
        for no in [
            "localhost.example",
            "notlocalhost",
            "example.com",
            "localhostx",
        ] {
            assert!(!is_localhost_name(no), "{no}");
        }
    }
}
