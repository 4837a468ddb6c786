//! SQLite only: WAL checkpoints on a thread and connection of their own.
//!
//! By default SQLite checkpoints in the connection whose commit made the WAL grow past
//! 1000 pages: the writer would copy those pages into the database file and fsync it
//! before it could start its next batch, a pause every few hundred milliseconds under
//! load. Here, after each batch, the writer nudges this thread, which runs a `PASSIVE`
//! checkpoint (it never blocks the writer) at most every [`MIN_INTERVAL`].
//!
//! The writer's connection still checkpoints, but only past [`WRITER_CHECKPOINT_PAGES`]:
//! the WAL starts over from its beginning only when a write transaction begins with
//! every frame already copied, which a checkpoint on another thread never achieves
//! while the writer keeps committing (measured: 1.3 GB of WAL after 20 s at 5,000
//! msg/s). The writer's own checkpoint then finds most pages copied already, and lets
//! its next transaction restart the WAL.
//!
//! Durability is unchanged: a commit is durable once its WAL frames are synced, which
//! the writer's own commit still does.

use std::{
    sync::mpsc,
    thread::{self, JoinHandle},
    time::Duration,
};

use diesel::{
    connection::SimpleConnection, sql_query, sql_types::Text, sqlite::SqliteConnection, Connection, RunQueryDsl,
};

use crate::storage::{Conn, SQLITE_PRAGMAS};

/// Least time between two checkpoints of the thread.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// WAL size (pages) past which the writer's own connection checkpoints (SQLite's
/// default is 1000): the WAL stays below about this size (40 MB with 4 KiB pages)
/// unless readers hold on to old snapshots.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// The checkpoint thread of one writer; stops when dropped (after its current
/// checkpoint).
pub(super) struct Checkpointer {
    /// Bounded to one pending nudge. Overflow policy: a nudge already pending covers
    /// the new one (it is dropped).
    nudge: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(diesel::QueryableByName)]
struct DbFile {
    #[diesel(sql_type = Text)]
    file: String,
}

impl Checkpointer {
    /// Takes checkpoints off `conn` (the writer's) when it is a SQLite file; `None`
    /// otherwise (PostgreSQL, an in-memory database) or when the second connection
    /// cannot be opened (then `conn` keeps checkpointing itself).
    pub(super) fn start(conn: &mut Conn) -> Option<Checkpointer> {
        let Conn::Sqlite(c) = conn else {
            return None;
        };
        let file = sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .get_result::<DbFile>(c)
            .ok()
            .map(|f| f.file)
            .filter(|f| !f.is_empty())?;
        let mut own = match SqliteConnection::establish(&file) {
            Ok(own) => own,
            Err(e) => {
                log::warn!("no checkpoint thread ({e}); the writer checkpoints");
                return None;
            }
        };
        if let Err(e) = own.batch_execute(SQLITE_PRAGMAS) {
            log::warn!("no checkpoint thread ({e}); the writer checkpoints");
            return None;
        }
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let thread = thread::Builder::new()
            .name("chat-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = own.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        log::warn!("WAL checkpoint failed: {e}");
                    }
                    thread::sleep(MIN_INTERVAL);
                }
            })
            .ok()?;
        let cp = Checkpointer {
            nudge: Some(tx),
            thread: Some(thread),
        };
        // Only once the thread runs.
        if let Err(e) = c.batch_execute(&format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")) {
            log::warn!("no checkpoint thread ({e}); the writer checkpoints");
            return None;
        }
        Some(cp)
    }

    /// Asks for a checkpoint soon (after a commit).
    pub(super) fn nudge(&self) {
        if let Some(tx) = &self.nudge {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
