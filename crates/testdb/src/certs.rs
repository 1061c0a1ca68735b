//! A throwaway certificate authority and server certificates for TLS tests (feature `certs`).
//!
//! ```no_run
//! # fn f() -> Result<(), notify_db_testdb::Error> {
//! use notify_db_testdb::{Cluster, TestCa};
//! let ca = TestCa::new()?;
//! let cluster = Cluster::builder()
//!     .tls(&ca.server_cert(&["127.0.0.1", "localhost"])?)
//!     .start()?;
//! std::fs::write("ca.crt", ca.pem()).ok(); // sslrootcert for verify-ca / verify-full
//! # Ok(()) }
//! ```

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::Error;

/// A self-signed CA that signs server certificates.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its private key, both PEM.
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate (PEM), for `ssl_cert_file`.
    pub cert_pem: String,
    /// The private key (PEM), for `ssl_key_file`.
    pub key_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

fn cert_error(what: &str, source: rcgen::Error) -> Error {
    Error::Certificate {
        what: what.to_owned(),
        source,
    }
}

impl TestCa {
    /// A new CA named "notify-db test CA" with a fresh key.
    pub fn new() -> Result<TestCa, Error> {
        let key = KeyPair::generate().map_err(|e| cert_error("generating the CA key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| cert_error("the CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "notify-db test CA");
        let cert = params
            .self_signed(&key)
            .map_err(|e| cert_error("self-signing the CA", e))?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM): what a client's `sslrootcert` points at.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for these host names / IP addresses, signed by this CA.
    pub fn server_cert(&self, names: &[&str]) -> Result<ServerCert, Error> {
        let key = KeyPair::generate().map_err(|e| cert_error("generating a server key", e))?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .map_err(|e| cert_error("the server certificate's names", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "notify-db test server");
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| cert_error("signing the server certificate", e))?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
