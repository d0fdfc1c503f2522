//! What an on-call engineer runs against a slot: [`status`] (health and a verdict), [`peek`]
//! (the waiting events) and [`replay`] (re-publish a range of commits). None moves the live
//! slot; what they share with `run` is in [`crate::pg`].

pub mod import_debezium;
pub mod peek;
pub mod replay;
pub mod status;
