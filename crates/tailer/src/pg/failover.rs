//! Failover: failover slots (PostgreSQL 17+), finding the primary among several hosts, and the
//! checks the tailer makes before it streams from a server it has not streamed from before.
//!
//! ```text
//!   hosts a,b ──▶ the one not in recovery ──▶ same system and timeline as last time? ── yes ──▶ stream
//!                                                     │ no (promoted standby, other host)
//!                                                     ▼
//!          the slot exists, is not invalidated, was synchronised (synced), and the old primary
//!          held logical walsenders back for the standby (synchronized_standby_slots)
//!                 │ all true                                   │ otherwise
//!                 ▼                                            ▼
//!     stream from the slot's own position               stop with the runbook (docs/ha.md)
//! ```
//!
//! Without `synchronized_standby_slots` the tailer may have published transactions the standby
//! never received; after a promotion the new timeline forks before them, and streaming from the
//! tailer's own position would skip the new timeline's first transactions. The tailer therefore
//! refuses to follow such a failover rather than lose events.

use tokio_postgres::Client;

use crate::config::SourceConfig;
use crate::error::{Action, TailerError};
use crate::pg::connect::connect_to;

/// Which server the tailer streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `host:port`.
    pub host: String,
    pub system_id: String,
    pub timeline: u32,
}

/// The primary found among the connection's hosts, as a one-host source.
#[derive(Debug, Clone)]
pub struct Located {
    pub source: SourceConfig,
    pub identity: Identity,
}

/// The server to stream from: with one host, that host; with several, the first that is not
/// in recovery (a standby cannot be written, so a promoted one is found after a failover).
pub async fn locate(config: &SourceConfig) -> Result<Located, TailerError> {
    let hosts = config.pg.get_hosts().len();
    let mut refused = Vec::new();
    for i in 0..hosts.max(1) {
        let source = one_host(config, i);
        match probe(&source).await {
            Ok((in_recovery, _)) if hosts > 1 && in_recovery => {
                refused.push(format!("{}: in recovery (a standby)", describe(&source)));
            }
            Ok((_, identity)) => return Ok(Located { source, identity }),
            Err(e) if hosts > 1 && e.is_transient() => {
                refused.push(format!("{}: {e}", describe(&source)));
            }
            Err(e) => return Err(e),
        }
    }
    Err(TailerError::Replication {
        message: format!(
            "no primary among the hosts of the connection ({}); waiting for one (a promotion)",
            refused.join("; ")
        ),
        sqlstate: None,
        action: Action::Retry,
    })
}

/// On a replication session (what the tailer's role may always open): whether the server is
/// in recovery, and IDENTIFY_SYSTEM.
async fn probe(source: &SourceConfig) -> Result<(bool, Identity), TailerError> {
    let rc = crate::relay::source::replication_config(source, pgoutput::Lsn::ZERO, None).await?;
    let fail = |e| crate::pg::errors::replication_error(e, &source.slot);
    let mut client = pgwire_replication::ReplicationClient::connect_gated(rc)
        .await
        .map_err(fail)?;
    let probed = async {
        let rows = client
            .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
            .await?;
        let in_recovery = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .is_some_and(|v| v.as_ref() == b"t");
        let system = client.identify_system().await?;
        Ok((in_recovery, system))
    }
    .await;
    // Dropping a gated session before START_REPLICATION ends it (shutdown would wait for a start).
    drop(client);
    let (in_recovery, system) = probed.map_err(fail)?;
    Ok((
        in_recovery,
        Identity {
            host: describe(source),
            system_id: system.system_id,
            timeline: system.timeline,
        },
    ))
}

/// The failover state of a slot and its server (PostgreSQL 17+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub in_recovery: bool,
    /// `synchronized_standby_slots` (empty: logical decoding waits for no standby).
    pub standby_slots: String,
    pub failover: bool,
    pub synced: bool,
}

impl Settings {
    /// A failover would keep everything: a failover slot on a primary that holds logical
    /// decoding back for its standbys.
    pub fn guarded(&self) -> bool {
        self.failover && !self.standby_slots.trim().is_empty()
    }
}

/// The slot's failover settings; `None` before PostgreSQL 17.
pub async fn settings(client: &Client, slot: &str) -> Result<Option<Settings>, TailerError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 170000, \
                    pg_catalog.pg_is_in_recovery(), \
                    coalesce(current_setting('synchronized_standby_slots', true), ''), \
                    (SELECT to_jsonb(s) ->> 'failover' FROM pg_catalog.pg_replication_slots s \
                     WHERE slot_name = $1), \
                    (SELECT to_jsonb(s) ->> 'synced' FROM pg_catalog.pg_replication_slots s \
                     WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the failover settings", e))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    Ok(Some(Settings {
        in_recovery: row.get(1),
        standby_slots: row.get(2),
        failover: row.get::<_, Option<String>>(3).as_deref() == Some("true"),
        synced: row.get::<_, Option<String>>(4).as_deref() == Some("true"),
    }))
}

