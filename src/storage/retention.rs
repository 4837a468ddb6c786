//! Retention: a background task that applies the history limits of the namespace
//! policies (`history_max_age_s`, `history_max_count`, `track_max_age_s` in
//! `[policies.<ns>]`) and removes uploads no stored message refers to.
//!
//! It deletes in small batches (`CHAT_RETENTION_BATCH` rows per statement), each its
//! own short transaction on a reader connection (never through the writer's queue,
//! never holding a connection between batches), and sleeps after each batch at least
//! as long as the batch took, so publishes wait for it briefly at most (on SQLite the
//! writer's next transaction waits for the batch's write lock).
//!
//! Only the oldest messages of a channel go: what is kept is always the newest part of
//! its history, seqs stay gap-free (the channel's top seq lives in `channels`, so new
//! messages continue after it), `history` simply starts later, and a `join` whose
//! `since` lies before what is kept answers `recovered:false` ([`super::queries`]).

use std::{path::PathBuf, time::Duration};

use diesel::prelude::*;

use super::{schema::*, Conn, Db};
use crate::{
    channels::{Namespace, Retention},
    error::AppResult,
    protocol::now_ms,
};

/// Channels read per query while looking for ones to trim.
const CHANNEL_PAGE: i64 = 500;

/// Least pause after each batch.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// What the task needs.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Time between two runs.
    pub interval: Duration,
    /// Rows per delete statement.
    pub batch: i64,
    /// Unreferenced uploads older than this (ms) are removed.
    pub upload_grace_ms: i64,
    /// Where upload files are.
    pub upload_dir: PathBuf,
}

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub messages: u64,
    pub track_points: u64,
    pub uploads: u64,
    /// Delete statements (batches) run.
    pub batches: u64,
}

/// Runs the task every `cfg.interval`, forever (on the current actix system).
pub fn start(db: Db, cfg: RetentionConfig) {
    actix::spawn(async move {
        let mut tick = actix_web::rt::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let r = run_once(&db, &cfg).await;
            if r.messages + r.track_points + r.uploads > 0 {
                log::info!(
                    "retention: removed {} messages, {} track points, {} uploads in {} batches",
                    r.messages,
                    r.track_points,
                    r.uploads,
                    r.batches
                );
            }
        }
    });
}

/// One pass over every limit; errors are logged and the pass goes on with the next.
pub async fn run_once(db: &Db, cfg: &RetentionConfig) -> Removed {
    let mut removed = Removed::default();
    for ns in Namespace::ALL {
        let r = ns.policy().retention;
        if r.limits_history() {
            if let Err(e) = trim_namespace(db, cfg, ns, r, &mut removed).await {
                log::warn!("retention of {}: {}", ns.prefix(), e.message);
            }
        }
        if let Some(age) = r.track_max_age_ms {
            if let Err(e) = trim_track(db, cfg, age, &mut removed).await {
                log::warn!("retention of tracks: {}", e.message);
            }
        }
    }
    if let Err(e) = sweep_uploads(db, cfg, &mut removed).await {
        log::warn!("removing unreferenced uploads: {}", e.message);
    }
    removed
}

/// Runs `f` as one batch, then pauses at least as long as it took.
async fn batch<T: Send + 'static>(db: &Db, f: impl FnOnce(&mut Conn) -> AppResult<T> + Send + 'static) -> AppResult<T> {
    let started = std::time::Instant::now();
    let r = db.run(f).await;
    actix_web::rt::time::sleep(started.elapsed().max(MIN_PAUSE)).await;
    r
}

async fn trim_namespace(
    db: &Db,
    cfg: &RetentionConfig,
    ns: Namespace,
    r: Retention,
    out: &mut Removed,
) -> AppResult<()> {
    let mut after = String::new();
    loop {
        let (from, now) = (after.clone(), now_ms());
        let (due, last) = db.run(move |c| due_channels(c, ns, &from, r, now)).await?;
        for (channel, top) in due {
            loop {
                let (ch, batch_size) = (channel.clone(), cfg.batch);
                let n = batch(db, move |c| trim_channel(c, &ch, top, r, now_ms(), batch_size)).await?;
                if n == 0 {
                    break;
                }
                out.messages += n;
                out.batches += 1;
            }
        }
        match last {
            Some(name) => after = name,
            None => return Ok(()),
        }
    }
}

