//! The fan-out clients: a subscriber that checks order, gaps and latency of one channel,
//! and a publisher that publishes at a paced rate and times the acks.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::stats::{Hist, Timeline};
use crate::util::{mint, now_us, Events, Padded, Target};
use crate::ws::{find, num_after, put_frame, send_pong, send_text, wait_json, ws_connect, Frame, WsReader};

pub struct Cfg {
    pub addr: String,
    pub target: Target,
    pub channel: String,
    pub secret: String,
    pub pubs: usize,
}

// ---------------------------------------------------------------------------------------------
// fanout

pub struct SubResult {
    pub hist: Hist,
    pub tl: Timeline,
    pub unique: u64,
    pub gaps: u64,
    pub dups: u64,
    pub seq_gaps: u64,
    pub seq_backwards: u64,
    pub other_frames: u64,
    pub connected: bool,
}

pub async fn sub_connect(cfg: &Cfg, i: usize) -> io::Result<(WsReader, OwnedWriteHalf, u64)> {
    match cfg.target {
        Target::Bare => {
            let (rd, w) = ws_connect(&cfg.addr, None).await?;
            Ok((rd, w, 0))
        }
        Target::Chat => {
            let tok = mint(&cfg.secret, &format!("lg-sub-{i}"), &format!("sub{i}"), "user");
            let (mut rd, mut w) = ws_connect(&cfg.addr, Some(&tok)).await?;
            wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
            let join = json!({"id": 1, "op": "join", "channel": cfg.channel, "limit": 1}).to_string();
            send_text(&mut w, &join).await?;
            let v = wait_json(&mut rd, &mut w, |v| v["id"] == 1).await?;
            if v.get("ok").is_none() {
                return Err(io::Error::new(io::ErrorKind::Other, format!("join refused: {v}")));
            }
            Ok((rd, w, v["ok"]["seq"].as_u64().unwrap_or(0)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn subscriber(
    i: usize,
    cfg: Arc<Cfg>,
    sem: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    count: Arc<Vec<Padded>>,
    ev: Arc<Events>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut res = SubResult {
        hist: Hist::new(),
        tl: Timeline::default(),
        unique: 0,
        gaps: 0,
        dups: 0,
        seq_gaps: 0,
        seq_backwards: 0,
        other_frames: 0,
        connected: false,
    };
    let permit = sem.acquire_owned().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(30), sub_connect(&cfg, i)).await;
    drop(permit);
    let (mut rd, mut w, mut last_seq) = match c {
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
    let _ = ready.send(Ok(()));
    let mut next = vec![0u64; cfg.pubs];
    let chat = cfg.target == Target::Chat;
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
                        res.other_frames += 1;
                        continue;
                    };
                    let now = now_us();
                    res.hist.rec(now.saturating_sub(t));
                    res.tl.rec(t, now.saturating_sub(t));
                    let pi = num_after(&p, b"\"lg_p\":").unwrap_or(0) as usize;
                    let n = num_after(&p, b"\"lg_n\":").unwrap_or(0);
                    if pi < next.len() {
                        let e = &mut next[pi];
                        if n >= *e {
                            res.gaps += n - *e;
                            *e = n + 1;
                            res.unique += 1;
                            count[i].0.fetch_add(1, Relaxed);
                        } else {
                            res.dups += 1;
                        }
                    }
                    if chat {
                        if let Some(s) = num_after(&p, b"\"seq\":") {
                            if s > last_seq + 1 {
                                res.seq_gaps += s - last_seq - 1;
                            } else if s <= last_seq {
                                res.seq_backwards += 1;
                            }
                            last_seq = last_seq.max(s);
                        }
                    }
                }
                Ok(Frame::Ping(p)) => {
                    if send_pong(&mut w, &p).await.is_err() {
                        ev.add("sub write error");
                        break;
                    }
                }
                Ok(Frame::Close(c, r)) => {
                    ev.add(format!("sub close {c} {r}"));
                    break;
                }
                Err(e) => {
                    ev.add(format!("sub read error: {e}"));
                    break;
                }
            }
        }
    }
    res
}

pub struct PubResult {
    pub sent: u64,
    pub ok: u64,
    pub ack: Hist,
    pub tl: Timeline,
}

