//! `table`: markdown tables of the JSON result lines.

use serde_json::Value;

pub fn table(files: &[String]) {
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
    println!("| server | subs × msg/s (pubs, size) | channel | delivered / expected | lost | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | publish ack p99 ms | server CPU µs/delivery | server CPU % | other procs CPU s | server RSS MB (before → peak) | events |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for v in rows.iter().filter(|v| v["scenario"] == "fanout") {
        println!(
            "| {} | {} × {} ({}, {} B) | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} | {} |",
            f(&v["target"]), f(&v["subs_connected"]), f(&v["rate"]), f(&v["pubs"]), f(&v["size"]), f(&v["channel"]),
            f(&v["delivered"]), f(&v["expected_deliveries"]),
            if v["conflating_channel"] == true { format!("{} (conflated by design)", f(&v["lost"])) } else { f(&v["lost"]) },
            f(&v["deliveries_per_s"]),
            f(&v["p50_ms"]), f(&v["p90_ms"]), f(&v["p99_ms"]), f(&v["max_ms"]),
            if v["target"] == "chatserver" { f(&v["ack_p99_ms"]) } else { "-".into() },
            f(&v["server_us_per_delivery"]), f(&v["server_cpu_pct"]), f(&v["other_processes_cpu_s"]),
            v["server_rss_kb_before"].as_f64().unwrap_or(0.0) / 1024.0, v["server_rss_kb_peak"].as_f64().unwrap_or(0.0) / 1024.0,
            evs(v)
        );
    }
    println!();
    println!("| server | idle connections | opened (failed) | alive after hold | accept/s | server CPU µs/accept | server RSS MB before → open → after close | KB per connection | events |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for v in rows.iter().filter(|v| v["scenario"] == "connections") {
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {:.1} → {:.1} → {:.1} | {} | {} |",
            f(&v["target"]),
            f(&v["conns"]),
            f(&v["connected"]),
            f(&v["failed"]),
            f(&v["alive_after_hold"]),
            f(&v["accept_per_s"]),
            f(&v["server_us_per_accept"]),
            v["server_rss_kb_before"].as_f64().unwrap_or(0.0) / 1024.0,
            v["server_rss_kb_open"].as_f64().unwrap_or(0.0) / 1024.0,
            v["server_rss_kb_after_close"].as_f64().unwrap_or(0.0) / 1024.0,
            f(&v["rss_kb_per_conn"]),
            evs(v)
        );
    }
}
