//! TLS per `sslmode`, with rustls (ring provider): `disable`, `prefer`, `require` (encrypt, no
//! certificate check, like libpq without a root certificate), `verify-ca` (trusted chain, any
//! host name) and `verify-full` (trusted chain and matching host name or IP address).
//!
//! Every crate that connects (the pools, the migration engine, doctor, xtask) turns
//! `sslmode`/`sslrootcert` into a connector here, so all of them connect the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify_db_config::{DatabaseUri, SslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why a TLS connector could not be built (no password in it: it names only the CA file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS{}: {cause}", path.as_ref().map(|p| format!(" (CA file {})", p.display())).unwrap_or_default())]
pub struct TlsError {
    /// The certificate file at fault, if any.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub cause: String,
}

/// The TLS connector for one URI: none for `sslmode=disable`.
#[derive(Clone)]
pub enum Tls {
    /// Plain TCP (or a Unix socket).
    Off,
    /// rustls, with the verifier `sslmode` asks for.
    Rustls(MakeRustlsConnect),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Off => "Tls::Off",
            Tls::Rustls(_) => "Tls::Rustls",
        })
    }
}

/// Drives a new connection on a task of its own (what it does with the server's messages is
/// the caller's: log errors, collect notices).
pub trait Driver {
    /// Starts driving `conn` until it closes (when its client is dropped); returns the task.
    fn drive<S, T>(self, conn: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Drives a connection and drops its error: it surfaces on the client's next call.
struct Plain;

impl Driver for Plain {
    fn drive<S, T>(self, conn: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            let _ = conn.await;
        })
    }
}

impl Tls {
    /// Connects with this connector and drives the connection on a spawned tokio task.
    pub async fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        Ok(self.connect_with(pg, Plain).await?.0)
    }

    /// Connects with this connector and hands the connection to `driver`.
    pub async fn connect_with<D: Driver>(
        &self,
        pg: &tokio_postgres::Config,
        driver: D,
    ) -> Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error> {
        match self {
            Tls::Off => {
                let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
                Ok((client, driver.drive(conn)))
            }
            Tls::Rustls(make) => {
                let (client, conn) = pg.connect(make.clone()).await?;
                Ok((client, driver.drive(conn)))
            }
        }
    }

    /// Builds the connector for `uri`'s `sslmode` and `sslrootcert`.
    pub fn for_uri(uri: &DatabaseUri) -> Result<Tls, TlsError> {
        let mode = uri.ssl_mode();
        if mode == SslMode::Disable {
            return Ok(Tls::Off);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(NoCertCheck {
                algorithms: provider.signature_verification_algorithms,
            }),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = load_roots(uri.ssl_root_cert())?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError {
                            path: uri.ssl_root_cert().map(Path::to_path_buf),
                            cause: format!("cannot build the certificate verifier: {e}"),
                        })?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyHostName { inner: webpki })
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError {
                path: None,
                cause: format!("no usable TLS protocol version: {e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Tls::Rustls(MakeRustlsConnect::new(config)))
    }
}

/// Reads the CA certificates: `sslrootcert`, else `~/.postgresql/root.crt` as libpq does.
fn load_roots(path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let path: PathBuf = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            match home.map(|h| h.join(".postgresql/root.crt")) {
                Some(p) if p.exists() => p,
                _ => {
                    return Err(TlsError {
                        path: None,
                        cause: "sslmode verify-ca/verify-full needs CA certificates: set \
                                sslrootcert=/path/to/ca.crt in the URI (or provide \
                                ~/.postgresql/root.crt)"
                            .to_owned(),
                    });
                }
            }
        }
    };
    let tls_err = |cause: String| TlsError {
        path: Some(path.clone()),
        cause,
    };
    let mut roots = RootCertStore::empty();
    let iter = CertificateDer::pem_file_iter(&path)
        .map_err(|e| tls_err(format!("cannot read the CA certificate file: {e}")))?;
    for cert in iter {
        let cert = cert.map_err(|e| tls_err(format!("invalid PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| tls_err(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls_err("no certificate in the CA file".to_owned()));
    }
    Ok(roots)
}

/// `require`/`prefer`: encrypt, but accept any certificate (the handshake signature is still checked).
#[derive(Debug)]
struct NoCertCheck {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoCertCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct AnyHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
