//! Demo data simulators for the live-feed channels: stock quotes (`ticker:*`),
//! football matches (`sports:*`) and a vehicle fleet (`loc:*`).
//!
//! The simulators do no I/O and read no clock: a driver calls `tick(now_ms)` on a
//! timer and publishes the returned [`Publication`]s through the normal publish
//! path. Given the same seed and the same sequence of `now_ms` values, the output
//! is identical. Recommended tick intervals: [`QuoteSim`] ~200 ms, [`MatchSim`]
//! ~1 s, [`FleetSim`] ~1 s.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::geo::EARTH_RADIUS_M;

/// One message a simulator wants published.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Publication {
    /// Target channel, e.g. `ticker:ACME`, `sports:cup-final`, `loc:veh-01`.
    pub channel: String,
    /// Message payload (a JSON object), published as-is.
    pub data: Value,
}

/// Rounds `x` to `decimals` decimal places, to keep published numbers short.
fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    // `+ 0.0` turns -0.0 into 0.0 so that JSON never shows "-0.0".
    (x * f).round() / f + 0.0
}

/// A standard normal sample (Box-Muller), since only `rand` is available.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

// ---------------------------------------------------------------------------
// Quotes
// ---------------------------------------------------------------------------

/// Fictional ticker symbols (uppercase A-Z only).
const SYMBOLS: [&str; 20] = [
    "ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "CYBDN", "HOOLI", "SOYLNT", "TYRELL", "WONKA", "OSCORP",
    "VANDLY", "MASSIVE", "NAKATOMI", "PIEDPI", "DUNMIF", "GRINGOT", "ZORG", "BLUTH",
];

/// Chance that a symbol is updated on a given tick (~6 of 20 per tick).
const QUOTE_UPDATE_P: f64 = 0.3;
/// Longest time step a single tick may simulate, so a stalled driver does not
/// cause a jump.
const QUOTE_MAX_DT_MS: i64 = 60_000;
/// Mean reversion of log price toward its anchor, per second (~6 h half-life
/// scale), so long-running demos stay in a plausible range.
const QUOTE_REVERSION_PER_S: f64 = 1.0 / 21_600.0;
/// A trading "day" (UTC): the opening price and volume reset at its start.
const DAY_MS: i64 = 86_400_000;

/// State of one simulated symbol.
#[derive(Debug, Clone)]
struct Quote {
    /// Ticker symbol.
    symbol: &'static str,
    /// Exact (unrounded) current price.
    price: f64,
    /// Log of the price the walk reverts to.
    anchor_ln: f64,
    /// Volatility of the log price per square-root second.
    vol: f64,
    /// Opening price of the current day, in cents.
    open_cents: i64,
    /// Shares traded since the open.
    volume: u64,
    /// When this symbol last moved (ms), to scale the random step.
    last_ms: i64,
}

impl Quote {
    /// Current price in whole cents (at least 1).
    fn cents(&self) -> i64 {
        ((self.price * 100.0).round() as i64).max(1)
    }

    /// The published quote object.
    fn data(&self) -> Value {
        let cents = self.cents();
        let spread = ((cents as f64 * 0.0004).round() as i64).max(1);
        let change = cents - self.open_cents;
        let open = self.open_cents.max(1) as f64;
        json!({
            "price": cents as f64 / 100.0,
            "change": change as f64 / 100.0,
            "change_pct": round_to(change as f64 / open * 100.0, 2),
            "bid": (cents - spread).max(0) as f64 / 100.0,
            "ask": (cents + spread) as f64 / 100.0,
            "volume": self.volume,
        })
    }
}

/// Stock quote simulator: a mean-reverting geometric random walk per symbol,
/// published on `ticker:<SYMBOL>`. Designed to be ticked every ~200 ms; each
/// tick moves a random subset of the symbols. The first tick (and the first
/// tick of each UTC day, when opening prices reset) publishes every symbol.
#[derive(Debug)]
pub struct QuoteSim {
    /// Deterministic randomness.
    rng: StdRng,
    /// All symbols.
    quotes: Vec<Quote>,
    /// Latest `now_ms` seen; `None` before the first tick.
    last_ms: Option<i64>,
    /// UTC day number of `last_ms`, to detect a new trading day.
    day: i64,
}

