//! The command line: compiler invocations and subcommands.
//!
//! `argv[0]` not named `tcpb` means masquerade (a link named like a
//! compiler). Otherwise the first argument is a subcommand only when it is
//! one of `SUBCOMMANDS` or an option; anything else is a compiler.

use crate::paths::Paths;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// Names clap dispatches; everything else is a compiler.
pub(crate) const SUBCOMMANDS: &[&str] = &[
    "status",
    "top",
    "stop",
    "host",
    "reload",
    "broker",
    "completions",
    "init",
    "masquerade",
    "log",
    "man",
    "help",
];

/// A load-balancing front end for a distcc farm.
#[derive(Debug, Parser)]
#[command(
    name = "tcpb",
    version,
    about = "Send every compile to the best free distcc host, through a per-user broker",
    long_about = "Send every compile to the best free distcc host, through a per-user broker.\n\n\
        Use it as the compiler: CC=\"tcpb gcc\", CMAKE_C_COMPILER_LAUNCHER=tcpb,\n\
        CCACHE_PREFIX=tcpb, or a link to tcpb named gcc/cc/g++ early on PATH.\n\
        The farm is read where distcc reads it: $DISTCC_HOSTS, $DISTCC_DIR/hosts\n\
        (~/.distcc/hosts), /etc/distcc/hosts. With none, compiles run locally,\n\
        limited to this machine's CPUs.",
    override_usage = "tcpb COMPILER [ARGS...]      e.g. tcpb gcc -c foo.c -o foo.o\n       tcpb <COMMAND>",
    after_help = "Compile: tcpb COMPILER [ARGS...]   e.g. tcpb gcc -c foo.c -o foo.o"
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the broker, the farm, slots in use and the queue.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A live view, redrawn in place until Ctrl-C (as `tcpb top`).
        #[arg(short, long)]
        watch: bool,
        /// Seconds between redraws of --watch.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
    },
    /// The live view: hosts, the files compiling on each, the queue, the rate.
    Top {
        /// Seconds between redraws.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
    },
    /// Stop the broker; returns once it has exited, its compiles finished.
    Stop,
    /// Change the farm at run time; kept across broker restarts.
    Host(HostArgs),
    /// Re-read config.toml and apply it (as SIGHUP does).
    Reload,
    /// Run the broker in the foreground (it starts itself on first use).
    Broker,
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print shell start-up lines: eval "$(tcpb init bash)" in ~/.bashrc.
    ///
    /// They put the masquerade directory (see `tcpb masquerade install`)
    /// first on PATH when it exists, and with --cc set CC and CXX to tcpb.
    /// No program runs at shell start-up beyond this one.
    Init {
        /// The shell: bash, zsh or fish (fish: tcpb init fish | source).
        shell: crate::shell::Shell,
        /// Also set CC="tcpb gcc" and CXX="tcpb g++".
        #[arg(long)]
        cc: bool,
        /// The masquerade directory [default: ~/.local/share/tcpb/masquerade].
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Manage the masquerade directory: links to tcpb named like compilers.
    #[command(subcommand)]
    Masquerade(MasqueradeCommand),
    /// Print the manual page (roff): tcpb man | man -l -
    Man,
    /// Show the broker's log (broker.log in the state directory).
    Log {
        /// How many of the last lines to show.
        #[arg(short = 'n', long, default_value_t = 40)]
        lines: usize,
        /// Keep printing what the broker writes, until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
}

/// `tcpb masquerade …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MasqueradeCommand {
    /// Link gcc, g++, cc, c++, clang, clang++ (and versioned names) found on
    /// PATH to tcpb, in DIR [default: ~/.local/share/tcpb/masquerade].
    Install {
        /// The directory to fill.
        dir: Option<std::path::PathBuf>,
    },
    /// Remove the links to tcpb from DIR [default:
    /// ~/.local/share/tcpb/masquerade], and DIR itself once empty; any
    /// other file is left alone.
    Uninstall {
        /// The directory to clear.
        dir: Option<std::path::PathBuf>,
    },
}

/// `tcpb host [--team] …`.
#[derive(Debug, clap::Args)]
pub(crate) struct HostArgs {
    /// Change the team's farm in etcd (`[team]`): every broker of the team
    /// applies it within a second.
    #[arg(long, global = true)]
    team: bool,
    #[command(subcommand)]
    cmd: HostCommand,
}

