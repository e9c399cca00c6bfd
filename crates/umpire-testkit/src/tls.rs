//! A throwaway certificate authority and a server certificate for `127.0.0.1` / `localhost`,
//! written as PEM files, for TLS servers in tests (a nats-server with `--tls`).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating test certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing test certificates: {0}")]
    Io(#[from] std::io::Error),
}

/// PEM files in a folder: `ca.crt`, `server.crt`, `server.key`.
pub struct TestCertificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificates {
    /// A new CA and a server certificate it signed, written into `dir`.
    pub fn write(dir: &Path) -> Result<Self, TlsError> {
        Self::write_for(dir, &[])
    }

    /// Like [`write`](Self::write), the server certificate also valid for `addresses` (a pod
    /// network's gateway, where pods reach the server).
    pub fn write_for(dir: &Path, addresses: &[std::net::IpAddr]) -> Result<Self, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "umpire test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let server_key = KeyPair::generate()?;
        // IP literals become IP-address SANs: clients verify `127.0.0.1` by address.
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend(addresses.iter().map(ToString::to_string));
        let server_params = CertificateParams::new(names)?;
        let server = server_params.signed_by(&server_key, &ca)?;
        let certificates = Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        std::fs::write(&certificates.ca, ca.pem())?;
        std::fs::write(&certificates.cert, server.pem())?;
        std::fs::write(&certificates.key, server_key.serialize_pem())?;
        Ok(certificates)
    }
}