/// A channel with messages to remove, and its top seq.
type Due = (String, i64);

/// Of the next page of `ns`'s channels after `after` (by name), those with messages
/// to remove, with their top seq; and the page's last name (`None`: no more pages).
fn due_channels(
    c: &mut Conn,
    ns: Namespace,
    after: &str,
    r: Retention,
    now: i64,
) -> AppResult<(Vec<Due>, Option<String>)> {
    let page: Vec<(String, i64)> = channels::table
        .filter(channels::name.like(ns.channel("%")))
        .filter(channels::name.gt(after))
        .order(channels::name.asc())
        .limit(CHANNEL_PAGE)
        .select((channels::name, channels::seq))
        .load(c)?;
    let last = (page.len() as i64 == CHANNEL_PAGE).then(|| page[page.len() - 1].0.clone());
    let mut due = Vec::new();
    for (name, top) in page {
        let oldest: Option<(i64, i64)> = messages::table
            .filter(messages::channel.eq(&name))
            .order(messages::seq.asc())
            .select((messages::seq, messages::ts))
            .first(c)
            .optional()?;
        if oldest.is_some_and(|(seq, ts)| removable(r, top, now, seq, ts)) {
            due.push((name, top));
        }
    }
    Ok((due, last))
}

/// Does a message (`seq`, `ts`) of a channel whose top is `top` go?
fn removable(r: Retention, top: i64, now: i64, seq: i64, ts: i64) -> bool {
    r.max_count.is_some_and(|n| seq <= top - n) || r.max_age_ms.is_some_and(|age| ts < now - age)
}

/// Removes the oldest messages of `channel` that go, at most `batch`, in one
/// transaction (with their upload references); how many.
fn trim_channel(c: &mut Conn, channel: &str, top: i64, r: Retention, now: i64, batch: i64) -> AppResult<u64> {
    let oldest: Vec<(i64, i64)> = messages::table
        .filter(messages::channel.eq(channel))
        .order(messages::seq.asc())
        .limit(batch)
        .select((messages::seq, messages::ts))
        .load(c)?;
    // Only a prefix: what is kept stays the newest part of the history.
    let Some(upto) = oldest
        .iter()
        .take_while(|&&(seq, ts)| removable(r, top, now, seq, ts))
        .map(|&(seq, _)| seq)
        .last()
    else {
        return Ok(0);
    };
    let n = super::immediate_transaction(c, |c| {
        diesel::delete(
            upload_refs::table
                .filter(upload_refs::channel.eq(channel))
                .filter(upload_refs::seq.le(upto)),
        )
        .execute(c)?;
        diesel::delete(
            messages::table
                .filter(messages::channel.eq(channel))
                .filter(messages::seq.le(upto)),
        )
        .execute(c)
    })?;
    Ok(n as u64)
}

async fn trim_track(db: &Db, cfg: &RetentionConfig, age: i64, out: &mut Removed) -> AppResult<()> {
    loop {
        let (cutoff, batch_size) = (now_ms() - age, cfg.batch);
        let n = batch(db, move |c| trim_track_points(c, cutoff, batch_size)).await?;
        if n == 0 {
            return Ok(());
        }
        out.track_points += n;
        out.batches += 1;
    }
}

/// Removes the oldest track points taken before `cutoff`, at most `batch`; how many.
fn trim_track_points(c: &mut Conn, cutoff: i64, batch: i64) -> AppResult<u64> {
    let oldest: Vec<(i64, i64)> = track_points::table
        .order(track_points::id.asc())
        .limit(batch)
        .select((track_points::id, track_points::ts))
        .load(c)?;
    let Some(upto) = oldest
        .iter()
        .take_while(|&&(_, ts)| ts < cutoff)
        .map(|&(id, _)| id)
        .last()
    else {
        return Ok(0);
    };
    Ok(diesel::delete(track_points::table.filter(track_points::id.le(upto))).execute(c)? as u64)
}

