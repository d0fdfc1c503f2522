//! Security: TLS to PostgreSQL (sslmode require / verify-ca / verify-full with a CA and server
//! certificate generated here), SCRAM passwords from every source, a least-privilege role,
//! Kafka SASL against tansu, and secrets that never reach logs or `--help`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use outbox_tailer::config::{Command as TailerCommand, CommandLine, SourceConfig};
use outbox_tailer::relay::source::PgSource;
use outbox_tailer::TailerError;
use outbox_testkit::{PgConfig, ServerCert, TansuBroker, TansuStorage};
use pgoutput::Lsn;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use support::*;

const TOPIC: &str = "outbox.event.order";
const RELAY_PASSWORD: &str = "relay-pw-5b1e9";

/// The tailer's role may connect only over TLS, with a SCRAM password; `postgres` (the
/// fixtures' superuser) keeps trust so the tests can set up and inspect.
const HOSTSSL_HBA: &str = "\
local    all          all                    trust
host     all          postgres  127.0.0.1/32 trust
host     replication  postgres  127.0.0.1/32 trust
hostssl  all          relay     127.0.0.1/32 scram-sha-256
hostssl  replication  relay     127.0.0.1/32 scram-sha-256
hostssl  all          certrelay 127.0.0.1/32 cert
hostssl  replication  certrelay 127.0.0.1/32 cert
";

/// SCRAM for everyone but `postgres`, TLS not involved.
const SCRAM_HBA: &str = "\
local   all          all                    trust
host    all          postgres  127.0.0.1/32 trust
host    replication  postgres  127.0.0.1/32 trust
host    all          all       127.0.0.1/32 scram-sha-256
host    replication  all       127.0.0.1/32 scram-sha-256
";

/// A test certificate authority.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// A server certificate for `names`, signed by this CA.
    fn server_cert(&self, names: &[&str]) -> anyhow::Result<ServerCert> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "outbox test server");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_ca_pem: Some(self.issuer.pem()),
        })
    }

    /// A client certificate for user `cn` (PostgreSQL's `cert` method matches the CN), as
    /// (certificate, key) files in `dir`.
    fn client_cert(&self, cn: &str, dir: &std::path::Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let (cert_file, key_file) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok((cert_file, key_file))
    }

    /// The CA certificate as a file in `dir`.
    fn write(&self, dir: &std::path::Path, name: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, self.issuer.pem())?;
        Ok(path)
    }
}

/// A cluster serving TLS with a certificate for `localhost`, `relay` allowed only over TLS.
struct TlsEnv {
    env: Env,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    /// Certificate and key of `certrelay`, signed by the cluster's CA.
    client_cert: (PathBuf, PathBuf),
}

async fn tls_env() -> anyhow::Result<TlsEnv> {
    let ca = TestCa::new("outbox test CA")?;
    let other = TestCa::new("some other CA")?;
    let config = PgConfig::default()
        .hba(HOSTSSL_HBA)
        .tls(ca.server_cert(&["localhost"])?);
    let env = env_with(config, TansuStorage::Memory).await?;
    create_relay_role(&env).await?;
    env.setup().await?;
    let ca_file = ca.write(env.pg.socket_dir(), "ca.pem")?;
    let other_ca_file = other.write(env.pg.socket_dir(), "other-ca.pem")?;
    let client_cert = ca.client_cert("certrelay", env.pg.socket_dir())?;
    Ok(TlsEnv {
        env,
        ca_file,
        other_ca_file,
        client_cert,
    })
}

/// The least-privilege role: LOGIN REPLICATION and SELECT on the outbox; neither superuser
/// nor owner of anything.
async fn create_relay_role(env: &Env) -> anyhow::Result<()> {
    env.client
        .batch_execute(&format!(
            "CREATE ROLE relay LOGIN REPLICATION PASSWORD '{RELAY_PASSWORD}'; \
             GRANT SELECT ON outbox TO relay"
        ))
        .await?;
    Ok(())
}

