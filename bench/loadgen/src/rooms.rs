//! `rooms`: many stored rooms, each with its own publisher and a few subscribers (e.g. 100
//! rooms × 50 msg/s = 5,000 stored msg/s). Reports publish-ack latency (the message is
//! durably stored), delivery latency, and loss / duplicates / order per room.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::clients::{publisher, subscriber, Cfg};
use crate::stats::*;
use crate::util::{Args, Events, Padded, Target};

/// CPU of the server, of the load generator and of the whole machine over a window.
pub struct CpuWindow {
    pid: Option<u32>,
    server0: f64,
    self0: f64,
    busy0: f64,
    total0: f64,
    t0: Instant,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> CpuWindow {
        let (busy0, total0) = machine_cpu_s();
        CpuWindow {
            pid,
            server0: pid.and_then(proc_cpu_s).unwrap_or(0.0),
            self0: self_cpu_s(),
            busy0,
            total0,
            t0: Instant::now(),
        }
    }
    /// (server CPU s, JSON fields: server/loadgen/other CPU, machine busy %)
    pub fn end(&self) -> (f64, Value) {
        let server = self.pid.and_then(proc_cpu_s).unwrap_or(0.0) - self.server0;
        let own = self_cpu_s() - self.self0;
        let (busy1, total1) = machine_cpu_s();
        let wall = self.t0.elapsed().as_secs_f64().max(1e-3);
        let cores = ((total1 - self.total0) / wall).round().max(1.0);
        let other = ((busy1 - self.busy0) - server - own).max(0.0);
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        (
            server,
            json!({
                "server_cpu_s": r2(server), "server_cpu_pct": (server / wall * 1000.0).round() / 10.0,
                "loadgen_cpu_s": r2(own), "other_processes_cpu_s": r2(other),
                "machine_busy_pct": ((busy1 - self.busy0) / wall / cores * 1000.0).round() / 10.0,
            }),
        )
    }
}

