//! Tasks that run beside the relay while `run` streams, and never stop it except for a reason
//! they report: the slot watchdog, the publication guard (18+), the replay window, the metrics
//! endpoint.

pub mod metrics_server;
pub mod publication_guard;
pub mod retention;
pub mod watchdog;
