//! The ids the scheduler and the relay share, in one place so that no
//! module imports another only for an id.

/// Identifies one lease (one compile) for the broker's lifetime.
pub type LeaseId = u64;

/// Index of a host in the scheduler; stable while the host exists. Hosts
/// are numbered in farm order (the scheduler simulation relies on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostId(pub usize);
