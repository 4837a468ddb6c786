//! `chatserver healthcheck`: asks the configured address's `/healthz` (for container
//! health checks); exit 0 when it answers 200.

use std::io::{Read, Write};

use super::CliError;
use crate::config::Settings;

pub fn run() -> Result<(), CliError> {
    let settings = Settings::load()?;
    let mut addr = settings.bind_addr().map_err(|e| CliError::new(e.to_string()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(2);
    let fail = |e: std::io::Error| CliError::new(format!("{addr}: {e}"));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).map_err(fail)?;
    if buf[..n].starts_with(b"HTTP/1.1 200") {
        println!("healthy");
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{addr}/healthz answered {:?}",
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("")
        )))
    }
}
