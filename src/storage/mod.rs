//! Durable state: diesel + r2d2 over a bundled SQLite file (WAL, busy_timeout) or
//! PostgreSQL (`DATABASE_URL=postgres://...`, shared by several nodes), with
//! per-backend migrations embedded in the binary and run at start.
//!
//! * [`Db`] – the connection pool; every blocking query runs through [`Db::run`] on
//!   the blocking thread pool, never on an async thread or inside an actor.
//! * [`queries`] – the read side and the rare writes (accounts, rooms).
//! * [`writer`] – the single writer thread that group-commits publishes, edits,
//!   deletes, read markers and memberships, and reports what it committed into a
//!   [`writer::CommitSink`] (storage knows nothing of its consumers).
//! * [`retention`] – the background task that removes old history, old track points
//!   and unreferenced uploads in small batches.
//!
//! Queries go through diesel's `MultiConnection` ([`Conn`]), so one query builder
//! serves both backends; they stay portable (no upserts: a unique violation is caught
//! instead).

pub mod models;
pub mod queries;
pub mod retention;
pub mod schema;
pub mod writer;

use std::{path::Path, time::Duration};

use diesel::{
    connection::{AnsiTransactionManager, SimpleConnection, TransactionManager},
    pg::PgConnection,
    r2d2::{ConnectionManager, CustomizeConnection, Pool},
    sqlite::SqliteConnection,
    Connection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{AppError, AppResult};

/// A connection to either backend; every query of the storage layer compiles for both.
#[derive(diesel::MultiConnection)]
pub enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Pragmas every SQLite connection needs: WAL so readers never block the writer, a
/// busy timeout so concurrent writers wait instead of failing, full sync so an
/// acknowledged publish survives a power cut.
const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

/// Per-connection settings of PostgreSQL: fail a statement stuck on a lock instead of
/// holding a worker forever.
const POSTGRES_SETTINGS: &str = "SET statement_timeout = '30s'; SET lock_timeout = '10s';";

fn prepare(conn: &mut Conn) -> diesel::QueryResult<()> {
    match conn {
        Conn::Sqlite(c) => c.batch_execute(SQLITE_PRAGMAS),
        Conn::Postgres(c) => c.batch_execute(POSTGRES_SETTINGS),
    }
}

/// Runs `f` in a transaction; on SQLite one that takes the write lock at once
/// (`BEGIN IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that
/// read first could not write once another connection had written meanwhile.
fn immediate_transaction<T>(
    c: &mut Conn,
    f: impl FnOnce(&mut Conn) -> diesel::QueryResult<T>,
) -> diesel::QueryResult<T> {
    match c {
        Conn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        Conn::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(c) {
        Ok(v) => {
            <Conn as Connection>::TransactionManager::commit_transaction(c)?;
            Ok(v)
        }
        Err(e) => {
            // The batch's own error is what matters (a failed rollback breaks the
            // connection, which the next batch then reports).
            let _ = <Conn as Connection>::TransactionManager::rollback_transaction(c);
            Err(e)
        }
    }
}

#[derive(Debug)]
struct Prepare;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for Prepare {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        prepare(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported DATABASE_URL {0:?} (use sqlite://path or postgres://...)")]
    Unsupported(String),
    #[error("cannot open database: {0}")]
    Connect(String),
    #[error("migrations failed: {0}")]
    Migrate(String),
}

/// Where the database lives, parsed from `DATABASE_URL` or the data dir.
#[derive(Debug, Clone)]
pub enum DbTarget {
    /// Path of the SQLite file.
    Sqlite(String),
    /// A `postgres://` URL.
    Postgres(String),
}

impl DbTarget {
    pub fn resolve(url: Option<&str>, data_dir: &Path) -> Result<DbTarget, OpenError> {
        match url {
            None => Ok(DbTarget::Sqlite(
                data_dir.join("chat.db").to_string_lossy().into_owned(),
            )),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(DbTarget::Postgres(u.to_string()))
            }
            Some(u) => match u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:")) {
                Some(p) => Ok(DbTarget::Sqlite(p.to_string())),
                None => Err(OpenError::Unsupported(u.to_string())),
            },
        }
    }

    fn url(&self) -> &str {
        match self {
            DbTarget::Sqlite(p) | DbTarget::Postgres(p) => p,
        }
    }

    /// Which backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            DbTarget::Sqlite(_) => "sqlite",
            DbTarget::Postgres(_) => "postgres",
        }
    }

    /// A new dedicated connection (the writer's).
    pub fn connect(&self) -> Result<Conn, OpenError> {
        let mut c = match self {
            DbTarget::Sqlite(p) => SqliteConnection::establish(p).map(Conn::Sqlite),
            DbTarget::Postgres(u) => PgConnection::establish(u).map(Conn::Postgres),
        }
        .map_err(|e| OpenError::Connect(e.to_string()))?;
        prepare(&mut c).map_err(|e| OpenError::Connect(e.to_string()))?;
        Ok(c)
    }

    /// Runs the pending migrations of this backend.
    fn migrate(&self) -> Result<(), OpenError> {
        self.run_migrations().map(|_| ())
    }

    /// Runs the pending migrations of this backend; the versions it ran.
    pub fn run_migrations(&self) -> Result<Vec<String>, OpenError> {
        let m = |e: Box<dyn std::error::Error + Send + Sync>| OpenError::Migrate(e.to_string());
        let names = |v: Vec<diesel::migration::MigrationVersion<'_>>| v.iter().map(|v| v.to_string()).collect();
        match self.connect()? {
            Conn::Sqlite(mut c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(names).map_err(m),
            Conn::Postgres(mut c) => {
                // Several nodes may start at once: one migrates, the others wait.
                c.batch_execute("SELECT pg_advisory_lock(7243001)")
                    .map_err(|e| OpenError::Migrate(e.to_string()))?;
                let r = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(names).map_err(m);
                let _ = c.batch_execute("SELECT pg_advisory_unlock(7243001)");
                r
            }
        }
    }

    /// Every migration this binary knows (its name), in order, and whether it has been
    /// applied.
    pub fn migrations(&self) -> Result<Vec<(String, bool)>, OpenError> {
        use diesel::migration::{Migration, MigrationSource, MigrationVersion};
        fn status<DB: diesel::backend::Backend>(
            known: Vec<Box<dyn Migration<DB>>>,
            applied: Vec<MigrationVersion<'_>>,
        ) -> Vec<(String, bool)> {
            let applied: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
            known
                .iter()
                .map(|k| {
                    let done = applied.contains(&k.name().version().to_string());
                    (k.name().to_string(), done)
                })
                .collect()
        }
        let m = |e: Box<dyn std::error::Error + Send + Sync>| OpenError::Migrate(e.to_string());
        Ok(match self.connect()? {
            Conn::Sqlite(mut c) => status(
                MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS).map_err(m)?,
                c.applied_migrations().map_err(m)?,
            ),
            Conn::Postgres(mut c) => status(
                MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS).map_err(m)?,
                c.applied_migrations().map_err(m)?,
            ),
        })
    }
}

/// The pool of reader connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<Conn>>,
}

impl Db {
    /// Opens the pool and runs pending migrations.
    pub fn open(target: &DbTarget, pool_size: u32) -> Result<Db, OpenError> {
        target.migrate()?;
        log::info!("storage: {}", target.backend());
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(5))
            .connection_customizer(Box::new(Prepare))
            .build(ConnectionManager::<Conn>::new(target.url()))
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        Ok(Db { pool })
    }

    /// Runs blocking storage work on the blocking thread pool.
    pub async fn run<F, T>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut Conn) -> AppResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            let mut c = pool.get()?;
            f(&mut c)
        })
        .await?
    }

    /// Storage reachable (readiness).
    pub async fn ping(&self) -> AppResult<()> {
        self.run(|c| c.batch_execute("SELECT 1").map_err(AppError::from)).await
    }
}

/// Is this error a unique-constraint violation (a duplicate insert)?
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
