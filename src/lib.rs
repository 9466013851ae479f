//! tcpb: a per-user load balancer in front of a distcc farm.
//!
//! A build uses `tcpb` as its compiler. Each compile asks a local broker,
//! over a Unix socket, for a slot on the best free farm host; the broker
//! starts itself on first use, queues compiles when the farm is full, and
//! relays distcc's TCP stream to the chosen host.
//!
//! # Layout
//!
//! - `cli`: argv dispatch (a compiler invocation or a subcommand) and clap.
//! - `client/`: the per-compile wrapper, plain sync code: find the real
//!   compiler (`compiler`), reach or start the broker (`connect`), take a
//!   lease, exec distcc or run the compiler (`run`).
//! - `classify`: which command lines may go to the farm (`Route`).
//! - `hosts`: distcc's host-list grammar (TCP, ssh and `localhost` hosts)
//!   and where distcc looks for it; `config`: `config.toml` (`config/team`:
//!   `[team]`); `farm`: the two merged into `HostSpec`s; `limits`: the
//!   bounds every value entering tcpb is held to.
//! - `protocol`: the typed control messages (`LeaseRequest` on the wire,
//!   `Grant` back); `frame`: their length-prefixed framing.
//! - `paths`: runtime, state and config locations (the `directories`
//!   crate, `TCPB_*` overrides; private directories and files); `sys`: the
//!   uid, signal handlers, setting a full log aside, the open-file limit,
//!   CPU times, rate-limited logging (`Quiet`).
//! - `broker/`: the daemon. `mod.rs` runs it: control socket, tick,
//!   probes, idle-CPU samples, reload, relay reports, shutdown.
//!   - `state/`: the one owner of everything the tasks share (`Broker`);
//!     its mutex never leaves the module. One `Lease` record per compile
//!     and its `Job` (`lease`), placements turned into grants and leases
//!     ended (`grant`), the farm in force, per-host memory and what to save
//!     (`farm`), the relay's tickets and reports (`relayed`), `tcpb host`
//!     (`admin`), counters (`stats`), status (`view`), the demand team
//!     mode claims for (`team`).
//!   - `sched/`: pure slot accounting and host choice, time passed in:
//!     `Scheduler` (`mod.rs`) over the hosts (`host`), the fair queue
//!     (`queue`, whose entries are `Job`s), the queue pass (`dispatch`)
//!     through the earliest-finish simulation (`eft`), speed samples
//!     (`learn`) and the speeds choices use (`speeds`), health
//!     (`health`), per-file costs (`costs`), idle local CPUs taking a full
//!     farm's compiles (`overflow`), capacities that the slot source
//!     grows and shrinks (`capacity`), ids (`ids`), the invariant
//!     (`check`).
//!   - `relay/`: a `Ticket` in at grant time, `Report`s out: reaching the
//!     host before the grant (`reach`: TCP, or `ssh` as distcc runs it on
//!     one master connection per host), the port pool (`ports`), who
//!     connected (`peer`), the copy loop (`pump`) over a buffer-or-splice
//!     lane (`lane`, TCP or an ssh job's socket), distcc's token stream
//!     (`observe`).
//!   - `slots`: what this broker may use of each host (all of it alone;
//!     team mode: its claims). `team/`: team mode (`[team]`): etcd's
//!     gateway calls (`etcd`, `watch`) on kept-alive connections
//!     (`gateway`, over TLS with `tls`), as its user when etcd wants one
//!     (`auth`), the broker's lease (`session`), its slot claims
//!     (`claims`) and what each changed (`held`), the team's farm as read
//!     from etcd (`view`), the fair shares every broker computes alike
//!     (`share`), what to hold (`plan`, pure), the task that drives them
//!     (`task`: its loop; `driver`, `moving`) from what it needs of the
//!     broker (`member`, also driven by the scale benchmark) and the
//!     `Slots` it answers with, plus status (`slots`);
//!     the state's side is `state/team` (the broker's demand per host).
//!     `control`: one control connection. `overlay`: runtime farm
//!     changes. `store`: state files, written on a thread of their own.
//!     `http`: `/status` and `/metrics` (`http_team`: team mode's
//!     metrics).
//! - `status`: `tcpb status` and `tcpb stop` (`status_team`: its team
//!   section); `watch`: `tcpb top`;
//!   `admin`: `tcpb host …` and `tcpb reload`; `logview`: `tcpb log`;
//!   `shell`: `tcpb init SHELL` and `tcpb masquerade install`.
//!
//! # One compile through the types
//!
//! `client::compile` classifies the command line (`classify::Route`) and
//! sends a `protocol::LeaseRequest`. The broker's `control` task hands it
//! to `Broker::request`, which records a `Lease` (waiting), turns the
//! request into a `sched::Job` and asks the `Scheduler` for `Placement`s.
//! A remote placement becomes a `relay::Ticket` on a relay port and a
//! `protocol::Grant` back to the client, which execs distcc at that port.
//! The relay serves the connection and sends one `relay::Outcome`; the
//! state turns it into host health, speed samples and the file's cost.
//! The control connection closing ends the lease: `Broker::release`.

pub(crate) mod admin;
pub mod broker;
pub(crate) mod classify;
pub mod cli;
pub(crate) mod client;
pub mod config;
pub mod farm;
pub mod frame;
pub mod hosts;
pub mod limits;
pub(crate) mod logview;
pub(crate) mod paths;
pub mod protocol;
pub(crate) mod shell;
pub(crate) mod status;
pub(crate) mod status_team;
pub mod sys;
pub(crate) mod watch;
