//! The `maskd` command line: `run` and `check-config`. Parses arguments, loads and validates
//! the config (exit 64 on any problem, before any port is bound), initialises logging and
//! hands over to `app::run`.

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: with ~30,000 live SIP transactions at 1,000 calls/s,
/// glibc's malloc/free/consolidate were ~21 % of the voice plane's CPU (BENCHMARKS.md).
#[cfg(not(debug_assertions))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Debug builds also count live heap bytes (`maskd_heap_live_bytes`, for the leak checks of
/// scripts/protos-replay).
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOC: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

const USAGE: &str = "usage: maskd run --config PATH\n       maskd check-config --config PATH\n       maskd --version";
const EX_USAGE: u8 = 64;

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().skip(1);
    let cmd = it.next().ok_or("missing command")?;
    match cmd.as_str() {
        "--version" | "-V" => return Ok(Command::Version),
        "--help" | "-h" | "help" => return Ok(Command::Help),
        "run" | "check-config" => {}
        other => return Err(format!("unknown command \"{other}\"")),
    }
    let mut config = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(it.next().ok_or("--config needs a path")?))
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]))
            }
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    let config = config.ok_or("--config PATH is required")?;
    Ok(if cmd == "run" {
        Command::Run(config)
    } else {
        Command::Check(config)
    })
}

fn config_errors(path: &std::path::Path, e: &maskd::config::ConfigError) -> ExitCode {
    for line in e.lines() {
        eprintln!("maskd: config {}: {line}", path.display());
    }
    ExitCode::from(EX_USAGE)
}

fn main() -> ExitCode {
    #[cfg(debug_assertions)]
    maskd::heap::count_with(|| ALLOC.allocated());
    let args: Vec<String> = std::env::args().collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maskd: {e}\n{USAGE}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let path = match cmd {
        Command::Version => {
            eprintln!("maskd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Help => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Check(path) => {
            return match maskd::config::load_valid(&path) {
                Ok(_) => {
                    eprintln!("maskd: config {} is valid", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => config_errors(&path, &e),
            };
        }
        Command::Run(path) => path,
    };
    let cfg = match maskd::config::load_valid(&path) {
        Ok(c) => c,
        Err(e) => return config_errors(&path, &e),
    };
    maskd::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.raw.workers())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("maskd: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    let result = runtime.block_on(maskd::app::run(cfg, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maskd: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
