//! The bounded outbound queue of one connection.
//!
//! Hub shards, the writer and the session push already-serialized frames ([`Bytes`]
//! shared by every recipient) into the [`Outbox`]; the connection's socket writer
//! ([`super::writer`]) pulls them only when the socket can take more, so a client that
//! stops reading stops the pulling, never the pushers.
//!
//! Overflow policy: frames of conflatable channels (feeds that carry state) keep one
//! pending slot per channel whose content is replaced by newer values; any other
//! frame that would exceed `max_frames` or `max_bytes` closes the connection with
//! 4008 after dropping the backlog (memory is released at once).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use actix::Recipient;
use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use bytes::{Bytes, BytesMut};

use crate::protocol::{close, disconnect_event};

/// Tells the session its connection ended (overflow, transport gone).
#[derive(actix::Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct OutboxClosed;

/// Most bytes handed to the socket writer in one chunk.
const CHUNK: usize = 64 * 1024;

enum Item {
    Text(Bytes),
    /// The newest pending frame of a conflated channel lives in `Inner::conflated`.
    Slot(Arc<str>),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Item>,
    /// Bytes of text frames queued (including conflated slots).
    bytes: usize,
    conflated: HashMap<Arc<str>, Bytes, FxBuild>,
    /// Control frames go out before any queued text.
    control: VecDeque<(OpCode, Bytes)>,
    /// Set once the connection is closing: code and reason of the close frame.
    closing: Option<(u16, String)>,
    close_sent: bool,
    /// The socket writer waiting for frames.
    waker: Option<Waker>,
    /// The socket writer still runs (the socket is open).
    transport_alive: bool,
    /// Raw socket, to cut a connection that never drains its close frame.
    fd: Option<i32>,
    /// The session, told once when the connection ends.
    notify: Option<Recipient<OutboxClosed>>,
    /// Frames dropped or replaced by conflation (observability).
    conflated_count: u64,
    /// Signs of life of the client, read by the heartbeat sweep.
    life: Life,
}

/// What the heartbeat sweep knows of a connection's client (see [`Outbox::heartbeat`]).
#[derive(Default)]
struct Life {
    /// Frames received from the client (any kind, pong included).
    frames_in: u64,
    /// Bytes of text frames the transport took from the queue.
    taken: u64,
    /// Both counters and the kernel send queue (SIOCOUTQ) at the last sweep.
    seen_frames_in: u64,
    seen_taken: u64,
    seen_unacked: Option<u32>,
    /// When the last sign of life was observed (`None`: not swept yet).
    last: Option<Instant>,
}

/// The outcome of one heartbeat check of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Alive (or already closing): a ping was queued when it is open.
    Alive,
    /// No sign of life for the client timeout: closing with 1000.
    TimedOut,
}

