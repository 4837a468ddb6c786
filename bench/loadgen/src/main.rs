//! loadgen: load generator for the chatserver WebSocket event server and for the
//! bare-broadcast yardstick (/work/shared/bench/bare-broadcast).
//!
//! Subcommands (see bench/README.md):
//!   fanout       N subscribers in one channel, M publishers at R msg/s total for D s
//!   bare         the same fanout against bare-broadcast (no auth, no join)
//!   connections  N idle authenticated connections: accept rate, server RSS per connection
//!   table        turn JSON result lines into a markdown table
//!
//! Every scenario prints one JSON line on stdout and a human summary on stderr.
//! The WebSocket client is hand-rolled (RFC 6455 client side: masked frames out,
//! unmasked frames in, ping -> pong) to keep the generator's CPU cost low: it shares
//! the machine with the server under test.

#![recursion_limit = "256"]

mod clients;
mod connections;
mod fanout;
mod stats;
mod table;
mod util;
mod ws;

use stats::raise_nofile;
use util::{mint, now_us, Args, Target};

// ---------------------------------------------------------------------------------------------

const USAGE: &str = "usage:
  loadgen fanout      [--url 127.0.0.1:8080] [--secret S] [--subs 1000] [--pubs 4] [--rate 200] [--duration 20]
                      [--size 100] [--channel room:bench|ticker:BENCH] [--server-pid PID] [--concurrency 64]
                      [--drain 10] [--threads 2] [--label TEXT]
  loadgen bare        same as fanout, against bare-broadcast (default --url 127.0.0.1:8082; no auth, no join)
  loadgen connections [--url ...] [--target chat|bare] [--secret S] [--conns 15000] [--hold 5] [--server-pid PID]
  loadgen table FILE.jsonl...      markdown table of the JSON result lines
  loadgen token [--secret S] [--sub ID] [--name NAME] [--role user|publisher|admin]";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let a = Args::parse(&argv[1..]);
    now_us();
    let nofile = raise_nofile();
    let threads = a.n("threads", 2.0) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let target = match a.s("target", if cmd == "bare" { "bare" } else { "chat" }).as_str() {
        "bare" => Target::Bare,
        _ => Target::Chat,
    };
    let v = match cmd.as_str() {
        "fanout" | "bare" => {
            eprintln!("# loadgen: RLIMIT_NOFILE {nofile}, {threads} threads");
            rt.block_on(fanout::fanout(&a, target))
        }
        "connections" => {
            eprintln!("# loadgen: RLIMIT_NOFILE {nofile}, {threads} threads");
            rt.block_on(connections::connections(&a, target))
        }
        "table" => {
            table::table(&a.rest);
            return;
        }
        "token" => {
            println!(
                "{}",
                mint(
                    &a.s("secret", "bench-secret"),
                    &a.s("sub", "lg-1"),
                    &a.s("name", "lg"),
                    &a.s("role", "user")
                )
            );
            return;
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    println!("{v}");
    // do not wait for lingering sockets
    std::process::exit(0);
}
