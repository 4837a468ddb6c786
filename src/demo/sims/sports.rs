//! Football match simulator for the `sports:*` channels: scripted matches with
//! kick-off, goals, cards, substitutions, half-time and full-time, on a compressed clock.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::Publication;

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

#[cfg(test)]
#[path = "sports_tests.rs"]
mod tests;
