//! The group-commit writer alone (no HTTP, no WebSocket): stored messages per second,
//! batch sizes, time per batch, and per-message latency from submit to the sink
//! seeing the commit (where the real server acknowledges a publish).
//!
//!     cargo bench --bench writer                       # flat out, SQLite on disk
//!     WB_RATE=5000 WB_SECS=20 cargo bench --bench writer   # paced
//!
//! Environment (defaults in brackets):
//!
//! * `WB_N` [200000] messages submitted flat out (as fast as the queue takes them);
//! * `WB_RATE` [0] paced mode instead: messages per second spread evenly over the
//!   rooms, for `WB_SECS` [10] seconds; `WB_POISSON=1` spaces them at random
//!   (exponential gaps of the same mean, as from many independent publishers) instead
//!   of evenly;
//! * `WB_ROOMS` [100] rooms, `WB_USERS` [1000] senders, `WB_DATA` [200] bytes of JSON
//!   per message, `WB_CID` [50] percent of messages with a `client_id`, `WB_CHECK_ROOM`
//!   [1] room access check per message (as a user's publish into a room has);
//! * `WB_BATCH_MAX`, `WB_QUEUE` [the server's defaults] the writer's batch size limit
//!   and queue length;
//! * `WB_DIR` [the system temp dir] where the temporary SQLite database goes (its real
//!   configuration: WAL, synchronous=FULL); `DATABASE_URL=postgres://...` uses
//!   PostgreSQL instead (each run in a database of its own, created and dropped);
//! * `WB_FSYNC` [200] 4 KiB write + fdatasync probes in the database's directory;
//! * `WB_WARM` [0] messages stored (in the same rooms, unmeasured) before the run:
//!   a larger table and indexes;
//! * `WB_RUNS` [1] repetitions (fresh database each).

use std::{
    env,
    fs::OpenOptions,
    io::Write,
    os::unix::fs::FileExt,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use chatserver::{
    auth::{Identity, Role},
    channels::Channel,
    config::Settings,
    conn::Ack,
    protocol::UserRef,
    storage::{
        writer::{self, AppendReq, BatchStats, Commit, CommitSink, WriteOp},
        Db, DbTarget,
    },
};
use diesel::connection::SimpleConnection;
use serde_json::value::RawValue;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

struct Opts {
    n: usize,
    rate: f64,
    secs: f64,
    poisson: bool,
    rooms: usize,
    users: usize,
    data: usize,
    cid_pct: usize,
    check_room: bool,
    batch_max: usize,
    queue: usize,
    dir: std::path::PathBuf,
    pg: Option<String>,
    fsync: usize,
    runs: usize,
    warm: usize,
}

impl Opts {
    fn from_env() -> Opts {
        let d = Settings::default();
        let pg = env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        Opts {
            n: var("WB_N", 200_000),
            rate: var("WB_RATE", 0.0),
            secs: var("WB_SECS", 10.0),
            poisson: var("WB_POISSON", 0) != 0,
            rooms: var("WB_ROOMS", 100).max(1),
            users: var("WB_USERS", 1000).max(1),
            data: var("WB_DATA", 200),
            cid_pct: var("WB_CID", 50),
            check_room: var("WB_CHECK_ROOM", 1) != 0,
            batch_max: var("WB_BATCH_MAX", d.write_batch_max),
            queue: var("WB_QUEUE", d.write_queue),
            dir: env::var_os("WB_DIR").map(Into::into).unwrap_or_else(env::temp_dir),
            pg,
            fsync: var("WB_FSYNC", 200),
            runs: var("WB_RUNS", 1).max(1),
            warm: var("WB_WARM", 0),
        }
    }

    fn messages(&self) -> usize {
        if self.rate > 0.0 {
            (self.rate * self.secs) as usize
        } else {
            self.n
        }
    }
}

/// What the writer thread reports: commits and batch stats, stamped when seen.
enum Seen {
    /// A batch's stats and the writer thread's CPU time after it.
    Batch(BatchStats, Duration),
    Commits(Instant, Vec<Commit>),
}

/// Forwards to the collector. Overflow policy of its bounded channel: the writer
/// waits (as with the hub's mailboxes), which slows the writer only if the collector
/// falls behind.
struct Sink(mpsc::SyncSender<Seen>, Arc<AtomicU64>);

impl CommitSink for Sink {
    fn committed(&mut self, commits: Vec<Commit>) {
        let _ = self.0.send(Seen::Commits(Instant::now(), commits));
    }

    fn batch_done(&mut self, stats: &BatchStats) {
        if self.1.load(Ordering::Relaxed) == 0 {
            // SAFETY: gettid has no preconditions.
            self.1.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
        }
        let _ = self
            .0
            .send(Seen::Batch(*stats, cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)));
    }
}