/// `host=… port=… user=relay dbname=…` plus `extra`.
fn relay_conn(env: &Env, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user=relay dbname={} {extra}",
        env.db.port, env.db.name
    )
}

/// The flags of `run` for `conn`, against this environment's broker.
fn run_flags(env: &Env, conn: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--postgres".into(),
        conn.into(),
        "--brokers".into(),
        env.broker.bootstrap_servers(),
        "--create-topics".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The resolved source settings of `--postgres conn [--postgres-password password]`.
fn source_config(conn: &str, password: Option<&str>) -> SourceConfig {
    let mut argv = vec!["outbox-tailer", "setup", "--postgres", conn];
    if let Some(pw) = password {
        argv.extend(["--postgres-password", pw]);
    }
    match CommandLine::try_parse_from(argv)
        .expect("valid flags")
        .command
    {
        TailerCommand::Setup(args) => args.db.resolve().expect("valid configuration"),
        _ => unreachable!(),
    }
}

/// Open the replication stream as `run` would, then close it.
async fn replication_connect(source: &SourceConfig) -> Result<(), TailerError> {
    use outbox_tailer::relay::source::Source as _;
    let pacing = outbox_tailer::relay::read_pacing::ReadPacing::default();
    let s = PgSource::connect(source, Lsn::from(0), Duration::from_secs(1), pacing).await?;
    s.close().await;
    Ok(())
}

/// The tailer binary with `args` and `envs`; stderr goes to a file in the cluster's directory.
fn spawn(env: &Env, args: &[String], envs: &[(&str, &str)]) -> anyhow::Result<TailerProcess> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let log = env.pg.socket_dir().join(format!(
        "security-{}.log",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("OUTBOX_POSTGRES_PASSWORD")
        .env_remove("OUTBOX_POSTGRES")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok(TailerProcess { child, log })
}

/// Commit `n` events for aggregate `agg`; returns their ids.
async fn write_events(env: &Env, agg: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = emit(
            &env.client,
            "order",
            agg,
            "OrderPlaced",
            &serde_json::json!({ "n": i }),
        )
        .await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// Wait until every id in `ids` was published to `TOPIC`.
async fn consumed(env: &Env, ids: &[String]) -> anyhow::Result<()> {
    let want = ids.to_vec();
    let records = outbox_testkit::consume_until(
        &env.broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(120),
        move |records| {
            want.iter()
                .all(|id| records.iter().any(|r| r.header("id") == Some(id.as_str())))
        },
    )
    .await?;
    assert!(!records.is_empty());
    Ok(())
}

/// True when `relay` has a TLS-encrypted replication connection (the tailer's walsender).
async fn relay_streams_over_tls(env: &Env) -> anyhow::Result<bool> {
    let n: i64 = env
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'relay' AND a.backend_type = 'walsender' AND s.ssl",
            &[],
        )
        .await?
        .get(0);
    Ok(n > 0)
}

/// Assert a fatal (not retried) error whose message holds every phrase.
fn assert_fatal(result: Result<impl std::fmt::Debug, TailerError>, phrases: &[&str]) {
    let e = result.expect_err("the connection must be refused");
    assert!(!e.is_transient(), "must not be retried: {e}");
    let text = e.to_string();
    for phrase in phrases {
        assert!(text.contains(phrase), "{phrase:?} missing from: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_streams_over_tls_with_verify_full_and_require() -> anyhow::Result<()> {
    let t = tls_env().await?;
    let env = &t.env;
    let ca = t.ca_file.display().to_string();

    // verify-full: the chain is checked against our CA and the name against `localhost`.
    let conn = relay_conn(
        env,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let mut p = spawn(
        env,
        &run_flags(env, &conn, &["--postgres-password", RELAY_PASSWORD]),
        &[],
    )?;
    let ids = write_events(env, "a-1", 5).await?;
    consumed(env, &ids).await?;
    assert!(
        relay_streams_over_tls(env).await?,
        "the replication connection is encrypted"
    );
    let status = p.terminate()?;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", p.stderr());

    // require: encrypted, no verification (and no sslrootcert, which would mean verify-ca).
    let conn = relay_conn(env, "127.0.0.1", "sslmode=require");
    let mut p = spawn(
        env,
        &run_flags(env, &conn, &[]),
        &[("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)],
    )?;
    let ids = write_events(env, "a-2", 5).await?;
    consumed(env, &ids).await?;
    assert!(relay_streams_over_tls(env).await?);
    let status = p.terminate()?;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", p.stderr());

    // The operator commands and the polling relay connect the same way (the role is allowed
    // over TLS only, so success means TLS). poll marks rows: it needs UPDATE too.
    let conn = relay_conn(
        env,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    for command in ["status", "peek"] {
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args([command, "--postgres", &conn])
            .env("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)
            .output()?;
        assert!(
            out.status.success(),
            "{command} over TLS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.client
        .batch_execute("GRANT UPDATE ON outbox TO relay")
        .await?;
    let mut args = run_flags(env, &conn, &["--interval-ms", "100"]);
    args[0] = "poll".into();
    let mut p = spawn(env, &args, &[("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)])?;
    let all_marked = || async {
        let n: i64 = env
            .client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        Ok(n == 0)
    };
    if let Err(e) = wait_until(Duration::from_secs(60), "poll to publish", all_marked).await {
        panic!("{e}:\n{}", p.stderr());
    }
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_without_a_password() -> anyhow::Result<()> {
    let t = tls_env().await?;
    let env = &t.env;
    env.client
        .batch_execute(
            "CREATE ROLE certrelay LOGIN REPLICATION; GRANT SELECT ON outbox TO certrelay",
        )
        .await?;
    let (cert, key) = &t.client_cert;
    let conn = format!(
        "host=localhost port={} user=certrelay dbname={} sslmode=verify-full sslrootcert={} \
         sslcert={} sslkey={}",
        env.db.port,
        env.db.name,
        t.ca_file.display(),
        cert.display(),
        key.display()
    );
    let mut p = spawn(env, &run_flags(env, &conn, &[]), &[])?;
    let ids = write_events(env, "c-1", 3).await?;
    consumed(env, &ids).await?;
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());

    // Without the certificate the `cert` rule refuses the role.
    let bare = source_config(
        &format!(
            "host=localhost port={} user=certrelay dbname={} sslmode=verify-full sslrootcert={}",
            env.db.port,
            env.db.name,
            t.ca_file.display()
        ),
        None,
    );
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&bare, false).await,
        &[
            "requires a valid client certificate",
            "set sslcert and sslkey",
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_misconfigurations_fail_at_once_with_a_clear_error() -> anyhow::Result<()> {
    let t = tls_env().await?;
    let env = &t.env;
    let (ca, other) = (
        t.ca_file.display().to_string(),
        t.other_ca_file.display().to_string(),
    );
    let pw = Some(RELAY_PASSWORD);

    // A CA that did not sign the server's certificate: SQL and replication connections.
    let wrong_ca = source_config(
        &relay_conn(
            env,
            "localhost",
            &format!("sslmode=verify-full sslrootcert={other}"),
        ),
        pw,
    );
    let phrases = ["not signed by a CA in sslrootcert", "UnknownIssuer"];
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&wrong_ca, false).await,
        &phrases,
    );
    assert_fatal(replication_connect(&wrong_ca).await, &phrases);

    // A host name the certificate does not list (connecting to 127.0.0.1 under that name).
    let wrong_name = source_config(
        &relay_conn(
            env,
            "db.wrong.test",
            &format!("hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"),
        ),
        pw,
    );
    let phrases = ["not valid for this host name", "verify-ca"];
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&wrong_name, false).await,
        &phrases,
    );
    assert_fatal(replication_connect(&wrong_name).await, &phrases);

    // verify-ca checks the chain only: the same wrong name is accepted by both connections.
    let chain_only = source_config(
        &relay_conn(
            env,
            "db.wrong.test",
            &format!("hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert={ca}"),
        ),
        pw,
    );
    outbox_tailer::pg::setup::preflight(&chain_only, false).await?;
    replication_connect(&chain_only).await?;
    // …but not a CA that did not sign the certificate.
    let chain_wrong_ca = source_config(
        &relay_conn(
            env,
            "db.wrong.test",
            &format!("hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert={other}"),
        ),
        pw,
    );
    let phrases = ["not signed by a CA in sslrootcert"];
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&chain_wrong_ca, false).await,
        &phrases,
    );
    assert_fatal(replication_connect(&chain_wrong_ca).await, &phrases);

    // hostssl only: a connection without TLS is refused, and the message says to use TLS.
    let plain = source_config(&relay_conn(env, "127.0.0.1", "sslmode=disable"), pw);
    let phrases = ["no encryption", "hostssl", "sslmode="];
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&plain, false).await,
        &phrases,
    );
    assert_fatal(replication_connect(&plain).await, &phrases);

    // The binary exits on its own with the message (no retry loop).
    let conn = relay_conn(
        env,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={other}"),
    );
    let mut p = spawn(
        env,
        &run_flags(env, &conn, &["--postgres-password", RELAY_PASSWORD]),
        &[],
    )?;
    let status = p.wait_exit(Duration::from_secs(30)).await?;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", p.stderr());
    assert!(
        p.stderr().contains("not signed by a CA in sslrootcert"),
        "{}",
        p.stderr()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_from_flag_env_and_connection_string_and_a_wrong_one_fails_fast(
) -> anyhow::Result<()> {
    let env = env_with(PgConfig::default().hba(SCRAM_HBA), TansuStorage::Memory).await?;
    create_relay_role(&env).await?;
    env.setup().await?;
    let conn = relay_conn(&env, "127.0.0.1", "");

    // --postgres-password
    let mut p = spawn(
        &env,
        &run_flags(&env, &conn, &["--postgres-password", RELAY_PASSWORD]),
        &[],
    )?;
    let ids = write_events(&env, "s-1", 3).await?;
    consumed(&env, &ids).await?;
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());

    // OUTBOX_POSTGRES_PASSWORD
    let mut p = spawn(
        &env,
        &run_flags(&env, &conn, &[]),
        &[("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)],
    )?;
    let ids = write_events(&env, "s-2", 3).await?;
    consumed(&env, &ids).await?;
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());

    // password=… in the connection string
    let with_pw = relay_conn(&env, "127.0.0.1", &format!("password={RELAY_PASSWORD}"));
    let mut p = spawn(&env, &run_flags(&env, &with_pw, &[]), &[])?;
    let ids = write_events(&env, "s-3", 3).await?;
    consumed(&env, &ids).await?;
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());

    // A wrong password: the binary exits by itself, quickly, saying what to check.
    let started = std::time::Instant::now();
    let mut p = spawn(
        &env,
        &run_flags(&env, &conn, &["--postgres-password", "wrong-pw-0c4d"]),
        &[],
    )?;
    let status = p.wait_exit(Duration::from_secs(30)).await?;
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a wrong password must not be retried"
    );
    assert!(
        stderr.contains("password authentication failed for user \"relay\"")
            && stderr.contains("check the user and password"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pw-0c4d"), "{stderr}");

    // The replication connection refuses it the same way (fatal, with the advice).
    let wrong = source_config(&conn, Some("wrong-pw-0c4d"));
    assert_fatal(
        replication_connect(&wrong).await,
        &[
            "password authentication failed",
            "check the user and password",
        ],
    );
    assert_fatal(
        outbox_tailer::pg::setup::preflight(&wrong, false).await,
        &[
            "password authentication failed",
            "check the user and password",
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_role_runs_and_setup_without_rights_says_what_to_grant(
) -> anyhow::Result<()> {
    let env = env_with(PgConfig::default().hba(SCRAM_HBA), TansuStorage::Memory).await?;
    create_relay_role(&env).await?;
    env.client
        .batch_execute("CREATE ROLE norepl LOGIN PASSWORD 'norepl-pw-31'")
        .await?;
    let row = env
        .client
        .query_one(
            "SELECT r.rolsuper, r.rolreplication, pg_get_userbyid(c.relowner) = 'relay' \
             FROM pg_roles r, pg_class c WHERE r.rolname = 'relay' AND c.relname = 'outbox'",
            &[],
        )
        .await?;
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, true, false),
        "relay: no superuser, REPLICATION, not the owner"
    );
    let conn = relay_conn(&env, "127.0.0.1", "");
    let relay = source_config(&conn, Some(RELAY_PASSWORD));

    // setup as relay: not the table's owner, so no publication; the message says what to do.
    let e = outbox_tailer::pg::setup::setup(&relay).await.unwrap_err();
    let text = e.to_string();
    for phrase in [
        "permission denied",
        "ownership of public.outbox",
        "CREATE PUBLICATION \"outbox_pub\" FOR TABLE",
        "docs/security.md",
    ] {
        assert!(text.contains(phrase), "{phrase:?} missing from: {text}");
    }

    // With the publication made by the owner, setup as a role without REPLICATION fails on
    // the slot, naming the attribute to grant.
    env.client
        .batch_execute("CREATE PUBLICATION outbox_pub FOR TABLE outbox WITH (publish = 'insert')")
        .await?;
    let norepl = source_config(
        &format!(
            "host=127.0.0.1 port={} user=norepl dbname={}",
            env.db.port, env.db.name
        ),
        Some("norepl-pw-31"),
    );
    let e = outbox_tailer::pg::setup::setup(&norepl).await.unwrap_err();
    let text = e.to_string();
    for phrase in [
        "cannot create slot outbox_slot",
        "ALTER ROLE",
        "REPLICATION",
    ] {
        assert!(text.contains(phrase), "{phrase:?} missing from: {text}");
    }

    // relay has what setup needs for the slot (REPLICATION), and runs.
    let report = outbox_tailer::pg::setup::setup(&relay).await?;
    assert!(
        report.actions.iter().any(|a| a.starts_with("created slot")),
        "{report:?}"
    );
    let mut p = spawn(
        &env,
        &run_flags(&env, &conn, &["--postgres-password", RELAY_PASSWORD]),
        &[],
    )?;
    let ids = write_events(&env, "l-1", 5).await?;
    consumed(&env, &ids).await?;
    let lag_gone = || async { Ok(env.slot_lag_bytes().await? < 1024 * 1024) };
    wait_until(Duration::from_secs(30), "the slot to advance", lag_gone).await?;
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());

    // status and peek work with the same rights.
    for command in ["status", "peek"] {
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args([command, "--postgres", &conn])
            .env("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)
            .output()?;
        assert!(
            out.status.success(),
            "{command} as relay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_checks_the_broker_certificate_and_publishes() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let ca = TestCa::new("kafka test CA")?;
    let (_broker, front) = TansuBroker::start_behind_tls(ca.server_cert(&["localhost"])?).await?;
    let dir = tempfile::tempdir()?;
    let ca_file = ca.write(dir.path(), "kafka-ca.pem")?;
    let other_ca_file = TestCa::new("another CA")?.write(dir.path(), "other-ca.pem")?;
    let tls_run = |ca: &PathBuf| {
        let mut args = run_flags(
            &env,
            &env.db.conn_str(),
            &[
                "-X",
                "security.protocol=SSL",
                "-X",
                &format!("ssl.ca.location={}", ca.display()),
                // The front listens on 127.0.0.1; `localhost` may resolve to ::1 first.
                "-X",
                "broker.address.family=v4",
            ],
        );
        let at = args.iter().position(|a| a == "--brokers").unwrap() + 1;
        args[at] = format!("localhost:{}", front.port());
        args
    };

    // A broker certificate from a CA the tailer was not told to trust: refused at once.
    let mut p = spawn(&env, &tls_run(&other_ca_file), &[])?;
    let status = p.wait_exit(Duration::from_secs(30)).await?;
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("security.protocol"), "{stderr}");

    // The right CA: events are published over TLS (the host name `localhost` is checked too,
    // librdkafka's default), acked with acks=all, and only then does the slot move past them.
    let mut p = spawn(&env, &tls_run(&ca_file), &[])?;
    write_events(&env, "tls-1", 5).await?;
    let acked = wait_until(
        Duration::from_secs(60),
        "the slot to pass the events",
        || async { Ok(env.slot_lag_bytes().await? < 1024) },
    )
    .await;
    if let Err(e) = acked {
        panic!("{e}:\n{}", p.stderr());
    }
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_refusing_the_login_stops_the_tailer_with_a_clear_error() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let broker = TansuBroker::start_authenticating().await?;
    let secret = "kafka-secret-9e2";
    // From the environment, one option per line: how a Kubernetes Secret reaches them.
    let kafka_options = format!(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=relay\n\
         sasl.password={secret}"
    );
    let mut args = run_flags(&env, &env.db.conn_str(), &[]);
    let at = args.iter().position(|a| a == "--brokers").unwrap() + 1;
    args[at] = broker.bootstrap_servers();
    let mut p = spawn(&env, &args, &[("OUTBOX_KAFKA_OPTIONS", &kafka_options)])?;
    let status = p.wait_exit(Duration::from_secs(30)).await?;
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    for phrase in [
        "refused the connection",
        "sasl.username",
        "security.protocol",
    ] {
        assert!(stderr.contains(phrase), "{phrase:?} missing:\n{stderr}");
    }
    assert!(
        !stderr.contains(secret),
        "the password is printed:\n{stderr}"
    );

    // A TLS client against a plaintext listener: the same kind of stop.
    let mut p = spawn(
        &env,
        &run_flags(&env, &env.db.conn_str(), &["-X", "security.protocol=SSL"]),
        &[],
    )?;
    let status = p.wait_exit(Duration::from_secs(30)).await?;
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("refused the connection") && stderr.contains("ssl.ca.location"),
        "{stderr}"
    );
    Ok(())
}

/// Assert that none of `secrets` occurs in `text`.
fn assert_hidden(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_help_or_logs() -> anyhow::Result<()> {
    // --help of every command, with secrets in the environment.
    let (env_conn_secret, env_pw_secret) = ("help-secret-c0nn", "help-secret-pw");
    let env_conn = format!("host=db user=relay password={env_conn_secret}");
    for command in [
        None,
        Some("run"),
        Some("setup"),
        Some("status"),
        Some("peek"),
        Some("poll"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args(command)
            .arg("--help")
            .env("OUTBOX_POSTGRES", &env_conn)
            .env("OUTBOX_POSTGRES_PASSWORD", env_pw_secret)
            .output()?;
        assert!(out.status.success());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("OUTBOX_POSTGRES_PASSWORD") || command.is_none());
        assert_hidden(&text, &[env_conn_secret, env_pw_secret], "--help");
    }

    let env = env_with(PgConfig::default().hba(SCRAM_HBA), TansuStorage::Memory).await?;
    create_relay_role(&env).await?;
    env.setup().await?;
    let conn = relay_conn(&env, "127.0.0.1", "");
    for format in ["text", "json"] {
        // Wrong passwords from the connection string, the flag and the environment: error paths.
        let in_conn = format!("conn-secret-{format}");
        let with_pw = relay_conn(&env, "127.0.0.1", &format!("password={in_conn}"));
        let in_flag = format!("flag-secret-{format}");
        let in_env = format!("env-secret-{format}");
        let runs = [
            (run_flags(&env, &with_pw, &["--log-format", format]), None),
            (
                run_flags(
                    &env,
                    &conn,
                    &["--log-format", format, "--postgres-password", &in_flag],
                ),
                None,
            ),
            (
                run_flags(&env, &conn, &["--log-format", format]),
                Some(in_env.as_str()),
            ),
        ];
        for (args, env_pw) in runs {
            let envs: Vec<(&str, &str)> = env_pw
                .map(|pw| ("OUTBOX_POSTGRES_PASSWORD", pw))
                .into_iter()
                .collect();
            let mut p = spawn(&env, &args, &envs)?;
            let status = p.wait_exit(Duration::from_secs(30)).await?;
            let stderr = p.stderr();
            assert_eq!(status.code(), Some(2), "stderr:\n{stderr}");
            assert!(
                stderr.contains("password authentication failed"),
                "{stderr}"
            );
            assert_hidden(&stderr, &[&in_conn, &in_flag, &in_env], "the log");
        }

        // The right password, and a SASL password for a broker that is not there: the tailer
        // streams, librdkafka (all its debug contexts on) retries; nothing shows either.
        let kafka_secret = format!("sasl-secret-{format}");
        let sasl_password = format!("sasl.password={kafka_secret}");
        let mut args = run_flags(
            &env,
            &conn,
            &[
                "--log-format",
                format,
                "--shutdown-timeout-secs",
                "1",
                "-X",
                "security.protocol=SASL_PLAINTEXT",
                "-X",
                "sasl.mechanism=PLAIN",
                "-X",
                "sasl.username=relay",
                "-X",
                &sasl_password,
                "-X",
                "debug=all",
            ],
        );
        let at = args.iter().position(|a| a == "--brokers").unwrap() + 1;
        args[at] = "127.0.0.1:1".into();
        let mut p = spawn(&env, &args, &[("OUTBOX_POSTGRES_PASSWORD", RELAY_PASSWORD)])?;
        let streaming = wait_until(Duration::from_secs(60), "the tailer to stream", || async {
            Ok(p.stderr().contains("streaming"))
        })
        .await;
        if let Err(e) = streaming {
            panic!("{e}:\n{}", p.stderr());
        }
        write_events(&env, &format!("x-{format}"), 1).await?;
        wait_until(Duration::from_secs(60), "librdkafka to retry", || async {
            Ok(p.stderr().matches("Connection refused").count() >= 3)
        })
        .await?;
        p.terminate()?;
        let stderr = p.stderr();
        assert!(
            stderr.contains("sasl.username"),
            "librdkafka's config dump ran"
        );
        assert_hidden(&stderr, &[&kafka_secret, RELAY_PASSWORD], "the log");
    }
    Ok(())
}

/// Store SCRAM-SHA-256 credentials for `user` in a tansu broker that does not require a login
/// yet, with KIP-554's AlterUserScramCredentials (v0), which rdkafka does not expose.
fn add_scram_user(bootstrap: &str, user: &str, password: &str) -> anyhow::Result<()> {
    use hmac::{Hmac, Mac};
    use std::io::{Read, Write};
    type HmacSha256 = Hmac<sha2::Sha256>;

    let (salt, iterations) = (b"outbox-tailer-test-salt".to_vec(), 4096u32);
    // PBKDF2-HMAC-SHA-256 with one output block (RFC 5802's Hi()).
    let mac = |data: &[u8]| -> anyhow::Result<Vec<u8>> {
        let mut m = HmacSha256::new_from_slice(password.as_bytes())?;
        m.update(data);
        Ok(m.finalize().into_bytes().to_vec())
    };
    let mut u = mac(&[salt.as_slice(), &1u32.to_be_bytes()].concat())?;
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = mac(&u)?;
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }

    let compact = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.push(u8::try_from(bytes.len() + 1).expect("short"));
        out.extend_from_slice(bytes);
    };
    let mut body = Vec::new();
    body.extend_from_slice(&51i16.to_be_bytes()); // AlterUserScramCredentials
    body.extend_from_slice(&0i16.to_be_bytes()); // version 0 (flexible)
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    body.push(0); // header tags
    body.push(1); // deletions: none
    body.push(2); // upsertions: one
    compact(&mut body, user.as_bytes());
    body.push(1); // SCRAM-SHA-256
    body.extend_from_slice(&(iterations as i32).to_be_bytes());
    compact(&mut body, &salt);
    compact(&mut body, &salted);
    body.push(0); // upsertion tags
    body.push(0); // request tags
    let mut stream = std::net::TcpStream::connect(bootstrap)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&(body.len() as i32).to_be_bytes())?;
    stream.write_all(&body)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response)?;
    // correlation id (4), header tags (1), throttle (4), results count (1), user, error code
    let user_len = usize::from(response[10]) - 1;
    let at = 11 + user_len;
    let code = i16::from_be_bytes([response[at], response[at + 1]]);
    anyhow::ensure!(
        code == 0,
        "AlterUserScramCredentials failed with error {code}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sasl_scram_login_from_the_environment_publishes() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mut broker = TansuBroker::start_with(TansuStorage::Sqlite).await?;
    let secret = "kafka-scram-pw-41d";
    add_scram_user(&broker.bootstrap_servers(), "relay", secret)?;
    tokio::task::block_in_place(|| {
        broker.stop();
        broker.set_authentication(true);
        broker.start_again()
    })?;

    let sasl_password = format!("sasl.password={secret}");
    let mut args = run_flags(
        &env,
        &env.db.conn_str(),
        &[
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanism=SCRAM-SHA-256",
            "-X",
            "sasl.username=relay",
            "-X",
            &sasl_password,
        ],
    );
    let at = args.iter().position(|a| a == "--brokers").unwrap() + 1;
    args[at] = broker.bootstrap_servers();
    let mut p = spawn(&env, &args, &[])?;
    let ids = write_events(&env, "k-1", 5).await?;
    // Acked by the broker (acks=all) before the slot moves past them.
    let acked = wait_until(
        Duration::from_secs(60),
        "the slot to pass the events",
        || async { Ok(env.slot_lag_bytes().await? < 1024) },
    )
    .await;
    if let Err(e) = acked {
        panic!("{e}:\n{}", p.stderr());
    }
    assert_eq!(p.terminate()?.code(), Some(0), "stderr:\n{}", p.stderr());
    assert_hidden(&p.stderr(), &[secret], "the log");

    // The records are in the broker: read them without a login after a restart.
    tokio::task::block_in_place(|| {
        broker.stop();
        broker.set_authentication(false);
        broker.start_again()
    })?;
    let want = ids.clone();
    let records = outbox_testkit::consume_until(
        &broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(120),
        move |records| {
            want.iter()
                .all(|id| records.iter().any(|r| r.header("id") == Some(id.as_str())))
        },
    )
    .await?;
    assert!(records.len() >= ids.len());
    Ok(())
}

/// `outbox-app` reads the connection string, the password and the TLS modes as the tailer
/// does, so the README's quickstart works against a TLS-only, SCRAM-protected server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_connects_with_tls_and_a_password_like_the_tailer() -> anyhow::Result<()> {
    use outbox_app::cli::{self as app, Cli};
    let t = tls_env().await?;
    let env = &t.env;
    env.client
        .batch_execute(
            "GRANT INSERT ON orders, outbox TO relay; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO relay",
        )
        .await?;
    let ca = t.ca_file.display().to_string();
    let verify_full = relay_conn(
        env,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let order = |conn: &str, password: &str| {
        let argv = [
            "outbox-app",
            "--postgres",
            conn,
            "--postgres-password",
            password,
            "create-order",
            "--customer",
            "ada",
            "--amount-cents",
            "4200",
        ];
        app::run(Cli::parse_from(argv))
    };
    order(&verify_full, RELAY_PASSWORD).await?;
    let orders: i64 = env
        .client
        .query_one("SELECT count(*) FROM orders WHERE customer = 'ada'", &[])
        .await?
        .get(0);
    assert_eq!(
        orders, 1,
        "the order was written over TLS (the role may use TLS only)"
    );

    let wrong = order(&verify_full, "not-the-password").await.unwrap_err();
    assert!(
        wrong.to_string().contains("password"),
        "a wrong password says so: {wrong}"
    );
    let other_ca = format!(
        "sslmode=verify-full sslrootcert={}",
        t.other_ca_file.display()
    );
    let untrusted = order(&relay_conn(env, "localhost", &other_ca), RELAY_PASSWORD)
        .await
        .unwrap_err();
    assert!(
        untrusted.to_string().contains("certificate"),
        "an untrusted server certificate is refused, and the error says why: {untrusted}"
    );
    Ok(())
}