/// One connection's bounded queue. Cheap to share: `Arc<Outbox>`.
pub struct Outbox {
    inner: Mutex<Inner>,
    max_frames: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    pub fn new(max_frames: usize, max_bytes: usize, fd: Option<i32>) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner {
                fd,
                transport_alive: true,
                ..Default::default()
            }),
            max_frames,
            max_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the session to notify when the connection ends.
    pub fn set_notify(&self, r: Recipient<OutboxClosed>) {
        self.lock().notify = Some(r);
    }

    /// Queues a text frame. Returns false when the connection is (now) closed.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut g = self.lock();
        if g.closing.is_some() {
            return false;
        }
        if g.queue.len() >= self.max_frames || g.bytes + frame.len() > self.max_bytes {
            self.overflow(g);
            return false;
        }
        g.bytes += frame.len();
        g.queue.push_back(Item::Text(frame));
        wake(&mut g);
        true
    }

    /// Queues several frames of one channel under one lock and one wake-up: those with
    /// a seq above `after`. Returns false when the connection is (now) closed.
    pub fn push_seq(&self, frames: &[(i64, Bytes)], after: i64) -> bool {
        let mut g = self.lock();
        if g.closing.is_some() {
            return false;
        }
        let mut pushed = false;
        for (seq, frame) in frames {
            if *seq <= after {
                continue;
            }
            if g.queue.len() >= self.max_frames || g.bytes + frame.len() > self.max_bytes {
                self.overflow(g);
                return false;
            }
            g.bytes += frame.len();
            g.queue.push_back(Item::Text(frame.clone()));
            pushed = true;
        }
        if pushed {
            wake(&mut g);
        }
        true
    }

    /// Queues a frame of a conflatable channel: while an older frame of the same channel
    /// is still queued, it is replaced instead of queued behind it.
    pub fn push_conflated(&self, channel: &Arc<str>, frame: Bytes) -> bool {
        let mut g = self.lock();
        if g.closing.is_some() {
            return false;
        }
        let len = frame.len();
        if !g.conflated.is_empty() {
            if let Some(old) = g.conflated.get_mut(channel) {
                let old_len = old.len();
                *old = frame;
                g.bytes = g.bytes + len - old_len;
                g.conflated_count += 1;
                return true;
            }
        }
        if g.queue.len() >= self.max_frames || g.bytes + len > self.max_bytes {
            self.overflow(g);
            return false;
        }
        g.bytes += len;
        if g.queue.is_empty() {
            // Nothing waits: the value goes out as it is (a subscriber that keeps up
            // costs no slot); a newer one arriving before it is sent takes a slot.
            g.queue.push_back(Item::Text(frame));
        } else {
            g.conflated.insert(channel.clone(), frame);
            g.queue.push_back(Item::Slot(channel.clone()));
        }
        wake(&mut g);
        true
    }

    /// A frame arrived from the client (a sign of life).
    pub fn frame_in(&self) {
        self.lock().life.frames_in += 1;
    }

    /// One heartbeat: a sign of life since the last check is any frame from the client
    /// (pong included), the transport taking queued text, or the kernel send queue of
    /// the socket shrinking (the client's TCP stack acknowledged data that was waiting
    /// for it). Without one for `timeout`, the connection is closed with 1000 and the
    /// session told; otherwise a ping is queued. Our own pings are not counted as taken
    /// data, so an idle client that never answers them times out.
    pub fn heartbeat(&self, now: Instant, timeout: Duration) -> Beat {
        let mut g = self.lock();
        if g.closing.is_some() {
            return Beat::Alive;
        }
        let unacked = g.fd.and_then(unacked_bytes);
        let l = &mut g.life;
        let acked = matches!((l.seen_unacked, unacked), (Some(before), Some(now)) if now < before);
        let progress = acked || l.frames_in != l.seen_frames_in || l.taken != l.seen_taken;
        (l.seen_frames_in, l.seen_taken, l.seen_unacked) = (l.frames_in, l.taken, unacked);
        let last = match l.last {
            Some(last) if !progress => last,
            _ => {
                l.last = Some(now);
                now
            }
        };
        if now.saturating_duration_since(last) >= timeout {
            g.closing = Some((close::NORMAL, "heartbeat timeout".into()));
            wake(&mut g);
            let notify = g.notify.take();
            drop(g);
            notify_closed(notify);
            return Beat::TimedOut;
        }
        if g.control.len() < 8 {
            g.control.push_back((OpCode::Ping, Bytes::new()));
            wake(&mut g);
        }
        Beat::Alive
    }

    /// Answers a client ping. When pongs pile up (a ping flood), the oldest pending one
    /// gives way: the most recent ping is always answered (RFC 6455 §5.5.3).
    pub fn pong(&self, payload: Bytes) {
        let mut g = self.lock();
        if g.closing.is_some() {
            return;
        }
        if g.control.len() >= 8 {
            let Some(oldest) = g.control.iter().position(|(op, _)| *op == OpCode::Pong) else {
                return;
            };
            g.control.remove(oldest);
        }
        g.control.push_back((OpCode::Pong, payload));
        wake(&mut g);
    }

    /// Starts closing: `flush` sends what is queued first; otherwise the backlog is
    /// dropped. Non-normal codes are announced by a `disconnect` event first.
    pub fn close(&self, code: u16, reason: &str, flush: bool) {
        let mut g = self.lock();
        if g.closing.is_some() {
            return;
        }
        if !flush {
            clear(&mut g);
        }
        if code >= 4000 {
            let ev = disconnect_event(code, reason);
            g.bytes += ev.len();
            g.queue.push_back(Item::Text(ev));
        }
        g.closing = Some((code, reason.to_string()));
        wake(&mut g);
    }

    fn overflow(&self, mut g: MutexGuard<'_, Inner>) {
        log::info!(
            "closing a slow consumer ({} frames, {} bytes queued)",
            g.queue.len(),
            g.bytes
        );
        crate::metrics::get().outbox_overflows.inc();
        clear(&mut g);
        let ev = disconnect_event(close::SLOW_CONSUMER, "slow consumer");
        g.bytes += ev.len();
        g.queue.push_back(Item::Text(ev));
        g.closing = Some((close::SLOW_CONSUMER, "slow consumer".into()));
        wake(&mut g);
        let notify = g.notify.take();
        drop(g);
        notify_closed(notify);
    }

    /// Is the connection closing or closed?
    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Takes the queued text frames out, in order (tests read a connection without a
    /// socket).
    #[cfg(test)]
    pub fn take_frames(&self) -> Vec<Bytes> {
        let mut g = self.lock();
        let mut out = Vec::new();
        while let Some(item) = g.queue.pop_front() {
            match item {
                Item::Text(f) => out.push(f),
                Item::Slot(ch) => out.extend(g.conflated.remove(&ch)),
            }
        }
        g.bytes = 0;
        out
    }

    /// Frames and bytes queued right now.
    #[cfg(test)]
    pub fn queued(&self) -> (usize, usize) {
        let g = self.lock();
        (g.queue.len(), g.bytes)
    }

    /// Cuts the socket when the close frame could not be delivered in time (the client
    /// stopped reading). Safe: only while the socket writer still holds the socket
    /// (`fd` is cleared under the lock before it lets the socket go).
    pub fn force_close(&self) {
        let g = self.lock();
        if g.transport_alive {
            if let Some(fd) = g.fd {
                log::debug!("cutting a connection that does not drain its close frame");
                // SAFETY: the fd belongs to a live connection (transport_alive) and
                // shutdown() neither closes nor invalidates it.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RDWR);
                }
            }
        }
    }

    /// Called by the socket writer when it ends (the socket is being released).
    pub fn transport_gone(&self) {
        let mut g = self.lock();
        g.transport_alive = false;
        g.fd = None;
        clear(&mut g);
        if g.closing.is_none() {
            g.closing = Some((close::GOING_AWAY, String::new()));
        }
        let notify = g.notify.take();
        drop(g);
        notify_closed(notify);
    }

    /// Encodes what is ready into one chunk (`None`: the close frame is out).
    pub fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut g = self.lock();
        if g.close_sent {
            return Poll::Ready(None);
        }
        let mut out = BytesMut::new();
        while let Some((op, payload)) = g.control.pop_front() {
            Parser::write_message(&mut out, payload, op, true, false);
        }
        while out.len() < CHUNK {
            let frame = match g.queue.pop_front() {
                None => break,
                Some(Item::Text(f)) => f,
                Some(Item::Slot(ch)) => match g.conflated.remove(&ch) {
                    Some(f) => f,
                    None => continue,
                },
            };
            g.bytes -= frame.len();
            g.life.taken += frame.len() as u64;
            if out.is_empty() {
                out.reserve(frame.len().max(CHUNK.min(g.bytes + frame.len())) + 14);
            }
            Parser::write_message(&mut out, &frame[..], OpCode::Text, true, false);
        }
        if g.queue.is_empty() {
            if let Some((code, reason)) = g.closing.clone() {
                let reason = CloseReason {
                    code: CloseCode::from(code),
                    description: Some(reason).filter(|r| !r.is_empty()),
                };
                Parser::write_close(&mut out, Some(reason), false);
                g.close_sent = true;
            }
        }
        release_idle(&mut g);
        if out.is_empty() {
            g.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Some(out.freeze()))
    }
}

