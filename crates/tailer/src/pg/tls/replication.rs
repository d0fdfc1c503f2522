//! The TLS settings of the replication stream, for pgwire-replication.
//!
//! pgwire-replication 0.5 checks `verify-ca` by accepting rustls' `NotValidForName` error, but
//! the rustls it builds with reports a name mismatch as `NotValidForNameContext`, so its
//! `verify-ca` rejects every certificate whose names do not include the host. Until it is
//! fixed there, `verify-ca` is done in two steps:
//!
//! ```text
//!   1. probe: SSLRequest + handshake with our chain-only verifier ─▶ a DNS name the
//!      (CA-verified) certificate lists; the connection is then closed
//!   2. stream: pgwire-replication in verify-full against that name: the chain is checked
//!      against the same CA, and the name matches by construction
//! ```

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{advice, PgTls, RootCert, SslMode};
use crate::error::TailerError;

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl PgTls {
    /// The TLS configuration of the replication connection to `address:port`; `tls_name` is
    /// the name the certificate must match (`host`, also when `hostaddr` gives the address).
    pub(crate) async fn replication(
        &self,
        tls_name: &str,
        address: &str,
        port: u16,
    ) -> Result<pgwire_replication::TlsConfig, TailerError> {
        use pgwire_replication::SslMode as M;
        let (mode, name) = match self.mode {
            SslMode::Disable => (M::Disable, tls_name.to_owned()),
            SslMode::Prefer => (M::Prefer, tls_name.to_owned()),
            SslMode::Require => (M::Require, tls_name.to_owned()),
            SslMode::VerifyCa => (
                M::VerifyFull,
                self.name_in_certificate(tls_name, address, port).await?,
            ),
            SslMode::VerifyFull => (M::VerifyFull, tls_name.to_owned()),
        };
        let ca_pem_path = match self.roots()? {
            Some(RootCert::File(path)) => Some(path),
            // pgwire-replication falls back to the same webpki roots itself.
            Some(RootCert::System) | None => None,
        };
        Ok(pgwire_replication::TlsConfig {
            mode,
            ca_pem_path,
            // Also for an IP address: verify-full then checks the certificate's IP entries,
            // as libpq does, instead of refusing.
            sni_hostname: Some(name),
            client_cert_pem_path: self.client_cert.clone(),
            client_key_pem_path: self.client_key.clone(),
        })
    }

    /// Handshake once with the chain-only verifier and return a DNS name the server's
    /// certificate lists (`tls_name` when it lists none).
    async fn name_in_certificate(
        &self,
        tls_name: &str,
        address: &str,
        port: u16,
    ) -> Result<String, TailerError> {
        let unreachable = |e: std::io::Error| {
            TailerError::Unreachable(format!(
                "cannot reach PostgreSQL at {address}:{port} for the TLS handshake: {e}"
            ))
        };
        let refused = |text: String| TailerError::Replication {
            message: match advice(&text) {
                Some(advice) => format!("{text}: {advice}"),
                None => format!("{text}: check sslmode, sslrootcert and the server's certificate"),
            },
            sqlstate: None,
            action: crate::error::Action::FixConfig,
        };
        let config = Arc::new(self.client_config()?);
        let mut tcp = TcpStream::connect((address, port))
            .await
            .map_err(unreachable)?;
        tcp.write_all(&SSL_REQUEST).await.map_err(unreachable)?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(unreachable)?;
        if answer[0] != b'S' {
            return Err(refused(
                "the server does not support TLS (SSLRequest rejected)".into(),
            ));
        }
        let server_name = ServerName::try_from(tls_name.to_owned())
            .map_err(|_| refused(format!("{tls_name:?} is not a valid TLS server name")))?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| refused(format!("TLS handshake failed: {e}")))?;
        let leaf: Option<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.clone().into_owned());
        let _ = tls.shutdown().await;
        let name = leaf.as_ref().and_then(|der| {
            let cert = webpki::EndEntityCert::try_from(der).ok()?;
            let name = cert.valid_dns_names().next()?;
            // A wildcard stands for any one label.
            Some(match name.strip_prefix("*.") {
                Some(rest) => format!("outbox-tailer.{rest}"),
                None => name.to_owned(),
            })
        });
        Ok(name.unwrap_or_else(|| tls_name.to_owned()))
    }
}
