//! The one function that turns an address the host uses into one a container can use.
//!
//! On Linux the runner container shares the host's network, so every address works unchanged.
//! With a bridge network (the only way on macOS and Windows, where the engine runs in a VM),
//! loopback inside the container is the container itself: a loopback host is rewritten to
//! `host.docker.internal`, which Docker Desktop and Podman machines forward to the host's
//! loopback. (A Linux bridge would reach the host through `host-gateway`, but not its loopback,
//! where Stigmer's services listen: the daemon refuses `network: bridge` there.)

/// The host name a container uses to reach the host.
pub const HOST_GATEWAY: &str = "host.docker.internal";

/// The operating system the engine's host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOs {
    Linux,
    MacOs,
    Windows,
}

impl HostOs {
    /// The OS this binary runs on.
    pub fn current() -> HostOs {
        if cfg!(target_os = "macos") {
            HostOs::MacOs
        } else if cfg!(target_os = "windows") {
            HostOs::Windows
        } else {
            HostOs::Linux
        }
    }
}

/// How the runner container is networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (Linux only; the default there).
    Host,
    /// The engine's bridge, with `host.docker.internal` pointing at the host.
    Bridge,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        match text {
            "host" => Some(Network::Host),
            "bridge" => Some(Network::Bridge),
            _ => None,
        }
    }

    /// What `network` becomes on `os`: only Linux has host networking.
    pub fn effective(self, os: HostOs) -> Network {
        match os {
            HostOs::Linux => self,
            HostOs::MacOs | HostOs::Windows => Network::Bridge,
        }
    }
}

/// `address` as a container on `os` with `network` reaches it. Accepts `host:port`,
/// `[v6]:port` and URLs (`http://localhost:11434/v1`); anything that is not a loopback host is
/// returned unchanged.
pub fn for_container(address: &str, os: HostOs, network: Network) -> String {
    if network.effective(os) == Network::Host {
        return address.to_owned();
    }
    let (scheme, rest) = match address.find("://") {
        Some(at) => address.split_at(at + 3),
        None => ("", address),
    };
    // The authority ends at the first '/', '?' or '#'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        match bracketed.find(']') {
            Some(close) => (&hostport[..close + 2], &hostport[close + 2..]),
            None => (hostport, ""),
        }
    } else {
        match hostport.rfind(':') {
            Some(colon) => hostport.split_at(colon),
            None => (hostport, ""),
        }
    };
    if !is_loopback(host) {
        return address.to_owned();
    }
    format!("{scheme}{userinfo}{HOST_GATEWAY}{port}{tail}")
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host == "0.0.0.0"
        || host == "::"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESSES: [&str; 7] = [
        "127.0.0.1:7233",
        "http://127.0.0.1:7234",
        "http://localhost:11434",
        "http://localhost:11434/v1?x=1",
        "[::1]:7233",
        "https://api.openai.com/v1",
        "http://10.0.0.5:8080/mcp",
    ];

    #[test]
    fn linux_with_host_networking_keeps_every_address() {
        for address in ADDRESSES {
            assert_eq!(
                for_container(address, HostOs::Linux, Network::Host),
                address
            );
        }
    }

    #[test]
    fn linux_with_a_bridge_points_loopback_at_the_host_gateway() {
        let mapped: Vec<String> = ADDRESSES
            .iter()
            .map(|a| for_container(a, HostOs::Linux, Network::Bridge))
            .collect();
        assert_eq!(
            mapped,
            [
                "host.docker.internal:7233",
                "http://host.docker.internal:7234",
                "http://host.docker.internal:11434",
                "http://host.docker.internal:11434/v1?x=1",
                "host.docker.internal:7233",
                "https://api.openai.com/v1",
                "http://10.0.0.5:8080/mcp",
            ]
        );
    }

    #[test]
    fn macos_and_windows_always_rewrite_loopback() {
        for os in [HostOs::MacOs, HostOs::Windows] {
            // Host networking is not available there: asking for it changes nothing.
            for network in [Network::Host, Network::Bridge] {
                assert_eq!(
                    for_container("http://localhost:11434", os, network),
                    "http://host.docker.internal:11434"
                );
                assert_eq!(
                    for_container("127.0.0.1:7233", os, network),
                    "host.docker.internal:7233"
                );
                assert_eq!(
                    for_container("http://user:pw@127.0.0.1:9000/x", os, network),
                    "http://user:pw@host.docker.internal:9000/x"
                );
                assert_eq!(
                    for_container("https://api.anthropic.com/v1", os, network),
                    "https://api.anthropic.com/v1"
                );
            }
        }
    }
}
