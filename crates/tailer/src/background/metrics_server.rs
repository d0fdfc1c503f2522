//! The HTTP endpoint of a running tailer: `/metrics` (Prometheus text exposition), `/healthz`
//! (the process is alive) and `/readyz` (streaming, and confirming when there is something to
//! confirm).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::TailerError;
use crate::metrics::Metrics;

/// The running HTTP endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    max_stall: Duration,
) -> Result<MetricsServer, TailerError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        TailerError::Config(format!(
            "cannot serve metrics on {addr}: {e} (choose another --metrics-addr)"
        ))
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %addr, "serving /metrics, /healthz and /readyz");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    async move { Ok::<_, Infallible>(respond(&metrics, &req, max_stall)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

fn respond(
    metrics: &Metrics,
    req: &Request<Incoming>,
    max_stall: Duration,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        res
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match metrics.readiness(max_stall) {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(reason) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {reason}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
