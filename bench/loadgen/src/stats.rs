//! Latency histograms and timelines, and what /proc tells about the server under test.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// log-linear histogram (32 sub-buckets per power of two: < 3.2 % error), microseconds

pub const HB: usize = 37 * 32;

#[derive(Clone)]
pub struct Hist {
    pub b: Vec<u64>,
    pub n: u64,
    pub max: u64,
    pub sum: u64,
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            b: vec![0; HB],
            n: 0,
            max: 0,
            sum: 0,
        }
    }
    pub fn idx(v: u64) -> usize {
        let v = v.min((1u64 << 40) - 1);
        if v < 32 {
            v as usize
        } else {
            let e = 63 - v.leading_zeros() as u64;
            let shift = e - 5;
            ((shift + 1) * 32 + ((v >> shift) & 31)) as usize
        }
    }
    pub fn value(i: usize) -> u64 {
        if i < 32 {
            i as u64
        } else {
            let shift = (i / 32 - 1) as u64;
            ((32 + (i % 32) as u64) << shift) + ((1u64 << shift) >> 1)
        }
    }
    pub fn rec(&mut self, v: u64) {
        self.b[Self::idx(v)] += 1;
        self.n += 1;
        self.sum += v;
        self.max = self.max.max(v);
    }
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.b.iter_mut().zip(&o.b) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }
    pub fn pct(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.b.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

pub fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------------
// /proc of the server under test, and our own usage

pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn proc_threads(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Threads:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// (busy, total) CPU seconds of the whole machine, all cores, from /proc/stat.
pub fn machine_cpu_s() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let total: f64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0);
    ((total - idle) / hz, total / hz)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per-second (by send time) latency sum, count and max.
#[derive(Clone, Default)]
pub struct Timeline {
    sum: Vec<u64>,
    cnt: Vec<u64>,
    max: Vec<u64>,
}

impl Timeline {
    pub fn rec(&mut self, sent_us: u64, lat: u64) {
        let i = (sent_us / 1_000_000) as usize;
        if i >= self.sum.len() {
            self.sum.resize(i + 1, 0);
            self.cnt.resize(i + 1, 0);
            self.max.resize(i + 1, 0);
        }
        self.sum[i] += lat;
        self.cnt[i] += 1;
        self.max[i] = self.max[i].max(lat);
    }
    pub fn merge(&mut self, o: &Timeline) {
        for (i, _) in o.sum.iter().enumerate() {
            if i >= self.sum.len() {
                self.sum.resize(i + 1, 0);
                self.cnt.resize(i + 1, 0);
                self.max.resize(i + 1, 0);
            }
            self.sum[i] += o.sum[i];
            self.cnt[i] += o.cnt[i];
            self.max[i] = self.max[i].max(o.max[i]);
        }
    }
    /// (mean ms, max ms) per second from `from_us` on.
    pub fn series(&self, from_us: u64) -> (Vec<f64>, Vec<f64>) {
        let s = (from_us / 1_000_000) as usize;
        let mut mean = Vec::new();
        let mut max = Vec::new();
        for i in s..self.sum.len() {
            if self.cnt[i] == 0 {
                continue;
            }
            mean.push(ms(self.sum[i] / self.cnt[i]));
            max.push(ms(self.max[i]));
        }
        (mean, max)
    }
}

pub fn self_cpu_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn raise_nofile() -> u64 {
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur as u64
}

/// Samples the server's peak RSS while a scenario runs.
pub fn rss_monitor(pid: Option<u32>) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let p2 = peak.clone();
    let h = tokio::spawn(async move {
        let Some(pid) = pid else { return };
        loop {
            if let Some(r) = proc_rss_kb(pid) {
                p2.fetch_max(r, Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (peak, h)
}
