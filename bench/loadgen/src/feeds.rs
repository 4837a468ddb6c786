//! `feeds`: S ticker symbols (`ticker:S<k>`) × Q quotes/s each, published by M connections
//! with role `publisher`, to N subscribers each joined to K symbols (subscriber j joins the
//! K consecutive symbols from (j·K) mod S, so every symbol has N·K/S subscribers).
//! Every quote carries the symbol index, a per-symbol counter and its send time; each
//! subscriber counts per-symbol counter gaps (a conflated value: the server keeps only the
//! newest pending quote per channel for a reader that is behind), backwards steps and
//! latency. `--slow M` makes the first M subscribers slow readers (tiny receive buffer,
//! --slow-ms per frame) to show conflation; the others are expected to lose nothing.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::rooms::{merge, CpuWindow};
use crate::stats::*;
use crate::util::{mint, now_us, Events, Padded};
use crate::ws::{find, num_after, put_frame, send_pong, wait_json, ws_connect, Frame};

struct FeedCfg {
    addr: String,
    secret: String,
    symbols: usize,
    per_sub: usize,
    slow: usize,
    slow_ms: u64,
}

fn sym_of(cfg: &FeedCfg, j: usize, k: usize) -> usize {
    (j * cfg.per_sub + k) % cfg.symbols
}

#[derive(Default)]
struct SubRes {
    connected: bool,
    hist: Option<Hist>,
    unique: u64,
    gaps: u64,
    backwards: u64,
}

async fn sub_join(cfg: &FeedCfg, j: usize) -> io::Result<(crate::ws::WsReader, tokio::net::tcp::OwnedWriteHalf)> {
    let tok = mint(&cfg.secret, &format!("lg-feed-{j}"), &format!("feed{j}"), "user");
    let (mut rd, mut w) = ws_connect(&cfg.addr, Some(&tok)).await?;
    wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
    let mut out = Vec::new();
    for k in 0..cfg.per_sub {
        let s = sym_of(cfg, j, k);
        put_frame(
            &mut out,
            0x1,
            format!(r#"{{"id":{},"op":"join","channel":"ticker:S{s}"}}"#, k + 1).as_bytes(),
        );
    }
    w.write_all(&out).await?;
    let mut got = 0;
    while got < cfg.per_sub {
        let v = wait_json(&mut rd, &mut w, |v| v["id"].is_u64()).await?;
        if v.get("ok").is_none() {
            return Err(io::Error::new(io::ErrorKind::Other, format!("join refused: {v}")));
        }
        got += 1;
    }
    Ok((rd, w))
}

async fn subscriber(
    j: usize,
    cfg: Arc<FeedCfg>,
    sem: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    count: Arc<Vec<Padded>>,
    ev: Arc<Events>,
    mut stop: watch::Receiver<bool>,
) -> SubRes {
    let mut res = SubRes::default();
    let permit = sem.acquire_owned().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(60), sub_join(&cfg, j)).await;
    drop(permit);
    let (mut rd, mut w) = match c {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let _ = ready.send(Err(e.to_string()));
            return res;
        }
        Err(_) => {
            let _ = ready.send(Err("connect/join timeout".into()));
            return res;
        }
    };
    res.connected = true;
    let slow = j < cfg.slow;
    if slow {
        rd.set_rcvbuf(4096);
    }
    let _ = ready.send(Ok(()));
    let mut hist = Hist::new();
    let mut next = vec![0u64; cfg.symbols];
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = rd.next() => match f {
                Ok(Frame::Text(p)) => {
                    let Some(t) = num_after(&p, b"\"lg_t\":") else {
                        if find(&p, b"\"ev\":\"disconnect\"").is_some() {
                            ev.add(format!("sub disconnect event: {}", String::from_utf8_lossy(&p)));
                        }
                        continue;
                    };
                    let now = now_us();
                    if !slow {
                        hist.rec(now.saturating_sub(t));
                    }
                    let s = num_after(&p, b"\"lg_s\":").unwrap_or(0) as usize;
                    let n = num_after(&p, b"\"lg_n\":").unwrap_or(0);
                    if s < next.len() {
                        if n >= next[s] {
                            res.gaps += n - next[s];
                            next[s] = n + 1;
                            res.unique += 1;
                            count[j].0.fetch_add(1, Relaxed);
                        } else {
                            res.backwards += 1;
                        }
                    }
                    if slow {
                        tokio::time::sleep(Duration::from_millis(cfg.slow_ms)).await;
                    }
                }
                Ok(Frame::Ping(p)) => { let _ = send_pong(&mut w, &p).await; }
                Ok(Frame::Close(c, r)) => { ev.add(format!("sub close {c} {r}")); break; }
                Err(e) => { ev.add(format!("sub read error: {e}")); break; }
            }
        }
    }
    res.hist = Some(hist);
    res
}