/// Time thread `tid` of this process spent waiting for a CPU so far, in ns
/// (`/proc/.../schedstat`, field 2); `None` where unknown.
fn run_delay(tid: u64) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes this process wrote through write calls so far (`wchar`; 0 where unknown).
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time of this thread or process.
fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Message `i`'s data: `{"i":<i>,"p":"xxx…"}`, `size` bytes long (at least).
fn data(i: usize, size: usize) -> Arc<RawValue> {
    let head = format!(r#"{{"i":{i},"p":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let s = format!("{head}{}\"}}", "x".repeat(pad));
    RawValue::from_string(s).expect("valid JSON").into()
}

/// The `i` back out of a message's data.
fn index_of(data: &RawValue) -> usize {
    let s = data.get();
    let rest = &s[5..];
    rest[..rest.find(',').expect("an index")].parse().expect("an index")
}

/// Messages `range` (their index `i` is in their data) with client ids `<prefix><tag><i>`.
fn build_ops(o: &Opts, prefix: &str, range: std::ops::Range<usize>, tag: &str) -> Vec<WriteOp> {
    let rooms: Vec<Channel> = (0..o.rooms)
        .map(|r| Channel::parse(&format!("room:{prefix}{r}")).expect("room name"))
        .collect();
    let users: Vec<Identity> = (0..o.users)
        .map(|u| Identity {
            user: UserRef::new(format!("u{u}"), format!("User {u}")),
            role: Role::User,
            anonymous: false,
            entity: None,
        })
        .collect();
    range
        .map(|i| {
            let with_cid = (i * 7919) % 100 < o.cid_pct;
            WriteOp::Append(AppendReq {
                channel: rooms[i % o.rooms].clone(),
                who: users[(i / o.rooms) % o.users].clone(),
                check_room: o.check_room,
                data: data(i, o.data),
                client_id: with_cid.then(|| format!("{prefix}{tag}{i}").into()),
                ack: Ack::None,
            })
        })
        .collect()
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e6)
}

fn summary(name: &str, v: &mut [u64]) -> String {
    v.sort_unstable();
    let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    format!(
        "{name} ms: mean {:.2} p50 {} p90 {} p99 {} p99.9 {} max {}",
        mean / 1e6,
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99)),
        ms(pct(v, 0.999)),
        ms(v.last().copied().unwrap_or(0))
    )
}

/// 4 KiB write + fdatasync, `n` times, in `dir`: what one durable commit costs at least.
fn fsync_probe(dir: &Path, n: usize) {
    if n == 0 {
        return;
    }
    let path = dir.join("fsync-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("probe file");
    let block = [7u8; 4096];
    f.write_all(&block).unwrap();
    f.sync_all().unwrap();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        // Appends like a WAL does (a new block each time), then overwrites.
        f.write_all_at(&block, ((i % 256) * 4096) as u64).unwrap();
        f.sync_data().unwrap();
        v.push(t.elapsed().as_nanos() as u64);
    }
    let _ = std::fs::remove_file(&path);
    println!(
        "fsync ({n} x 4 KiB write + fdatasync in {}): {}",
        dir.display(),
        summary("", &mut v)
    );
}

/// Drops what the writer reports.
struct Discard;

impl CommitSink for Discard {
    fn committed(&mut self, _: Vec<Commit>) {}
}

/// Stores `WB_WARM` messages in the same rooms before the measured run.
fn warm_up(o: &Opts, target: &DbTarget, prefix: &str) {
    let t = Instant::now();
    let ops = build_ops(o, prefix, 0..o.warm, "w");
    let (handle, queue) = writer::queue(o.queue);
    let w = writer::start(
        target.connect().expect("connect"),
        queue,
        Box::new(Discard),
        o.batch_max,
    );
    for op in ops {
        handle.submit_wait(op);
    }
    handle.shutdown();
    w.join().expect("writer thread");
    println!(
        "  warm-up: {} messages stored in {:.1} s",
        o.warm,
        t.elapsed().as_secs_f64()
    );
}

