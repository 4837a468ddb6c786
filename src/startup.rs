//! Builds the whole server from [`Settings`]: storage, hub shards, the writer, the
//! HTTP server; and shuts it down in order (sessions, HTTP, writer).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use actix::{Actor, Arbiter};
use actix_web::{dev::Server, web, App, HttpServer};

use crate::{
    auth::{load_or_create_secret, Auth},
    bus::Bus,
    config::{ConfigError, Settings},
    feeds::Feeds,
    http::limit::KeyedLimiter,
    http::{self, ws::ConnFd},
    hub::{BusCell, Hub, SeedLastValues, Shard},
    protocol::close,
    state::{AppState, Metrics},
    storage::{self, queries, writer, Db, DbTarget},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Storage(#[from] storage::OpenError),
    #[error("cannot bind {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A built, bound server.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    state: AppState,
    writer_thread: JoinHandle<()>,
    /// Keeps the shard threads alive until shutdown.
    arbiters: Vec<Arbiter>,
    /// Tells the demo publishers to stop.
    demo_stop: Arc<AtomicBool>,
}

impl Application {
    /// Opens storage (running migrations), starts shards and the writer, binds the
    /// listener. Must run inside an actix system.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        crate::channels::install_policies(
            crate::channels::build_policies(&settings.policies).map_err(StartError::Other)?,
        );
        let dir = settings.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
        let secret = load_or_create_secret(settings.jwt_secret.as_deref(), &dir)
            .map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
        let auth = Auth::new(&secret, settings.token_ttl_s);

        let target = DbTarget::resolve(settings.database_url.as_deref(), &dir)?;
        let db = Db::open(&target, settings.db_pool_size)?;

        let feeds = Feeds::new(settings.track_min_interval_s, settings.track_min_distance_m);
        let epoch: Arc<str> = hex::encode(rand::random::<[u8; 4]>()).into();
        let mut arbiters = Vec::new();
        let mut shards = Vec::new();
        let bus_cell: BusCell = Default::default();
        for _ in 0..settings.shards() {
            let arb = Arbiter::new();
            let (e, f, d, b) = (epoch.clone(), feeds.clone(), db.clone(), bus_cell.clone());
            let refresh = std::time::Duration::from_secs_f64(settings.presence_refresh_s);
            shards.push(Shard::start_in_arbiter(&arb.handle(), move |_| {
                Shard::new(e, f, d, b, refresh)
            }));
            arbiters.push(arb);
        }
        let hub = Hub::new(shards, bus_cell.clone());
        if let Some(url) = settings.redis_url.as_deref() {
            if matches!(target, DbTarget::Sqlite(_)) {
                log::warn!("REDIS_URL with a SQLite database: other nodes cannot share this node's history");
            }
            let bus = Bus::connect(url, &settings.cluster_name, hub.clone())
                .await
                .map_err(StartError::Other)?;
            let _ = bus_cell.set(bus);
        }

        let (writer, writer_thread) = writer::start(
            target.connect()?,
            hub.clone(),
            settings.write_queue,
            settings.write_batch_max,
        );
        feeds.set_writer(writer.clone());

        // Durable last values (loc:) are served on join right after a restart.
        let seeds = db
            .run(queries::last_values)
            .await
            .map_err(|e| StartError::Other(e.message))?;
        let mut per: Vec<Vec<_>> = vec![Vec::new(); hub.shards().len()];
        for m in &seeds {
            feeds.restore(m);
        }
        let sports = db.run(|c| queries::channel_names(c, "sports:")).await;
        for name in sports.map_err(|e| StartError::Other(e.message))? {
            feeds.seen(&name.into());
        }
        for m in seeds {
            per[hub.shard_index(&m.channel)].push(m);
        }
        for (i, v) in per.into_iter().enumerate() {
            hub.shards()[i].do_send(SeedLastValues(v));
        }

        let settings = Arc::new(settings);
        let state = AppState {
            settings: settings.clone(),
            hub,
            db,
            writer,
            auth,
            feeds,
            metrics: Arc::new(Metrics::default()),
            login_failures: Arc::new(KeyedLimiter::new(settings.login_failures_per_min)),
            registrations: Arc::new(KeyedLimiter::new(settings.registrations_per_min)),
        };

        let addr = settings.bind_addr()?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| StartError::Bind(settings.bind.clone(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(settings.bind.clone(), e))?;
        let json_limit = (4 << 20).max(settings.max_message_bytes * 2);
        let app_state = web::Data::new(state.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .error_handler(http::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(http::query_error))
                .app_data(web::PathConfig::default().error_handler(http::path_error))
                .wrap(
                    // The query string can hold a token: log the path only.
                    actix_web::middleware::Logger::new("%a \"%{req}xi\" %s %b %Dms")
                        .custom_request_replace("req", |r| format!("{} {}", r.method(), r.path()))
                        .exclude("/healthz")
                        .log_target("http"),
                )
                .configure(http::routes)
        })
        .on_connect(|conn, ext| {
            #[cfg(unix)]
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                use std::os::unix::io::AsRawFd;
                let _ = tcp.set_nodelay(true);
                ext.insert(ConnFd(tcp.as_raw_fd()));
            }
        })
        .backlog(4096)
        .max_connections(100_000)
        .shutdown_timeout(5)
        .disable_signals();
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|e| StartError::Bind(settings.bind.clone(), e))?
            .run();
        release_memory_after_disconnects(state.hub.clone());
        let demo_stop = Arc::new(AtomicBool::new(false));
        if settings.demo {
            crate::feeds::driver::start(state.clone(), demo_stop.clone());
        }
        Ok(Application {
            server,
            addr,
            state,
            writer_thread,
            arbiters,
            demo_stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT/SIGTERM, then shuts down gracefully: every session gets
    /// close 1001 after its queued frames, HTTP stops, the writer commits what it
    /// holds, and the shard threads end.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            state,
            writer_thread,
            arbiters,
            demo_stop,
            ..
        } = self;
        let handle = server.handle();
        let serve = actix_web::rt::spawn(server);
        wait_for_signal().await;
        log::info!("shutting down");
        demo_stop.store(true, Ordering::Relaxed);
        for conn in state.hub.registry.all() {
            conn.outbox.close(close::GOING_AWAY, "server shutting down", true);
        }
        handle.stop(true).await;
        let _ = serve.await;
        // Acknowledged writes are committed already; this commits the rest and stops.
        let writer = state.writer.clone();
        drop(state);
        let _ = actix_web::rt::task::spawn_blocking(move || {
            writer.shutdown();
            let _ = writer_thread.join();
        })
        .await;
        for a in arbiters {
            a.stop();
        }
        Ok(())
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_web::rt::signal::ctrl_c().await;
    }
}

/// glibc keeps freed heap in its arenas: after thousands of connections close, the
/// process would stay at its peak size. Every 10 s, when the number of connections is
/// 1000 or more below its peak of the last 10 s, hand the free memory back.
fn release_memory_after_disconnects(hub: Hub) {
    actix::spawn(async move {
        let mut iv = actix_web::rt::time::interval(std::time::Duration::from_secs(10));
        loop {
            iv.tick().await;
            let (peak, now) = hub.registry.take_high_water();
            if peak >= now + 1000 {
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                // SAFETY: malloc_trim only releases free memory; it is thread-safe.
                unsafe {
                    libc::malloc_trim(0);
                }
                log::debug!("released free memory after {} disconnects", peak - now);
            }
        }
    });
}
