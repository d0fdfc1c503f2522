//! What an on-call engineer runs against a slot: [`status`] (health and a verdict), [`peek`]
//! (the waiting events) and [`replay`] (re-publish a range of commits). None moves the live
//! slot; [`slots`] holds what they share.

pub mod peek;
pub mod replay;
pub mod slots;
pub mod status;