impl QuoteSim {
    /// Creates the simulator; `seed` fixes the opening prices and the walk.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5107_c0de);
        let quotes = SYMBOLS
            .iter()
            .map(|&symbol| {
                let price = (rng.gen_range(5f64.ln()..600f64.ln())).exp();
                let price = round_to(price, 2);
                Quote {
                    symbol,
                    price,
                    anchor_ln: price.ln(),
                    vol: rng.gen_range(0.0002..0.0008),
                    open_cents: (price * 100.0).round() as i64,
                    volume: 0,
                    last_ms: 0,
                }
            })
            .collect();
        QuoteSim {
            rng,
            quotes,
            last_ms: None,
            day: 0,
        }
    }

    /// Channels this simulator publishes on (`ticker:<SYMBOL>`).
    pub fn channels(&self) -> Vec<String> {
        self.quotes.iter().map(|q| format!("ticker:{}", q.symbol)).collect()
    }

    /// Advances to `now_ms` and returns the quotes that changed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Publication> {
        let first = self.last_ms.is_none();
        let now = self.last_ms.map_or(now_ms, |l| now_ms.max(l));
        self.last_ms = Some(now);
        let day = now.div_euclid(DAY_MS);
        let new_day = !first && day != self.day;
        self.day = day;
        let mut out = Vec::new();
        for q in &mut self.quotes {
            if first {
                q.last_ms = now;
            }
            if new_day {
                q.open_cents = q.cents();
                q.volume = 0;
            }
            let moved = !first && !new_day && self.rng.gen_bool(QUOTE_UPDATE_P);
            if moved {
                let dt_s = (now - q.last_ms).clamp(0, QUOTE_MAX_DT_MS) as f64 / 1000.0;
                q.last_ms = now;
                let ln = q.price.ln();
                let step =
                    -QUOTE_REVERSION_PER_S * (ln - q.anchor_ln) * dt_s + q.vol * dt_s.sqrt() * normal(&mut self.rng);
                q.price = (ln + step).exp().max(0.01);
                let lots: u64 = self.rng.gen_range(1..=40);
                q.volume += lots * 100;
            }
            if first || new_day || moved {
                out.push(Publication {
                    channel: format!("ticker:{}", q.symbol),
                    data: q.data(),
                });
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Football matches
// ---------------------------------------------------------------------------

/// Real milliseconds per simulated match minute (90 minutes in ~10 minutes).
const MATCH_MINUTE_MS: i64 = 6_667;
/// Real time between announcing a match ("scheduled") and its kick-off.
const MATCH_PRE_MS: i64 = 30_000;
/// Real length of the half-time break.
const MATCH_HALFTIME_MS: i64 = 30_000;
/// Real pause after full time before the next match is announced.
const MATCH_POST_MS: i64 = 45_000;
/// Extra delay of the second match's first kick-off, so the two matches are
/// staggered by about half a cycle.
const MATCH_STAGGER_MS: i64 = 350_000;
/// If the driver stalls for longer than this, the match clock pauses instead
/// of replaying everything at once.
const MATCH_MAX_LAG_MS: i64 = 30_000;
/// Expected goals per match for the home and the away side (~2.7 total).
const GOALS_PER_MATCH: [f64; 2] = [1.5, 1.2];
/// Expected yellow cards per side per match (~3.8 total).
const YELLOWS_PER_SIDE: f64 = 1.9;
/// Expected straight red cards per side per match.
const REDS_PER_SIDE: f64 = 0.06;

/// Match slots: id (channel `sports:<id>`) and the team pairings they rotate
/// through.
const MATCHES: [(&str, [(&str, &str); 3]); 2] = [
    (
        "cup-final",
        [("Reds", "Blues"), ("Lions", "Eagles"), ("Rovers", "Wanderers")],
    ),
    (
        "city-derby",
        [("Greens", "Whites"), ("United", "City"), ("Athletic", "Albion")],
    ),
];

/// Fictional surnames for squads.
const SURNAMES: [&str; 48] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Santos",
    "Kowalski",
    "Brennan",
    "Haddad",
    "Ferreira",
    "Novak",
    "Tanaka",
    "Oyelaran",
    "Varga",
    "Castell",
    "Mbeki",
    "Rossi",
    "Dalgaard",
    "Ivanov",
    "Petrescu",
    "Almeida",
    "Keane",
    "Fontaine",
    "Schultz",
    "Marsh",
    "Adeyemi",
    "Horvat",
    "Lindgren",
    "Quinn",
    "Bakker",
    "Morales",
    "Ekdahl",
    "Nwosu",
    "Sorensen",
    "Vidal",
    "Ward",
    "Zielinski",
    "Carvalho",
    "Mensah",
    "Duarte",
    "Hale",
    "Ilic",
    "Jansen",
    "Kovac",
    "Laine",
    "Mendez",
    "Osei",
    "Pike",
    "Reyes",
    "Strand",
];

/// Home or away side index (0 = home, 1 = away).
type Side = usize;

/// What happens in a scripted in-play event.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// A goal.
    Goal,
    /// A card; `second_yellow` marks a red shown for a second booking.
    Card { red: bool, second_yellow: bool },
    /// A substitution; `off` is the player leaving the pitch.
    Sub { off: String },
}

/// A pre-generated in-play event.
#[derive(Debug, Clone)]
struct Scripted {
    /// Match minute (1..=90) shown with the event.
    minute: u32,
    /// Position within the minute (0..1), for real-time spacing.
    frac: f64,
    /// Which side it concerns.
    side: Side,
    /// Player scoring, booked or coming on.
    player: String,
    /// The event itself.
    action: Action,
}

/// An entry of a match timeline.
#[derive(Debug, Clone)]
enum Item {
    /// Kick-off of a half, at this minute (0 or 45).
    Kickoff(u32),
    /// Clock update: this many minutes played.
    Clock(u32),
    /// Index into the script.
    Scripted(usize),
    /// End of the first half.
    Halftime,
    /// End of the match.
    Fulltime,
}

/// Phase of a match slot.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting to be announced at `at` ms; kick-off follows `lead` ms later.
    Pending { at: i64, lead: i64 },
    /// Announced; timeline offsets are relative to `kickoff` (ms).
    Running { kickoff: i64 },
    /// Full time reached; the next match is announced at this time.
    Done { next_at: i64 },
}

/// One simulated match in a slot.
#[derive(Debug, Clone)]
struct Match {
    /// Match id (channel suffix).
    id: &'static str,
    /// Team names (home, away).
    teams: [String; 2],
    /// In-play events.
    script: Vec<Scripted>,
    /// Everything that will be published, with offsets from kick-off (ms).
    timeline: Vec<(i64, Item)>,
    /// Next timeline index to publish.
    next: usize,
    /// Current score (home, away).
    score: [u32; 2],
    /// Current phase.
    phase: Phase,
}

