//! A pod network: a Linux bridge whose gateway address the test servers listen on, and a
//! network namespace per pod with its own address behind a veth pair — so replicas bind the
//! same ports (`0.0.0.0:4317`) as they would in their own pods, and reach the servers at
//! the gateway as pods reach cluster services. Needs root (`ip netns`, `ip link`).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Networks created by this process (names and subnets must not collide).
static NETWORKS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
#[error("`ip {args}`: {message}")]
pub struct NetworkError {
    args: String,
    message: String,
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    let error = |message: String| NetworkError {
        args: args.join(" "),
        message,
    };
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

pub struct PodNetwork {
    /// Short prefix of every link and namespace name of this network.
    tag: String,
    bridge: String,
    subnet: [u8; 3],
    state: Mutex<NetworkState>,
}

struct NetworkState {
    next_host: u8,
    namespaces: Vec<String>,
}

/// A pod's place on the network.
#[derive(Debug, Clone)]
pub struct PodAddress {
    /// Its network namespace (`/run/netns/<name>`).
    pub netns: String,
    pub ip: IpAddr,
}

impl PodNetwork {
    /// A new bridge with a /24 of its own (10.(200 + pid % 50).(n).0/24).
    pub fn create() -> Result<Self, NetworkError> {
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("u{}{}", pid % 100_000, n % 10);
        let subnet = [10, 200 + (pid % 50) as u8, ((pid / 50 + n) % 250) as u8];
        let bridge = format!("{tag}b");
        // Left over from a crashed run with the same pid: start clean.
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        let network = Self {
            tag,
            bridge,
            subnet,
            state: Mutex::new(NetworkState {
                next_host: 2,
                namespaces: Vec::new(),
            }),
        };
        let gateway = format!("{}/24", network.gateway());
        ip(&["addr", "add", &gateway, "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        Ok(network)
    }

    /// The host's address on the network: servers pods must reach listen here.
    pub fn gateway(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            self.subnet[0],
            self.subnet[1],
            self.subnet[2],
            1,
        ))
    }

    /// A namespace with its own address for a new pod.
    pub fn add_pod(&self) -> Result<PodAddress, NetworkError> {
        let host = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let host = state.next_host;
            state.next_host = state.next_host.wrapping_add(1).max(2);
            host
        };
        let netns = format!("{}p{host}", self.tag);
        let (outside, inside) = (
            format!("{}h{host}", self.tag),
            format!("{}c{host}", self.tag),
        );
        let _ = ip(&["netns", "del", &netns]);
        ip(&["netns", "add", &netns])?;
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .namespaces
            .push(netns.clone());
        let address = Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host);
        let cidr = format!("{address}/24");
        let gateway = self.gateway().to_string();
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &netns])?;
        ip(&["link", "set", &outside, "master", &self.bridge, "up"])?;
        ip(&["-n", &netns, "addr", "add", &cidr, "dev", &inside])?;
        ip(&["-n", &netns, "link", "set", &inside, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &netns, "route", "add", "default", "via", &gateway])?;
        Ok(PodAddress {
            netns,
            ip: IpAddr::V4(address),
        })
    }

    /// Deletes a pod's namespace (its veth pair goes with it).
    pub fn remove_pod(&self, netns: &str) {
        let _ = ip(&["netns", "del", netns]);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .namespaces
            .retain(|n| n != netns);
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let namespaces = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .namespaces,
        );
        for netns in namespaces {
            let _ = ip(&["netns", "del", &netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
