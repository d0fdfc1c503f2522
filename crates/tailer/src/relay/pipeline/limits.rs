//! What a pipeline run reports ([`Stats`], [`StreamEnd`]) and the bound it reads within
//! ([`Window`]).

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events_published: u64,
    pub events_acked: u64,
    pub dead_lettered: u64,
    pub transactions: u64,
    pub reconnects: u64,
    /// Highest number of events in flight at once.
    pub peak_in_flight: u64,
}

/// Why streaming stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    Shutdown,
    /// The source ended (`replay` reached the end of its range) between transactions.
    Exhausted,
}

/// Limits of the in-flight window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub max_events: u64,
    pub max_bytes: u64,
}