/// Merges `extra`'s fields into the object `v`.
pub fn merge(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

pub async fn rooms(a: &Args) -> Value {
    let nrooms = a.n("rooms", 100.0) as usize;
    let rate = a.n("rate", 50.0); // per room
    let per_room = a.n("subs", 3.0) as usize;
    let dur = a.n("duration", 20.0);
    let size = a.n("size", 100.0) as usize;
    let drain = a.n("drain", 10.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let addr = a
        .s("url", "127.0.0.1:8080")
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_string();
    let prefix = a.s("channel", "room:r");
    let cfgs: Vec<Arc<Cfg>> = (0..nrooms)
        .map(|k| {
            Arc::new(Cfg {
                addr: addr.clone(),
                target: Target::Chat,
                channel: format!("{prefix}{k}"),
                secret: a.s("secret", "bench-secret"),
                pubs: 1,
            })
        })
        .collect();
    let ev = Arc::new(Events::default());
    let subs = nrooms * per_room;
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(a.n("concurrency", 64.0) as usize));
    let counts: Arc<Vec<Padded>> = Arc::new((0..subs).map(|_| Padded::default()).collect());
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let handles: Vec<_> = (0..subs)
        .map(|i| {
            let c = cfgs[i / per_room].clone();
            tokio::spawn(subscriber(
                i,
                c,
                sem.clone(),
                rtx.clone(),
                counts.clone(),
                ev.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(rtx);
    let (mut connected, mut failed) = (0u64, 0u64);
    while connected + failed < subs as u64 {
        let Some(r) = rrx.recv().await else { break };
        match r {
            Ok(()) => connected += 1,
            Err(e) => {
                failed += 1;
                ev.add(format!("subscriber connect failed: {e}"));
            }
        }
    }
    eprintln!("# rooms: {connected} subscribers in {nrooms} rooms ready ({failed} failed)");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (rss_peak, mon) = rss_monitor(pid);
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu = CpuWindow::start(pid);
    let start = Instant::now() + Duration::from_millis(300);
    let period_us = (1e6 / rate.max(1.0)) as u64;
    let pub_handles: Vec<_> = (0..nrooms)
        .map(|k| {
            let stagger = Duration::from_micros(period_us * k as u64 / nrooms as u64);
            tokio::spawn(publisher(
                0,
                cfgs[k].clone(),
                rate,
                dur,
                size,
                start + stagger,
                ev.clone(),
            ))
        })
        .collect();
    let (mut sent, mut ok_total) = (0u64, 0u64);
    let mut ok_room = vec![0u64; nrooms];
    let mut ack = Hist::new();
    for (k, h) in pub_handles.into_iter().enumerate() {
        let r = h.await.unwrap();
        sent += r.sent;
        ok_total += r.ok;
        ok_room[k] = r.ok;
        ack.merge(&r.ack);
    }
    let expected: u64 = (0..subs).map(|i| ok_room[i / per_room]).sum();
    let total = || counts.iter().map(|c| c.0.load(Relaxed)).sum::<u64>();
    let (mut last, mut last_change, d0) = (total(), Instant::now(), Instant::now());
    while last < expected && d0.elapsed().as_secs_f64() < drain && last_change.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = total();
        if t != last {
            (last, last_change) = (t, Instant::now());
        }
    }
    let end = if last >= expected { Instant::now() } else { last_change };
    let window = end.duration_since(start).as_secs_f64();
    let (server_cpu, cpu_json) = cpu.end();
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    mon.abort();
    let _ = stop_tx.send(true);
    let mut hist = Hist::new();
    let (mut unique, mut dups, mut gaps, mut seq_gaps, mut seq_back) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut room_got = vec![0u64; nrooms];
    let mut room_conn = vec![0u64; nrooms];
    let mut room_bad_order = vec![false; nrooms];
    let mut room_dups = vec![false; nrooms];
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await.unwrap();
        let k = i / per_room;
        hist.merge(&r.hist);
        unique += r.unique;
        dups += r.dups;
        gaps += r.gaps;
        seq_gaps += r.seq_gaps;
        seq_back += r.seq_backwards;
        room_got[k] += r.unique;
        room_conn[k] += r.connected as u64;
        room_bad_order[k] |= r.seq_backwards > 0 || r.seq_gaps > 0;
        room_dups[k] |= r.dups > 0;
    }
    let rooms_with_loss = (0..nrooms).filter(|&k| room_got[k] < ok_room[k] * room_conn[k]).count();
    let lost = expected.saturating_sub(unique);
    let mut v = json!({
        "scenario": "rooms", "target": "chatserver", "label": a.s("label", ""),
        "rooms": nrooms, "rate_per_room": rate, "rate": rate * nrooms as f64, "subs_per_room": per_room,
        "subs": subs, "subs_connected": connected, "subs_failed": failed, "duration_s": dur, "size": size,
        "sent": sent, "acked_ok": ok_total, "expected_deliveries": expected, "delivered": unique,
        "lost": lost, "rooms_with_loss": rooms_with_loss, "gaps": gaps, "dups": dups,
        "rooms_with_dups": room_dups.iter().filter(|x| **x).count(),
        "seq_gaps": seq_gaps, "seq_backwards": seq_back,
        "rooms_out_of_order": room_bad_order.iter().filter(|x| **x).count(),
        "window_s": (window * 100.0).round() / 100.0,
        "stored_per_s": (ok_total as f64 / dur).round(),
        "deliveries_per_s": (unique as f64 / window).round(),
        "ack_p50_ms": ms(ack.pct(50.0)), "ack_p99_ms": ms(ack.pct(99.0)), "ack_p999_ms": ms(ack.pct(99.9)),
        "ack_max_ms": ms(ack.max),
        "p50_ms": ms(hist.pct(50.0)), "p90_ms": ms(hist.pct(90.0)), "p99_ms": ms(hist.pct(99.0)), "max_ms": ms(hist.max),
        "server_us_per_delivery": if unique > 0 { (server_cpu * 1e8 / unique as f64).round() / 100.0 } else { 0.0 },
        "server_rss_kb_before": rss0, "server_rss_kb_peak": rss_peak.load(Relaxed).max(rss1), "server_rss_kb_after": rss1,
        "events": ev.json(),
    });
    merge(&mut v, cpu_json);
    eprintln!(
        "# rooms: {nrooms} rooms x {rate} msg/s ({} stored/s), {per_room} subs each: sent {sent}, ok {ok_total}, delivered {unique}/{expected} (lost {lost} in {rooms_with_loss} rooms, dups {dups}, seq gaps {seq_gaps}, backwards {seq_back})",
        v["stored_per_s"]
    );
    eprintln!(
        "#   publish ack p50 {} p99 {} p99.9 {} max {} ms; delivery p50 {} p99 {} max {} ms; server CPU {} % ({} us/delivery); other procs {} CPU s; events {}",
        v["ack_p50_ms"], v["ack_p99_ms"], v["ack_p999_ms"], v["ack_max_ms"], v["p50_ms"], v["p99_ms"], v["max_ms"],
        v["server_cpu_pct"], v["server_us_per_delivery"], v["other_processes_cpu_s"], v["events"]
    );
    v
}