/// Generates the in-play events of one match.
fn match_script(rng: &mut StdRng) -> Vec<Scripted> {
    let mut names: Vec<&str> = SURNAMES.to_vec();
    names.shuffle(rng);
    // Squad: index 0 is the goalkeeper, 1..=10 outfield starters, 11.. bench.
    let squads: [Vec<String>; 2] = [0, 1].map(|side| {
        names[side * 16..side * 16 + 16]
            .iter()
            .map(|n| format!("{}. {}", (b'A' + rng.gen_range(0..26u8)) as char, n))
            .collect()
    });
    let mut on_pitch: [Vec<usize>; 2] = [(1..=10).collect(), (1..=10).collect()];
    let mut bench: [Vec<usize>; 2] = [(11..16).collect(), (11..16).collect()];
    let mut booked: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut sub_minutes: [Vec<u32>; 2] = [0, 1].map(|_| {
        let n = rng.gen_range(3..=5);
        let mut v: Vec<u32> = (0..n).map(|_| rng.gen_range(46..=88)).collect();
        v.sort_unstable();
        v
    });
    let mut out = Vec::new();
    for minute in 1..=90u32 {
        // Candidate events of this minute: (frac, side, kind 0=goal 1=yellow 2=red 3=sub).
        let mut cands: Vec<(f64, Side, u8)> = Vec::new();
        for side in 0..2 {
            if rng.gen_bool(GOALS_PER_MATCH[side] / 90.0) {
                cands.push((rng.gen(), side, 0));
            }
            if rng.gen_bool(YELLOWS_PER_SIDE / 90.0) {
                cands.push((rng.gen(), side, 1));
            }
            if rng.gen_bool(REDS_PER_SIDE / 90.0) {
                cands.push((rng.gen(), side, 2));
            }
            while sub_minutes[side].first() == Some(&minute) {
                sub_minutes[side].remove(0);
                cands.push((rng.gen(), side, 3));
            }
        }
        cands.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (frac, side, kind) in cands {
            if on_pitch[side].is_empty() {
                continue;
            }
            let mut pick = rng.gen_range(0..on_pitch[side].len());
            if kind == 1 && booked[side].contains(&on_pitch[side][pick]) && rng.gen_bool(0.7) {
                // Booked players are careful: usually someone else is booked.
                let unbooked: Vec<usize> = (0..on_pitch[side].len())
                    .filter(|&i| !booked[side].contains(&on_pitch[side][i]))
                    .collect();
                if let Some(&i) = unbooked.choose(rng) {
                    pick = i;
                }
            }
            let p = on_pitch[side][pick];
            let player = squads[side][p].clone();
            let action = match kind {
                0 => Action::Goal,
                1 | 2 => {
                    let second = kind == 1 && booked[side].contains(&p);
                    if kind == 2 || second {
                        on_pitch[side].remove(pick);
                        Action::Card {
                            red: true,
                            second_yellow: second,
                        }
                    } else {
                        booked[side].push(p);
                        Action::Card {
                            red: false,
                            second_yellow: false,
                        }
                    }
                }
                _ => {
                    let Some(incoming) = bench[side].pop() else {
                        continue;
                    };
                    on_pitch[side][pick] = incoming;
                    out.push(Scripted {
                        minute,
                        frac,
                        side,
                        player: squads[side][incoming].clone(),
                        action: Action::Sub { off: player },
                    });
                    continue;
                }
            };
            out.push(Scripted {
                minute,
                frac,
                side,
                player,
                action,
            });
        }
    }
    out
}

/// Builds the publication timeline of a script (offsets from kick-off, ms).
fn match_timeline(script: &[Scripted]) -> Vec<(i64, Item)> {
    let second_kickoff = 45 * MATCH_MINUTE_MS + MATCH_HALFTIME_MS;
    // (offset, rank, item): rank orders items sharing an offset.
    let mut v: Vec<(i64, u8, Item)> = vec![
        (0, 0, Item::Kickoff(0)),
        (45 * MATCH_MINUTE_MS, 3, Item::Halftime),
        (second_kickoff, 0, Item::Kickoff(45)),
        (second_kickoff + 45 * MATCH_MINUTE_MS, 3, Item::Fulltime),
    ];
    for m in (1..=44).chain(46..=89) {
        let at = if m < 45 {
            m * MATCH_MINUTE_MS
        } else {
            second_kickoff + (m - 45) * MATCH_MINUTE_MS
        };
        v.push((at, 2, Item::Clock(m as u32)));
    }
    for (i, ev) in script.iter().enumerate() {
        let (base, played) = if ev.minute <= 45 {
            (0, ev.minute - 1)
        } else {
            (second_kickoff, ev.minute - 46)
        };
        let at = base + ((f64::from(played) + ev.frac) * MATCH_MINUTE_MS as f64) as i64;
        v.push((at, 1, Item::Scripted(i)));
    }
    v.sort_by_key(|(at, rank, _)| (*at, *rank));
    v.into_iter().map(|(at, _, item)| (at, item)).collect()
}

impl Match {
    /// A new match for slot `slot`, the `n`-th one played there.
    fn new(rng: &mut StdRng, slot: usize, n: usize, phase: Phase) -> Self {
        let (id, pairs) = MATCHES[slot];
        let (home, away) = pairs[n % pairs.len()];
        let script = match_script(rng);
        let timeline = match_timeline(&script);
        Match {
            id,
            teams: [home.to_string(), away.to_string()],
            script,
            timeline,
            next: 0,
            score: [0, 0],
            phase,
        }
    }

    /// An event object carrying the full scoreboard.
    fn event(&self, kind: &str, minute: u32, status: &str, text: String) -> Value {
        json!({
            "type": kind,
            "minute": minute,
            "status": status,
            "home": self.teams[0],
            "away": self.teams[1],
            "score": {"home": self.score[0], "away": self.score[1]},
            "text": text,
        })
    }

