//! `soak`: connect/disconnect churn for --duration s with --inflight clients at any time.
//! A chat client connects, authenticates, joins one of --rooms rooms, publishes --msgs
//! messages (waits for their acks), leaves, closes (close handshake) and starts over (at
//! most --rate cycles/s in total when given); a
//! bare client connects, sends --msgs frames and closes. The server's RSS is sampled every
//! second through the churn and a --quiet period after it. Reported: RSS at start, peak,
//! after the quiet period, and whether it came back flat: end − start ≤ --tolerance-mb
//! (default 16 MB), and growth over the second half of the churn ≤ tolerance / 4 (a leak
//! grows steadily; allocator retention levels off after the first rounds).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::stats::*;
use crate::util::{mint, now_us, Args, Events, Target};
use crate::ws::{find, num_after, put_frame, send_pong, send_text, wait_json, ws_connect, Frame, WsReader};

struct Soak {
    addr: String,
    secret: String,
    target: Target,
    rooms: usize,
    msgs: usize,
    size: usize,
    cycles: AtomicU64,
    failed: AtomicU64,
    ev: Events,
    ack: Mutex<Hist>,
    cycle: Mutex<Hist>,
}

/// Reads until the reply with `id` (answers pings); other frames are counted away.
async fn wait_id(rd: &mut WsReader, w: &mut tokio::net::tcp::OwnedWriteHalf, id: u64, ev: &Events) -> io::Result<()> {
    loop {
        match rd.next().await? {
            Frame::Text(p) => {
                if p.starts_with(b"{\"id\":") && num_after(&p, b"\"id\":") == Some(id) {
                    if find(&p[..p.len().min(40)], b"\"error\"").is_some() {
                        ev.add(format!(
                            "error reply: {}",
                            String::from_utf8_lossy(&p[..p.len().min(160)])
                        ));
                    }
                    return Ok(());
                }
            }
            Frame::Ping(p) => send_pong(w, &p).await?,
            Frame::Close(c, r) => return Err(io::Error::new(io::ErrorKind::Other, format!("close {c} {r}"))),
        }
    }
}