struct PubRes {
    ok: Vec<u64>,
    sent: u64,
    ack: Hist,
}

/// Publisher `p` publishes every symbol s with s % pubs == p at `rate` quotes/s each.
async fn publisher(
    p: usize,
    pubs: usize,
    cfg: Arc<FeedCfg>,
    rate: f64,
    dur: f64,
    start: Instant,
    ev: Arc<Events>,
) -> PubRes {
    let mut res = PubRes {
        ok: vec![0; cfg.symbols],
        sent: 0,
        ack: Hist::new(),
    };
    let mine: Vec<usize> = (0..cfg.symbols).filter(|s| s % pubs == p).collect();
    let tok = mint(
        &cfg.secret,
        &format!("lg-quotes-{p}"),
        &format!("quotes{p}"),
        "publisher",
    );
    let (mut rd, mut w) = match async {
        let (mut rd, mut w) = ws_connect(&cfg.addr, Some(&tok)).await?;
        wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
        Ok::<_, io::Error>((rd, w))
    }
    .await
    {
        Ok(x) => x,
        Err(e) => {
            ev.add(format!("quote publisher connect error: {e}"));
            return res;
        }
    };
    let total = (rate * dur).ceil() as u64 * mine.len() as u64 + 16;
    // id -> (send time, symbol)
    let sent_at: Arc<Vec<(AtomicU64, AtomicU64)>> =
        Arc::new((0..total + 1).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect());
    let acks = Arc::new(AtomicU64::new(0));
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel();
    let (rstop_tx, mut rstop) = watch::channel(false);
    let nsym = cfg.symbols;
    let reader = {
        let (sent_at, acks, ev) = (sent_at.clone(), acks.clone(), ev.clone());
        tokio::spawn(async move {
            let (mut h, mut ok) = (Hist::new(), vec![0u64; nsym]);
            loop {
                let f = tokio::select! { biased; _ = rstop.changed() => break, f = rd.next() => f };
                match f {
                    Ok(Frame::Text(pl)) => {
                        if !pl.starts_with(b"{\"id\":") {
                            continue;
                        }
                        let id = num_after(&pl, b"\"id\":").unwrap_or(0) as usize;
                        if find(&pl[..pl.len().min(40)], b"\"error\"").is_some() {
                            ev.add(format!("quote publish error: {}", String::from_utf8_lossy(&pl)));
                        } else if id < sent_at.len() {
                            let t = sent_at[id].0.load(Relaxed);
                            h.rec(now_us().saturating_sub(t));
                            ok[sent_at[id].1.load(Relaxed) as usize] += 1;
                        }
                        acks.fetch_add(1, Relaxed);
                    }
                    Ok(Frame::Ping(pl)) => {
                        let _ = pong_tx.send(pl);
                    }
                    Ok(Frame::Close(c, r)) => {
                        ev.add(format!("quote publisher close {c} {r}"));
                        break;
                    }
                    Err(e) => {
                        ev.add(format!("quote publisher read error: {e}"));
                        break;
                    }
                }
            }
            (h, ok)
        })
    };
    let mut iv = tokio::time::interval_at(tokio::time::Instant::from_std(start), Duration::from_millis(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = vec![0u64; mine.len()];
    let (mut id, mut out) = (0usize, Vec::with_capacity(64 * 1024));
    let per_sym_total = (dur * rate).ceil() as u64;
    loop {
        iv.tick().await;
        let el = start.elapsed().as_secs_f64();
        if el >= dur {
            break;
        }
        while let Ok(pl) = pong_rx.try_recv() {
            put_frame(&mut out, 0xA, &pl);
        }
        // symbols are spread over the second: symbol i of mine is offset by i/len of a period
        for (i, &s) in mine.iter().enumerate() {
            let off = i as f64 / mine.len() as f64 / rate;
            let due = if el < off {
                0
            } else {
                (((el - off) * rate) as u64 + 1).min(per_sym_total)
            };
            while n[i] < due && id + 1 < sent_at.len() {
                id += 1;
                let t = now_us();
                sent_at[id].0.store(t, Relaxed);
                sent_at[id].1.store(s as u64, Relaxed);
                let price = 100.0 + (n[i] % 1000) as f64 / 100.0;
                let req = format!(
                    r#"{{"id":{id},"op":"publish","channel":"ticker:S{s}","data":{{"price":{price},"lg_s":{s},"lg_n":{},"lg_t":{t}}}}}"#,
                    n[i]
                );
                put_frame(&mut out, 0x1, req.as_bytes());
                n[i] += 1;
            }
        }
        if !out.is_empty() {
            if let Err(e) = w.write_all(&out).await {
                ev.add(format!("quote publisher write error: {e}"));
                break;
            }
            out.clear();
        }
    }
    res.sent = id as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while acks.load(Relaxed) < res.sent && Instant::now() < deadline && !reader.is_finished() {
        while let Ok(pl) = pong_rx.try_recv() {
            let _ = send_pong(&mut w, &pl).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = rstop_tx.send(true);
    if let Ok((h, ok)) = reader.await {
        res.ack = h;
        res.ok = ok;
    }
    res
}

pub async fn feeds(a: &crate::util::Args) -> Value {
    let cfg = Arc::new(FeedCfg {
        addr: a
            .s("url", "127.0.0.1:8080")
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string(),
        secret: a.s("secret", "bench-secret"),
        symbols: a.n("symbols", 200.0) as usize,
        per_sub: a.n("per-sub", 20.0) as usize,
        slow: a.n("slow", 0.0) as usize,
        slow_ms: a.n("slow-ms", 50.0) as u64,
    });
    let subs = a.n("subs", 5000.0) as usize;
    let pubs = a.n("pubs", 4.0) as usize;
    let rate = a.n("rate", 10.0);
    let dur = a.n("duration", 20.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let ev = Arc::new(Events::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(a.n("concurrency", 64.0) as usize));
    let counts: Arc<Vec<Padded>> = Arc::new((0..subs).map(|_| Padded::default()).collect());
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let ramp0 = Instant::now();
    let handles: Vec<_> = (0..subs)
        .map(|j| {
            let c = (
                cfg.clone(),
                sem.clone(),
                rtx.clone(),
                counts.clone(),
                ev.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(subscriber(j, c.0, c.1, c.2, c.3, c.4, c.5))
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
    let ramp = ramp0.elapsed().as_secs_f64();
    eprintln!(
        "# feeds: {connected} subscribers joined {} symbols each in {ramp:.1}s ({failed} failed)",
        cfg.per_sub
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rss_peak, mon) = rss_monitor(pid);
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu = CpuWindow::start(pid);
    let start = Instant::now() + Duration::from_millis(300);
    let ph: Vec<_> = (0..pubs)
        .map(|p| tokio::spawn(publisher(p, pubs, cfg.clone(), rate, dur, start, ev.clone())))
        .collect();
    let mut ok = vec![0u64; cfg.symbols];
    let (mut sent, mut ack) = (0u64, Hist::new());
    for h in ph {
        let r = h.await.unwrap();
        sent += r.sent;
        ack.merge(&r.ack);
        for (s, o) in r.ok.iter().enumerate() {
            ok[s] += o;
        }
    }
    let expect_of = |j: usize| (0..cfg.per_sub).map(|k| ok[sym_of(&cfg, j, k)]).sum::<u64>();
    let total = || counts.iter().map(|c| c.0.load(Relaxed)).sum::<u64>();
    // drain until the subscribers that keep up have everything
    let expected_fast: u64 = (cfg.slow.min(subs)..subs).map(expect_of).sum();
    let fast_total = || {
        total()
            - counts[..cfg.slow.min(subs)]
                .iter()
                .map(|c| c.0.load(Relaxed))
                .sum::<u64>()
    };
    let (mut last, mut last_change, d0) = (fast_total(), Instant::now(), Instant::now());
    while last < expected_fast
        && d0.elapsed().as_secs_f64() < a.n("drain", 10.0)
        && last_change.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = fast_total();
        if t != last {
            (last, last_change) = (t, Instant::now());
        }
    }
    let end = if last >= expected_fast {
        Instant::now()
    } else {
        last_change
    };
    let window = end.duration_since(start).as_secs_f64();
    let (server_cpu, cpu_json) = cpu.end();
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    mon.abort();
    let delivered_all = total();
    let _ = stop_tx.send(true);
    let mut hist = Hist::new();
    let (mut fast_gaps, mut fast_with_gaps, mut slow_gaps, mut slow_unique, mut backwards) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut fast_unique, mut fast_expected, mut slow_expected) = (0u64, 0u64, 0u64);
    for (j, h) in handles.into_iter().enumerate() {
        let r = h.await.unwrap();
        if !r.connected {
            continue;
        }
        backwards += r.backwards;
        if j < cfg.slow {
            slow_gaps += r.gaps;
            slow_unique += r.unique;
            slow_expected += expect_of(j);
        } else {
            fast_gaps += r.gaps;
            fast_with_gaps += (r.gaps > 0) as u64;
            fast_unique += r.unique;
            fast_expected += expect_of(j);
            if let Some(h) = &r.hist {
                hist.merge(h);
            }
        }
    }
    let quotes_ok: u64 = ok.iter().sum();
    let mut v = json!({
        "scenario": "feeds", "target": "chatserver", "label": a.s("label", ""),
        "symbols": cfg.symbols, "rate_per_symbol": rate, "rate": rate * cfg.symbols as f64, "pubs": pubs,
        "subs": subs, "subs_connected": connected, "subs_failed": failed, "per_sub": cfg.per_sub,
        "subs_per_symbol": subs * cfg.per_sub / cfg.symbols.max(1), "slow_subs": cfg.slow, "duration_s": dur,
        "ramp_s": (ramp * 10.0).round() / 10.0,
        "sent": sent, "acked_ok": quotes_ok,
        "expected_deliveries": fast_expected + slow_expected, "delivered": delivered_all,
        "fast_expected": fast_expected, "fast_delivered": fast_unique, "fast_lost": fast_expected.saturating_sub(fast_unique),
        "fast_gaps": fast_gaps, "fast_subs_with_gaps": fast_with_gaps,
        "slow_expected": slow_expected, "slow_delivered": slow_unique, "slow_gaps_conflated": slow_gaps,
        "backwards": backwards,
        "window_s": (window * 100.0).round() / 100.0,
        "deliveries_per_s": (delivered_all as f64 / window).round(),
        "p50_ms": ms(hist.pct(50.0)), "p90_ms": ms(hist.pct(90.0)), "p99_ms": ms(hist.pct(99.0)), "max_ms": ms(hist.max),
        "ack_p50_ms": ms(ack.pct(50.0)), "ack_p99_ms": ms(ack.pct(99.0)), "ack_max_ms": ms(ack.max),
        "server_us_per_delivery": if delivered_all > 0 { (server_cpu * 1e8 / delivered_all as f64).round() / 100.0 } else { 0.0 },
        "server_rss_kb_before": rss0, "server_rss_kb_peak": rss_peak.load(Relaxed).max(rss1), "server_rss_kb_after": rss1,
        "events": ev.json(),
    });
    merge(&mut v, cpu_json);
    eprintln!(
        "# feeds: {} symbols x {rate} q/s to {connected} subs x {} symbols: sent {sent}, ok {quotes_ok}; keeping up: {fast_unique}/{fast_expected} (gaps {fast_gaps} in {fast_with_gaps} subs); slow: {slow_unique}/{slow_expected} (conflated {slow_gaps}); backwards {backwards}",
        cfg.symbols, cfg.per_sub
    );
    eprintln!(
        "#   {} deliveries/s; latency p50 {} p99 {} max {} ms; ack p99 {} ms; server CPU {} % = {} us/delivery; other procs {} CPU s; events {}",
        v["deliveries_per_s"], v["p50_ms"], v["p99_ms"], v["max_ms"], v["ack_p99_ms"], v["server_cpu_pct"],
        v["server_us_per_delivery"], v["other_processes_cpu_s"], v["events"]
    );
    v
}
