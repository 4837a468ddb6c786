//! Durable state: diesel + r2d2 over a bundled SQLite file (WAL, busy_timeout),
//! migrations embedded in the binary and run at start.
//!
//! * [`Db`] – the connection pool; every blocking query runs through [`Db::run`] on
//!   the blocking thread pool, never on an async thread or inside an actor.
//! * [`queries`] – the read side and the rare writes (accounts, rooms).
//! * [`writer`] – the single writer thread that group-commits publishes, edits,
//!   deletes, read markers and memberships, and hands results to the hub.
//!
//! All SQL stays portable (`BIGINT`, `TEXT`, `BOOLEAN`, no upserts) so that PostgreSQL
//! can be added as a second backend through diesel's `MultiConnection`.

pub mod models;
pub mod queries;
pub mod schema;
pub mod writer;

use std::{path::Path, time::Duration};

use diesel::{
    connection::SimpleConnection,
    r2d2::{ConnectionManager, CustomizeConnection, Pool},
    sqlite::SqliteConnection,
    Connection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{AppError, AppResult};

/// The connection type of the storage layer.
pub type Conn = SqliteConnection;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Pragmas every SQLite connection needs: WAL so readers never block the writer, a
/// busy timeout so concurrent writers wait instead of failing, full sync so an
/// acknowledged publish survives a power cut.
const PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(PRAGMAS).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported DATABASE_URL {0:?} (this build supports sqlite://)")]
    Unsupported(String),
    #[error("cannot open database: {0}")]
    Connect(String),
    #[error("migrations failed: {0}")]
    Migrate(String),
}

/// Where the database lives, parsed from `DATABASE_URL` or the data dir.
#[derive(Debug, Clone)]
pub struct DbTarget(String);

impl DbTarget {
    pub fn resolve(url: Option<&str>, data_dir: &Path) -> Result<DbTarget, OpenError> {
        match url {
            None => Ok(DbTarget(data_dir.join("chat.db").to_string_lossy().into_owned())),
            Some(u) => {
                if let Some(p) = u.strip_prefix("sqlite://").or_else(|| u.strip_prefix("sqlite:")) {
                    Ok(DbTarget(p.to_string()))
                } else {
                    Err(OpenError::Unsupported(u.to_string()))
                }
            }
        }
    }

    /// A new dedicated connection (the writer's).
    pub fn connect(&self) -> Result<Conn, OpenError> {
        let mut c = SqliteConnection::establish(&self.0).map_err(|e| OpenError::Connect(e.to_string()))?;
        c.batch_execute(PRAGMAS)
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        Ok(c)
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
        let mut c = target.connect()?;
        c.run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        drop(c);
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(Duration::from_secs(5))
            .connection_customizer(Box::new(Pragmas))
            .build(ConnectionManager::<Conn>::new(&target.0))
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
