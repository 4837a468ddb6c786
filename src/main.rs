//! `chatserver`: the command line ([`chatserver::cli`]). Without a command (or with
//! `serve`) it reads settings, starts the server and serves until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;

use chatserver::{
    cli::{Cli, Command},
    config::{Settings, Source},
    startup::Application,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    chatserver::logging::init(chatserver::logging::configured_format());
    match cli.command {
        None | Some(Command::Serve) => serve(),
        Some(other) => chatserver::cli::run(other),
    }
}

#[actix_web::main]
async fn serve() -> ExitCode {
    let result = async {
        let (settings, sources) = Settings::load_with_sources()?;
        // Which settings were set, and where (never their values: one is the secret).
        let set: Vec<String> = sources
            .iter()
            .filter(|(_, source)| **source != Source::Default)
            .map(|(key, source)| format!("{key} ({source})"))
            .collect();
        if !set.is_empty() {
            log::info!("settings: {}", set.join(", "));
        }
        let app = Application::build(settings).await?;
        // Tests and scripts read the bound address from this line.
        println!("listening on {}", app.addr());
        if let Some(addr) = app.metrics_addr() {
            println!("metrics on {addr}");
        }
        app.run_until_stopped()
            .await
            .map_err(|e| chatserver::startup::StartError::Other(e.to_string()))
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            if !chatserver::logging::is_json() {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