    /// "Reds 1-0 Blues".
    fn scoreline(&self) -> String {
        format!(
            "{} {}-{} {}",
            self.teams[0], self.score[0], self.score[1], self.teams[1]
        )
    }

    /// Publishes timeline item `i` (updating the score first for goals).
    fn publish(&mut self, i: usize) -> Value {
        match self.timeline[i].1.clone() {
            Item::Kickoff(0) => self.event(
                "kickoff",
                0,
                "live",
                format!("Kick-off: {} v {}", self.teams[0], self.teams[1]),
            ),
            Item::Kickoff(m) => self.event(
                "kickoff",
                m,
                "live",
                format!("Second half under way: {}", self.scoreline()),
            ),
            Item::Clock(m) => self.event("clock", m, "live", format!("{m}'")),
            Item::Halftime => self.event("halftime", 45, "halftime", format!("Half-time: {}", self.scoreline())),
            Item::Fulltime => self.event("fulltime", 90, "full_time", format!("Full-time: {}", self.scoreline())),
            Item::Scripted(k) => {
                let ev = self.script[k].clone();
                let team = self.teams[ev.side].clone();
                let side = if ev.side == 0 { "home" } else { "away" };
                let (kind, text, color) = match &ev.action {
                    Action::Goal => {
                        self.score[ev.side] += 1;
                        let text = format!(
                            "GOAL! {} scores for {} ({}-{})",
                            ev.player, team, self.score[0], self.score[1]
                        );
                        ("goal", text, None)
                    }
                    Action::Card { red, second_yellow } => {
                        let (color, what) = match (red, second_yellow) {
                            (false, _) => ("yellow", "Yellow card"),
                            (true, false) => ("red", "Red card"),
                            (true, true) => ("red", "Second yellow, red card"),
                        };
                        ("card", format!("{what}: {} ({team})", ev.player), Some(color))
                    }
                    Action::Sub { off } => ("sub", format!("Substitution {team}: {} on for {off}", ev.player), None),
                };
                let mut v = self.event(kind, ev.minute, "live", text);
                v["team"] = json!(side);
                v["player"] = json!(ev.player);
                if let Some(c) = color {
                    v["color"] = json!(c);
                }
                v
            }
        }
    }
}

/// Football match simulator: two staggered matches (`sports:cup-final`,
/// `sports:city-derby`), each 90 simulated minutes in about 10 real minutes
/// (plus a 30 s half-time), then a 45 s pause, a new announcement and a new
/// match 30 s later. Every event carries the full scoreboard. Designed to be
/// ticked about once a second (any interval works; clock events are
/// coalesced to the latest one per tick).
#[derive(Debug)]
pub struct MatchSim {
    /// Deterministic randomness.
    rng: StdRng,
    /// The match currently in each slot.
    matches: Vec<Match>,
    /// How many matches each slot has played, to rotate pairings.
    played: Vec<usize>,
    /// Whether the first tick happened (it anchors the schedule).
    started: bool,
}

impl MatchSim {
    /// Creates the simulator; `seed` fixes every match script.
    pub fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf007_ba11);
        let matches = (0..MATCHES.len())
            .map(|slot| {
                let lead = MATCH_PRE_MS + slot as i64 * MATCH_STAGGER_MS;
                Match::new(&mut rng, slot, 0, Phase::Pending { at: 0, lead })
            })
            .collect();
        MatchSim {
            rng,
            matches,
            played: vec![0; MATCHES.len()],
            started: false,
        }
    }

    /// Channels this simulator publishes on (`sports:<match-id>`).
    pub fn channels(&self) -> Vec<String> {
        MATCHES.iter().map(|(id, _)| format!("sports:{id}")).collect()
    }

    /// Advances to `now_ms` and returns the events that became due. The first
    /// tick announces every match (a `clock` event with status `scheduled`).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Publication> {
        if !self.started {
            self.started = true;
            for m in &mut self.matches {
                if let Phase::Pending { lead, .. } = m.phase {
                    m.phase = Phase::Pending { at: now_ms, lead };
                }
            }
        }
        let mut out = Vec::new();
        for slot in 0..self.matches.len() {
            let channel = format!("sports:{}", self.matches[slot].id);
            for data in self.tick_slot(slot, now_ms) {
                out.push(Publication {
                    channel: channel.clone(),
                    data,
                });
            }
        }
        out
    }

    /// Advances one slot.
    fn tick_slot(&mut self, slot: usize, now: i64) -> Vec<Value> {
        let mut out = Vec::new();
        if let Phase::Done { next_at } = self.matches[slot].phase {
            if now < next_at {
                return out;
            }
            self.played[slot] += 1;
            let phase = Phase::Pending {
                at: next_at,
                lead: MATCH_PRE_MS,
            };
            self.matches[slot] = Match::new(&mut self.rng, slot, self.played[slot], phase);
        }
        let m = &mut self.matches[slot];
        if let Phase::Pending { at, lead } = m.phase {
            if now < at {
                return out;
            }
            let text = format!("{} v {}: kick-off soon", m.teams[0], m.teams[1]);
            out.push(m.event("clock", 0, "scheduled", text));
            m.phase = Phase::Running { kickoff: now + lead };
        }
        let Phase::Running { mut kickoff } = m.phase else {
            return out;
        };
        // A stalled driver pauses the match instead of replaying it at once.
        if let Some((offset, _)) = m.timeline.get(m.next) {
            let lag = now - (kickoff + offset);
            if lag > MATCH_MAX_LAG_MS {
                kickoff += lag;
                m.phase = Phase::Running { kickoff };
            }
        }
        let start = m.next;
        while m.next < m.timeline.len() && kickoff + m.timeline[m.next].0 <= now {
            m.next += 1;
        }
        for i in start..m.next {
            let is_clock = matches!(m.timeline[i].1, Item::Clock(_));
            let later_clock = (i + 1..m.next).any(|j| matches!(m.timeline[j].1, Item::Clock(_)));
            if is_clock && later_clock {
                continue;
            }
            out.push(m.publish(i));
        }
        if m.next == m.timeline.len() {
            m.phase = Phase::Done {
                next_at: now + MATCH_POST_MS,
            };
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------

/// Centre of the simulated city (Berlin Mitte).
const CITY_LAT: f64 = 52.52;
/// Centre of the simulated city (Berlin Mitte).
const CITY_LON: f64 = 13.405;
/// Distance between parallel streets, metres.
const BLOCK_M: f64 = 200.0;
/// Blocks per side of the square grid (16 x 200 m = 3.2 km).
const BLOCKS: i32 = 16;
/// Longest time step one tick may simulate, so a stall does not teleport.
const FLEET_MAX_DT_MS: i64 = 10_000;
/// Metres per degree of latitude on the shared sphere.
const M_PER_DEG_LAT: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
/// Unit steps for headings north, east, south, west (index = heading / 90°).
const DIRS: [(i32, i32); 4] = [(0, 1), (1, 0), (0, -1), (-1, 0)];

/// Vehicle type, which sets speed and driving habits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// ~12 m/s, stops at some traffic lights.
    Car,
    /// ~8 m/s, mostly goes straight, stops at bus stops.
    Bus,
    /// ~5 m/s, occasional short stops.
    Bike,
}

impl Kind {
    /// Name used in the published data.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Car => "car",
            Kind::Bus => "bus",
            Kind::Bike => "bike",
        }
    }

    /// Typical cruising speed, m/s.
    fn base_speed(self) -> f64 {
        match self {
            Kind::Car => 12.0,
            Kind::Bus => 8.0,
            Kind::Bike => 5.0,
        }
    }
}

