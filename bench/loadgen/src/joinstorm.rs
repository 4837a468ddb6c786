//! `joinstorm`: N clients connect, authenticate and join ONE presence room as fast as the
//! server lets them, then keep reading; `idle`: N clients each join one of R presence rooms
//! and sit idle for --hold s. Both report server RSS per connection and check at the end
//! that the connections are alive (a `ping` op round trip on each). With `--target bare`
//! both run `connections` against bare-broadcast (accept N connections and hold them),
//! reported under the same scenario name so the table puts the two side by side.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::connections::connections;
use crate::roomclient::{client, Phase, RoomCfg, Shared};
use crate::rooms::{merge, CpuWindow};
use crate::stats::*;
use crate::util::{Args, Target};

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mean_max(v: &[u64]) -> (f64, u64) {
    if v.is_empty() {
        return (0.0, 0);
    }
    (v.iter().sum::<u64>() as f64 / v.len() as f64, *v.iter().max().unwrap())
}

/// The bare counterpart: `connections --target bare`, renamed.
async fn bare(a: &Args, scenario: &str, n: usize, hold: f64) -> Value {
    let mut map = a.map.clone();
    map.insert("conns".into(), n.to_string());
    map.insert("hold".into(), hold.to_string());
    let c = connections(&Args { map, rest: vec![] }, Target::Bare).await;
    let per = c["rss_kb_per_conn"].clone();
    json!({
        "scenario": scenario, "target": "bare-broadcast", "label": c["label"],
        "clients": n, "rooms": 0, "joined": c["connected"], "failed": c["failed"],
        "total_s": c["ramp_s"], "joins_per_s": c["accept_per_s"],
        "alive_end": c["alive_after_hold"], "hold_s": hold,
        "server_rss_kb_before": c["server_rss_kb_before"], "server_rss_kb_settled": c["server_rss_kb_open"],
        "server_rss_kb_after_close": c["server_rss_kb_after_close"],
        "rss_kb_per_conn_settled": per, "rss_kb_per_conn_storm": per,
        "server_us_per_join": c["server_us_per_accept"],
        "storm_bytes_mean": 0, "storm_bytes_max": 0, "settle_bytes_mean": 0, "settle_bytes_max": 0,
        "events": c["events"],
    })
}