/// `tcpb host …`. HOST is `HOST[:PORT]` (port 3632 if left out) or `localhost`.
#[derive(Debug, Subcommand)]
pub(crate) enum HostCommand {
    /// Add a host, in distcc's host-list grammar.
    #[command(about = "Add a host: HOST[:PORT][/SLOTS][,lzo][,cpp]")]
    Add {
        /// The host spec, in distcc's grammar.
        spec: String,
        /// Relative speed (default 1.0).
        #[arg(long, allow_negative_numbers = true)]
        speed: Option<f64>,
    },
    /// Remove a host: no new jobs; running ones finish.
    Remove {
        /// The host.
        host: String,
        /// End its running jobs now (distcc compiles them locally).
        #[arg(long)]
        force: bool,
    },
    /// No new jobs; running ones finish; the host stays listed.
    Drain {
        /// The host.
        host: String,
    },
    /// Take jobs again after drain or disable.
    Enable {
        /// The host.
        host: String,
    },
    /// No jobs until enabled.
    Disable {
        /// The host.
        host: String,
    },
    /// Change a host's slots and/or speed.
    Set {
        /// The host.
        host: String,
        /// Concurrent jobs.
        #[arg(long)]
        slots: Option<u32>,
        /// Relative speed.
        #[arg(long, allow_negative_numbers = true)]
        speed: Option<f64>,
    },
    /// Drop every runtime change: back to the configured farm.
    Reset,
}

impl From<HostCommand> for crate::protocol::HostCmd {
    fn from(c: HostCommand) -> Self {
        use crate::protocol::HostCmd as H;
        match c {
            HostCommand::Add { spec, speed } => H::Add { spec, speed },
            HostCommand::Remove { host, force } => H::Remove { name: host, force },
            HostCommand::Drain { host } => H::Drain { name: host },
            HostCommand::Enable { host } => H::Enable { name: host },
            HostCommand::Disable { host } => H::Disable { name: host },
            HostCommand::Set { host, slots, speed } => H::Set {
                name: host,
                slots,
                speed,
            },
            HostCommand::Reset => H::Reset,
        }
    }
}

/// `tcpb masquerade install [DIR]`: links, and what to do next.
fn masquerade_install(dir: &Path) -> anyhow::Result<()> {
    use crate::shell::Linked;
    let me = crate::shell::this_exe()?;
    let path = std::env::var_os("PATH");
    for l in crate::shell::install(dir, &me, path.as_deref())? {
        match l {
            Linked::Created(n) => println!("linked   {}/{n} -> {}", dir.display(), me.display()),
            Linked::Kept(n) => println!("present  {}/{n}", dir.display()),
            Linked::Skipped(n, why) => println!("skipped  {}/{n}: {why}", dir.display()),
        }
    }
    println!(
        "Put {} first on PATH: eval \"$(tcpb init bash)\" in ~/.bashrc (zsh: same with zsh; fish: tcpb init fish | source)",
        dir.display()
    );
    Ok(())
}

/// `tcpb masquerade uninstall [DIR]`: what was removed and what was kept.
fn masquerade_uninstall(dir: &Path) -> anyhow::Result<()> {
    let me = crate::shell::this_exe()?;
    let (removed, kept) = crate::shell::uninstall(dir, &me)?;
    for n in &removed {
        println!("removed  {}/{n}", dir.display());
    }
    for n in &kept {
        println!("kept     {}/{n}: not a link to tcpb", dir.display());
    }
    if kept.is_empty() && !dir.exists() {
        println!("removed  {}", dir.display());
    }
    Ok(())
}

/// Writes the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "tcpb", out);
}

/// Entry point of the binary.
/// The subcommand `word` is most likely a typo of (at most two letters
/// off, or the same letters in another order), if any.
pub(crate) fn near_subcommand(word: &str) -> Option<&'static str> {
    if word.contains('/') || word.len() < 3 {
        return None;
    }
    let sorted = |s: &str| {
        let mut c: Vec<char> = s.chars().collect();
        c.sort_unstable();
        c
    };
    SUBCOMMANDS
        .iter()
        .map(|s| (edit_distance(word, s), *s))
        .filter(|(d, s)| *d <= 2 || sorted(word) == sorted(s))
        .min()
        .map(|(_, s)| s)
}

