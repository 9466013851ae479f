//! Team mode: brokers on many workstations sharing one farm through etcd.
//! The calls to etcd (`etcd`: leases, create-if-absent keys bound to a
//! lease, ranges; `watch`: watches; through etcd's JSON gateway, on
//! kept-alive connections: `gateway`; as a user: `auth`); the broker's
//! lease and what it is sure of (`session`: a claim counts until the last
//! confirmed keep-alive plus the TTL, minus a margin); its slot claims
//! (`claims`: one key per slot held, never two holders, and with each
//! claim or release one key saying what changed, `held`, which is what the
//! others watch); the team's farm as read from etcd (`view`); the fair shares every broker computes alike from the same
//! demands (`share`) and what each broker should hold (`plan`, pure); the
//! task that drives them (`task`, its loop; `driver`, `moving`) from what
//! it needs of the broker (`member`); host health found by one broker for
//! all and one prober per host (`health`); the broker's `Slots` in team
//! mode with the team's part of status (`slots`); and `tcpb host … --team`
//! (`admin`).

mod admin;
mod auth;
pub mod claims;
pub mod driver;
pub mod etcd;
mod gateway;
mod health;
pub mod held;
pub mod member;
mod moving;
pub mod plan;
pub mod session;
pub mod share;
pub(crate) mod slots;
pub mod task;
pub mod tls;
pub mod view;
mod watch;

/// Where the keys of the team's farm `farm` live in etcd: `/tcpb/FARM/`.
pub fn prefix(farm: &str) -> String {
    format!("/tcpb/{farm}/")
}

/// The kind of key that holds one slot each: `/tcpb/FARM/taken/HOST/N` =
/// the holder's id. It sorts after every other kind, and is the one no
/// broker watches (they watch `moves/`, one event per claim or release):
/// a farm's watch, and its first range, end where it begins.
pub const TAKEN: &str = "taken/";

/// The end of the keys a broker reads and watches of farm `farm`: all
/// of `prefix(farm)` up to `TAKEN`.
pub fn watched_end(farm: &str) -> Vec<u8> {
    format!("{}{TAKEN}", prefix(farm)).into_bytes()
}