pub async fn room_clients(a: &Args, scenario: &str, target: Target) -> Value {
    let idle = scenario == "idle";
    let n = a.n("clients", a.n("conns", if idle { 15000.0 } else { 3000.0 })) as usize;
    let settle = if idle { a.n("hold", 10.0) } else { a.n("settle", 10.0) };
    if target == Target::Bare {
        return bare(a, scenario, n, settle).await;
    }
    let rooms = if idle {
        a.n("rooms", (n as f64 / 100.0).ceil().max(1.0)) as usize
    } else {
        1
    };
    let channels: Vec<String> = if idle {
        (0..rooms).map(|k| format!("room:idle-{k}")).collect()
    } else {
        vec![a.s("channel", "room:storm")]
    };
    let read = !a.map.contains_key("no-read");
    let timeout = a.n("timeout", 300.0);
    let conc = a.n("concurrency", 64.0) as usize;
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let label = a.s("label", "");
    let cfg = Arc::new(RoomCfg {
        addr: a
            .s("url", "127.0.0.1:8080")
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string(),
        secret: a.s("secret", "bench-secret"),
        channels,
        read,
        limit: a.map.get("limit").map(|l| l.parse().unwrap()),
        tag: if idle { "idle".into() } else { "storm".into() },
    });
    let sh = Arc::new(Shared::new(n));
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let cpu_window = CpuWindow::start(pid);
    let (rss_peak, mon) = rss_monitor(pid);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let sem = Arc::new(Semaphore::new(conc));
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(client(
                i,
                cfg.clone(),
                sem.clone(),
                sh.clone(),
                rtx.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    drop(rtx);
    // 1. the storm: until every client joined (or failed), or --timeout
    let t0 = Instant::now();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut last_print = Instant::now();
    while ok + failed < n as u64 {
        let left = Duration::from_secs_f64(timeout).saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, rrx.recv()).await {
            Ok(Some(Ok(()))) => ok += 1,
            Ok(Some(Err(e))) => {
                failed += 1;
                sh.ev.add(format!("failed: {e}"));
            }
            Ok(None) => break,
            Err(_) => {
                sh.ev.add(format!(
                    "timeout after {timeout}s: {} clients not joined",
                    n as u64 - ok - failed
                ));
                break;
            }
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "#   {ok} joined, {failed} failed after {:.1}s",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let first = sh.first_connect_us.load(Relaxed);
    let last = sh.last_join_us.load(Relaxed);
    let storm_s = if read && last > first {
        (last - first) as f64 / 1e6
    } else {
        wall
    };
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    // server, loadgen and other processes' CPU during the storm
    let (_, storm_cpu) = cpu_window.end();
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let b1 = sh.bytes_snapshot();
    eprintln!(
        "# {scenario}: {ok} {} ({failed} failed) in {storm_s:.2}s; server RSS {rss0} -> {rss1} KB; settling {settle}s",
        if read { "joined" } else { "joins sent" }
    );
    // 2. settle / hold
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let b2 = sh.bytes_snapshot();
    let rss2 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu2 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    // 3. no-read clients now read what the server kept for them (or the close)
    if !read {
        let _ = phase_tx.send(Phase::Drain);
        tokio::time::sleep(Duration::from_secs_f64(a.n("drain", 10.0))).await;
    }
    let b3 = sh.bytes_snapshot();
    // 4. liveness: a ping round trip on every connection still open
    let open = ok.saturating_sub(sh.closed.load(Relaxed));
    let _ = phase_tx.send(Phase::Ping);
    let p0 = Instant::now();
    while sh.ping_ok.load(Relaxed) < open && p0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss3 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let _ = phase_tx.send(Phase::Stop);
    mon.abort();
    let mut res = Vec::with_capacity(n);
    for h in handles {
        res.push(h.await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss4 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let threads = pid.and_then(proc_threads).unwrap_or(0);

    let joined: Vec<_> = res.iter().enumerate().filter(|(_, r)| r.joined).collect();
    let nj = joined.len() as u64;
    let storm_b: Vec<u64> = joined.iter().map(|(i, _)| b1[*i]).collect();
    let settle_b: Vec<u64> = joined.iter().map(|(i, _)| b2[*i] - b1[*i]).collect();
    let drain_b: Vec<u64> = joined.iter().map(|(i, _)| b3[*i] - b2[*i]).collect();
    let (dr_mean, dr_max) = mean_max(&drain_b);
    let reply_b: Vec<u64> = joined.iter().map(|(_, r)| r.reply_bytes).collect();
    let members: Vec<u64> = joined.iter().map(|(_, r)| r.reply_members).collect();
    let mut join_h = Hist::new();
    let mut ping_h = Hist::new();
    for (_, r) in &joined {
        join_h.rec(r.join_us);
    }
    for r in &res {
        if let Some(p) = r.ping_us {
            ping_h.rec(p);
        }
    }
    let (sb_mean, sb_max) = mean_max(&storm_b);
    let (st_mean, st_max) = mean_max(&settle_b);
    let (rb_mean, rb_max) = mean_max(&reply_b);
    let (m_mean, m_max) = mean_max(&members);
    let pc_max = res.iter().filter_map(|r| r.reply_presence_count).max();
    let more = res.iter().filter(|r| r.reply_more).count();
    let pev: u64 = res.iter().map(|r| r.presence_events).sum();
    let pev_b: u64 = res.iter().map(|r| r.presence_bytes).sum();
    let pev_co: u64 = res.iter().map(|r| r.presence_count_only).sum();
    let pev_count_max = res.iter().filter_map(|r| r.presence_max_count).max();
    let closed = res.iter().filter(|r| r.closed.is_some()).count();
    let ping_ok = res.iter().filter(|r| r.ping_us.is_some()).count();
    // per open connection (a no-read client may not have its join reply yet, and is
    // still a connection the server holds)
    let nconn = res.iter().filter(|r| r.connected).count() as u64;
    let per = |rss: u64| {
        if nconn > 0 {
            r2((rss as f64 - rss0 as f64) / nconn as f64)
        } else {
            0.0
        }
    };
    let mut v = json!({
        "scenario": scenario, "target": "chatserver", "label": label,
        "clients": n, "rooms": rooms, "read": read, "channel": if idle { "room:idle-*".to_string() } else { cfg.channels[0].clone() },
        "connected": nconn, "joined": nj, "failed": failed,
        "total_s": r2(storm_s), "joins_per_s": if storm_s > 0.0 { (nj as f64 / storm_s).round() } else { 0.0 },
        // a no-read client reads its reply only after the settle window: no join latency
        "join_p50_ms": if read { json!(ms(join_h.pct(50.0))) } else { Value::Null },
        "join_p99_ms": if read { json!(ms(join_h.pct(99.0))) } else { Value::Null },
        "join_max_ms": if read { json!(ms(join_h.max)) } else { Value::Null },
        "drain_bytes_mean": dr_mean.round(), "drain_bytes_max": dr_max,
        "hold_s": settle, "closed": closed, "alive_end": ping_ok,
        "ping_p50_ms": ms(ping_h.pct(50.0)), "ping_p99_ms": ms(ping_h.pct(99.0)), "ping_max_ms": ms(ping_h.max),
        "server_rss_kb_before": rss0, "server_rss_kb_storm": rss1, "server_rss_kb_settled": rss2,
        "server_rss_kb_peak": rss_peak.load(Relaxed).max(rss1).max(rss2), "server_rss_kb_end": rss3,
        "server_rss_kb_after_close": rss4,
        "rss_kb_per_conn_storm": per(rss1), "rss_kb_per_conn_settled": per(rss2),
        "server_cpu_s_storm": r2(cpu1 - cpu0), "server_cpu_s_settle": r2(cpu2 - cpu1),
        "server_us_per_join": if nj > 0 { ((cpu1 - cpu0) * 1e6 / nj as f64).round() } else { 0.0 },
        "server_threads": threads,
        "storm_bytes_mean": sb_mean.round(), "storm_bytes_max": sb_max,
        "settle_bytes_mean": st_mean.round(), "settle_bytes_max": st_max,
        "join_reply_bytes_mean": rb_mean.round(), "join_reply_bytes_max": rb_max,
        "join_reply_members_mean": r2(m_mean), "join_reply_members_max": m_max,
        "join_reply_presence_count_max": pc_max, "join_replies_more": more,
        "presence_events": pev, "presence_event_bytes": pev_b, "presence_events_count_only": pev_co,
        "presence_event_count_max": pev_count_max,
        "events": sh.ev.json(),
    });
    merge(&mut v, json!({ "storm_cpu": storm_cpu }));
    eprintln!(
        "# {scenario} chatserver: {nj}/{n} joined ({failed} failed, {closed} closed) in {storm_s:.2}s = {} joins/s; join p50 {} p99 {} ms",
        v["joins_per_s"], v["join_p50_ms"], v["join_p99_ms"]
    );
    eprintln!(
        "#   server RSS KB before {rss0}, storm end {rss1}, after {settle}s {rss2}, peak {}, end {rss3}, 3 s after close {rss4}: {} KB/conn settled; server CPU {:.2}s storm",
        v["server_rss_kb_peak"], v["rss_kb_per_conn_settled"], cpu1 - cpu0
    );
    eprintln!(
        "#   bytes/conn storm mean {sb_mean:.0} max {sb_max}; settle mean {st_mean:.0} max {st_max}; drain (no-read) mean {dr_mean:.0} max {dr_max}; join reply mean {rb_mean:.0} max {rb_max} B, members mean {m_mean:.1} max {m_max}, presence_count {pc_max:?}, more {more}"
    );
    eprintln!(
        "#   presence events {pev} ({pev_b} B, {pev_co} count-only, max count {pev_count_max:?}); ping ok {ping_ok}/{} open (p99 {} ms); events {}",
        nj as usize - closed.min(nj as usize), v["ping_p99_ms"], v["events"]
    );
    v
}
