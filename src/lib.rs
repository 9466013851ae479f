//! tcpb: a per-user load balancer in front of a distcc farm.
//!
//! A build uses `tcpb` as its compiler. Each compile asks a local broker,
//! over a Unix socket, for a slot on the best free farm host; the broker
//! starts itself on first use, queues compiles when the farm is full, and
//! relays distcc's TCP stream to the chosen host.
//!
//! # Layout
//!
//! - `cli`: argv dispatch (compiler invocation or subcommand) and clap.
//! - `client`: the per-compile wrapper (sync std code): find the real
//!   compiler (`client::compiler`), reach or start the broker
//!   (`client::connect`), take a lease, run distcc or the compiler.
//! - `classify`: which command lines may go to the farm.
//! - `hosts`: distcc's host-list grammar and where distcc looks for it.
//! - `config`: `config.toml` (per-host speed and slots, broker options).
//! - `farm`: the host list merged with the config into the scheduler's farm.
//! - `paths`: runtime, state and config locations, all overridable.
//! - `protocol`: the typed control messages; `frame`: their framing.
//! - `broker`: the daemon. `broker::sched` owns slot accounting, the
//!   hosts (`broker::host`) and the queue, as pure code with the time
//!   passed in; it serves the fair queue of `broker::queue` through the
//!   earliest-finish-time simulation of `broker::eft`, with speeds learned
//!   by `broker::learn` and host health from the up/suspect/down machine of
//!   `broker::health`. `broker::state` shares the scheduler between tasks
//!   and keeps the per-file cost memory of `broker::costs`;
//!   `broker::control` serves one control connection; `broker::relay` owns
//!   the loopback relay ports, connects each job to its host and
//!   classifies how it ended, asking `broker::peer` who connected;
//!   `broker::pump` copies a job's bytes (splicing payloads), reading
//!   distcc's token stream with `broker::observe`; `broker::admin` runs `tcpb host …`
//!   against `broker::overlay`, the runtime farm changes that
//!   `broker::store` persists; `broker::http` serves the optional
//!   `/status` and `/metrics`.
//! - `status`: `tcpb status` and `tcpb stop`; `watch`: `tcpb status
//!   --watch` / `tcpb top`; `admin`: `tcpb host …` and
//!   `tcpb reload` (client side).
//! - `logview`: `tcpb log`.
//! - `shell`: `tcpb init SHELL` (the scripts in `shell/`, embedded) and
//!   `tcpb masquerade install`.

pub(crate) mod admin;
pub mod broker;
pub(crate) mod classify;
pub mod cli;
pub(crate) mod client;
pub mod config;
pub mod farm;
pub mod frame;
pub mod hosts;
pub(crate) mod logview;
pub(crate) mod paths;
pub mod protocol;
pub(crate) mod shell;
pub(crate) mod status;
pub mod sys;
pub(crate) mod watch;
