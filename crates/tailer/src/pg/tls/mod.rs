//! TLS to PostgreSQL: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, honoured the
//! same way by every connection the tailer makes.
//!
//! ```text
//!   connection string ──split──▶ the rest ──▶ tokio_postgres::Config (SQL: setup, status, …)
//!                          └───▶ PgTls ──┬──▶ rustls ClientConfig (SQL connections)
//!                                        └──▶ pgwire-replication TlsConfig (replication stream)
//! ```
//!
//! tokio-postgres knows only disable/prefer/require and rejects the certificate keys, so they
//! are taken out of the connection string here and applied by this module. As in libpq,
//! `sslmode=require` with an `sslrootcert` verifies the chain (like `verify-ca`), and the
//! default is `prefer`.
//!
//! `rustls_config` builds the SQL connections' client configuration; `replication` maps the
//! same settings onto pgwire-replication (and works around its `verify-ca`).

use std::path::PathBuf;

use crate::error::TailerError;

mod replication;
mod rustls_config;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, TailerError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(TailerError::Config(format!(
                    "sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// The mode tokio-postgres negotiates with (it verifies nothing itself).
    fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla root store (webpki-roots), for publicly signed servers.
    System,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Split a connection string (`key=value …` or a `postgres://` URL) into one tokio-postgres
/// parses and the TLS settings it does not understand; values are never echoed in errors.
pub fn parse_conn_str(conn: &str) -> Result<(tokio_postgres::Config, PgTls), TailerError> {
    let (rest, pairs) = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        split_url(conn)?
    } else {
        split_key_value(conn)?
    };
    let mut tls = PgTls::default();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => tls.mode = SslMode::parse(&value)?,
            "sslrootcert" if value == "system" => tls.root_cert = Some(RootCert::System),
            "sslrootcert" => tls.root_cert = Some(RootCert::File(value.into())),
            "sslcert" => tls.client_cert = Some(value.into()),
            "sslkey" => tls.client_key = Some(value.into()),
            _ => unreachable!("only TLS keys are split off"),
        }
    }
    if tls.mode == SslMode::Require && tls.root_cert.is_some() {
        tls.mode = SslMode::VerifyCa;
    }
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(TailerError::Config(
            "sslcert and sslkey go together: set both (client certificate and its key) or neither"
                .into(),
        ));
    }
    let mut pg: tokio_postgres::Config = rest.parse().map_err(|e| {
        TailerError::Config(format!(
            "the PostgreSQL connection string does not parse ({e}); expected \
             `host=… user=… dbname=…` or `postgres://user@host/db`"
        ))
    })?;
    pg.ssl_mode(tls.mode.negotiation());
    Ok((pg, tls))
}

fn split_key_value(conn: &str) -> Result<(String, Vec<(String, String)>), TailerError> {
    let malformed = || {
        TailerError::Config(
            "the PostgreSQL connection string does not parse: expected `key=value` pairs \
             separated by spaces (quote values with spaces in single quotes)"
                .into(),
        )
    };
    let mut chars = conn.chars().peekable();
    let (mut rest, mut tls) = (String::new(), Vec::new());
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(malformed());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(malformed)?),
                    Some(c) => value.push(c),
                    None => return Err(malformed()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(if c == '\\' {
                    chars.next().ok_or_else(malformed)?
                } else {
                    c
                });
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            tls.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((rest, tls))
}

