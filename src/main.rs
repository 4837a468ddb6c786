//! `chatserver`: reads settings, starts the server, serves until SIGINT/SIGTERM.
//! `chatserver healthcheck` asks a running server's `/healthz` (for containers).

use std::process::ExitCode;

use chatserver::{
    config::{Settings, Source},
    startup::Application,
};

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }
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
        app.run_until_stopped()
            .await
            .map_err(|e| chatserver::startup::StartError::Other(e.to_string()))
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GET /healthz on the configured address; exit 0 when it answers 200.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    let ok = (|| -> Option<bool> {
        let settings = Settings::load().ok()?;
        let mut addr = settings.bind_addr().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let timeout = std::time::Duration::from_secs(2);
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).ok()?;
        Some(buf[..n].starts_with(b"HTTP/1.1 200"))
    })();
    if ok == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
