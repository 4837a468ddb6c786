//! The built-in demo: ticks the simulators of [`super::demo`] and publishes what they
//! produce through the same path real publishers use ([`crate::session::publish`]).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::value::RawValue;

use super::demo::{FleetSim, MatchSim, Publication, QuoteSim};
use crate::{
    auth::{Identity, Role},
    channels::{publish_access, Channel},
    protocol::{now_ms, UserRef},
    session::publish,
    state::AppState,
    storage::writer::Ack,
};

/// Vehicles of the demo fleet.
const VEHICLES: usize = 36;

/// Starts the demo publishers on the current arbiter; they stop when `stop` is set.
pub fn start(state: AppState, stop: Arc<AtomicBool>) {
    let who = Identity {
        user: UserRef::new("demo", "Demo feeds"),
        role: Role::Publisher,
        anonymous: false,
    };
    let seed = now_ms() as u64;
    let mut quotes = QuoteSim::new(seed);
    run_every(
        Duration::from_millis(200),
        state.clone(),
        who.clone(),
        stop.clone(),
        move |t| quotes.tick(t),
    );
    let mut matches = MatchSim::new(seed ^ 0x5eed);
    run_every(
        Duration::from_secs(1),
        state.clone(),
        who.clone(),
        stop.clone(),
        move |t| matches.tick(t),
    );
    let mut fleet = FleetSim::new(seed ^ 0xf1ee7, VEHICLES);
    run_every(Duration::from_secs(1), state, who, stop, move |t| fleet.tick(t));
    log::info!("demo feeds on: ticker:*, sports:*, loc:veh-*");
}

fn run_every(
    period: Duration,
    state: AppState,
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
                let Ok(ch) = Channel::parse(&p.channel) else { continue };
                let Ok(access) = publish_access(&who, &ch) else {
                    continue;
                };
                let Ok(data) = RawValue::from_string(p.data.to_string()) else {
                    continue;
                };
                publish(&state, ch, who.clone(), access, data.into(), None, Ack::None);
            }
        }
    });
}
