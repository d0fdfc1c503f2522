//! Validation and quoting of the SQL identifiers the tailer puts into commands.
//!
//! Slot and publication names reach `START_REPLICATION` unquoted (slot) or inside a string
//! literal (publication), so both are restricted to plain identifiers.

use crate::error::TailerError;

const MAX_IDENT: usize = 63;

/// A replication slot name: lower-case letters, digits and `_`, at most 63 bytes
/// (PostgreSQL's own rule for slot names).
pub fn validate_slot(name: &str) -> Result<(), TailerError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENT
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TailerError::Config(format!(
            "slot name {name:?} is invalid: use 1-63 lower-case letters, digits or underscores"
        )))
    }
}

/// A plain SQL identifier: a letter or `_`, then letters, digits, `_` or `$`; at most 63 bytes.
pub fn validate_ident(what: &str, name: &str) -> Result<(), TailerError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let ok = first_ok
        && name.len() <= MAX_IDENT
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if ok {
        Ok(())
    } else {
        Err(TailerError::Config(format!(
            "{what} {name:?} is invalid: use a plain identifier (letters, digits, `_`, `$`; \
             starting with a letter or `_`; at most 63 bytes)"
        )))
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A schema-qualified table name, `schema.table` or `table` (schema `public`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName, TailerError> {
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("public", text),
        };
        validate_ident("table schema", schema)?;
        validate_ident("table name", name)?;
        Ok(TableName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `"schema"."table"`
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert!(validate_slot("outbox_slot_1").is_ok());
        for bad in ["", "Outbox", "a-b", "x'; DROP", &"a".repeat(64)] {
            assert!(validate_slot(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn identifiers() {
        assert!(validate_ident("publication", "outbox_pub").is_ok());
        assert!(validate_ident("publication", "Pub$1").is_ok());
        for bad in ["", "1pub", "a b", "p'x", "p\"x", "a.b"] {
            assert!(
                validate_ident("publication", bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn table_names() {
        let t = TableName::parse("outbox").unwrap();
        assert_eq!(t.to_string(), "public.outbox");
        assert_eq!(t.quoted(), "\"public\".\"outbox\"");
        assert_eq!(TableName::parse("app.events").unwrap().schema, "app");
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("x;drop").is_err());
    }
}
