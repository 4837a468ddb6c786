//! Tests of the football match simulator ([`super::MatchSim`]).

use super::super::tests::is_id;
use super::*;

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
