//! `fanout` / `bare`: N subscribers in one channel, M publishers at R msg/s for D s.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::clients::{publisher, subscriber, Cfg};
use crate::stats::*;
use crate::util::{now_us, Args, Events, Padded, Target};

pub async fn fanout(a: &Args, target: Target) -> Value {
    let subs = a.n("subs", 1000.0) as usize;
    let pubs = a.n("pubs", 4.0) as usize;
    let rate = a.n("rate", 200.0);
    let dur = a.n("duration", 20.0);
    let size = a.n("size", 100.0) as usize;
    let conc = a.n("concurrency", 64.0) as usize;
    let drain = a.n("drain", 10.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let default_addr = if target == Target::Bare {
        "127.0.0.1:8082"
    } else {
        "127.0.0.1:8080"
    };
    let cfg = Arc::new(Cfg {
        addr: a
            .s("url", default_addr)
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string(),
        target,
        channel: a.s("channel", "room:bench"),
        secret: a.s("secret", "bench-secret"),
        pubs,
    });
    let label = a.s("label", "");
    let ev = Arc::new(Events::default());
    let rss_idle = pid.and_then(proc_rss_kb).unwrap_or(0);

    // 1. subscribers
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(conc));
    let counts: Arc<Vec<Padded>> = Arc::new((0..subs).map(|_| Padded::default()).collect());
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let ramp0 = Instant::now();
    let mut handles = Vec::with_capacity(subs);
    for i in 0..subs {
        handles.push(tokio::spawn(subscriber(
            i,
            cfg.clone(),
            sem.clone(),
            rtx.clone(),
            counts.clone(),
            ev.clone(),
            stop_rx.clone(),
        )));
    }
    drop(rtx);
    let mut connected = 0u64;
    let mut failed = 0u64;
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
    let ramp_s = ramp0.elapsed().as_secs_f64();
    eprintln!(
        "# {} subscribers ready ({} failed) in {:.2}s",
        connected, failed, ramp_s
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the join/presence storm settle

    // 2. publish
    let (rss_peak, mon) = rss_monitor(pid);
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let self0 = self_cpu_s();
    let (mbusy0, mtot0) = machine_cpu_s();
    let load0 = loadavg();
    let start = Instant::now() + Duration::from_millis(200);
    let start_us = now_us() + 200_000;
    let pub_handles: Vec<_> = (0..pubs)
        .map(|p| {
            let stagger = Duration::from_micros((p as u64 * 1_000_000 / rate.max(1.0) as u64) / pubs.max(1) as u64);
            tokio::spawn(publisher(
                p,
                cfg.clone(),
                rate / pubs as f64,
                dur,
                size,
                start + stagger,
                ev.clone(),
            ))
        })
        .collect();
    let mut sent = 0;
    let mut ok = 0;
    let mut ack = Hist::new();
    let mut ack_tl = Timeline::default();
    for h in pub_handles {
        let r = h.await.unwrap();
        ack_tl.merge(&r.tl);
        sent += r.sent;
        ok += r.ok;
        ack.merge(&r.ack);
    }
    // 3. drain: wait until every subscriber has everything, or no progress for 3 s, or --drain s
    let expected = ok * connected;
    let total = || counts.iter().map(|c| c.0.load(Relaxed)).sum::<u64>();
    let mut last = total();
    let mut last_change = Instant::now();
    let drain0 = Instant::now();
    while last < expected && drain0.elapsed().as_secs_f64() < drain && last_change.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = total();
        if t != last {
            last = t;
            last_change = Instant::now();
        }
    }
    let end = if last >= expected { Instant::now() } else { last_change };
    let window = end.duration_since(start).as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let self1 = self_cpu_s();
    let (mbusy1, mtot1) = machine_cpu_s();
    let load1 = loadavg();
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    mon.abort();
    let threads = pid.and_then(proc_threads).unwrap_or(0);
    let _ = stop_tx.send(true);
    let mut hist = Hist::new();
    let mut tl = Timeline::default();
    let (mut unique, mut gaps, mut dups, mut seq_gaps, mut seq_back, mut other, mut alive_end) = (0, 0, 0, 0, 0, 0, 0);
    for h in handles {
        let r = h.await.unwrap();
        hist.merge(&r.hist);
        tl.merge(&r.tl);
        unique += r.unique;
        gaps += r.gaps;
        dups += r.dups;
        seq_gaps += r.seq_gaps;
        seq_back += r.seq_backwards;
        other += r.other_frames;
        alive_end += r.connected as u64;
    }
    let _ = alive_end;
    let lost = expected.saturating_sub(unique);
    let server_cpu = cpu1 - cpu0;
    let ncpu = if mtot1 > mtot0 {
        ((mtot1 - mtot0) / window).round().max(1.0)
    } else {
        1.0
    };
    let machine_busy = mbusy1 - mbusy0;
    let other_cpu = (machine_busy - server_cpu - (self1 - self0)).max(0.0);
    let (lat_mean_s, lat_max_s) = tl.series(start_us);
    let (ack_mean_s, ack_max_s) = ack_tl.series(start_us);
    let conflating = target == Target::Chat && (cfg.channel.starts_with("ticker:") || cfg.channel.starts_with("loc:"));
    let per_delivery = if unique > 0 {
        server_cpu * 1e6 / unique as f64
    } else {
        0.0
    };
    let v = json!({
        // --scenario rooms|feeds: a bare counterpart shown in that scenario's table
        "scenario": a.s("scenario", "fanout"),
        "target": if target == Target::Bare { "bare-broadcast" } else { "chatserver" },
        "label": label,
        "channel": if target == Target::Bare { "-".to_string() } else { cfg.channel.clone() },
        "subs": subs, "subs_connected": connected, "subs_failed": failed,
        "pubs": pubs, "rate": rate, "duration_s": dur, "size": size,
        "ramp_s": (ramp_s * 100.0).round() / 100.0,
        "sent": sent, "acked_ok": ok,
        "expected_deliveries": expected, "delivered": unique,
        "lost": lost, "gaps": gaps, "dups": dups, "seq_gaps": seq_gaps, "seq_backwards": seq_back,
        "other_frames": other,
        "window_s": (window * 100.0).round() / 100.0,
        "deliveries_per_s": (unique as f64 / window).round(),
        "p50_ms": ms(hist.pct(50.0)), "p90_ms": ms(hist.pct(90.0)), "p99_ms": ms(hist.pct(99.0)),
        "p999_ms": ms(hist.pct(99.9)), "max_ms": ms(hist.max),
        "ack_p50_ms": ms(ack.pct(50.0)), "ack_p99_ms": ms(ack.pct(99.0)), "ack_max_ms": ms(ack.max),
        "server_cpu_s": (server_cpu * 100.0).round() / 100.0,
        "server_us_per_delivery": (per_delivery * 100.0).round() / 100.0,
        "server_cpu_pct": (server_cpu / window * 1000.0).round() / 10.0,
        "server_rss_kb_idle": rss_idle, "server_rss_kb_before": rss0,
        "server_rss_kb_peak": rss_peak.load(Relaxed).max(rss1), "server_rss_kb_after": rss1,
        "server_threads": threads,
        "loadgen_cpu_s": ((self1 - self0) * 100.0).round() / 100.0,
        "machine_cores": ncpu,
        "machine_busy_pct": (machine_busy / window / ncpu * 1000.0).round() / 10.0,
        "other_processes_cpu_s": (other_cpu * 100.0).round() / 100.0,
        "loadavg_before": load0, "loadavg_after": load1,
        "conflating_channel": conflating,
        "lat_mean_by_s_ms": lat_mean_s, "lat_max_by_s_ms": lat_max_s,
        "ack_mean_by_s_ms": ack_mean_s, "ack_max_by_s_ms": ack_max_s,
        "events": ev.json(),
    });
    eprintln!(
        "# fanout {} {}: {} subs x {} msg/s ({} pubs, {} B) for {}s: sent {}, ok {}, delivered {}/{} (lost {}, gaps {}, seq gaps {}, dups {})",
        v["target"], cfg.channel, connected, rate, pubs, size, dur, sent, ok, unique, expected, lost, gaps, seq_gaps, dups
    );
    eprintln!(
        "#   {:.0} deliveries/s; latency p50 {} ms p90 {} ms p99 {} ms max {} ms; publish ack p50 {} ms p99 {} ms",
        unique as f64 / window,
        v["p50_ms"],
        v["p90_ms"],
        v["p99_ms"],
        v["max_ms"],
        v["ack_p50_ms"],
        v["ack_p99_ms"]
    );
    eprintln!(
        "#   server CPU {:.2}s ({} %) = {:.2} us/delivery; server RSS {} -> peak {} KB; loadgen CPU {:.2}s; events {}",
        server_cpu,
        v["server_cpu_pct"],
        per_delivery,
        rss0,
        v["server_rss_kb_peak"],
        self1 - self0,
        v["events"]
    );
    eprintln!(
        "#   machine busy {} % of {} cores; other processes used {:.2} CPU s; loadavg {} -> {}",
        v["machine_busy_pct"], ncpu, other_cpu, load0, load1
    );
    eprintln!(
        "#   delivery latency by send second, mean ms: {}",
        v["lat_mean_by_s_ms"]
    );
    eprintln!("#   delivery latency by send second, max ms:  {}", v["lat_max_by_s_ms"]);
    if target == Target::Chat {
        eprintln!(
            "#   publish ack latency by send second, mean ms: {}",
            v["ack_mean_by_s_ms"]
        );
    }
    v
}
