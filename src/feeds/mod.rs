//! Live feeds: last values of in-memory channels, location validation, the geo index
//! of last-known positions, track sampling and the demo publishers.

pub mod demo;
pub mod geo;
pub mod track;

use std::sync::{Arc, OnceLock};

use crate::{
    protocol::Message,
    storage::writer::{WriteOp, WriterHandle},
};

/// Feed state shared by the hub shards and the HTTP routes.
#[derive(Default)]
pub struct Feeds {
    /// Set once the writer runs (the writer itself needs the hub, so it comes later).
    writer: OnceLock<WriterHandle>,
}

impl Feeds {
    pub fn new() -> Arc<Feeds> {
        Arc::new(Feeds::default())
    }

    pub fn set_writer(&self, w: WriterHandle) {
        let _ = self.writer.set(w);
    }

    /// A new value of a durable last-value channel: persist it.
    pub fn stored_last_value(&self, m: &Message) {
        if let Some(w) = self.writer.get() {
            w.submit_or_fail(WriteOp::LastValue {
                msg: m.clone(),
                track: None,
            });
        }
    }
}

impl Feeds {
    /// Checks a feed value before it is accepted: location data must carry numeric,
    /// in-range `lat`/`lon` and numeric optional fields.
    pub fn validate(
        &self,
        ch: &crate::channels::Channel,
        data: &serde_json::value::RawValue,
    ) -> Result<(), crate::error::AppError> {
        use crate::error::AppError;
        if ch.ns != crate::channels::Namespace::Loc {
            return Ok(());
        }
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(data.get()).map_err(|_| AppError::bad_request("location data must be an object"))?;
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
        let (Some(lat), Some(lon)) = (num("lat"), num("lon")) else {
            return Err(AppError::bad_request("location data needs numeric `lat` and `lon`"));
        };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(AppError::bad_request(
                "`lat` must be within [-90, 90] and `lon` within [-180, 180]",
            ));
        }
        for k in ["heading", "speed", "accuracy"] {
            if let Some(x) = v.get(k) {
                if !x.is_null() && !x.is_number() {
                    return Err(AppError::bad_request(format!("`{k}` must be a number")));
                }
            }
        }
        Ok(())
    }
}
