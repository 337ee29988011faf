//! What the command line says: the commands and their arguments, as clap
//! parses them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin::client::DEFAULT_ADMIN;
use crate::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "projectionist",
    version,
    about = "Builds read models from Kafka events"
)]
pub struct Cli {
    /// Log format (default: the config's `log.format`, else text).
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the whole pipeline on embedded defaults: an in-process mock Kafka
    /// seeded with the example events, memory caches, the HTTP endpoints.
    Dev {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "projections")]
        projections: PathBuf,
    },
    /// Validate the configuration and every projection definition, connecting
    /// to nothing; lists every error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Golden tests: run every `DIR/fixtures/<projection>/events.jsonl` offline
    /// and compare with its `expected.json`; prints a diff per mismatch.
    Test {
        #[arg(default_value = "projections")]
        dir: PathBuf,
    },
    /// Apply a file of events (JSON lines of records) to the configured caches,
    /// or with --dry-run print the resulting projections without writing.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        events: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Every projection and partition of a running replica: state (catching
    /// up, live, stalled, paused) and lag in offsets and seconds.
    Status {
        /// The replica's admin API.
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
        /// Print the API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Pause a projection in every replica, until resumed (restarts keep it).
    /// Its whole cache waits with it. Token from PROJECTIONIST_ADMIN_TOKEN.
    Pause {
        name: String,
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
    },
    /// Resume a paused projection: it applies what it missed, from its checkpoint.
    Resume {
        name: String,
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
    },
    /// The dead letters, from the start of the dead-letter topic: where each
    /// sits (partition/offset), why it failed, where it came from, and
    /// whether it is pending or handled (replayed or purged). `replay` and
    /// `purge` take them up.
    DeadLetters {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only the pending letters, from where they start.
        #[arg(long)]
        pending: bool,
        #[arg(long, default_value = DEFAULT_ADMIN, global = true)]
        admin: String,
        #[command(subcommand)]
        action: Option<LettersAction>,
    },
    /// One dead letter whole: the original record and every header, as JSON.
    DeadLetter {
        partition: i32,
        offset: i64,
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
    },
    /// Rebuild a projection beside its live version, follow it, promote it,
    /// roll it back or drop it. Token (for all but status and watch) from
    /// PROJECTIONIST_ADMIN_TOKEN.
    Rebuild {
        name: String,
        #[arg(value_enum, default_value = "start")]
        action: crate::admin::rebuild_cli::Action,
        /// For promote and rollback: how long to wait for the shadow to reach
        /// the live version once the live writers hold (default 30).
        #[arg(long)]
        wait_secs: Option<u64>,
        /// For start: build from the first records at or after this time
        /// (RFC 3339, e.g. 2026-11-01T00:00:00Z) instead of from the start.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value = DEFAULT_ADMIN)]
        admin: String,
    },
}

/// What to do with pending dead letters. Token from PROJECTIONIST_ADMIN_TOKEN.
#[derive(Debug, Subcommand)]
pub enum LettersAction {
    /// Apply the pending letters, each once, to the projection it failed for
    /// (after the fixed definition is deployed). A letter that fails again
    /// goes back to the dead-letter topic, pending again.
    Replay {
        /// Only this partition of the dead-letter topic.
        #[arg(long)]
        partition: Option<i32>,
        /// Up to and including this offset of the partition.
        #[arg(long, requires = "partition")]
        to: Option<i64>,
    },
    /// Mark letters handled without applying them. The records stay in the
    /// topic until its retention removes them.
    Purge {
        /// Only this partition of the dead-letter topic.
        #[arg(long, required_unless_present = "all")]
        partition: Option<i32>,
        /// Up to and including this offset of the partition.
        #[arg(long, requires = "partition")]
        to: Option<i64>,
        /// Every pending letter of every partition.
        #[arg(long, conflicts_with_all = ["partition", "to"])]
        all: bool,
    },
}