/// Levenshtein distance between `a` and `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let rest: Vec<OsString> = argv.collect();
    let name = Path::new(&argv0)
        .file_name()
        .unwrap_or_default()
        .to_os_string();
    if name != "tcpb" {
        return crate::client::compile(&name, rest);
    }
    match rest.first().map(|a| a.to_string_lossy()) {
        Some(first) if !first.starts_with('-') && !SUBCOMMANDS.contains(&first.as_ref()) => {
            crate::client::compile(&rest[0], rest[1..].to_vec())
        }
        _ => subcommand(Cli::parse()),
    }
}

fn subcommand(cli: Cli) -> ExitCode {
    let paths = Paths::from_env();
    let result = match cli.command {
        Command::Status {
            watch: true,
            interval,
            ..
        }
        | Command::Top { interval } => {
            seconds(interval).and_then(|i| crate::watch::watch(&paths, i))
        }
        Command::Status { json, .. } => crate::status::status(&paths, json),
        Command::Stop => crate::status::stop(&paths),
        Command::Host(h) => crate::admin::host(&paths, h.cmd.into(), h.team),
        Command::Reload => crate::admin::reload(&paths),
        Command::Completions { shell } => {
            completions(shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Init { shell, cc, dir } => {
            let dir = dir.unwrap_or_else(|| paths.masquerade_dir.clone());
            print!("{}", crate::shell::init_script(shell, &dir, cc));
            Ok(())
        }
        Command::Masquerade(MasqueradeCommand::Install { dir }) => {
            masquerade_install(&dir.unwrap_or_else(|| paths.masquerade_dir.clone()))
        }
        Command::Masquerade(MasqueradeCommand::Uninstall { dir }) => {
            masquerade_uninstall(&dir.unwrap_or_else(|| paths.masquerade_dir.clone()))
        }
        Command::Log { lines, follow } => crate::logview::log(&paths, lines, follow),
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout().lock())
                .map_err(Into::into)
        }
        Command::Broker => {
            init_logging();
            crate::broker::main(&paths)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("tcpb: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `--interval` as a duration: positive and finite.
fn seconds(s: f64) -> anyhow::Result<std::time::Duration> {
    if !(s.is_finite() && s > 0.0) {
        anyhow::bail!("--interval must be a positive number of seconds, not {s}");
    }
    Ok(std::time::Duration::from_secs_f64(s.max(0.05)))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TCPB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn typos_are_near_their_subcommand_and_compilers_are_not() {
        assert_eq!(near_subcommand("statsu"), Some("status"));
        assert_eq!(near_subcommand("sotp"), Some("stop"));
        assert_eq!(near_subcommand("hots"), Some("host"));
        for compiler in [
            "gcc",
            "clang",
            "g++",
            "cc",
            "x86_64-linux-gnu-gcc",
            "/usr/bin/stop",
        ] {
            assert_eq!(near_subcommand(compiler), None, "{compiler}");
        }
    }

    #[test]
    fn subcommand_list_matches_clap() {
        let mut names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        names.push("help".into());
        let mut known: Vec<String> = SUBCOMMANDS.iter().map(|s| s.to_string()).collect();
        names.sort();
        known.sort();
        assert_eq!(names, known);
    }

    /// The checked-in completions match the CLI. `TCPB_BLESS=1 cargo test`
    /// rewrites them.
    #[test]
    fn completions_are_up_to_date() {
        use clap_complete::Shell;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
        for (shell, file) in [
            (Shell::Bash, "tcpb.bash"),
            (Shell::Zsh, "_tcpb"),
            (Shell::Fish, "tcpb.fish"),
        ] {
            let mut now = Vec::new();
            completions(shell, &mut now);
            let path = dir.join(file);
            if std::env::var_os("TCPB_BLESS").is_some() {
                std::fs::write(&path, &now).unwrap();
            }
            let saved = std::fs::read(&path).unwrap_or_default();
            assert!(
                saved == now,
                "{} is out of date: run TCPB_BLESS=1 cargo test",
                path.display()
            );
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
