//! Team mode: brokers on many workstations sharing one farm through etcd.
//! What is built so far is the part every broker computes alike from the
//! same demands: the fair shares (`share`). The etcd session, the slot
//! claims and the `Slots` source that the broker's `refresh_capacity` asks
//! are to come on this seam.

pub mod share;
