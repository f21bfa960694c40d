//! The `facelock` command: serves the API (the default) and offers the operator's tools on the
//! same data folder. Each command lives in its own file under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use facelock::config::Settings;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    limit_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("facelock: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core) and keeps
/// freed memory in each: inference on the blocking pool's threads then doubled the resident
/// memory of a busy server (223 MiB against 109 MiB with two arenas, 8 concurrent verifies).
/// Blocks of up to 16 MiB (a network layer's output) come from the heap instead of fresh
/// mappings, and up to 64 MiB of freed heap is kept: each analysis otherwise faulted in and
/// zeroed new pages for every layer (a tenth of a benchmark's time in the kernel).
/// Must run before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

async fn run() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("facelock: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    facelock::telemetry::init(settings.debug, settings.log_format);
    if let Some(cap) = settings.engine.max_cpu_isa {
        // Before any kernel runs: the choice holds for the whole process.
        facelock_engine::cpu::limit(cap);
    }
    let command = cli.command.unwrap_or(Command::Serve(Default::default()));
    match command.run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facelock: {}", facelock::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