/// Before streaming from a server other than the last one (a promoted standby, or another
/// host): the slot must be there, usable, synchronised from the old primary, and the old
/// primary must have held logical decoding back for the standby. Fails closed otherwise.
pub async fn check_followed(
    located: &Located,
    previous: &Identity,
    was_guarded: Option<bool>,
) -> Result<(), TailerError> {
    let slot = &located.source.slot;
    let client = connect_to(&located.source.pg, &located.source.tls).await?;
    let row = client
        .query_opt(
            "SELECT to_jsonb(s) ->> 'synced', wal_status, \
                    to_jsonb(s) ->> 'invalidation_reason' \
             FROM pg_catalog.pg_replication_slots s WHERE slot_name = $1",
            &[slot],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the slot after a failover", e))?;
    let moved = format!(
        "the tailer followed a failover from {} (timeline {}) to {} (timeline {})",
        previous.host, previous.timeline, located.identity.host, located.identity.timeline
    );
    let fail = |why: String| {
        TailerError::Database(format!(
            "{moved}, but {why}. Nothing was streamed from it. Follow \"After a failover\" in \
             docs/ha.md"
        ))
    };
    // Known unguarded (17+): whatever the standby holds, its timeline may fork before what was
    // published.
    if was_guarded == Some(false) {
        return Err(fail(
            "the old primary did not list the standby in synchronized_standby_slots (or the slot \
             was not a failover slot), so the tailer may have published transactions the \
             standby never received, and the new timeline may fork before its position"
                .into(),
        ));
    }
    let Some(row) = row else {
        return Err(fail(format!(
            "slot {slot} does not exist there: before PostgreSQL 17, or without a failover slot \
             (`setup --failover`) and `sync_replication_slots` on the standby, a promotion \
             loses the slot"
        )));
    };
    let synced: Option<String> = row.get(0);
    let wal_status: Option<String> = row.get(1);
    let reason: Option<String> = row.get(2);
    if wal_status.as_deref() == Some("lost") || reason.is_some() {
        return Err(fail(format!(
            "slot {slot} there is invalidated ({})",
            reason.as_deref().unwrap_or("wal_status lost")
        )));
    }
    if synced.as_deref() != Some("true") {
        return Err(fail(format!(
            "slot {slot} there was not synchronised from the old primary (synced is not true): \
             its position says nothing about what was published"
        )));
    }
    if previous.system_id != located.identity.system_id {
        tracing::warn!(
            from = %previous.system_id,
            to = %located.identity.system_id,
            "the server's system identifier changed"
        );
    }
    Ok(())
}

/// Turn failover on for an existing slot: `ALTER_REPLICATION_SLOT` on a replication session
/// (PostgreSQL 17+). Refused while a tailer streams from the slot: the server would wait for
/// the slot to be released.
pub async fn enable(client: &Client, config: &SourceConfig) -> Result<(), TailerError> {
    let in_use = |pid: String| {
        TailerError::Database(format!(
            "cannot turn on failover for slot {}: a tailer is streaming from it (PID {pid}); stop \
             it, run `outbox-tailer setup --failover` again, then start it",
            config.slot
        ))
    };
    let active: Option<i32> = client
        .query_one(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&config.slot],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the slot", e))?
        .get(0);
    if let Some(pid) = active {
        return Err(in_use(pid.to_string()));
    }
    let rc = crate::relay::source::replication_config(config, pgoutput::Lsn::ZERO, None).await?;
    let mut session = pgwire_replication::ReplicationClient::connect_gated(rc)
        .await
        .map_err(|e| crate::pg::errors::replication_error(e, &config.slot))?;
    // A tailer that starts meanwhile makes the server wait: not for long.
    let altered = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        session.simple_query(&format!(
            "ALTER_REPLICATION_SLOT \"{}\" ( FAILOVER true )",
            config.slot
        )),
    )
    .await;
    // Dropping a gated session before START_REPLICATION ends it (shutdown would wait for a start).
    drop(session);
    match altered {
        Err(_) => Err(in_use("unknown".into())),
        Ok(result) => result.map(|_| ()).map_err(|e| {
            let e = crate::pg::errors::replication_error(e, &config.slot);
            if e.sqlstate() == Some("55006") {
                in_use("unknown".into())
            } else {
                e
            }
        }),
    }
}

/// Host `i` of the connection alone (and its port and `hostaddr`), for a session on that
/// server only.
fn one_host(config: &SourceConfig, i: usize) -> SourceConfig {
    let pg = &config.pg;
    let mut single = tokio_postgres::Config::new();
    if let Some(host) = pg.get_hosts().get(i) {
        match host {
            tokio_postgres::config::Host::Tcp(h) => single.host(h),
            tokio_postgres::config::Host::Unix(p) => single.host_path(p),
        };
    }
    if let Some(addr) = pg.get_hostaddrs().get(i) {
        single.hostaddr(*addr);
    }
    let ports = pg.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        single.port(*port);
    }
    if let Some(user) = pg.get_user() {
        single.user(user);
    }
    if let Some(password) = pg.get_password() {
        single.password(password);
    }
    if let Some(db) = pg.get_dbname() {
        single.dbname(db);
    }
    if let Some(name) = pg.get_application_name() {
        single.application_name(name);
    }
    if let Some(options) = pg.get_options() {
        single.options(options);
    }
    if let Some(timeout) = pg.get_connect_timeout() {
        single.connect_timeout(*timeout);
    }
    single.ssl_mode(pg.get_ssl_mode());
    SourceConfig {
        pg: single,
        ..config.clone()
    }
}

fn describe(config: &SourceConfig) -> String {
    let (host, port) = crate::config::settings::host_and_port(&config.pg);
    format!("{host}:{port}")
}