/// Tells the session its connection ended. `do_send` (past the session's mailbox
/// bound) on purpose: this must not be lost, and `notify` is taken, so it happens at
/// most once per connection.
fn notify_closed(notify: Option<Recipient<OutboxClosed>>) {
    if let Some(n) = notify {
        n.do_send(OutboxClosed);
    }
}

/// Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ).
fn unacked_bytes(fd: i32) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one int; `fd` is the live socket of this
        // connection (the caller holds the outbox lock, and `fd` is cleared under it
        // before the socket is released).
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
        (r == 0 && n >= 0).then_some(n as u32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

fn wake(g: &mut Inner) {
    if let Some(w) = g.waker.take() {
        w.wake();
    }
}

/// Frees the queues' memory once they are empty: most connections are idle most of the
/// time, and a burst should not leave its high-water capacity behind.
fn release_idle(g: &mut Inner) {
    if g.queue.is_empty() && g.queue.capacity() > 0 {
        g.queue = VecDeque::new();
    }
    if g.control.is_empty() && g.control.capacity() > 0 {
        g.control = VecDeque::new();
    }
    // A few slots stay (a feed subscriber refills them many times a second).
    if g.conflated.is_empty() && g.conflated.capacity() > 8 {
        g.conflated = HashMap::default();
    }
}

/// A fast hasher for the conflation slots (keys are short channel names chosen by the
/// server's own channel table, not by a client: no flooding of one bucket to defend
/// against beyond the per-connection channel limit).
#[derive(Default, Clone, Copy)]
struct FxBuild;

impl std::hash::BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// The Fx hash (as in rustc): a rotate, xor and multiply per word.
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn clear(g: &mut Inner) {
    g.queue = VecDeque::new();
    g.conflated = HashMap::default();
    g.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &Outbox) -> Vec<u8> {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut all = Vec::new();
        while let Poll::Ready(Some(b)) = o.poll_chunk(&mut cx) {
            all.extend_from_slice(&b);
        }
        all
    }

    #[test]
    fn overflow_closes_and_frees() {
        let o = Outbox::new(4, 1 << 20, None);
        for _ in 0..4 {
            assert!(o.push(Bytes::from_static(b"{}")));
        }
        assert!(!o.push(Bytes::from_static(b"{}")));
        assert!(o.is_closing());
        let out = drain(&o);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("slow consumer"));
        // last frame is a close frame with code 4008
        let close_at = out.iter().rposition(|b| *b == 0x88).unwrap();
        assert_eq!(&out[close_at + 2..close_at + 4], &4008u16.to_be_bytes());
    }

    #[test]
    fn conflation_keeps_newest() {
        let o = Outbox::new(4, 1 << 20, None);
        let ch: Arc<str> = "ticker:A".into();
        for i in 0..100 {
            assert!(o.push_conflated(&ch, Bytes::from(format!("{{\"p\":{i}}}"))));
        }
        // The first value went out as it was (nothing waited); every later one took
        // the channel's single slot.
        assert_eq!(o.queued().0, 2);
        let out = String::from_utf8_lossy(&drain(&o)).into_owned();
        assert!(out.contains("{\"p\":0}") && out.contains("{\"p\":99}"), "{out}");
        assert!(!out.contains("{\"p\":50}"));
        assert!(!o.is_closing());
        // Once drained, a value goes out at once again, and the slots stay conflating
        // behind it.
        let other: Arc<str> = "ticker:B".into();
        for i in 0..10 {
            o.push_conflated(&ch, Bytes::from(format!("{{\"a\":{i}}}")));
            o.push_conflated(&other, Bytes::from(format!("{{\"b\":{i}}}")));
        }
        assert_eq!(o.queued().0, 3, "one value in flight, one slot per channel");
        let out = String::from_utf8_lossy(&drain(&o)).into_owned();
        assert!(out.contains("{\"a\":9}") && out.contains("{\"b\":9}"), "{out}");
    }

    #[test]
    fn fx_hash_spreads_channel_names() {
        use std::hash::BuildHasher;
        let h = |s: &str| FxBuild.hash_one(s);
        assert_ne!(h("ticker:AAPL"), h("ticker:AAPM"));
        assert_ne!(h("ticker:A"), h("ticker:B"));
        assert_eq!(h("room:x"), h("room:x"));
    }
}