async fn one_cycle(s: &Soak, worker: usize, n: u64) -> io::Result<()> {
    let chat = s.target == Target::Chat;
    let tok = mint(
        &s.secret,
        &format!("lg-soak-{worker}"),
        &format!("soak{worker}"),
        "user",
    );
    let (mut rd, mut w) = ws_connect(&s.addr, chat.then_some(tok.as_str())).await?;
    let pad = "x".repeat(s.size.saturating_sub(40));
    if chat {
        wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
        let ch = format!("room:soak-{}", (worker + n as usize) % s.rooms);
        send_text(&mut w, &format!(r#"{{"id":1,"op":"join","channel":"{ch}","limit":5}}"#)).await?;
        wait_id(&mut rd, &mut w, 1, &s.ev).await?;
        for m in 0..s.msgs as u64 {
            let t = now_us();
            let req = format!(
                r#"{{"id":{},"op":"publish","channel":"{ch}","data":{{"type":"text","text":"soak {worker}/{n}/{m} {pad}"}}}}"#,
                m + 10
            );
            send_text(&mut w, &req).await?;
            wait_id(&mut rd, &mut w, m + 10, &s.ev).await?;
            s.ack.lock().unwrap().rec(now_us() - t);
        }
        send_text(&mut w, &format!(r#"{{"id":2,"op":"leave","channel":"{ch}"}}"#)).await?;
        wait_id(&mut rd, &mut w, 2, &s.ev).await?;
    } else {
        let mut out = Vec::new();
        for m in 0..s.msgs {
            put_frame(
                &mut out,
                0x1,
                format!(r#"{{"soak":"{worker}/{n}/{m} {pad}"}}"#).as_bytes(),
            );
        }
        w.write_all(&out).await?;
    }
    // close handshake: send ours, wait (bounded) for the server's close or EOF
    let mut out = Vec::new();
    put_frame(&mut out, 0x8, &1000u16.to_be_bytes());
    w.write_all(&out).await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match rd.next().await {
                Ok(Frame::Close(..)) | Err(_) => break,
                _ => {}
            }
        }
    })
    .await;
    Ok(())
}

pub async fn soak(a: &Args, target: Target) -> Value {
    let inflight = a.n("inflight", 200.0) as usize;
    let dur = a.n("duration", 60.0);
    let quiet = a.n("quiet", 10.0);
    let rate = a.n("rate", 0.0);
    let tol_mb = a.n("tolerance-mb", 16.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let default_addr = if target == Target::Bare {
        "127.0.0.1:8082"
    } else {
        "127.0.0.1:8080"
    };
    let s = Arc::new(Soak {
        addr: a
            .s("url", default_addr)
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string(),
        secret: a.s("secret", "bench-secret"),
        target,
        rooms: a.n("rooms", 20.0) as usize,
        msgs: a.n("msgs", 3.0) as usize,
        size: a.n("size", 100.0) as usize,
        cycles: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        ev: Events::default(),
        ack: Mutex::new(Hist::new()),
        cycle: Mutex::new(Hist::new()),
    });
    // RSS every second, from before the churn to the end of the quiet period
    let series = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let t0 = Instant::now();
    let sampler = {
        let series = series.clone();
        tokio::spawn(async move {
            let Some(pid) = pid else { return };
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                iv.tick().await;
                if let Some(r) = proc_rss_kb(pid) {
                    series.lock().unwrap().push((t0.elapsed().as_secs_f64(), r));
                }
            }
        })
    };
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs_f64(dur);
    let workers: Vec<_> = (0..inflight)
        .map(|wk| {
            let s = s.clone();
            tokio::spawn(async move {
                // spread the first connects over the first second
                tokio::time::sleep(Duration::from_micros((wk as u64 * 1_000_000) / inflight as u64)).await;
                let mut n = 0u64;
                let t_start = Instant::now();
                while Instant::now() < deadline {
                    if rate > 0.0 {
                        // this worker's share of --rate cycles/s
                        let due = t_start + Duration::from_secs_f64(n as f64 * inflight as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    let c0 = now_us();
                    match tokio::time::timeout(Duration::from_secs(30), one_cycle(&s, wk, n)).await {
                        Ok(Ok(())) => {
                            s.cycles.fetch_add(1, Relaxed);
                            s.cycle.lock().unwrap().rec(now_us() - c0);
                        }
                        Ok(Err(e)) => {
                            s.failed.fetch_add(1, Relaxed);
                            s.ev.add(format!("cycle failed: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => {
                            s.failed.fetch_add(1, Relaxed);
                            s.ev.add("cycle timeout 30s");
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut last = Instant::now();
    for h in workers {
        while !h.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if last.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "#   soak {:.0}s: {} cycles, {} failed, server RSS {} KB",
                    t0.elapsed().as_secs_f64(),
                    s.cycles.load(Relaxed),
                    s.failed.load(Relaxed),
                    pid.and_then(proc_rss_kb).unwrap_or(0)
                );
                last = Instant::now();
            }
        }
        let _ = h.await;
    }
    let churn_s = t0.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let rss_churn_end = pid.and_then(proc_rss_kb).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs_f64(quiet)).await;
    let rss_end = pid.and_then(proc_rss_kb).unwrap_or(0);
    sampler.abort();
    let series = series.lock().unwrap().clone();
    let churn: Vec<u64> = series.iter().filter(|(t, _)| *t <= churn_s).map(|x| x.1).collect();
    let mean = |v: &[u64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<u64>() as f64 / v.len() as f64
        }
    };
    let (mid, tail) = if churn.len() >= 10 {
        let k = churn.len() / 10;
        (
            mean(&churn[churn.len() / 2 - k / 2..churn.len() / 2 + k / 2 + 1]),
            mean(&churn[churn.len() - k..]),
        )
    } else {
        (0.0, 0.0)
    };
    let peak = series.iter().map(|x| x.1).max().unwrap_or(0).max(rss_churn_end);
    let growth_2nd_half_mb = (tail - mid) / 1024.0;
    let end_minus_start_mb = (rss_end as f64 - rss0 as f64) / 1024.0;
    let cycles = s.cycles.load(Relaxed);
    let ack = s.ack.lock().unwrap().clone();
    let cyc = s.cycle.lock().unwrap().clone();
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let v = json!({
        "scenario": "soak", "target": if target == Target::Bare { "bare-broadcast" } else { "chatserver" },
        "label": a.s("label", ""), "inflight": inflight, "rate_limit": rate, "duration_s": dur, "quiet_s": quiet,
        "msgs_per_cycle": s.msgs, "rooms": s.rooms,
        "cycles": cycles, "failed": s.failed.load(Relaxed), "cycles_per_s": r1(cycles as f64 / churn_s),
        "cycle_p50_ms": ms(cyc.pct(50.0)), "cycle_p99_ms": ms(cyc.pct(99.0)),
        "ack_p50_ms": ms(ack.pct(50.0)), "ack_p99_ms": ms(ack.pct(99.0)), "ack_max_ms": ms(ack.max),
        "server_cpu_s": r1(cpu1 - cpu0),
        "server_us_per_cycle": if cycles > 0 { ((cpu1 - cpu0) * 1e6 / cycles as f64).round() } else { 0.0 },
        "server_rss_kb_start": rss0, "server_rss_kb_peak": peak, "server_rss_kb_churn_end": rss_churn_end,
        "server_rss_kb_end": rss_end,
        "rss_mb_end_minus_start": r1(end_minus_start_mb), "rss_mb_growth_2nd_half": r1(growth_2nd_half_mb),
        "tolerance_mb": tol_mb,
        "flat": end_minus_start_mb <= tol_mb && growth_2nd_half_mb <= tol_mb / 4.0,
        "rss_kb_by_s": series.iter().map(|x| x.1).collect::<Vec<_>>(),
        "events": s.ev.json(),
    });
    eprintln!(
        "# soak {}: {inflight} in flight for {dur}s: {cycles} cycles ({} /s), {} failed; cycle p50 {} p99 {} ms; ack p99 {} ms",
        v["target"], v["cycles_per_s"], v["failed"], v["cycle_p50_ms"], v["cycle_p99_ms"], v["ack_p99_ms"]
    );
    eprintln!(
        "#   server RSS KB start {rss0}, peak {peak}, churn end {rss_churn_end}, {quiet}s later {rss_end}: end-start {:.1} MB, 2nd-half growth {:.1} MB (tolerance {tol_mb} MB) -> flat {}; events {}",
        end_minus_start_mb, growth_2nd_half_mb, v["flat"], v["events"]
    );
    v
}
