//! The built-in demo publishers: tick the deterministic simulators of [`sims`] (quotes,
//! football matches, a vehicle fleet) and publish what they produce through the
//! publish use case, like any publisher.

pub mod sims;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::value::RawValue;

use self::sims::{FleetSim, MatchSim, Publication, QuoteSim};
use crate::{
    auth::{Identity, Role},
    chat::{publish::publish, Chat},
    conn::Ack,
    protocol::{now_ms, request, UserRef},
};

/// Vehicles of the demo fleet.
const VEHICLES: usize = 36;

/// Starts the demo publishers on the current arbiter; they stop when `stop` is set.
pub fn start(chat: Chat, stop: Arc<AtomicBool>) {
    let who = Identity {
        user: UserRef::new("demo", "Demo feeds"),
        role: Role::Publisher,
        anonymous: false,
        entity: None,
    };
    let seed = now_ms() as u64;
    let mut quotes = QuoteSim::new(seed);
    run_every(
        Duration::from_millis(200),
        chat.clone(),
        who.clone(),
        stop.clone(),
        move |t| quotes.tick(t),
    );
    let mut matches = MatchSim::new(seed ^ 0x5eed);
    run_every(
        Duration::from_secs(1),
        chat.clone(),
        who.clone(),
        stop.clone(),
        move |t| matches.tick(t),
    );
    let mut fleet = FleetSim::new(seed ^ 0xf1ee7, VEHICLES);
    run_every(Duration::from_secs(1), chat, who, stop, move |t| fleet.tick(t));
    log::info!("demo feeds on: ticker:*, sports:*, loc:veh-*");
}

fn run_every(
    period: Duration,
    chat: Chat,
    who: Identity,
    stop: Arc<AtomicBool>,
    mut tick: impl FnMut(i64) -> Vec<Publication> + 'static,
) {
    actix::spawn(async move {
        let mut iv = actix_web::rt::time::interval(period);
        loop {
            iv.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for p in tick(now_ms()) {
                let Ok(data) = RawValue::from_string(p.data.to_string()) else {
                    continue;
                };
                let req = request::Publish {
                    channel: p.channel,
                    data,
                    client_id: None,
                };
                publish(&chat, &who, req, Ack::None);
            }
        }
    });
}