#[allow(clippy::too_many_arguments)]
pub async fn publisher(
    p: usize,
    cfg: Arc<Cfg>,
    rate: f64,
    dur: f64,
    size: usize,
    start: Instant,
    ev: Arc<Events>,
) -> PubResult {
    let mut res = PubResult {
        sent: 0,
        ok: 0,
        ack: Hist::new(),
        tl: Timeline::default(),
    };
    let chat = cfg.target == Target::Chat;
    let tok = mint(&cfg.secret, &format!("lg-pub-{p}"), &format!("pub{p}"), "publisher");
    let conn = async {
        let (mut rd, mut w) = ws_connect(&cfg.addr, chat.then_some(tok.as_str())).await?;
        if chat {
            wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
        }
        Ok::<_, io::Error>((rd, w))
    };
    let (mut rd, mut w) = match conn.await {
        Ok(x) => x,
        Err(e) => {
            ev.add(format!("publisher connect error: {e}"));
            return res;
        }
    };
    let cap = (rate * dur * 1.5) as usize + 1000;
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..cap).map(|_| AtomicU64::new(0)).collect());
    let acks = Arc::new(AtomicU64::new(0));
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<Bytes>();
    // reader: acks (chat) or the other publishers' frames (bare); answers pings via the writer
    let (rstop_tx, mut rstop) = watch::channel(false);
    let reader = {
        let (sent_at, acks, ev) = (sent_at.clone(), acks.clone(), ev.clone());
        tokio::spawn(async move {
            let mut ok = 0u64;
            let mut h = Hist::new();
            let mut tl = Timeline::default();
            loop {
                let f = tokio::select! {
                    biased;
                    _ = rstop.changed() => break,
                    f = rd.next() => f,
                };
                match f {
                    Ok(Frame::Text(pl)) => {
                        if !chat || find(&pl, b"\"ev\":").is_some() {
                            if chat && find(&pl, b"\"ev\":\"disconnect\"").is_some() {
                                ev.add(format!("pub disconnect event: {}", String::from_utf8_lossy(&pl)));
                            }
                            continue;
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&pl) else {
                            continue;
                        };
                        let id = v["id"].as_u64().unwrap_or(0) as usize;
                        if let Some(e) = v.get("error") {
                            ev.add(format!("publish error {} {}", e["code"], e["message"]));
                        } else if v.get("ok").is_some() {
                            ok += 1;
                            if id < sent_at.len() {
                                let t = sent_at[id].load(Relaxed);
                                if t > 0 {
                                    h.rec(now_us().saturating_sub(t));
                                    tl.rec(t, now_us().saturating_sub(t));
                                }
                            }
                        }
                        acks.fetch_add(1, Relaxed);
                    }
                    Ok(Frame::Ping(pl)) => {
                        let _ = pong_tx.send(pl);
                    }
                    Ok(Frame::Close(c, r)) => {
                        ev.add(format!("pub close {c} {r}"));
                        break;
                    }
                    Err(e) => {
                        ev.add(format!("pub read error: {e}"));
                        break;
                    }
                }
            }
            (ok, h, tl)
        })
    };
    let pad = "x".repeat(size.saturating_sub(60));
    // feed namespaces validate their payload: quotes need a price, locations lat/lon
    let extra = match cfg.channel.split(':').next().unwrap_or("") {
        "ticker" if chat => r#""price":101.25,"#,
        "loc" if chat => r#""lat":48.85,"lon":2.35,"#,
        _ => "",
    };
    let tick = Duration::from_secs_f64((1.0 / rate).max(0.001));
    let mut iv = tokio::time::interval_at(tokio::time::Instant::from_std(start), tick);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut n: u64 = 0;
    loop {
        iv.tick().await;
        let el = start.elapsed().as_secs_f64();
        if el >= dur {
            break;
        }
        while let Ok(pl) = pong_rx.try_recv() {
            put_frame(&mut out, 0xA, &pl);
        }
        let due = ((el * rate) as u64 + 1).min((dur * rate).ceil() as u64);
        while n < due {
            let t = now_us();
            let data = format!(r#"{{"lg_p":{p},"lg_n":{n},"lg_t":{t},{extra}"pad":"{pad}"}}"#);
            if chat {
                let id = n as usize + 1;
                if id < sent_at.len() {
                    sent_at[id].store(t, Relaxed);
                }
                let req = format!(
                    r#"{{"id":{id},"op":"publish","channel":"{}","data":{data}}}"#,
                    cfg.channel
                );
                put_frame(&mut out, 0x1, req.as_bytes());
            } else {
                put_frame(&mut out, 0x1, data.as_bytes());
            }
            n += 1;
        }
        if !out.is_empty() {
            if let Err(e) = w.write_all(&out).await {
                ev.add(format!("publisher write error: {e}"));
                break;
            }
            out.clear();
        }
    }
    res.sent = n;
    if chat {
        // wait for every ack (bounded), answering pings meanwhile
        let deadline = Instant::now() + Duration::from_secs(15);
        while acks.load(Relaxed) < n && Instant::now() < deadline && !reader.is_finished() {
            while let Ok(pl) = pong_rx.try_recv() {
                let _ = send_pong(&mut w, &pl).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if acks.load(Relaxed) < n {
            ev.add(format!(
                "publisher {p}: {} publishes never acknowledged",
                n - acks.load(Relaxed)
            ));
        }
        let _ = rstop_tx.send(true);
        if let Ok((ok, h, tl)) = reader.await {
            res.ok = ok;
            res.ack = h;
            res.tl = tl;
        }
    } else {
        res.ok = n;
        let _ = w.flush().await;
        reader.abort();
    }
    res
}