/// One run on a fresh database; returns stored messages per second.
fn run(o: &Opts, run_no: usize) -> f64 {
    let prefix = format!("wb{:08x}-", rand::random::<u32>());
    let tmp = tempfile::Builder::new()
        .prefix("writer-bench")
        .tempdir_in(&o.dir)
        .expect("temp dir");
    let scratch = o.pg.as_deref().map(ScratchPg::create);
    let target = match &scratch {
        Some(db) => DbTarget::Postgres(db.url.clone()),
        None => DbTarget::Sqlite(tmp.path().join("chat.db").to_string_lossy().into_owned()),
    };
    Db::open(&target, 1).expect("open database");
    if o.warm > 0 {
        warm_up(o, &target, &prefix);
    }
    let ops = build_ops(o, &prefix, 0..o.messages(), "c");
    let total = ops.len();
    let submitted: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());

    let (tx, rx) = mpsc::sync_channel::<Seen>(4096);
    let (handle, queue) = writer::queue(o.queue);
    let t0 = Instant::now();
    let tid = Arc::new(AtomicU64::new(0));
    let mut run_delay_start = None;
    let wthread = writer::start(
        target.connect().expect("connect"),
        queue,
        Box::new(Sink(tx, tid.clone())),
        o.batch_max,
    );

    let wal = match &target {
        DbTarget::Sqlite(p) => Some(format!("{p}-wal")),
        DbTarget::Postgres(_) => None,
    };
    let collector = {
        let submitted = submitted.clone();
        thread::spawn(move || {
            // Largest WAL file seen (sampled every 100 ms).
            let mut wal_max = 0u64;
            let mut wal_seen = t0;
            let mut lat = Vec::with_capacity(total);
            // Latency minus its batch's statements and commit: the wait in the queue.
            let mut wait = Vec::with_capacity(total);
            let mut batch_time = 0u64;
            let mut batches = Vec::new();
            let mut apply = Vec::new();
            let mut commit = Vec::new();
            let mut failed = 0usize;
            let mut last = t0;
            // Writer CPU time from the end of the first batch to the end of the last.
            let mut cpu: Option<(Duration, Duration, usize)> = None;
            while let Ok(seen) = rx.recv() {
                match seen {
                    Seen::Batch(s, at) => {
                        cpu = Some(match cpu {
                            None => (at, at, 0),
                            Some((first, _, ops)) => (first, at, ops + s.ops),
                        });
                        batches.push(s.ops as u64);
                        batch_time = (s.apply + s.commit).as_nanos() as u64;
                        apply.push(s.apply.as_nanos() as u64);
                        commit.push(s.commit.as_nanos() as u64);
                        if !s.ok {
                            failed += s.ops;
                        }
                    }
                    Seen::Commits(at, commits) => {
                        let since = (at - t0).as_nanos() as u64;
                        for c in commits {
                            if let Commit::Message { msg, .. } = c {
                                let i = index_of(&msg.data);
                                let l = since.saturating_sub(submitted[i].load(Ordering::Relaxed));
                                lat.push(l);
                                wait.push(l.saturating_sub(batch_time));
                            }
                        }
                        last = at;
                        if let Some(w) = wal.as_deref().filter(|_| at - wal_seen > Duration::from_millis(100)) {
                            wal_seen = at;
                            wal_max = wal_max.max(std::fs::metadata(w).map(|m| m.len()).unwrap_or(0));
                        }
                    }
                }
            }
            (lat, wait, batches, apply, commit, failed, last, cpu, wal_max)
        })
    };

    let paced = o.rate > 0.0;
    // Seconds from the start at which message i is due.
    let mut due_s = 0.0f64;
    let start = Instant::now();
    let cpu_start = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID);
    let written_start = bytes_written();
    for (i, op) in ops.into_iter().enumerate() {
        if paced {
            due_s += if o.poisson {
                -(1.0 - rand::random::<f64>()).ln() / o.rate
            } else {
                1.0 / o.rate
            };
            let due = start + Duration::from_secs_f64(due_s);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        submitted[i].store((Instant::now() - t0).as_nanos() as u64, Ordering::Relaxed);
        handle.submit_wait(op);
        if run_delay_start.is_none() && tid.load(Ordering::Relaxed) != 0 {
            run_delay_start = run_delay(tid.load(Ordering::Relaxed));
        }
    }
    let run_delay_end = run_delay(tid.load(Ordering::Relaxed));
    let submit_done = start.elapsed();
    handle.shutdown();
    wthread.join().expect("writer thread");
    drop(handle);
    let (mut lat, mut wait, mut batches, mut apply, mut commit, failed, last, cpu, wal_max) =
        collector.join().expect("collector");
    let process_cpu = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
    let written = bytes_written() - written_start;
    let elapsed = (last - start).as_secs_f64();
    let stored = lat.len();
    let per_s = stored as f64 / elapsed;

    println!(
        "run {run_no}: {} {stored}/{total} stored ({failed} failed) in {elapsed:.2} s = {per_s:.0} msg/s (submitting took {:.2} s)",
        target.backend(),
        submit_done.as_secs_f64()
    );
    let nb = batches.len();
    let mean_batch = batches.iter().sum::<u64>() as f64 / nb.max(1) as f64;
    batches.sort_unstable();
    println!(
        "  batches: {nb}, ops per batch mean {mean_batch:.1} p50 {} p99 {} max {}",
        pct(&batches, 0.5),
        pct(&batches, 0.99),
        batches.last().copied().unwrap_or(0)
    );
    if let Some((first, last, ops)) = cpu {
        println!(
            "  CPU per stored message: writer thread {:.2} us, whole process {:.2} us (submitting and measuring included)",
            (last - first).as_secs_f64() * 1e6 / ops.max(1) as f64,
            process_cpu.as_secs_f64() * 1e6 / stored.max(1) as f64
        );
    }
    if let DbTarget::Sqlite(path) = &target {
        let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        println!(
            "  written per stored message: {:.0} B (WAL, checkpoints, temp files); database {:.1} MB, largest WAL {:.1} MB",
            written as f64 / stored.max(1) as f64,
            size(path),
            wal_max as f64 / 1e6
        );
    }
    println!("  {}", summary("apply per batch", &mut apply));
    println!("  {}", summary("commit per batch", &mut commit));
    println!("  {}", summary("latency submit->commit seen", &mut lat));
    println!("  {}", summary("  of which waiting in the queue", &mut wait));
    if let (Some(a), Some(b)) = (run_delay_start, run_delay_end) {
        println!(
            "  writer thread waited {:.0} ms in total for a CPU (run queue, /proc schedstat)",
            (b - a) as f64 / 1e6
        );
    }
    per_s
}

