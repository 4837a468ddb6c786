//! The command line. `serve` (the default, so `chatserver` alone serves) starts the
//! server; the other commands work on the configured storage (SQLite or PostgreSQL)
//! and exit:
//!
//! * [`migrate`] – run pending migrations and list them;
//! * [`user`] – accounts: add, passwd, role, ban, unban, list;
//! * [`token`] – mint a token signed with the configured secret;
//! * [`config`] – print the effective configuration with its sources;
//! * [`health`] – ask a running server's `/healthz` (container health checks);
//! * [`backup`] – a consistent online copy of the SQLite database and the uploads.
//!
//! Changes that affect running servers (a password, a role, a ban) go through the
//! database's change log, which every node polls (`startup::follow_changes`).

pub mod backup;
pub mod config;
pub mod health;
pub mod migrate;
pub mod token;
pub mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{
    config::Settings,
    storage::{Conn, DbTarget},
};

/// Realtime event server: chat, live feeds and location tracking over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "chatserver", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and WebSocket until SIGINT/SIGTERM (the default).
    Serve,
    /// Run pending database migrations, then list every migration and its state.
    Migrate(migrate::Args),
    /// Manage accounts.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Make tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Ask the running server's /healthz; exit 0 when it answers 200.
    Healthcheck,
    /// Copy the SQLite database (online, consistent) and the uploads.
    Backup(backup::Args),
}

/// Why a command failed: printed as `error: ...`, exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn new(m: impl Into<String>) -> CliError {
        CliError(m.into())
    }
}

impl From<crate::error::AppError> for CliError {
    fn from(e: crate::error::AppError) -> CliError {
        CliError(e.message)
    }
}

impl From<crate::storage::OpenError> for CliError {
    fn from(e: crate::storage::OpenError) -> CliError {
        CliError(e.to_string())
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> CliError {
        CliError(e.to_string())
    }
}

/// Runs a command other than `serve`.
pub fn run(command: Command) -> ExitCode {
    let r = match command {
        Command::Serve => unreachable!("serve is run by main"),
        Command::Migrate(a) => migrate::run(a),
        Command::User(c) => user::run(c),
        Command::Token(c) => token::run(c),
        Command::Config(c) => config::run(c),
        Command::Healthcheck => health::run(),
        Command::Backup(a) => backup::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configured storage, migrated, and one connection to it.
fn storage(settings: &Settings) -> Result<(DbTarget, Conn), CliError> {
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| CliError::new(format!("data dir {}: {e}", settings.data_dir.display())))?;
    let target = DbTarget::resolve(settings.database_url.as_deref(), &settings.data_dir)?;
    target.run_migrations()?;
    let conn = target.connect()?;
    Ok((target, conn))
}
