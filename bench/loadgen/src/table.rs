//! `table`: markdown tables of the JSON result lines.

use serde_json::Value;

pub fn table(files: &[String]) {
    use std::fmt::Write;
    let mut rows = Vec::new();
    for f in files {
        let s = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        for l in s.lines().filter(|l| l.trim_start().starts_with('{')) {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                rows.push(v);
            }
        }
    }
    let f = |v: &Value| match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        o => o.to_string(),
    };
    let evs = |v: &Value| {
        let m = v["events"].as_object().cloned().unwrap_or_default();
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, c)| format!("{k} ×{c}"))
                .collect::<Vec<_>>()
                .join("; ")
                .replace('|', "/")
        }
    };
    let mb = |v: &Value, k: &str| format!("{:.1}", v[k].as_f64().unwrap_or(0.0) / 1024.0);
    let kb = |v: &Value, k: &str| format!("{:.1}", v[k].as_f64().unwrap_or(0.0) / 1024.0);
    type Col<'a> = (&'a str, Box<dyn Fn(&Value) -> String + 'a>);
    let print = |scenario: &str, cols: Vec<Col>| {
        let sel: Vec<&Value> = rows.iter().filter(|v| v["scenario"] == scenario).collect();
        if sel.is_empty() {
            return;
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n| {} |",
            cols.iter().map(|c| c.0).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(out, "|{}", "---|".repeat(cols.len()));
        for v in sel {
            let _ = writeln!(
                out,
                "| {} |",
                cols.iter().map(|c| (c.1)(v)).collect::<Vec<_>>().join(" | ")
            );
        }
        print!("{out}");
    };
    macro_rules! c {
        ($h:expr, |$v:ident| $e:expr) => {
            (
                $h,
                Box::new(move |$v: &Value| $e) as Box<dyn Fn(&Value) -> String>,
            )
        };
        ($h:expr, $k:expr) => {
            (
                $h,
                Box::new(move |v: &Value| f(&v[$k])) as Box<dyn Fn(&Value) -> String>,
            )
        };
    }
    // the first of the keys that the row has (bare counterparts are fanout rows)
    let or = |v: &Value, keys: &[&str]| {
        keys.iter()
            .map(|k| &v[*k])
            .find(|x| !x.is_null())
            .map(f)
            .unwrap_or("-".into())
    };
    let chat_only = |v: &Value, k: &str| {
        if v["target"] == "chatserver" {
            f(&v[k])
        } else {
            "-".into()
        }
    };
    print(
        "fanout",
        vec![
            c!("server", "target"),
            c!("label", "label"),
            c!("subs × msg/s (pubs, size)", |v| format!(
                "{} × {} ({}, {} B)",
                f(&v["subs_connected"]),
                f(&v["rate"]),
                f(&v["pubs"]),
                f(&v["size"])
            )),
            c!("channel", "channel"),
            c!("delivered / expected", |v| format!(
                "{} / {}",
                f(&v["delivered"]),
                f(&v["expected_deliveries"])
            )),
            c!("lost", |v| if v["conflating_channel"] == true {
                format!("{} (conflated by design)", f(&v["lost"]))
            } else {
                f(&v["lost"])
            }),
            c!("deliveries/s", "deliveries_per_s"),
            c!("p50 ms", "p50_ms"),
            c!("p90 ms", "p90_ms"),
            c!("p99 ms", "p99_ms"),
            c!("max ms", "max_ms"),
            c!("publish ack p99 ms", |v| chat_only(v, "ack_p99_ms")),
            c!("server CPU µs/delivery", "server_us_per_delivery"),
            c!("server CPU %", "server_cpu_pct"),
            c!("other procs CPU s", "other_processes_cpu_s"),
            c!("server RSS MB (before → peak)", |v| format!(
                "{} → {}",
                mb(v, "server_rss_kb_before"),
                mb(v, "server_rss_kb_peak")
            )),
            c!("events", |v| evs(v)),
        ],
    );
    print(
        "connections",
        vec![
            c!("server", "target"),
            c!("idle connections", "conns"),
            c!("opened (failed)", |v| format!(
                "{} ({})",
                f(&v["connected"]),
                f(&v["failed"])
            )),
            c!("alive after hold", "alive_after_hold"),
            c!("accept/s", "accept_per_s"),
            c!("server CPU µs/accept", "server_us_per_accept"),
            c!("server RSS MB before → open → after close", |v| format!(
                "{} → {} → {}",
                mb(v, "server_rss_kb_before"),
                mb(v, "server_rss_kb_open"),
                mb(v, "server_rss_kb_after_close")
            )),
            c!("KB per connection", "rss_kb_per_conn"),
            c!("events", |v| evs(v)),
        ],
    );
    for sc in ["joinstorm", "idle"] {
        print(
            sc,
            vec![
                c!("server", "target"),
                c!(
                    if sc == "idle" {
                        "idle clients (rooms)"
                    } else {
                        "clients joining one room"
                    },
                    |v| if sc == "idle" {
                        format!("{} ({})", f(&v["clients"]), f(&v["rooms"]))
                    } else if v["read"] == false {
                        format!("{} (no-read)", f(&v["clients"]))
                    } else {
                        f(&v["clients"])
                    }
                ),
                c!("joined (failed)", |v| format!(
                    "{} ({})",
                    f(&v["joined"]),
                    f(&v["failed"])
                )),
                c!("first connect → last join s", "total_s"),
                c!("joins/s", "joins_per_s"),
                c!("join p50 / p99 ms", |v| if v["target"] == "chatserver" {
                    format!("{} / {}", f(&v["join_p50_ms"]), f(&v["join_p99_ms"]))
                } else {
                    "-".into()
                }),
                c!("server CPU µs/join", "server_us_per_join"),
                c!("server RSS MB before → settled (peak)", |v| format!(
                    "{} → {} ({})",
                    mb(v, "server_rss_kb_before"),
                    mb(v, "server_rss_kb_settled"),
                    if v["server_rss_kb_peak"].is_null() {
                        "-".into()
                    } else {
                        mb(v, "server_rss_kb_peak")
                    }
                )),
                c!("KB/conn settled", "rss_kb_per_conn_settled"),
                c!("KB recv/conn storm mean / max", |v| format!(
                    "{} / {}",
                    kb(v, "storm_bytes_mean"),
                    kb(v, "storm_bytes_max")
                )),
                c!("KB recv/conn settle mean / max", |v| format!(
                    "{} / {}",
                    kb(v, "settle_bytes_mean"),
                    kb(v, "settle_bytes_max")
                )),
                c!("KB read/conn after no-read mean / max", |v| if v["read"] == false {
                    format!("{} / {}", kb(v, "drain_bytes_mean"), kb(v, "drain_bytes_max"))
                } else {
                    "-".into()
                }),
                c!(
                    "join reply KB mean / max (members max, presence_count, more)",
                    |v| if v["target"] == "chatserver" {
                        format!(
                            "{} / {} ({}, {}, {})",
                            kb(v, "join_reply_bytes_mean"),
                            kb(v, "join_reply_bytes_max"),
                            f(&v["join_reply_members_max"]),
                            f(&v["join_reply_presence_count_max"]),
                            f(&v["join_replies_more"])
                        )
                    } else {
                        "-".into()
                    }
                ),
                c!("presence events (count-only)", |v| if v["target"] == "chatserver" {
                    format!("{} ({})", f(&v["presence_events"]), f(&v["presence_events_count_only"]))
                } else {
                    "-".into()
                }),
                c!("alive at end (ping ok)", "alive_end"),
                c!("other procs CPU s (storm)", |v| f(
                    &v["storm_cpu"]["other_processes_cpu_s"]
                )),
                c!("events", |v| evs(v)),
            ],
        );
    }
    let bare = |v: &Value| v["target"] == "bare-broadcast";
    print(
        "rooms",
        vec![
            c!("server", "target"),
            c!("rooms × msg/s (stored/s) or bare msg/s", |v| if bare(v) {
                format!("bare: {} msg/s", f(&v["rate"]))
            } else {
                format!(
                    "{} × {} ({})",
                    f(&v["rooms"]),
                    f(&v["rate_per_room"]),
                    f(&v["stored_per_s"])
                )
            }),
            c!("subs/room", |v| or(v, &["subs_per_room", "subs_connected"])),
            c!("delivered / expected", |v| format!(
                "{} / {}",
                f(&v["delivered"]),
                f(&v["expected_deliveries"])
            )),
            c!("lost (rooms)", |v| format!(
                "{} ({})",
                f(&v["lost"]),
                f(&v["rooms_with_loss"])
            )),
            c!("dups", "dups"),
            c!("seq gaps / backwards", |v| format!(
                "{} / {}",
                f(&v["seq_gaps"]),
                f(&v["seq_backwards"])
            )),
            c!("publish ack p50 / p99 / max ms", |v| if bare(v) {
                "-".into()
            } else {
                format!(
                    "{} / {} / {}",
                    f(&v["ack_p50_ms"]),
                    f(&v["ack_p99_ms"]),
                    f(&v["ack_max_ms"])
                )
            }),
            c!("delivery p50 / p99 / max ms", |v| format!(
                "{} / {} / {}",
                f(&v["p50_ms"]),
                f(&v["p99_ms"]),
                f(&v["max_ms"])
            )),
            c!("server CPU % (µs/delivery)", |v| format!(
                "{} ({})",
                f(&v["server_cpu_pct"]),
                f(&v["server_us_per_delivery"])
            )),
            c!("other procs CPU s", "other_processes_cpu_s"),
            c!("events", |v| evs(v)),
        ],
    );
    print(
        "feeds",
        vec![
            c!("server", "target"),
            c!("symbols × q/s → subs × symbols (subs/symbol) or bare", |v| if bare(v) {
                format!("bare: {} msg/s → {} subs", f(&v["rate"]), f(&v["subs_connected"]))
            } else {
                format!(
                    "{} × {} → {} × {} ({})",
                    f(&v["symbols"]),
                    f(&v["rate_per_symbol"]),
                    f(&v["subs_connected"]),
                    f(&v["per_sub"]),
                    f(&v["subs_per_symbol"])
                )
            }),
            c!("join ramp s", "ramp_s"),
            c!("delivered / expected (keeping up)", |v| format!(
                "{} / {}",
                or(v, &["fast_delivered", "delivered"]),
                or(v, &["fast_expected", "expected_deliveries"])
            )),
            c!("gaps (subs with gaps)", |v| if bare(v) {
                format!("{} (-)", f(&v["gaps"]))
            } else {
                format!("{} ({})", f(&v["fast_gaps"]), f(&v["fast_subs_with_gaps"]))
            }),
            c!("slow readers: conflated", |v| if bare(v) {
                "-".into()
            } else {
                format!("{}: {}", f(&v["slow_subs"]), f(&v["slow_gaps_conflated"]))
            }),
            c!("deliveries/s", "deliveries_per_s"),
            c!("p50 / p99 / max ms", |v| format!(
                "{} / {} / {}",
                f(&v["p50_ms"]),
                f(&v["p99_ms"]),
                f(&v["max_ms"])
            )),
            c!("server CPU % (µs/delivery)", |v| format!(
                "{} ({})",
                f(&v["server_cpu_pct"]),
                f(&v["server_us_per_delivery"])
            )),
            c!("other procs CPU s", "other_processes_cpu_s"),
            c!("events", |v| evs(v)),
        ],
    );
    print(
        "soak",
        vec![
            c!("server", "target"),
            c!("in flight, s (rate)", |v| format!(
                "{}, {} ({})",
                f(&v["inflight"]),
                f(&v["duration_s"]),
                f(&v["rate_limit"])
            )),
            c!("cycles (failed)", |v| format!(
                "{} ({})",
                f(&v["cycles"]),
                f(&v["failed"])
            )),
            c!("cycles/s", "cycles_per_s"),
            c!("cycle p50 / p99 ms", |v| format!(
                "{} / {}",
                f(&v["cycle_p50_ms"]),
                f(&v["cycle_p99_ms"])
            )),
            c!("server CPU µs/cycle", "server_us_per_cycle"),
            c!("server RSS MB start → peak → end", |v| format!(
                "{} → {} → {}",
                mb(v, "server_rss_kb_start"),
                mb(v, "server_rss_kb_peak"),
                mb(v, "server_rss_kb_end")
            )),
            c!("end − start MB (2nd-half growth)", |v| format!(
                "{} ({})",
                f(&v["rss_mb_end_minus_start"]),
                f(&v["rss_mb_growth_2nd_half"])
            )),
            c!("flat (tolerance MB)", |v| format!(
                "{} ({})",
                f(&v["flat"]),
                f(&v["tolerance_mb"])
            )),
            c!("events", |v| evs(v)),
        ],
    );
}
