//! What the replication client's errors mean: which are worth a reconnect, and for the others
//! the advice the operator needs (the server's text alone rarely says what to do).

use pgwire_replication::PgWireError;

use crate::error::{sqlstate_action, Action, TailerError};

/// Classify an error of the replication client, with advice for the ones that need a person.
pub fn replication_error(err: PgWireError, slot: &str) -> TailerError {
    use PgWireError as E;
    let text = err.to_string();
    let sqlstate = sqlstate_in(&text);
    let tls_advice = crate::pg::tls::advice(&text);
    let (action, advice) = match (&err, sqlstate.as_deref()) {
        (E::Io(_) | E::Task(_), _) => (Action::Retry, None),
        // `recv` raced with another branch after the worker ended: the connection is gone.
        (E::Internal(m), _) if m.contains("already joined") => (Action::Retry, None),
        // pg_hba.conf refused a connection without TLS (hostssl only).
        (E::Auth(_), _) | (_, Some("28000")) if tls_advice.is_some() => {
            (Action::FixConfig, tls_advice)
        }
        (E::Auth(_), _) | (_, Some("28000" | "28P01")) => (
            Action::FixConfig,
            Some("check the user and password in `postgres`, and pg_hba.conf on the server"),
        ),
        (E::Tls(_), _) => (
            Action::FixConfig,
            Some(tls_advice.unwrap_or("check sslmode, sslrootcert and the server's certificate")),
        ),
        (_, Some("42704")) if text.contains("publication") => (
            Action::FixDatabase,
            Some(
                "the publication is missing or was created after the slot: run \
                 `outbox-tailer setup`; if the slot predates the publication, drop and \
                 recreate the slot (a gap: see docs/operations.md)",
            ),
        ),
        (_, Some("42704")) => (
            Action::FixDatabase,
            Some("the replication slot does not exist: run `outbox-tailer setup` (or `run --create-slot` on first start); a new slot starts at the current WAL position"),
        ),
        (_, Some("55000")) => (
            Action::Recover,
            Some("the slot was invalidated (WAL it needed was removed, e.g. by max_slot_wal_keep_size); events committed while it was invalid may be missing: follow the recovery steps in docs/operations.md"),
        ),
        (_, Some("0A000" | "22023" | "42601" | "XX000")) => (
            Action::FixDatabase,
            Some("the server rejected the replication options: PostgreSQL 14 or newer with wal_level=logical is required"),
        ),
        (_, Some("42501")) => (
            Action::FixDatabase,
            Some("the role lacks the REPLICATION attribute: ALTER ROLE … REPLICATION"),
        ),
        (E::Protocol(_) | E::Internal(_), None) => (Action::ReportBug, None),
        (_, None) => (Action::FixDatabase, None),
        (_, code) => (sqlstate_action(code), None),
    };
    let message = match advice {
        Some(advice) => format!("{text} (slot {slot}): {advice}"),
        None => text,
    };
    TailerError::Replication {
        message,
        sqlstate,
        action,
    }
}

/// The `SQLSTATE xxxxx` code pgwire-replication puts into server error messages.
fn sqlstate_in(text: &str) -> Option<String> {
    let at = text.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (code.len() == 5).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_is_found_in_server_text() {
        assert_eq!(
            sqlstate_in("ERROR: replication slot \"x\" does not exist (SQLSTATE 42704)").as_deref(),
            Some("42704")
        );
        assert_eq!(sqlstate_in("no code here"), None);
    }

    #[test]
    fn missing_slot_is_fatal_and_says_what_to_do() {
        let e = replication_error(
            PgWireError::Server("replication slot \"s\" does not exist (SQLSTATE 42704)".into()),
            "s",
        );
        assert!(!e.is_transient());
        assert_eq!(e.action(), Action::FixDatabase);
        assert!(e.to_string().contains("outbox-tailer setup"), "{e}");
    }

    #[test]
    fn slot_held_by_another_pid_is_transient() {
        let e = replication_error(
            PgWireError::Server(
                "replication slot \"s\" is active for PID 42 (SQLSTATE 55006)".into(),
            ),
            "s",
        );
        assert!(e.is_transient());
    }

    #[test]
    fn invalidated_slot_is_fatal() {
        let e = replication_error(
            PgWireError::Server(
                "cannot read from logical replication slot \"s\" (SQLSTATE 55000)".into(),
            ),
            "s",
        );
        assert!(!e.is_transient());
        assert_eq!(e.action(), Action::Recover);
        assert!(e.to_string().contains("invalidated"));
    }
}
