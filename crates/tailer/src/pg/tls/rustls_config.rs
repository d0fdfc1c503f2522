//! The rustls client configuration of the SQL connections, and the certificate verifiers of
//! the modes that check less than `verify-full`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{PgTls, RootCert, SslMode};
use crate::error::TailerError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PgTls {
    /// The CA file: `sslrootcert`, else libpq's default `~/.postgresql/root.crt` when a
    /// verifying mode needs one.
    pub(super) fn roots(&self) -> Result<Option<RootCert>, TailerError> {
        self.roots_with_home(std::env::var_os("HOME").as_deref().map(Path::new))
    }

    pub(super) fn roots_with_home(
        &self,
        home: Option<&Path>,
    ) -> Result<Option<RootCert>, TailerError> {
        if let Some(root) = &self.root_cert {
            return Ok(Some(root.clone()));
        }
        if !matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Ok(None);
        }
        let default = home
            .map(|home| home.join(".postgresql/root.crt"))
            .filter(|p| p.is_file());
        match default {
            Some(path) => Ok(Some(RootCert::File(path))),
            None => Err(TailerError::Config(
                "sslmode=verify-ca/verify-full needs the CA that signed the server's certificate: \
                 set sslrootcert=/path/to/ca.pem in the connection string (or sslrootcert=system \
                 for a publicly signed server)"
                    .into(),
            )),
        }
    }

    /// The connector of the SQL connections (setup, preflight, status, peek, poll, watchdog).
    pub(crate) fn connector(
        &self,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, TailerError> {
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
            self.client_config()?,
        ))
    }

    /// The rustls configuration of this mode: roots, client certificate, verifier.
    pub(super) fn client_config(&self) -> Result<ClientConfig, TailerError> {
        let provider = provider();
        let mut store = RootCertStore::empty();
        match self.roots()? {
            Some(RootCert::File(path)) => {
                let (added, _) = store.add_parsable_certificates(read_certs(&path, "sslrootcert")?);
                if added == 0 {
                    return Err(TailerError::Config(format!(
                        "sslrootcert {} holds no usable CA certificate",
                        path.display()
                    )));
                }
            }
            Some(RootCert::System) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            None => {}
        }
        let store = Arc::new(store);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TailerError::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(Arc::clone(&store));
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert, "sslcert")?, read_key(key)?)
                .map_err(|e| {
                    TailerError::Config(format!("sslcert/sslkey are not a usable pair: {e}"))
                })?,
            _ => builder.with_no_client_auth(),
        };
        match self.mode {
            SslMode::VerifyFull => {}
            SslMode::VerifyCa => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    store,
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| TailerError::Config(format!("TLS setup: {e}")))?;
                config
                    .dangerous()
                    .set_certificate_verifier(Arc::new(Lenient {
                        chain: Some(inner),
                        algorithms: provider.signature_verification_algorithms,
                    }));
            }
            // prefer/require: encryption without authentication of the server, as in libpq.
            _ => config
                .dangerous()
                .set_certificate_verifier(Arc::new(Lenient {
                    chain: None,
                    algorithms: provider.signature_verification_algorithms,
                })),
        }
        Ok(config)
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TailerError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        TailerError::Config(format!(
            "{what} {}: cannot read PEM certificates: {e}",
            path.display()
        ))
    };
    CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TailerError> {
    // The error names the file, never its content.
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TailerError::Config(format!(
            "sslkey {}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        ))
    })
}

/// What libpq checks below `verify-full`: with `chain` (`verify-ca`) the chain against the CA
/// but not the host name; without it (`prefer`, `require`) nothing about the certificate. The
/// handshake signatures are always checked.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
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
