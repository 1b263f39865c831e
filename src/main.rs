//! The `ketenpoort` command: parse the command line, start logging, run the
//! command in the library (`ketenpoort::cli`) and turn its outcome into what
//! the shell sees. Everything a command does lives in the library, so tests
//! and other front ends reach the same code.

use std::process::ExitCode;

use clap::Parser;
use ketenpoort::cli::{self, Cli, Command, WitnessCommand};
use ketenpoort::logging;

/// mimalloc instead of glibc's malloc: a profile under load showed a fifth of
/// the gateway's CPU time in malloc/free across the runtime's threads. Built
/// without transparent huge pages (`no_thp` in Cargo.toml): with them, every
/// touched 2 MiB of its arena counted whole, and sled's zeroed metrics tables
/// alone made 31 MiB of resident memory at start (20 MiB idle without).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit 0 on success; 1 when the command failed or its answer is "no";
/// 2 for a command line clap rejects (clap exits by itself).
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers write their log lines from a thread of their own, so that a
    // stuck reader stops no exchange; a one-shot command writes them in
    // place, all of them, before its report.
    let serves = matches!(
        cli.command,
        Command::Serve { .. }
            | Command::Demo { .. }
            | Command::Witness {
                command: WitnessCommand::Serve
            }
    );
    let log = logging::init(cli.log_format, serves);
    let ran = cli::run(cli);
    // The queued lines first (a second at most): they come before the
    // report or the error they may explain.
    drop(log);
    match ran.and_then(|report| Ok(report.print()?)) {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not a failure of the
        // command: end quietly, as other Unix tools do.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The same text as returning the error from `main`: the message,
            // then its causes, one per line.
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
