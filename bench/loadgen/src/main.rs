//! loadgen: load generator for the chatserver WebSocket event server and for the
//! bare-broadcast yardstick (/work/shared/bench/bare-broadcast).
//!
//! Subcommands (see bench/README.md):
//!   fanout       N subscribers in one channel, M publishers at R msg/s total for D s
//!   bare         the same fanout against bare-broadcast (no auth, no join)
//!   connections  N idle authenticated connections: accept rate, server RSS per connection
//!   joinstorm    N clients join one presence room at once; idle: N clients idle in rooms
//!   rooms        many stored rooms with their own publishers and subscribers
//!   feeds        S ticker symbols x Q quotes/s to N subscribers of K symbols each
//!   soak         connect/auth/join/publish/close churn, server RSS sampled every second
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
mod feeds;
mod joinstorm;
mod roomclient;
mod rooms;
mod soak;
mod stats;
mod table;
mod util;
mod ws;

use stats::raise_nofile;
use util::{mint, now_us, Args, Target};

// ---------------------------------------------------------------------------------------------

const USAGE: &str = "usage (see bench/README.md):
  loadgen fanout      [--url 127.0.0.1:8080] [--secret S] [--subs 1000] [--pubs 4] [--rate 200] [--duration 20]
                      [--size 100] [--channel room:bench|ticker:BENCH] [--server-pid PID] [--concurrency 64]
                      [--drain 10] [--threads 2] [--label TEXT]
  loadgen bare        same as fanout, against bare-broadcast (default --url 127.0.0.1:8082; no auth, no join)
  loadgen connections [--target chat|bare] [--conns 15000] [--hold 5]
  loadgen joinstorm   [--target chat|bare] [--clients 3000] [--channel room:storm] [--settle 10] [--timeout 300]
                      [--no-read [--drain 10]] [--limit N]
  loadgen idle        [--target chat|bare] [--clients 15000] [--rooms clients/100] [--hold 10]
  loadgen rooms       [--rooms 100] [--rate 50 (per room)] [--subs 3 (per room)] [--duration 20] [--size 100]
  loadgen feeds       [--symbols 200] [--rate 10 (quotes/s per symbol)] [--subs 5000] [--per-sub 20] [--pubs 4]
                      [--duration 20] [--slow 0 (subscribers that read slowly)]
  loadgen soak        [--target chat|bare] [--inflight 200] [--duration 60] [--rate 0 (cycles/s, 0: no limit)] [--msgs 3] [--rooms 20]
                      [--quiet 10] [--tolerance-mb 16]
  loadgen table FILE.jsonl...      markdown tables of the JSON result lines
  loadgen token [--secret S] [--sub ID] [--name NAME] [--role user|publisher|admin]
common: --url HOST:PORT --secret S --server-pid PID --threads 2 --concurrency 64 --label TEXT
        --src-ips N (connect from 127.0.0.1..N: more ephemeral ports)";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let a = Args::parse(&argv[1..]);
    now_us();
    let nofile = raise_nofile();
    ws::set_src_ips(a.n("src-ips", 1.0) as usize);
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
    if !matches!(cmd.as_str(), "table" | "token") {
        eprintln!("# loadgen {cmd}: RLIMIT_NOFILE {nofile}, {threads} threads");
    }
    let v = match cmd.as_str() {
        "fanout" | "bare" => rt.block_on(fanout::fanout(&a, target)),
        "connections" => rt.block_on(connections::connections(&a, target)),
        "joinstorm" | "idle" => rt.block_on(joinstorm::room_clients(&a, &cmd, target)),
        "rooms" => rt.block_on(rooms::rooms(&a)),
        "feeds" => rt.block_on(feeds::feeds(&a)),
        "soak" => rt.block_on(soak::soak(&a, target)),
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
