//! Source stage: the replication stream of one slot, through pgwire-replication.
//!
//! The stream starts at the slot's `confirmed_flush_lsn` (`0/0`) on the first connection and at
//! the tailer's own durable LSN after a reconnect (PostgreSQL uses the larger of the two, so
//! a slot that rewound after a server crash does not re-send what is already in Kafka).
//! Status updates are sent by pgwire-replication's worker on a timer and on every
//! `reply_requested` keepalive, independently of how slow Kafka is; the only LSN it ever
//! reports is the one passed to [`Source::confirm`]. While the stream is far behind, reads are
//! paced so that it arrives in large pieces ([`crate::relay::read_pacing`]).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgoutput::{Lsn, PgTimestamp};
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};

use crate::config::settings::host_and_port;
use crate::config::SourceConfig;
use crate::error::TailerError;
use crate::relay::read_pacing::ReadPacing;

/// What the replication stream delivers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    Begin {
        final_lsn: Lsn,
        xid: u32,
        commit_time: PgTimestamp,
    },
    /// A pgoutput message other than Begin/Commit (Relation, Insert, …), still encoded.
    Data(Bytes),
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
    },
    /// A logical decoding message (`pg_logical_emit_message`).
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
    Keepalive {
        wal_end: Lsn,
    },
    /// A bounded source (`replay`) has nothing more; a replication stream never ends.
    End,
}

impl SourceEvent {
    /// A name for logs (never the content).
    pub fn kind(&self) -> &'static str {
        match self {
            SourceEvent::Begin { .. } => "begin",
            SourceEvent::Data(_) => "data",
            SourceEvent::Commit { .. } => "commit",
            SourceEvent::Message { .. } => "message",
            SourceEvent::Keepalive { .. } => "keepalive",
            SourceEvent::End => "end",
        }
    }
}

/// The IO seam in front of PostgreSQL.
pub trait Source: Send {
    /// The next event. Must be cancel-safe: it is raced against acks and shutdown.
    fn next(&mut self) -> impl Future<Output = Result<SourceEvent, TailerError>> + Send;
    /// Report `lsn` as flushed; only ever called with a durable, monotonic LSN.
    fn confirm(&mut self, lsn: Lsn);
    /// Make sure the last confirmed LSN reached the server, then end the stream.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// The replication stream of a real server.
pub struct PgSource {
    client: ReplicationClient,
    slot: String,
    confirmed: Lsn,
    pacing: ReadPacing,
}

impl PgSource {
    /// Connect and send START_REPLICATION from `start` (`0/0` = the slot's position).
    pub async fn connect(
        config: &SourceConfig,
        start: Lsn,
        status_interval: Duration,
        pacing: ReadPacing,
    ) -> Result<PgSource, TailerError> {
        let rc = replication_config(config, start, Some(status_interval)).await?;
        let mut client = ReplicationClient::connect(rc)
            .await
            .map_err(|e| crate::pg::errors::replication_error(e, &config.slot))?;
        client
            .wait_started()
            .await
            .map_err(|e| crate::pg::errors::replication_error(e, &config.slot))?;
        Ok(PgSource {
            client,
            slot: config.slot.clone(),
            confirmed: start,
            pacing,
        })
    }

