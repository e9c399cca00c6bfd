//! Where workers may send requests. Judge endpoints and route URLs come from specs that any
//! EvalPolicy author writes; without a policy they could point a worker at the cloud
//! metadata service (169.254.169.254), the API server or any service inside the cluster. An
//! install's policy refuses internal addresses — loopback, private, link-local, shared
//! (CGNAT), unique-local, multicast, unspecified — unless a CIDR allows them, and can
//! restrict requests to listed hosts. Checked on the addresses a name resolves to, at
//! connection time, so DNS cannot route around it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An install's egress policy (`egress` in the chart's values, rendered into every
/// evaluator's config by the controller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressPolicy {
    /// Hosts requests may go to: exact names or `*.example.com` (any subdomain). Empty: any
    /// host. A listed name may resolve to an internal address (an in-cluster judge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Internal addresses requests may reach anyway, as CIDRs (`10.0.0.0/8`, `127.0.0.1/32`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress refused: {0}")]
pub struct EgressRefused(pub String);

impl EgressPolicy {
    fn host_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            }
        })
    }

    /// Whether `host`, reached at `addresses`, may be called.
    pub fn check(&self, host: &str, addresses: &[IpAddr]) -> Result<(), EgressRefused> {
        let listed = self.host_listed(host);
        if !self.allowed_hosts.is_empty() && !listed {
            return Err(EgressRefused(format!(
                "host {host} is not among the install's egress.allowedHosts"
            )));
        }
        if listed {
            return Ok(());
        }
        for address in addresses {
            if let Some(kind) = internal(*address)
                && !self.allowed_cidrs.iter().any(|net| net.contains(address))
            {
                return Err(EgressRefused(format!(
                    "{host} is at {address}, a {kind} address; allow it with the install's egress.allowedCidrs or egress.allowedHosts"
                )));
            }
        }
        Ok(())
    }
}

/// What kind of internal address `address` is, if it is one.
pub fn internal(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if v4.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_multicast() || v4.is_broadcast() {
        Some("multicast")
    } else {
        None
    }
}

fn internal_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let first = v6.segments()[0];
    if v6.is_loopback() {
        Some("loopback")
    } else if v6.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local (private)")
    } else if v6.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// hyper's resolver with the policy (if any) applied to every answer.
#[derive(Clone)]
pub struct CheckedResolver {
    pub policy: Option<Arc<EgressPolicy>>,
}

impl tower::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(policy) = policy {
                let addresses: Vec<IpAddr> = resolved.iter().map(SocketAddr::ip).collect();
                policy
                    .check(&host, &addresses)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
            }
            Ok(resolved.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let policy = EgressPolicy::default();
        for address in [
            "127.0.0.1",
            "169.254.169.254",
            "10.96.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(policy.check("h", &[ip(address)]).is_err(), "{address}");
        }
        for address in ["8.8.8.8", "104.18.0.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(policy.check("h", &[ip(address)]).is_ok(), "{address}");
        }
        // One internal answer among public ones is refused (no DNS tricks).
        assert!(policy.check("h", &[ip("8.8.8.8"), ip("10.0.0.1")]).is_err());

        let allowed = EgressPolicy {
            allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        assert!(allowed.check("judge", &[ip("10.1.2.3")]).is_ok());
        assert!(allowed.check("judge", &[ip("169.254.169.254")]).is_err());
    }

    #[test]
    fn listed_hosts_are_the_only_hosts_and_may_be_internal() {
        let policy = EgressPolicy {
            allowed_hosts: vec![
                "api.openai.com".into(),
                "*.pagerduty.com".into(),
                "vllm.ml.svc.cluster.local".into(),
            ],
            ..Default::default()
        };
        assert!(policy.check("api.openai.com", &[ip("104.18.0.1")]).is_ok());
        assert!(
            policy
                .check("events.PagerDuty.com", &[ip("104.18.0.2")])
                .is_ok()
        );
        assert!(
            policy
                .check("vllm.ml.svc.cluster.local", &[ip("10.96.4.2")])
                .is_ok()
        );
        let refused = policy
            .check("evil.example", &[ip("104.18.0.3")])
            .unwrap_err();
        assert!(refused.to_string().contains("allowedHosts"), "{refused}");
        assert!(
            policy
                .check("pagerduty.com.evil", &[ip("1.1.1.1")])
                .is_err()
        );
    }

    #[test]
    fn the_policy_reads_from_yaml() {
        let policy: EgressPolicy = serde_yaml::from_str(
            "allowedHosts: ['*.openai.com']\nallowedCidrs: [10.0.0.0/8, 'fd00::/8']\n",
        )
        .unwrap();
        assert_eq!(policy.allowed_cidrs.len(), 2);
        assert!(serde_yaml::from_str::<EgressPolicy>("allowedCidrs: [nonsense]").is_err());
    }
}