/// One simulated vehicle on the street grid.
#[derive(Debug, Clone)]
struct Vehicle {
    /// Entity id (`veh-01`).
    id: String,
    /// Display name.
    name: String,
    /// Vehicle type.
    kind: Kind,
    /// Intersection (column, row) the vehicle last passed.
    node: (i32, i32),
    /// Direction of travel, index into [`DIRS`].
    dir: usize,
    /// Metres travelled from `node` along `dir` (0..BLOCK_M).
    progress: f64,
    /// Current cruising speed, m/s.
    speed: f64,
    /// Remaining standing time at the current intersection, ms.
    stop_ms: f64,
}

/// Vehicle fleet simulator: `vehicles` cars, buses and bikes driving on a
/// square street grid (streets every 200 m, 3.2 km across) centred on
/// 52.52 N 13.405 E, turning at intersections and sometimes stopping there.
/// Publishes every vehicle's position on `loc:<entity>` each tick; positions
/// advance by the elapsed time between ticks (designed for ~1 tick/s).
#[derive(Debug)]
pub struct FleetSim {
    /// Deterministic randomness.
    rng: StdRng,
    /// All vehicles.
    vehicles: Vec<Vehicle>,
    /// Latest `now_ms` seen; `None` before the first tick.
    last_ms: Option<i64>,
}

/// Latitude/longitude of the grid's south-west corner.
fn grid_origin() -> (f64, f64) {
    let half = f64::from(BLOCKS) * BLOCK_M / 2.0;
    (CITY_LAT - half / M_PER_DEG_LAT, CITY_LON - half / m_per_deg_lon())
}

/// Metres per degree of longitude at the city's latitude.
fn m_per_deg_lon() -> f64 {
    M_PER_DEG_LAT * CITY_LAT.to_radians().cos()
}

/// Whether an intersection lies on the grid.
fn on_grid(node: (i32, i32)) -> bool {
    (0..=BLOCKS).contains(&node.0) && (0..=BLOCKS).contains(&node.1)
}

impl Vehicle {
    /// Position in metres east and north of the grid origin.
    fn xy(&self) -> (f64, f64) {
        let (dx, dy) = DIRS[self.dir];
        (
            f64::from(self.node.0) * BLOCK_M + f64::from(dx) * self.progress,
            f64::from(self.node.1) * BLOCK_M + f64::from(dy) * self.progress,
        )
    }

    /// Whether going `dir` from `node` stays on the grid.
    fn can_go(node: (i32, i32), dir: usize) -> bool {
        let (dx, dy) = DIRS[dir];
        on_grid((node.0 + dx, node.1 + dy))
    }

    /// Arrives at the next intersection: picks a new direction, speed and
    /// maybe a stop.
    fn arrive(&mut self, rng: &mut StdRng) {
        let (dx, dy) = DIRS[self.dir];
        self.node = (self.node.0 + dx, self.node.1 + dy);
        self.progress = 0.0;
        let straight_w = match self.kind {
            Kind::Bus => 8.0,
            Kind::Car => 5.0,
            Kind::Bike => 3.0,
        };
        let options: Vec<(usize, f64)> = [
            (self.dir, straight_w),
            ((self.dir + 1) % 4, 1.0),
            ((self.dir + 3) % 4, 1.0),
        ]
        .into_iter()
        .filter(|(d, _)| Self::can_go(self.node, *d))
        .collect();
        self.dir = if options.is_empty() {
            (self.dir + 2) % 4
        } else {
            let total: f64 = options.iter().map(|o| o.1).sum();
            let mut r = rng.gen_range(0.0..total);
            let mut pick = options[options.len() - 1].0;
            for (d, w) in &options {
                if r < *w {
                    pick = *d;
                    break;
                }
                r -= w;
            }
            pick
        };
        self.speed = self.kind.base_speed() * rng.gen_range(0.8..1.2);
        let (p, lo, hi) = match self.kind {
            Kind::Car => (0.25, 3_000.0, 25_000.0),
            Kind::Bus => (0.35, 10_000.0, 25_000.0),
            Kind::Bike => (0.15, 3_000.0, 15_000.0),
        };
        if rng.gen_bool(p) {
            self.stop_ms = rng.gen_range(lo..hi);
        }
    }