    /// The worker's next event. While the stream is far behind and the socket is empty, the
    /// thread holds off reading for a moment first (see [`crate::relay::read_pacing`]).
    async fn recv(&mut self) -> pgwire_replication::Result<Option<ReplicationEvent>> {
        use futures::FutureExt as _;
        // Only while the worker runs: once it ended, `recv` awaits its result, which must not
        // be dropped half-way (a second `recv` could no longer report it).
        if let Some(pause) = self.pacing.pause().filter(|_| self.client.is_running()) {
            if let Some(event) = self.client.recv().now_or_never() {
                return event;
            }
            // The worker shares this thread: let it read what the socket holds (yielding
            // polls the runtime's IO driver before this task runs again).
            tokio::task::yield_now().await;
            if let Some(event) = self.client.recv().now_or_never() {
                return event;
            }
            // The socket was empty: block the thread (and with it the worker's next read)
            // while the stream piles up. Acks and signals wait as long, and nothing else here
            // is in a hurry while the stream is this far behind.
            std::thread::sleep(pause);
            self.pacing.paused();
        }
        self.client.recv().await
    }
}

/// The replication session's settings for `config` (its first host), starting at `start`.
pub(crate) async fn replication_config(
    config: &SourceConfig,
    start: Lsn,
    status_interval: Option<Duration>,
) -> Result<ReplicationConfig, TailerError> {
    let pg = &config.pg;
    let (host, port) = host_and_port(pg);
    // `hostaddr` says where to connect; `host` stays the name the certificate must match.
    let address = match pg.get_hostaddrs().first() {
        Some(addr) => addr.to_string(),
        None => host.clone(),
    };
    let tls = config.tls.replication(&host, &address, port).await?;
    let password = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let mut rc = ReplicationConfig::new(
        address,
        pg.get_user().unwrap_or("postgres"),
        password,
        pg.get_dbname().unwrap_or("postgres"),
        config.slot.clone(),
        config.publication.clone(),
    )
    .with_port(port)
    .with_tls(tls)
    .with_start_lsn(pgwire_replication::Lsn::from_u64(start.as_u64()))
    // The worker reads ahead into this buffer while our window is full: keep it small so
    // memory stays bounded by the window, not by 8192 messages of any size.
    .with_buffer_size(256)
    .with_application_name("outbox-tailer")
    .with_options("-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3");
    if let Some(interval) = status_interval {
        rc = rc
            .with_status_interval(interval)
            // The worker otherwise only reports on its own after 10 s of silence (its
            // default), relying on the server's reply-requested keepalives: report on our
            // timer instead.
            .with_wakeup_interval(interval);
    }
    if !start.is_zero() {
        rc = rc.with_ack_lsn(pgwire_replication::Lsn::from_u64(start.as_u64()));
    }
    Ok(rc)
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("slot", &self.slot)
            .field("confirmed", &self.confirmed)
            .finish()
    }
}

impl Source for PgSource {
    async fn next(&mut self) -> Result<SourceEvent, TailerError> {
        loop {
            let event = self
                .recv()
                .await
                .map_err(|e| crate::pg::errors::replication_error(e, &self.slot))?;
            let Some(event) = event else {
                return Err(TailerError::Replication {
                    message: "the server ended the replication stream".into(),
                    sqlstate: None,
                    action: crate::error::Action::Retry,
                });
            };
            return Ok(match event {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    self.pacing.keepalive();
                    SourceEvent::Keepalive {
                        wal_end: lsn(wal_end),
                    }
                }
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => {
                    self.pacing.begin(commit_time_micros);
                    SourceEvent::Begin {
                        final_lsn: lsn(final_lsn),
                        xid,
                        commit_time: PgTimestamp::from_pg_micros(commit_time_micros),
                    }
                }
                ReplicationEvent::Commit {
                    lsn: c, end_lsn, ..
                } => SourceEvent::Commit {
                    commit_lsn: lsn(c),
                    end_lsn: lsn(end_lsn),
                },
                ReplicationEvent::XLogData {
                    data,
                    server_time_micros,
                    ..
                } => {
                    self.pacing.data(server_time_micros);
                    SourceEvent::Data(data)
                }
                ReplicationEvent::Message {
                    transactional,
                    lsn: l,
                    prefix,
                    content,
                } => SourceEvent::Message {
                    transactional,
                    lsn: lsn(l),
                    prefix,
                    content,
                },
                _ => continue,
            });
        }
    }

    fn confirm(&mut self, lsn: Lsn) {
        if lsn > self.confirmed {
            self.confirmed = lsn;
            self.client
                .update_applied_lsn(pgwire_replication::Lsn::from_u64(lsn.as_u64()));
        }
    }

    async fn close(mut self) {
        // The worker sends a status update when the applied LSN rises; wait (briefly) until the
        // last one went out so a clean stop leaves nothing to re-send.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while self.client.metrics().last_applied_lsn().as_u64() < self.confirmed.as_u64()
            && Instant::now() < deadline
            && self.client.is_running()
        {
            tick.tick().await;
        }
        let _ = self.client.shutdown().await;
    }
}

fn lsn(l: pgwire_replication::Lsn) -> Lsn {
    Lsn::from(l.as_u64())
}
