//! A TLS front for a plaintext broker: tansu 0.6 cannot serve TLS itself, so tests of the
//! tailer's Kafka TLS settings reach it through this terminator.
//!
//! ```text
//!   client ──TLS──▶ TlsFront (127.0.0.1:front) ──plain──▶ tansu (127.0.0.1:broker)
//! ```
//!
//! The broker must advertise the front's address (see [`TansuBroker::start_behind`]), or
//! clients would follow the metadata to the plaintext port.
//!
//! [`TansuBroker::start_behind`]: crate::TansuBroker::start_behind

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::ServerCert;

/// Terminates TLS on its own port and forwards each connection to the broker; stops on drop.
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    /// Listen on `port` (a free one) and forward to `127.0.0.1:broker_port`.
    pub fn start(cert: &ServerCert, port: u16, broker_port: u16) -> anyhow::Result<TlsFront> {
        let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the front's certificate")?;
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
            .context("reading the front's key")?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the front's certificate")?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("binding the TLS front to port {port}"))?;
        listener.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let broker: SocketAddr = ([127, 0, 0, 1], broker_port).into();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    _ = stop_rx => {}
                    _ = serve(listener, acceptor, broker) => {}
                }
            });
        });
        Ok(TlsFront {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, broker: SocketAddr) {
    while let Ok((client, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A failed handshake (a plaintext client, a client refusing our certificate) just
            // closes the connection, as a TLS listener would.
            let Ok(mut tls) = acceptor.accept(client).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(broker).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
        });
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
