//! Clients that connect, authenticate, join one presence channel and then stay: the engine
//! of `joinstorm` and `idle`. Each client counts the bytes it receives (in a shared slot,
//! so the scenario can take snapshots), parses its join reply by scanning bytes (replies
//! can be large: the presence list of a big room), counts presence events and records how
//! its connection ended. Works with v1.0 servers (full presence lists, `joined`/`left`
//! events) and v1.1 ones (`presence_count`, `count`, count-only events, `more`): the v1.1
//! fields are optional and recorded when present.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::util::{mint, now_us, Events, Padded};
use crate::ws::{find, num_after, put_frame, send_pong, send_text, wait_json, ws_connect, Frame};

/// What the scenario tells its clients, in this order.
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
pub enum Phase {
    /// Joined clients read (and count) everything; `--no-read` clients read nothing.
    Run,
    /// Every client reads (no-read clients now learn what happened to them).
    Drain,
    /// Every open client sends `{"op":"ping"}` once and times the reply.
    Ping,
    /// Close politely and report.
    Stop,
}

pub struct RoomCfg {
    pub addr: String,
    pub secret: String,
    /// Client i joins `channels[i % channels.len()]`.
    pub channels: Vec<String>,
    /// `--no-read`: after sending `join`, read nothing until the Drain phase.
    pub read: bool,
    /// `limit` of the join (history messages); None: the server's default.
    pub limit: Option<u64>,
    pub tag: String,
}

/// Shared counters the scenario reads while the clients run.
pub struct Shared {
    pub bytes: Vec<Padded>,
    pub first_connect_us: AtomicU64,
    pub last_join_us: AtomicU64,
    pub ping_ok: AtomicU64,
    pub closed: AtomicU64,
    pub ev: Events,
}

impl Shared {
    pub fn new(n: usize) -> Shared {
        Shared {
            bytes: (0..n).map(|_| Padded::default()).collect(),
            first_connect_us: AtomicU64::new(u64::MAX),
            last_join_us: AtomicU64::new(0),
            ping_ok: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            ev: Events::default(),
        }
    }
    pub fn bytes_snapshot(&self) -> Vec<u64> {
        self.bytes.iter().map(|b| b.0.load(Relaxed)).collect()
    }
}

#[derive(Default, Clone)]
pub struct ClientResult {
    pub connected: bool,
    /// The join reply arrived (`ok`).
    pub joined: bool,
    /// connect start -> join reply, µs
    pub join_us: u64,
    pub reply_bytes: u64,
    pub reply_members: u64,
    pub reply_presence_count: Option<u64>,
    pub reply_more: bool,
    pub presence_events: u64,
    pub presence_bytes: u64,
    pub presence_count_only: u64,
    pub presence_max_count: Option<u64>,
    pub other_frames: u64,
    /// Close code received, or 0 for a transport error/EOF without a close frame.
    pub closed: Option<u16>,
    pub ping_us: Option<u64>,
}

enum Step {
    Continue,
    End,
}

/// Handles one text frame of client `r`.
fn on_text(p: &[u8], r: &mut ClientResult, sh: &Shared) {
    let head = &p[..p.len().min(24)];
    if find(head, b"{\"id\":1,").is_some() || find(head, b"{\"id\":1}").is_some() {
        r.reply_bytes = p.len() as u64;
        if find(head, b"\"error\"").is_some() || find(&p[..p.len().min(64)], b"\"error\":").is_some() {
            sh.ev.add(format!(
                "join error: {}",
                String::from_utf8_lossy(&p[..p.len().min(200)])
            ));
            return;
        }
        r.joined = true;
        let now = now_us();
        sh.last_join_us.fetch_max(now, Relaxed);
        // members of the presence list: each carries "conns"
        let mut i = 0;
        while let Some(k) = find(&p[i..], b"\"conns\":") {
            r.reply_members += 1;
            i += k + 8;
        }
        r.reply_presence_count = num_after(p, b"\"presence_count\":");
        r.reply_more = find(p, b"\"more\":true").is_some();
        return;
    }
    if find(head, b"{\"id\":2,").is_some() {
        return; // ping reply: handled by the caller
    }
    if find(head, b"\"ev\":\"presence\"").is_some() {
        r.presence_events += 1;
        r.presence_bytes += p.len() as u64;
        if find(p, b"\"joined\"").is_none() && find(p, b"\"left\"").is_none() {
            r.presence_count_only += 1;
        }
        if let Some(c) = num_after(p, b"\"count\":") {
            r.presence_max_count = Some(r.presence_max_count.unwrap_or(0).max(c));
        }
        return;
    }
    if find(head, b"\"ev\":\"disconnect\"").is_some() {
        sh.ev
            .add(format!("disconnect event {}", num_after(p, b"\"code\":").unwrap_or(0)));
        return;
    }
    r.other_frames += 1;
}

