//! `chatserver`: reads settings, starts the server, serves until SIGINT/SIGTERM.

use chatserver::{config::Settings, startup::Application};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = async {
        let settings = Settings::load()?;
        let app = Application::build(settings).await?;
        // Tests and scripts read the bound address from this line.
        println!("listening on {}", app.addr());
        app.run_until_stopped()
            .await
            .map_err(|e| chatserver::startup::StartError::Other(e.to_string()))
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
