//! `chatserver migrate`: runs pending migrations and lists every migration.

use super::CliError;
use crate::{config::Settings, storage::DbTarget};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only list the migrations and their state; run nothing.
    #[arg(long)]
    pub status: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let settings = Settings::load()?;
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| CliError::new(format!("data dir {}: {e}", settings.data_dir.display())))?;
    let target = DbTarget::resolve(settings.database_url.as_deref(), &settings.data_dir)?;
    println!("storage: {}", target.backend());
    if !args.status {
        let ran = target.run_migrations()?;
        if ran.is_empty() {
            println!("nothing to migrate");
        }
        for v in ran {
            println!("ran {v}");
        }
    }
    for (version, applied) in target.migrations()? {
        println!("{} {version}", if applied { "[x]" } else { "[ ]" });
    }
    Ok(())
}
