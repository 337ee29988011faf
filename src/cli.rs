//! The command line: `run`, `dev`, `check`, `test`, `replay`, and the admin
//! API's `status`, `pause`, `resume` and `dead-letters` (list, `replay`,
//! `purge`), over the library. A user who
//! registers projectors of their own builds a binary that calls [`main_with`].

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::config::{self, LogFormat, LogSettings};
use crate::projector::Registry;

mod args;

pub use args::{Cli, Command, LettersAction};

/// Parse the command line and run it with `registry`'s projectors.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            init_logging(cli.log_format, &LogSettings::default());
            check(&config, &registry)
        }
        Command::Run { config } => match config::load(&config) {
            Ok(settings) => {
                init_logging(cli.log_format, &settings.log);
                block_on_daemon(|shutdown| async move {
                    crate::app::run(settings, &registry, shutdown).await
                })
            }
            Err(errors) => report(&errors.errors),
        },
        Command::Test { dir } => {
            init_logging(cli.log_format, &quiet());
            block_on_command(golden(&dir, &registry))
        }
        Command::Replay {
            config,
            events,
            dry_run,
        } => match config::load(&config) {
            Ok(settings) => {
                init_logging(cli.log_format, &quiet());
                block_on_command(replay(settings, &registry, &events, dry_run))
            }
            Err(errors) => report(&errors.errors),
        },
        Command::Status { admin, json } => crate::admin::cli::status(&admin, json),
        Command::Pause { name, admin } => crate::admin::cli::set_paused(&admin, &name, true),
        Command::Resume { name, admin } => crate::admin::cli::set_paused(&admin, &name, false),
        Command::DeadLetters {
            limit,
            pending,
            admin,
            action,
        } => match action {
            None => crate::admin::cli::dead_letters(&admin, limit, pending),
            Some(LettersAction::Replay { partition, to }) => {
                crate::admin::cli::replay_letters(&admin, partition, to)
            }
            Some(LettersAction::Purge { partition, to, all }) => {
                crate::admin::cli::purge_letters(&admin, partition, to, all)
            }
        },
        Command::DeadLetter {
            partition,
            offset,
            admin,
        } => crate::admin::cli::dead_letter(&admin, partition, offset),
        Command::Rebuild {
            name,
            action,
            wait_secs,
            from,
            admin,
        } => crate::admin::rebuild_cli::rebuild(&admin, &name, action, wait_secs, from.as_deref()),
        Command::Dev {
            listen,
            projections,
        } => {
            init_logging(cli.log_format, &LogSettings::default());
            block_on_daemon(|shutdown| async move {
                crate::dev::run(&registry, listen, &projections, shutdown).await
            })
        }
    }
}

fn check(path: &std::path::Path, registry: &Registry) -> ExitCode {
    let settings = match config::load(path) {
        Ok(settings) => settings,
        Err(errors) => return report(&errors.errors),
    };
    match crate::projection::load_dir(&settings, registry) {
        Ok(definitions) => {
            println!(
                "{}: ok ({} caches, {} projections: {})",
                path.display(),
                settings.caches.len(),
                definitions.len(),
                definitions
                    .iter()
                    .map(|definition| definition.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => report(&errors.errors),
    }
}

/// Offline commands print their own results; logs only for warnings.
fn quiet() -> LogSettings {
    LogSettings {
        level: Some("warn".to_owned()),
        format: None,
    }
}

async fn golden(dir: &std::path::Path, registry: &Registry) -> ExitCode {
    let reports = match crate::offline::golden::run(dir, registry).await {
        Ok(reports) => reports,
        Err(errors) => return report(&errors),
    };
    let mut failed = 0;
    for fixture in &reports {
        for failure in &fixture.failures {
            println!("  note {}: {failure}", fixture.projection);
        }
        if fixture.mismatches.is_empty() {
            println!("ok   {}", fixture.projection);
            continue;
        }
        failed += 1;
        println!("FAIL {}", fixture.projection);
        for mismatch in &fixture.mismatches {
            for line in mismatch.lines() {
                println!("     {line}");
            }
        }
    }
    println!("{} passed, {failed} failed", reports.len() - failed);
    if failed == 0 && !reports.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn replay(
    settings: config::Settings,
    registry: &Registry,
    events: &std::path::Path,
    dry_run: bool,
) -> ExitCode {
    match crate::offline::replay::run(&settings, registry, events, dry_run).await {
        Ok(outcome) => {
            let mut out = std::io::stdout().lock();
            for (key, value) in &outcome.projections {
                let line = serde_json::json!({"key": key, "projection": value});
                // A closed pipe (`| head`) ends the listing, not the process.
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
            for failure in &outcome.failures {
                eprintln!("failed {failure}");
            }
            eprintln!(
                "replayed {} records ({} failures){}",
                outcome.records,
                outcome.failures.len(),
                if dry_run { ", nothing written" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("projectionist: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on_command(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(command),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn report(errors: &[String]) -> ExitCode {
    eprintln!("configuration has {} error(s):", errors.len());
    for error in errors {
        eprintln!("  - {error}");
    }
    ExitCode::FAILURE
}

/// Run a daemon future on a multi-threaded runtime, cancelling its token on
/// SIGTERM or SIGINT.
fn block_on_daemon<F, Fut>(daemon: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    block_on_command(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        match daemon(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                error!(error = %format!("{failure:#}"), "exiting");
                eprintln!("projectionist: {failure:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => info!(signal = "SIGTERM", "shutdown requested"),
    }
    shutdown.cancel();
}

/// `RUST_LOG` over the config's `log.level`; `--log-format` over `log.format`.
fn init_logging(format: Option<LogFormat>, configured: &LogSettings) {
    let level = configured.level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL))
    });
    let json = format.or(configured.format) == Some(LogFormat::Json);
    // Colours only for a person at a terminal, not in a pod's log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

const DEFAULT_LOG_LEVEL: &str = "info,rdkafka=warn";
