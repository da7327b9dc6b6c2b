//! The `ordo` binary: parse, run, map errors to the exit codes of product.md section 7.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod cli;

// mimalloc rather than glibc's malloc: replays, rebuilds and imports allocate and free
// millions of small strings, often on another thread than the one that allocated them
// (the read-ahead thread decodes, the fold frees); under glibc that cost a quarter of a
// rebuild in malloc, free and arena locks (docs/benchmarks.md has the before and after).
// The benchmarks declare the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Owner-only files (0600) and directories (0700): RocksDB creates its files with the
    // process umask, and the usual 022 would leave the ledger's files readable by everyone
    // (the ledger directory is 0700 too, but files copied out keep their modes).
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORDO_LOG")
                // Warnings, and the one long pause a command may make after its answer: a
                // writer compacting level 0 as it closes (`store/close.rs`).
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,ordo::store::close=info")
                }),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let (kind, code) = match error.downcast_ref::<ordo::Error>() {
                Some(e) => (e.kind(), e.exit_code()),
                None => ("io", 1),
            };
            // A closed pipe (`ordo history X | head`) is not an error worth a message.
            let broken_pipe = error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
            if !broken_pipe {
                // Not eprintln!: it panics when stderr cannot be written (a full disk, a
                // closed descriptor), and the exit code must still say what happened.
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "error: {error:#}");
                if args.format == cli::Format::Json {
                    let json = serde_json::json!({"error": {"kind": kind, "message": format!("{error:#}")}});
                    let _ = writeln!(stderr, "{json}");
                }
            }
            ExitCode::from(code)
        }
    }
}