/// A PostgreSQL database of its own for one run, dropped after it.
struct ScratchPg {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchPg {
    fn create(base: &str) -> ScratchPg {
        let name = format!("writer_bench_{:08x}", rand::random::<u32>());
        let mut admin = DbTarget::Postgres(base.into())
            .connect()
            .expect("connect to DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a scratch database");
        // The database is the part of the URL after the last '/', before any '?'.
        let (head, tail) = base.rsplit_once('/').expect("a URL with a database");
        let query = tail.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
        ScratchPg {
            admin_url: base.into(),
            url: format!("{head}/{name}{query}"),
            name,
        }
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        if let Ok(mut admin) = DbTarget::Postgres(self.admin_url.clone()).connect() {
            if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
                eprintln!("could not drop {}: {e}", self.name);
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let o = Opts::from_env();
    let mode = if o.rate > 0.0 {
        format!(
            "paced {} msg/s ({} arrivals) for {} s",
            o.rate,
            if o.poisson { "random" } else { "evenly spaced" },
            o.secs
        )
    } else {
        format!("flat out, {} messages", o.n)
    };
    println!(
        "writer bench: {mode}; {} rooms, {} users, {} B data, {}% with client_id, room check {}, batch max {}, queue {}, warm-up {}",
        o.rooms, o.users, o.data, o.cid_pct, o.check_room, o.batch_max, o.queue, o.warm
    );
    if o.pg.is_none() {
        fsync_probe(&o.dir, o.fsync);
    }
    let rates: Vec<f64> = (1..=o.runs).map(|r| run(&o, r)).collect();
    if rates.len() > 1 {
        let min = rates.iter().cloned().fold(f64::MAX, f64::min);
        let max = rates.iter().cloned().fold(0.0, f64::max);
        println!("msg/s over {} runs: min {min:.0} max {max:.0}", rates.len());
    }
}
