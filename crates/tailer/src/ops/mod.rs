//! What an on-call engineer runs against a slot: [`status`] (health and a verdict) and
//! [`peek`] (the waiting events). Neither moves the slot.

pub mod peek;
pub mod status;
