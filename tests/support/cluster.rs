//! The cluster an end-to-end test runs against: the test kit's API server, or the real
//! cluster `KUBECONFIG` points at (same test code).

use std::path::PathBuf;

use umpire_testkit::kubeapi::KubeApiServer;

/// Whether `KUBECONFIG` names a real cluster to test against.
pub fn real_cluster() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|k| !k.is_empty())
}

/// The emulator, or a real cluster when `KUBECONFIG` is set.
pub enum Cluster {
    Emulator(KubeApiServer),
    Real(PathBuf),
}

impl Cluster {
    pub async fn start() -> Self {
        match std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) {
            Some(path) => Cluster::Real(PathBuf::from(path)),
            None => Cluster::Emulator(KubeApiServer::start().await.unwrap()),
        }
    }

    pub async fn client(&self) -> kube::Client {
        match self {
            Cluster::Emulator(server) => server.client(),
            Cluster::Real(_) => kube::Client::try_default().await.unwrap(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        match self {
            Cluster::Emulator(server) => server.kubeconfig(),
            Cluster::Real(path) => path.clone(),
        }
    }

    /// Unique per run on a real cluster; plain on the emulator.
    pub fn namespace(&self, base: &str) -> String {
        match self {
            Cluster::Emulator(_) => base.to_owned(),
            Cluster::Real(_) => format!("{base}-{}", std::process::id()),
        }
    }
}