fn split_url(conn: &str) -> Result<(String, Vec<(String, String)>), TailerError> {
    let Some((base, query)) = conn.split_once('?') else {
        return Ok((conn.to_owned(), Vec::new()));
    };
    let (mut kept, mut tls) = (Vec::new(), Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if TLS_KEYS.contains(&key) {
            tls.push((key.to_owned(), percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

fn percent_decode(s: &str) -> Result<String, TailerError> {
    let bad = || {
        TailerError::Config(
            "a TLS parameter of the PostgreSQL URL is not valid percent-encoding".into(),
        )
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// What to do about a failed TLS handshake or a TLS-related refusal, from the error's text
/// (rustls and PostgreSQL phrase them the same for both connections).
pub(crate) fn advice(text: &str) -> Option<&'static str> {
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        Some("the server's certificate is not signed by a CA in sslrootcert: point sslrootcert at the CA that signed it")
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        Some("the server's certificate is not valid for this host name: connect with a name the certificate lists, or use sslmode=verify-ca to check only the CA")
    } else if ["Expired", "expired", "NotValidYet", "not valid yet"]
        .iter()
        .any(|w| text.contains(w))
    {
        Some("the server's certificate is outside its validity period: renew it on the server")
    } else if text.contains("does not support TLS") || text.contains("SSLRequest rejected") {
        Some("the server does not accept TLS (ssl = off): enable ssl on the server, or use sslmode=prefer or disable")
    } else if text.contains("requires a valid client certificate")
        || text.contains("certificate authentication failed")
    {
        Some("pg_hba.conf wants a client certificate for this user (cert): set sslcert and sslkey to a certificate whose CN is the user name, signed by the server's ssl_ca_file")
    } else if text.contains("no encryption") {
        Some("pg_hba.conf accepts this user only over TLS (hostssl): set sslmode=verify-full (or require) in the connection string")
    } else {
        None
    }
}

/// True when `err` is a TLS failure: fatal, since retrying the same handshake fails the same.
pub(crate) fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if e.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        next = e.source();
    }
    advice(&err.to_string()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_tls_keys_are_split_off_and_the_rest_parses() {
        let (pg, tls) = parse_conn_str(
            "host=db port=6432 user=relay password='p w\\'q' sslmode=verify-full \
             sslrootcert='/etc/ca dir/ca.pem' dbname=shop",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(
            tls.root_cert,
            Some(RootCert::File("/etc/ca dir/ca.pem".into()))
        );
        assert_eq!(pg.get_dbname(), Some("shop"));
        assert_eq!(
            pg.get_password(),
            Some(&b"p w'q"[..]),
            "quoting survives the split"
        );
        assert_eq!(pg.get_ports(), &[6432]);
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn url_tls_parameters_are_split_off() {
        let (pg, tls) = parse_conn_str(
            "postgres://relay@db:6432/shop?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(pg.get_dbname(), Some("shop"));
        assert_eq!(pg.get_application_name(), Some("x"));
    }

    #[test]
    fn default_is_prefer_and_require_with_a_ca_verifies_it() {
        let (_, tls) = parse_conn_str("host=db").unwrap();
        assert_eq!(tls.mode, SslMode::Prefer);
        let (_, tls) = parse_conn_str("host=db sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa, "libpq's rule");
    }

    #[test]
    fn bad_values_are_clear_errors_without_echoing_secrets() {
        let e = parse_conn_str("host=db sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = parse_conn_str("host=db sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslkey"), "{e}");
        let e = parse_conn_str("host=db password='unterminated-s3cret").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn a_verifying_mode_without_a_ca_says_what_to_set() {
        let tls = PgTls {
            mode: SslMode::VerifyFull,
            ..PgTls::default()
        };
        let e = tls.roots_with_home(None).unwrap_err();
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let home = std::env::temp_dir().join(format!("outbox-tls-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        std::fs::write(home.join(".postgresql/root.crt"), "").unwrap();
        let found = tls.roots_with_home(Some(&home));
        std::fs::remove_dir_all(&home).unwrap();
        assert_eq!(
            found.unwrap(),
            Some(RootCert::File(home.join(".postgresql/root.crt"))),
            "libpq's default CA file"
        );
    }

    #[test]
    fn advice_names_the_fix() {
        assert!(advice("invalid peer certificate: UnknownIssuer")
            .unwrap()
            .contains("sslrootcert"));
        assert!(advice("invalid peer certificate: NotValidForName")
            .unwrap()
            .contains("verify-ca"));
        assert!(advice("no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption")
            .unwrap()
            .contains("hostssl"));
        assert_eq!(advice("connection refused"), None);
    }
}