    /// Moves for `dt_ms` of simulated time.
    fn advance(&mut self, mut dt_ms: f64, rng: &mut StdRng) {
        while dt_ms > 0.0 {
            if self.stop_ms > 0.0 {
                let wait = self.stop_ms.min(dt_ms);
                self.stop_ms -= wait;
                dt_ms -= wait;
                continue;
            }
            let to_node_ms = (BLOCK_M - self.progress) / self.speed * 1000.0;
            if dt_ms < to_node_ms {
                self.progress += self.speed * dt_ms / 1000.0;
                dt_ms = 0.0;
            } else {
                dt_ms -= to_node_ms;
                self.arrive(rng);
            }
        }
    }

    /// The published location object.
    fn data(&self) -> Value {
        let (lat0, lon0) = grid_origin();
        let (x, y) = self.xy();
        let speed = if self.stop_ms > 0.0 { 0.0 } else { self.speed };
        json!({
            "lat": round_to(lat0 + y / M_PER_DEG_LAT, 6),
            "lon": round_to(lon0 + x / m_per_deg_lon(), 6),
            "heading": (self.dir * 90) as f64,
            "speed": round_to(speed, 1),
            "kind": self.kind.as_str(),
            "name": self.name,
        })
    }
}

impl FleetSim {
    /// Creates `vehicles` vehicles at random places on the grid; `seed` fixes
    /// the whole simulation. Entity ids are `veh-01`, `veh-02`, ... (at least
    /// two digits). Every 5th vehicle is a bus and every 5th (offset) a bike.
    pub fn new(seed: u64, vehicles: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xf1ee_7000);
        let width = vehicles.to_string().len().max(2);
        let mut counts = [0usize; 3];
        let vehicles = (0..vehicles)
            .map(|i| {
                let kind = match i % 5 {
                    0 => Kind::Bus,
                    3 => Kind::Bike,
                    _ => Kind::Car,
                };
                let k = kind as usize;
                counts[k] += 1;
                let name = match kind {
                    Kind::Car => format!("Taxi {}", 100 + counts[k]),
                    Kind::Bus => format!("Bus M{}", 10 + counts[k]),
                    Kind::Bike => format!("Courier {}", counts[k]),
                };
                let node = (rng.gen_range(0..=BLOCKS), rng.gen_range(0..=BLOCKS));
                let dirs: Vec<usize> = (0..4).filter(|&d| Vehicle::can_go(node, d)).collect();
                let dir = dirs[rng.gen_range(0..dirs.len())];
                Vehicle {
                    id: format!("veh-{:0width$}", i + 1),
                    name,
                    kind,
                    node,
                    dir,
                    progress: rng.gen_range(0.0..BLOCK_M),
                    speed: kind.base_speed() * rng.gen_range(0.8..1.2),
                    stop_ms: 0.0,
                }
            })
            .collect();
        FleetSim {
            rng,
            vehicles,
            last_ms: None,
        }
    }

    /// Channels this simulator publishes on (`loc:<entity>`).
    pub fn channels(&self) -> Vec<String> {
        self.vehicles.iter().map(|v| format!("loc:{}", v.id)).collect()
    }

    /// Bounding box of the street grid as (min_lat, min_lon, max_lat,
    /// max_lon), e.g. to centre a map on the fleet.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        let (lat0, lon0) = grid_origin();
        let side = f64::from(BLOCKS) * BLOCK_M;
        (lat0, lon0, lat0 + side / M_PER_DEG_LAT, lon0 + side / m_per_deg_lon())
    }

    /// Advances every vehicle by the time since the previous tick (at most
    /// 10 s) and returns every vehicle's position.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Publication> {
        let dt = match self.last_ms {
            None => 0,
            Some(l) => (now_ms - l).clamp(0, FLEET_MAX_DT_MS),
        };
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
        let rng = &mut self.rng;
        self.vehicles
            .iter_mut()
            .map(|v| {
                v.advance(dt as f64, rng);
                Publication {
                    channel: format!("loc:{}", v.id),
                    data: v.data(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::geo::{distance_m, valid_lat_lon};
    use super::*;

    fn is_id(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    fn num(v: &Value, k: &str) -> f64 {
        v[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {v}"))
    }

    #[test]
    fn rounding_has_no_negative_zero() {
        assert_eq!(json!(round_to(-0.001, 2)).to_string(), "0.0");
        assert_eq!(round_to(1.234_567, 2), 1.23);
    }

    fn two_decimals(x: f64) -> bool {
        ((x * 100.0).round() / 100.0 - x).abs() < 1e-9
    }

    #[test]
    fn quotes_are_valid_and_positive() {
        let mut sim = QuoteSim::new(7);
        let chans = sim.channels();
        assert!((18..=24).contains(&chans.len()));
        for c in &chans {
            let sym = c.strip_prefix("ticker:").unwrap();
            assert!(!sym.is_empty() && sym.bytes().all(|b| b.is_ascii_uppercase()), "{c}");
        }
        // Half an hour before a UTC midnight.
        let t0 = 19_676 * DAY_MS - 1_800_000;
        let first = sim.tick(t0);
        assert_eq!(first.len(), chans.len(), "first tick publishes everything");
        let mut min_price = f64::MAX;
        let mut total = 0;
        let mut last_volume = std::collections::HashMap::new();
        // Two simulated hours at 200 ms, crossing the midnight.
        let ticks = 36_000i64;
        let mut saw_reset = false;
        for i in 1..=ticks {
            let pubs = sim.tick(t0 + i * 200);
            total += pubs.len();
            for p in pubs {
                assert!(chans.contains(&p.channel));
                let d = &p.data;
                let obj = d.as_object().unwrap();
                assert_eq!(obj.len(), 6, "{d}");
                let price = num(d, "price");
                let (bid, ask) = (num(d, "bid"), num(d, "ask"));
                let (change, pct) = (num(d, "change"), num(d, "change_pct"));
                assert!(price >= 0.01 && price.is_finite());
                assert!(two_decimals(price) && two_decimals(bid) && two_decimals(ask));
                assert!(two_decimals(change) && two_decimals(pct));
                assert!(bid < price && price < ask, "{d}");
                let open = price - change;
                assert!(open > 0.0);
                assert!((pct - change / open * 100.0).abs() < 0.01, "{d}");
                let vol = d["volume"].as_u64().unwrap();
                let prev = last_volume.insert(p.channel.clone(), vol).unwrap_or(0);
                saw_reset |= vol < prev;
                assert!(vol >= prev || (change == 0.0 && vol == 0), "volume reset only at open");
                min_price = min_price.min(price);
            }
        }
        assert!(min_price > 0.0);
        // ~30% of 20 symbols per tick.
        assert!(saw_reset);
        let per_tick = total as f64 / ticks as f64;
        assert!((4.0..8.0).contains(&per_tick), "{per_tick}");
    }

    #[test]
    fn quotes_are_deterministic() {
        let run = |seed| {
            let mut s = QuoteSim::new(seed);
            (0..50).flat_map(|i| s.tick(i * 200)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    /// Checks one sports event and returns (type, minute, status, home, away).
    fn check_event(d: &Value) -> (String, u32, String, u32, u32) {
        let kind = d["type"].as_str().unwrap().to_string();
        let minute = d["minute"].as_u64().unwrap() as u32;
        let status = d["status"].as_str().unwrap().to_string();
        assert!(minute <= 90);
        assert!(d["home"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(d["away"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(d["text"].as_str().is_some_and(|s| !s.is_empty()));
        let home = d["score"]["home"].as_u64().unwrap() as u32;
        let away = d["score"]["away"].as_u64().unwrap() as u32;
        let expected_status = match kind.as_str() {
            "halftime" => "halftime",
            "fulltime" => "full_time",
            "clock" => {
                if status == "scheduled" {
                    assert_eq!((minute, home, away), (0, 0, 0));
                    "scheduled"
                } else {
                    "live"
                }
            }
            "kickoff" | "goal" | "card" | "sub" => "live",
            other => panic!("unknown type {other}"),
        };
        assert_eq!(status, expected_status, "{d}");
        if matches!(kind.as_str(), "goal" | "card" | "sub") {
            assert!(matches!(d["team"].as_str(), Some("home" | "away")), "{d}");
            assert!(d["player"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(minute >= 1);
        }
        if kind == "card" {
            assert!(matches!(d["color"].as_str(), Some("yellow" | "red")), "{d}");
        }
        (kind, minute, status, home, away)
    }

    #[test]
    fn matches_reach_full_time_and_restart() {
        let mut sim = MatchSim::new(3);
        let chans = sim.channels();
        assert_eq!(chans.len(), 2);
        for c in &chans {
            assert!(is_id(c.strip_prefix("sports:").unwrap()), "{c}");
        }
        let t0 = 1_000_000i64;
        let mut per_chan: std::collections::HashMap<String, Vec<Value>> = Default::default();
        // 45 minutes of 1 s ticks.
        for s in 0..2700 {
            for p in sim.tick(t0 + s * 1000) {
                assert!(chans.contains(&p.channel));
                per_chan.entry(p.channel).or_default().push(p.data);
            }
        }
        let mut fulltimes = 0;
        for (chan, events) in &per_chan {
            assert_eq!(events[0]["status"], "scheduled", "{chan}");
            let mut last_minute = 0;
            let mut last_clock = None;
            let mut score = (0, 0);
            let mut goals = 0;
            for e in events {
                let (kind, minute, status, h, a) = check_event(e);
                if status == "scheduled" {
                    // A new match starts.
                    last_minute = 0;
                    last_clock = None;
                    score = (0, 0);
                    goals = 0;
                    continue;
                }
                assert!(minute >= last_minute, "{chan}: {e}");
                last_minute = minute;
                if kind == "clock" {
                    assert!(last_clock.is_none_or(|m| minute > m), "{chan}: {e}");
                    last_clock = Some(minute);
                }
                if kind == "goal" {
                    goals += 1;
                    assert_eq!(h + a, score.0 + score.1 + 1, "{e}");
                } else {
                    assert_eq!((h, a), score, "{e}");
                }
                score = (h, a);
                if kind == "fulltime" {
                    fulltimes += 1;
                    assert_eq!(minute, 90);
                    assert_eq!(goals, h + a);
                    assert!(h + a <= 12, "{e}");
                }
            }
        }
        // Each slot finishes at least two ~12-minute cycles in 45 minutes.
        assert!(fulltimes >= 5, "{fulltimes}");
    }

    #[test]
    fn match_timing_and_coalescing() {
        let mut sim = MatchSim::new(9);
        let t0 = 0;
        let first = sim.tick(t0);
        assert_eq!(first.len(), 2, "both matches announced");
        // Kick-off of the first match 30 s later.
        assert!(sim.tick(t0 + MATCH_PRE_MS - 1).is_empty());
        let ko = sim.tick(t0 + MATCH_PRE_MS);
        assert_eq!(ko.len(), 1);
        assert_eq!(ko[0].data["type"], "kickoff");
        assert_eq!(ko[0].channel, "sports:cup-final");
        assert_eq!(ko[0].data["home"], "Reds");
        // A 20 s gap: at most one clock event in the batch.
        let batch = sim.tick(t0 + MATCH_PRE_MS + 20_000);
        let clocks = batch.iter().filter(|p| p.data["type"] == "clock").count();
        assert_eq!(clocks, 1);
        // A long stall pauses rather than replays: the next tick emits little.
        let batch = sim.tick(t0 + MATCH_PRE_MS + 600_000);
        assert!(batch.len() <= 8, "{}", batch.len());
        assert!(batch.iter().all(|p| p.data["type"] != "fulltime"));
    }

    #[test]
    fn match_rates_are_realistic() {
        let mut rng = StdRng::seed_from_u64(11);
        let n = 2000;
        let (mut goals, mut cards, mut reds, mut subs) = (0, 0, 0, 0);
        for _ in 0..n {
            let script = match_script(&mut rng);
            let tl = match_timeline(&script);
            assert_eq!(
                tl.iter().filter(|x| matches!(x.1, Item::Scripted(_))).count(),
                script.len()
            );
            assert!(tl.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut sent_off = Vec::new();
            for ev in &script {
                assert!(!sent_off.contains(&ev.player), "sent-off player acts again");
                match &ev.action {
                    Action::Goal => goals += 1,
                    Action::Card { red, .. } => {
                        cards += 1;
                        if *red {
                            reds += 1;
                            sent_off.push(ev.player.clone());
                        }
                    }
                    Action::Sub { off } => {
                        subs += 1;
                        sent_off.push(off.clone());
                        assert!(ev.minute >= 46);
                    }
                }
            }
        }
        let per = |x: i32| f64::from(x) / f64::from(n);
        assert!((2.5..2.9).contains(&per(goals)), "goals {}", per(goals));
        assert!((3.6..4.3).contains(&per(cards)), "cards {}", per(cards));
        assert!((0.1..0.4).contains(&per(reds)), "reds {}", per(reds));
        assert!((6.0..10.0).contains(&per(subs)), "subs {}", per(subs));
    }

    #[test]
    fn fleet_stays_on_streets_inside_the_grid() {
        let n = 40;
        let mut sim = FleetSim::new(5, n);
        let chans = sim.channels();
        assert_eq!(chans.len(), n);
        assert_eq!(chans[0], "loc:veh-01");
        for c in &chans {
            assert!(is_id(c.strip_prefix("loc:").unwrap()));
        }
        let (min_lat, min_lon, max_lat, max_lon) = sim.bounds();
        assert!(min_lat < CITY_LAT && CITY_LAT < max_lat);
        assert!(min_lon < CITY_LON && CITY_LON < max_lon);
        let (lat0, lon0) = grid_origin();
        let eps = 1e-6;
        let mut prev: std::collections::HashMap<String, (f64, f64)> = Default::default();
        let mut kinds = std::collections::HashSet::new();
        let mut moved = 0.0;
        // One hour at 1 tick/s, with some jitter and one long gap.
        let mut now = 5_000i64;
        for s in 0..3600 {
            now += if s == 1800 { 30_000 } else { 900 + (s % 3) * 100 };
            let pubs = sim.tick(now);
            assert_eq!(pubs.len(), n);
            for p in pubs {
                let d = &p.data;
                assert_eq!(d.as_object().unwrap().len(), 6);
                let (lat, lon) = (num(d, "lat"), num(d, "lon"));
                assert!(valid_lat_lon(lat, lon));
                assert!(lat >= min_lat - eps && lat <= max_lat + eps, "{d}");
                assert!(lon >= min_lon - eps && lon <= max_lon + eps, "{d}");
                // On a street: x or y is (within rounding) a multiple of 200 m.
                let x = (lon - lon0) * m_per_deg_lon();
                let y = (lat - lat0) * M_PER_DEG_LAT;
                let off = |v: f64| (v - (v / BLOCK_M).round() * BLOCK_M).abs();
                assert!(off(x) < 0.2 || off(y) < 0.2, "off street: {d}");
                let heading = num(d, "heading");
                assert!((0.0..360.0).contains(&heading));
                let speed = num(d, "speed");
                let kind = d["kind"].as_str().unwrap();
                let max = match kind {
                    "car" => 14.5,
                    "bus" => 9.7,
                    "bike" => 6.1,
                    other => panic!("kind {other}"),
                };
                assert!((0.0..=max).contains(&speed), "{d}");
                kinds.insert(kind.to_string());
                assert!(d["name"].as_str().is_some_and(|s| !s.is_empty()));
                if let Some((plat, plon)) = prev.insert(p.channel.clone(), (lat, lon)) {
                    let step = distance_m(plat, plon, lat, lon);
                    assert!(step <= 14.5 * 10.0 + 1.0, "teleport {step}");
                    moved += step;
                }
            }
        }
        assert_eq!(kinds.len(), 3);
        // Vehicles actually drive: on average well over 10 km in the hour.
        assert!(moved / n as f64 > 10_000.0, "{}", moved / n as f64);
    }

    #[test]
    fn fleet_is_deterministic() {
        let run = |seed| {
            let mut s = FleetSim::new(seed, 12);
            (0..30).flat_map(|i| s.tick(i * 1000)).collect::<Vec<_>>()
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
        assert!(FleetSim::new(1, 0).tick(0).is_empty());
        assert_eq!(FleetSim::new(1, 120).channels()[0], "loc:veh-001");
    }
}
