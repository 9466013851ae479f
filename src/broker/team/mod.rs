//! Team mode: brokers on many workstations sharing one farm through etcd.
//! Built so far: the calls to etcd (`etcd`: leases, create-if-absent keys
//! bound to a lease, ranges and watches, through etcd's JSON gateway), the
//! broker's lease and what it is sure of (`session`: a claim counts until
//! the last confirmed keep-alive plus the TTL, minus a margin), its slot
//! claims (`claims`: one key per slot held, never two holders), and the
//! fair shares every broker computes alike from the same demands
//! (`share`). The team task that drives them from the broker's demand and
//! the `Slots` source that `refresh_capacity` asks come next.

pub mod claims;
pub mod etcd;
pub mod session;
pub mod share;
