//! `connections`: N idle connections (authenticated on the chat server), accept rate and
//! server RSS per connection.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::stats::{proc_cpu_s, proc_rss_kb};
use crate::util::{mint, Args, Events, Target};
use crate::ws::{put_frame, send_pong, wait_json, ws_connect, Frame};

pub async fn connections(a: &Args, target: Target) -> Value {
    let n = a.n("conns", 15000.0) as usize;
    let conc = a.n("concurrency", 64.0) as usize;
    let hold = a.n("hold", 5.0);
    let pid = a.map.get("server-pid").map(|p| p.parse::<u32>().unwrap());
    let default_addr = if target == Target::Bare {
        "127.0.0.1:8082"
    } else {
        "127.0.0.1:8080"
    };
    let addr = a
        .s("url", default_addr)
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_string();
    let secret = a.s("secret", "bench-secret");
    let label = a.s("label", "");
    let ev = Arc::new(Events::default());
    let rss0 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let cpu0 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(conc));
    let (rtx, mut rrx) = mpsc::unbounded_channel::<Result<(), String>>();
    let alive = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (addr, secret, sem, rtx, ev, alive) = (
            addr.clone(),
            secret.clone(),
            sem.clone(),
            rtx.clone(),
            ev.clone(),
            alive.clone(),
        );
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let c = async {
                if target == Target::Bare {
                    ws_connect(&addr, None).await
                } else {
                    let tok = mint(&secret, &format!("lg-idle-{i}"), &format!("idle{i}"), "user");
                    let (mut rd, mut w) = ws_connect(&addr, Some(&tok)).await?;
                    wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
                    Ok((rd, w))
                }
            };
            let c = tokio::time::timeout(Duration::from_secs(30), c).await;
            drop(permit);
            let (mut rd, mut w) = match c {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    let _ = rtx.send(Err(e.to_string()));
                    return;
                }
                Err(_) => {
                    let _ = rtx.send(Err("timeout".into()));
                    return;
                }
            };
            alive.fetch_add(1, Relaxed);
            let _ = rtx.send(Ok(()));
            drop(rtx);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    f = rd.next() => match f {
                        Ok(Frame::Text(_)) => {}
                        Ok(Frame::Ping(p)) => { let _ = send_pong(&mut w, &p).await; }
                        Ok(Frame::Close(c, r)) => { ev.add(format!("close {c} {r}")); alive.fetch_sub(1, Relaxed); return; }
                        Err(e) => { ev.add(format!("read error: {e}")); alive.fetch_sub(1, Relaxed); return; }
                    }
                }
            }
            // polite close
            let mut out = Vec::new();
            put_frame(&mut out, 0x8, &1000u16.to_be_bytes());
            let _ = w.write_all(&out).await;
        }));
    }
    drop(rtx);
    let mut ok = 0u64;
    let mut failed = 0u64;
    while ok + failed < n as u64 {
        let Some(r) = rrx.recv().await else { break };
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                ev.add(format!("connect failed: {e}"));
            }
        }
    }
    let ramp = t0.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_s).unwrap_or(0.0);
    eprintln!("# {ok} connections open ({failed} failed) in {ramp:.2}s; holding {hold}s");
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let rss1 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let alive_end = alive.load(Relaxed);
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss2 = pid.and_then(proc_rss_kb).unwrap_or(0);
    let per = if ok > 0 {
        (rss1 as f64 - rss0 as f64) / ok as f64
    } else {
        0.0
    };
    let v = json!({
        "scenario": "connections",
        "target": if target == Target::Bare { "bare-broadcast" } else { "chatserver" },
        "label": label,
        "conns": n, "connected": ok, "failed": failed, "alive_after_hold": alive_end,
        "ramp_s": (ramp * 100.0).round() / 100.0,
        "accept_per_s": (ok as f64 / ramp).round(),
        "server_cpu_s_ramp": ((cpu1 - cpu0) * 100.0).round() / 100.0,
        "server_us_per_accept": if ok > 0 { ((cpu1 - cpu0) * 1e6 / ok as f64).round() } else { 0.0 },
        "server_rss_kb_before": rss0, "server_rss_kb_open": rss1, "server_rss_kb_after_close": rss2,
        "rss_kb_per_conn": (per * 100.0).round() / 100.0,
        "events": ev.json(),
    });
    eprintln!(
        "# connections {}: {ok}/{n} open ({failed} failed, {alive_end} alive after {hold}s) at {:.0}/s; server RSS {rss0} -> {rss1} KB = {per:.2} KB/conn; after close {rss2} KB; events {}",
        v["target"], ok as f64 / ramp, v["events"]
    );
    v
}