pub async fn client(
    i: usize,
    cfg: Arc<RoomCfg>,
    sem: Arc<Semaphore>,
    sh: Arc<Shared>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    mut phase: watch::Receiver<Phase>,
) -> ClientResult {
    let mut r = ClientResult::default();
    let mut permit = Some(sem.acquire_owned().await.unwrap());
    let t0 = now_us();
    sh.first_connect_us.fetch_min(t0, Relaxed);
    let channel = &cfg.channels[i % cfg.channels.len()];
    let tok = mint(
        &cfg.secret,
        &format!("lg-{}-{i}", cfg.tag),
        &format!("{}{i}", cfg.tag),
        "user",
    );
    let conn = async {
        let (mut rd, mut w) = ws_connect(&cfg.addr, Some(&tok)).await?;
        wait_json(&mut rd, &mut w, |v| v["ev"] == "welcome").await?;
        let join = match cfg.limit {
            Some(l) => format!(r#"{{"id":1,"op":"join","channel":"{channel}","limit":{l}}}"#),
            None => format!(r#"{{"id":1,"op":"join","channel":"{channel}"}}"#),
        };
        send_text(&mut w, &join).await?;
        Ok::<_, std::io::Error>((rd, w))
    };
    let (mut rd, mut w) = match tokio::time::timeout(Duration::from_secs(60), conn).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let _ = ready.send(Err(e.to_string()));
            return r;
        }
        Err(_) => {
            let _ = ready.send(Err("connect timeout".into()));
            return r;
        }
    };
    r.connected = true;
    let mut reported = false;
    if !cfg.read {
        // a client that never reads: the join is sent; that is all we can know for now
        permit.take();
        let _ = ready.send(Ok(()));
        reported = true;
        while *phase.borrow() < Phase::Drain {
            if phase.changed().await.is_err() {
                break;
            }
        }
    }
    let mut seen = rd.bytes;
    let mut ping_sent = 0u64;
    let mut cur = *phase.borrow();
    let mut step = Step::Continue;
    loop {
        if matches!(step, Step::End) {
            break;
        }
        if cur == Phase::Ping && ping_sent == 0 && r.closed.is_none() {
            ping_sent = now_us();
            if send_text(&mut w, r#"{"id":2,"op":"ping"}"#).await.is_err() {
                sh.ev.add("ping write error");
            }
        }
        if cur == Phase::Stop {
            break;
        }
        tokio::select! {
            biased;
            c = phase.changed() => {
                if c.is_err() { break; }
                cur = *phase.borrow();
            }
            f = rd.next() => {
                sh.bytes[i].0.fetch_add(rd.bytes - seen, Relaxed);
                seen = rd.bytes;
                match f {
                    Ok(Frame::Text(p)) => {
                        let was_joined = r.joined;
                        on_text(&p, &mut r, &sh);
                        if r.joined && !was_joined {
                            r.join_us = now_us().saturating_sub(t0);
                        }
                        if !reported && (r.joined || r.reply_bytes > 0) {
                            reported = true;
                            permit.take();
                            let _ = ready.send(if r.joined { Ok(()) } else { Err("join refused".into()) });
                        }
                        if ping_sent > 0 && r.ping_us.is_none() && find(&p[..p.len().min(24)], b"{\"id\":2,").is_some() {
                            r.ping_us = Some(now_us().saturating_sub(ping_sent));
                            sh.ping_ok.fetch_add(1, Relaxed);
                        }
                    }
                    Ok(Frame::Ping(p)) => {
                        let _ = send_pong(&mut w, &p).await;
                    }
                    Ok(Frame::Close(c, reason)) => {
                        sh.ev.add(format!("close {c} {reason}"));
                        r.closed = Some(c);
                        step = Step::End;
                    }
                    Err(e) => {
                        sh.ev.add(format!("read error: {e}"));
                        r.closed = Some(0);
                        step = Step::End;
                    }
                }
            }
        }
    }
    if r.closed.is_some() {
        sh.closed.fetch_add(1, Relaxed);
    }
    if !reported {
        let _ = ready.send(Err(match r.closed {
            Some(c) => format!("closed {c} before the join reply"),
            None => "no join reply".into(),
        }));
    }
    if r.closed.is_none() {
        // wait for the Stop phase (a client that closed early has nothing more to do)
        while *phase.borrow() != Phase::Stop {
            if phase.changed().await.is_err() {
                break;
            }
        }
        let mut out = Vec::new();
        put_frame(&mut out, 0x8, &1000u16.to_be_bytes());
        let _ = w.write_all(&out).await;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(frames: &[&str]) -> (ClientResult, Shared) {
        let sh = Shared::new(1);
        let mut r = ClientResult::default();
        for f in frames {
            on_text(f.as_bytes(), &mut r, &sh);
        }
        (r, sh)
    }

    #[test]
    fn v1_0_join_reply_and_presence_events() {
        let (r, _) = scan(&[
            r#"{"id":1,"ok":{"channel":"room:a","seq":0,"epoch":"e","messages":[],"presence":[{"id":"1","name":"a","conns":1},{"id":"2","name":"b","conns":2}]}}"#,
            r#"{"ev":"presence","channel":"room:a","joined":[{"id":"3","name":"c"}],"left":[]}"#,
        ]);
        assert!(r.joined);
        assert_eq!(r.reply_members, 2);
        assert_eq!(r.reply_presence_count, None);
        assert!(!r.reply_more);
        assert_eq!(
            (r.presence_events, r.presence_count_only, r.presence_max_count),
            (1, 0, None)
        );
    }

    #[test]
    fn v1_1_capped_reply_counts_and_count_only_events() {
        let (r, _) = scan(&[
            r#"{"id":1,"ok":{"channel":"room:a","seq":9,"epoch":"e","messages":[],"more":true,"presence":[{"id":"1","name":"a","conns":1}],"presence_count":15230}}"#,
            r#"{"ev":"presence","channel":"room:a","joined":[{"id":"3","name":"c"}],"left":[],"count":900}"#,
            r#"{"ev":"presence","channel":"room:a","count":15231}"#,
        ]);
        assert!(r.joined && r.reply_more);
        assert_eq!(r.reply_members, 1);
        assert_eq!(r.reply_presence_count, Some(15230));
        assert_eq!(
            (r.presence_events, r.presence_count_only, r.presence_max_count),
            (2, 1, Some(15231))
        );
    }

    #[test]
    fn refused_join_and_disconnect_event() {
        let (r, sh) = scan(&[
            r#"{"id":1,"error":{"code":"forbidden","message":"no"}}"#,
            r#"{"ev":"disconnect","code":4008,"reason":"slow consumer"}"#,
        ]);
        assert!(!r.joined);
        assert!(r.reply_bytes > 0);
        let ev = sh.ev.json();
        assert_eq!(ev["disconnect event 4008"], 1, "{ev}");
        assert!(
            ev.as_object().unwrap().keys().any(|k| k.starts_with("join error")),
            "{ev}"
        );
    }
}
