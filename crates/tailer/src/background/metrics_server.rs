//! The HTTP endpoint of a running tailer: `/metrics` (Prometheus text exposition), `/healthz`
//! (the relay loop is not wedged: [`crate::metrics::health`]) and `/readyz` (streaming, and
//! confirming when there is something to confirm).

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

/// What `/healthz` and `/readyz` allow before they answer 503.
#[derive(Debug, Clone, Copy)]
pub struct ProbeLimits {
    /// `/readyz`: events in flight and nothing confirmed for longer than this.
    pub ready_max_stall: Duration,
    /// `/healthz`: the relay loop has not turned for longer than this.
    pub wedged_after: Duration,
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    limits: ProbeLimits,
) -> Result<MetricsServer, TailerError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        TailerError::Config(format!(
            "cannot serve metrics on {addr}: {e} (choose another --metrics-addr)"
        ))
    })?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        addr = %addr,
        wedged_after_secs = limits.wedged_after.as_secs_f64(),
        "serving /metrics, /healthz and /readyz"
    );
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
                    async move { Ok::<_, Infallible>(respond(&metrics, &method, &path, limits)) }
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
    method: &Method,
    path: &str,
    limits: ProbeLimits,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        res
    };
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => match metrics.liveness(limits.wedged_after) {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(reason) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{reason}\n"),
            ),
        },
        "/readyz" => match metrics.readiness(limits.ready_max_stall) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const LIMITS: ProbeLimits = ProbeLimits {
        ready_max_stall: Duration::from_secs(60),
        wedged_after: Duration::from_secs(60),
    };

    async fn get(metrics: &Metrics, path: &str) -> (StatusCode, String) {
        let res = respond(metrics, &Method::GET, path, LIMITS);
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_answers_503_with_the_reason_once_the_loop_is_wedged() {
        let metrics = Metrics::new();
        assert_eq!(get(&metrics, "/healthz").await.0, StatusCode::OK);
        let in_loop = metrics.heartbeat.enter();
        assert_eq!(get(&metrics, "/healthz").await.0, StatusCode::OK);
        metrics.heartbeat.turned_ago(Duration::from_secs(90));
        let (status, body) = get(&metrics, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("has not turned for 90"), "{body}");
        in_loop.turn();
        assert_eq!(get(&metrics, "/healthz").await.0, StatusCode::OK);
        drop(in_loop);
        assert_eq!(get(&metrics, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_keeps_its_rule() {
        let metrics = Metrics::new();
        let (status, body) = get(&metrics, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not streaming"), "{body}");
        metrics.streaming.set(1);
        assert_eq!(get(&metrics, "/readyz").await.0, StatusCode::OK);
    }
}