/// Removes uploads older than the grace period that no stored message refers to
/// (rows first, which frees the uploader's quota, then files), a batch at a time.
async fn sweep_uploads(db: &Db, cfg: &RetentionConfig, out: &mut Removed) -> AppResult<()> {
    loop {
        let (cutoff, batch_size) = (now_ms() - cfg.upload_grace_ms, cfg.batch);
        let names = batch(db, move |c| unreferenced_uploads(c, cutoff, batch_size)).await?;
        if names.is_empty() {
            return Ok(());
        }
        out.uploads += names.len() as u64;
        out.batches += 1;
        let dir = cfg.upload_dir.clone();
        let done = actix_web::web::block(move || {
            for name in names {
                match std::fs::remove_file(dir.join(&name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("removing upload {name}: {e}"),
                }
            }
        })
        .await;
        if done.is_err() {
            return Ok(());
        }
    }
}

/// Deletes the rows of up to `batch` uploads made before `cutoff` that no message
/// refers to; their names. Each delete checks again that no reference appeared.
fn unreferenced_uploads(c: &mut Conn, cutoff: i64, batch: i64) -> AppResult<Vec<String>> {
    let unreferenced = diesel::dsl::not(diesel::dsl::exists(
        upload_refs::table.filter(upload_refs::upload.eq(uploads::name)),
    ));
    let candidates: Vec<String> = uploads::table
        .filter(uploads::created_at.lt(cutoff))
        .filter(unreferenced)
        .order(uploads::created_at.asc())
        .limit(batch)
        .select(uploads::name)
        .load(c)?;
    let mut gone = Vec::with_capacity(candidates.len());
    for name in candidates {
        let n = diesel::delete(uploads::table.filter(uploads::name.eq(&name)).filter(diesel::dsl::not(
            diesel::dsl::exists(upload_refs::table.filter(upload_refs::upload.eq(uploads::name))),
        )))
        .execute(c)?;
        if n > 0 {
            gone.push(name);
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes() {
        let count = Retention {
            max_count: Some(10),
            ..Retention::KEEP_ALL
        };
        // top 100: seqs 1..=90 go, 91..=100 stay.
        assert!(removable(count, 100, 0, 90, 0));
        assert!(!removable(count, 100, 0, 91, 0));
        let age = Retention {
            max_age_ms: Some(1000),
            ..Retention::KEEP_ALL
        };
        assert!(removable(age, 100, 5000, 1, 3999));
        assert!(!removable(age, 100, 5000, 1, 4000));
        assert!(!removable(Retention::KEEP_ALL, 100, i64::MAX, 1, 0));
    }

    /// The migration that added `upload_refs` records the references of the file
    /// messages stored before it.
    #[test]
    fn references_of_older_messages_are_recorded_by_the_migration() {
        use diesel::connection::SimpleConnection;
        let dir = tempfile::tempdir().unwrap();
        let target = super::super::DbTarget::Sqlite(dir.path().join("t.db").to_string_lossy().into_owned());
        let _db = Db::open(&target, 1).unwrap();
        let mut c = target.connect().unwrap();
        let up = include_str!("../../migrations/sqlite/2026-12-06-100000_upload_refs/up.sql");
        let backfill = &up[up.find("INSERT").unwrap()..];
        c.batch_execute(
            r#"INSERT INTO messages (channel, seq, ts, sender_id, sender_name, data) VALUES
               ('room:a', 1, 0, 'u', 'u', '{"type":"file","url":"/uploads/0123456789abcdef0123456789abcdef.bin"}'),
               ('room:a', 2, 0, 'u', 'u', '{"type":"text","text":"see /uploads/x"}'),
               ('room:a', 3, 0, 'u', 'u', '{"type":"image","url":"/uploads/ffffffffffffffffffffffffffffffff.png","w":1}'),
               ('room:a', 4, 0, 'u', 'u', '{}'),
               ('room:a', 5, 0, 'u', 'u', '{"type":"video","url":"/uploads/0000000000000000000000000000000a.webm","poster":"/uploads/0000000000000000000000000000000b.png"}')"#,
        )
        .unwrap();
        c.batch_execute(backfill).unwrap();
        let refs: Vec<(i64, String)> = upload_refs::table
            .order((upload_refs::seq, upload_refs::upload))
            .select((upload_refs::seq, upload_refs::upload))
            .load(&mut c)
            .unwrap();
        assert_eq!(
            refs,
            vec![
                (1, "0123456789abcdef0123456789abcdef.bin".to_string()),
                (3, "ffffffffffffffffffffffffffffffff.png".to_string()),
                (5, "0000000000000000000000000000000a.webm".to_string()),
                (5, "0000000000000000000000000000000b.png".to_string())
            ]
        );
    }
}
