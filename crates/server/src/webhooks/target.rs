//! Where a webhook may point: `https://` (or `http://` where the operator allows it), and — so
//! Parley cannot be used to reach inside the network — never a loopback, private, link-local or
//! unique-local address unless the operator allows them. Checked at registration and again at
//! every delivery, because DNS answers change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, Default)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private: bool,
}

/// Host and port of a target URL, if its form is acceptable.
pub fn parse(url: &str, policy: TargetPolicy) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let port = match parsed.scheme() {
        "https" => 443,
        "http" if policy.allow_http => 80,
        "http" => return Err("the URL must be https:// (plain http is not allowed on this server)".into()),
        other => return Err(format!("the URL must be https://, not {other}://")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), parsed.port().unwrap_or(port)))
}

fn private_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast()
        // 100.64.0.0/10, shared address space.
        || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback() || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link local fe80::/10
}

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

/// Resolves the target and refuses it if any address is internal (unless allowed).
pub async fn check(url: &str, policy: TargetPolicy) -> Result<(), String> {
    let (host, port) = parse(url, policy)?;
    if policy.allow_private {
        return Ok(());
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("the host `{host}` does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("the host `{host}` does not resolve"));
    }
    if let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
        return Err(format!(
            "the host `{host}` resolves to {}, an internal address; this server does not deliver there",
            bad.ip()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_https_unless_allowed() {
        let strict = TargetPolicy::default();
        assert!(parse("https://hooks.example.com/x", strict).is_ok());
        assert!(parse("http://hooks.example.com/x", strict).is_err());
        assert!(parse("ftp://hooks.example.com/x", strict).is_err());
        assert!(parse("https://user:pw@hooks.example.com/x", strict).is_err());
        assert!(parse("http://hooks.example.com/x", TargetPolicy { allow_http: true, allow_private: false }).is_ok());
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_unless_allowed() {
        let strict = TargetPolicy { allow_http: true, allow_private: false };
        assert!(check("http://127.0.0.1:9/x", strict).await.unwrap_err().contains("internal"));
        assert!(check("http://localhost:9/x", strict).await.is_err());
        assert!(check("http://127.0.0.1:9/x", TargetPolicy { allow_http: true, allow_private: true }).await.is_ok());
    }
}
