//! Whether a compile may wait for a slot: a compile over `max_connections`
//! or `max_queue` compiles locally at once, told why.

use super::{Shared, State};
use crate::broker::sched::LeaseId;
use crate::paths::Paths;
use crate::protocol::Grant;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a lease request got at once.
pub(crate) struct Started {
    /// The lease.
    pub id: LeaseId,
    /// Its grant, when it runs at once.
    pub grant: Option<Grant>,
    /// Why it must compile locally instead of waiting (queue full).
    pub refused: Option<String>,
    /// Something the user should read first (what of its host list tcpb
    /// does not use), once per build.
    pub notice: Option<String>,
}

/// Counts one compile's connection while it lives.
pub(crate) struct Connection {
    pub(super) shared: Arc<Shared>,
    /// Why it must compile locally, when it is over `max_connections`.
    pub over: Option<String>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a compile refused by `max_queue` or `max_connections`; the
/// message is for the user, and the log has the first of each burst.
pub(super) fn over_limit(
    state: &mut State,
    paths: &Paths,
    (key, what): (&str, &str),
    max: usize,
) -> String {
    state.stats.over_limit += 1;
    let message = format!(
        "at its limit of {max} {what} ({key} in {})",
        paths.config_file.display()
    );
    if state.stats.over_limit.is_power_of_two() {
        tracing::warn!(count = state.stats.over_limit, "{message}");
    }
    message
}
