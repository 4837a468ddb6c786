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

use std::{rc::Rc, time::Duration};

use actix::Arbiter;
use actix_http::{HttpService, KeepAlive};
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactory};
use actix_web::{
    dev::{AppConfig, Server},
    rt::net::TcpStream,
    web, App, HttpServer,
};

use crate::{
    auth::{load_or_create_secret, Auth, PasswordWork},
    broker::{
        redis::{RedisBroker, Seal},
        Broker, LocalBroker,
    },
    channels::Namespace,
    chat::{
        moderation::{Archived, Mutes},
        Chat, Limits,
    },
    config::{ConfigError, Settings},
    feeds::Feeds,
    http::{self, ws::ConnFd},
    hub::{Hub, HubConfig, SeedLastValues},
    limit::{ConnCounts, KeyedLimiter},
    protocol::close,
    state::AppState,
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
    /// The private `/metrics` listener (`metrics_bind`) and its address.
    metrics: Option<(Server, SocketAddr)>,
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

        // The writer's queue first: feeds store through it, the hub's shards hold the
        // feeds, and the writer reports its commits to the hub.
        let (writer, writer_queue) = writer::queue(settings.write_queue);
        let feeds = Feeds::new(
            writer.clone(),
            settings.track_min_interval_s,
            settings.track_min_distance_m,
            settings.feed_idle(),
        );
        let broker: Arc<dyn Broker> = match settings.redis_url.as_deref() {
            Some(url) => {
                if matches!(target, DbTarget::Sqlite(_)) {
                    log::warn!("REDIS_URL with a SQLite database: other nodes cannot share this node's history");
                }
                let seal = match settings.cluster_secret.as_deref() {
                    Some(key) => Seal::new(key.as_bytes()),
                    None => Seal::derived(&secret),
                };
                Arc::new(
                    RedisBroker::connect(url, &settings.cluster_name, seal)
                        .await
                        .map_err(StartError::Other)?,
                )
            }
            None => Arc::new(LocalBroker),
        };
        let (hub, arbiters) = Hub::start(
            HubConfig {
                shards: settings.shards(),
                epoch: hex::encode(rand::random::<[u8; 4]>()).into(),
                presence_refresh: std::time::Duration::from_secs_f64(settings.presence_refresh_s),
                versions: auth.versions().clone(),
                recovery_limit: settings.recovery_limit,
                reply_budget: settings.reply_budget(),
            },
            broker.clone(),
            feeds.clone(),
            db.clone(),
        );
        broker.subscribe(Arc::new(hub.clone()));
        let writer_thread = writer::start(
            target.connect()?,
            writer_queue,
            Box::new(hub.clone()),
            settings.write_batch_max,
        );

        // Revoked tokens stay revoked across restarts.
        let versions = db
            .run(queries::token_versions)
            .await
            .map_err(|e| StartError::Other(e.message))?;
        auth.versions().load(versions);
        let bans = db
            .run(|c| queries::list_bans(c, i64::MAX))
            .await
            .map_err(|e| StartError::Other(e.message))?;
        for b in bans {
            auth.versions().set_banned(&b.user_id, true);
        }
        let last_change = db
            .run(queries::last_revocation)
            .await
            .map_err(|e| StartError::Other(e.message))?;
        let archived: Arc<Archived> = Arc::default();
        archived.replace(
            db.run(queries::archived_rooms)
                .await
                .map_err(|e| StartError::Other(e.message))?,
        );
        let mutes: Arc<Mutes> = Arc::default();
        mutes.replace(
            db.run(queries::active_mutes)
                .await
                .map_err(|e| StartError::Other(e.message))?,
        );
        follow_changes(
            db.clone(),
            hub.clone(),
            writer.clone(),
            last_change,
            (mutes.clone(), archived.clone()),
        );

        // Durable last values (loc:) are served on join right after a restart.
        let seeds = db
            .run(queries::last_values)
            .await
            .map_err(|e| StartError::Other(e.message))?;
        let mut per: Vec<Vec<_>> = vec![Vec::new(); hub.shards().len()];
        for m in &seeds {
            feeds.restore(m);
        }
        let sports = db.run(|c| queries::channel_names(c, Namespace::Sports)).await;
        for name in sports.map_err(|e| StartError::Other(e.message))? {
            feeds.seen(&name.into());
        }
        for m in seeds {
            per[hub.shard_index(&m.channel)].push(m);
        }
        for (i, v) in per.into_iter().enumerate() {
            hub.shards()[i]
                .send(SeedLastValues(v))
                .await
                .map_err(|e| StartError::Other(format!("hub: {e}")))?;
        }

        let settings = Arc::new(settings);
        let state = AppState {
            chat: Chat {
                limits: Arc::new(Limits::new(&settings)),
                // Hashing may use every core but one, and a small queue waits for them.
                passwords: Arc::new(PasswordWork::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
                    32,
                )),
                settings: settings.clone(),
                mutes,
                archived,
                calls: Arc::new(crate::chat::calls::Calls::new(settings.ring_timeout())),
                public_rooms: Arc::default(),
                db,
                writer,
                hub,
                feeds,
                auth,
            },
            next_conn_id: Arc::default(),
            proxies: settings.trusted_proxies().into(),
            handshakes: Arc::new(KeyedLimiter::per_minute(settings.handshakes_per_min_per_address)),
            addr_conns: ConnCounts::new(settings.max_conns_per_address),
        };

        let addr = settings.bind_addr()?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| StartError::Bind(settings.bind.clone(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(settings.bind.clone(), e))?;
        end_stale_calls(state.chat.clone());
        let server = serve(listener, addr, state.clone(), &settings)?;
        storage::retention::start(
            state.chat.db.clone(),
            storage::retention::RetentionConfig {
                interval: std::time::Duration::from_secs_f64(settings.retention_interval_s),
                batch: settings.retention_batch as i64,
                upload_grace_ms: (settings.upload_grace_s * 1000.0) as i64,
                upload_dir: settings.upload_dir(),
            },
        );
        let metrics = match settings.metrics_addr() {
            Some(addr) => Some(metrics_server(addr, &state).map_err(|e| StartError::Bind(addr.to_string(), e))?),
            None => None,
        };
        release_free_memory(state.chat.hub.clone());
        heartbeat(state.chat.hub.clone(), settings.heartbeat(), settings.client_timeout());
        sweep_idle_feeds(state.chat.feeds.clone());
        let demo_stop = Arc::new(AtomicBool::new(false));
        if settings.demo {
            crate::demo::start(state.chat.clone(), demo_stop.clone());
        }
        Ok(Application {
            server,
            addr,
            metrics,
            state,
            writer_thread,
            arbiters,
            demo_stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the private `/metrics` listener, if `metrics_bind` set one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
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
            metrics,
            ..
        } = self;
        let handle = server.handle();
        let serve = actix_web::rt::spawn(server);
        let metrics = metrics.map(|(server, _)| (server.handle(), actix_web::rt::spawn(server)));
        wait_for_signal().await;
        log::info!("shutting down");
        demo_stop.store(true, Ordering::Relaxed);
        for conn in state.chat.hub.registry.all() {
            conn.outbox.close(close::GOING_AWAY, "server shutting down", true);
        }
        // WebSocket connections are not the HTTP server's once upgraded: wait (5 s at
        // most, as for HTTP) for their close frames to go out.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while http::upgrade::open_connections() > 0 && std::time::Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        handle.stop(true).await;
        let _ = serve.await;
        if let Some((handle, serve)) = metrics {
            handle.stop(true).await;
            let _ = serve.await;
        }
        // Acknowledged writes are committed already; this commits the rest and stops.
        let writer = state.chat.writer.clone();
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

/// The HTTP server. Requests that ask for a WebSocket upgrade leave the h1 dispatcher
/// with their socket ([`http::upgrade`]); the others are served by the same
/// application through it.
fn serve(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
    settings: &Settings,
) -> Result<Server, StartError> {
    let json_limit = (4 << 20).max(settings.max_message_bytes * 2);
    let app_state = web::Data::new(state);
    let app = move || {
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
    };
    let host = addr.to_string();
    let config = move || AppConfig::__priv_test_new(false, host.clone(), addr);
    let mut builder = actix_server::Server::build()
        .backlog(4096)
        // Above the WebSocket bound per worker (`http::upgrade`), which answers 503.
        .max_concurrent_connections(http::upgrade::MAX_WS_PER_WORKER + 10_000)
        .shutdown_timeout(5)
        .disable_signals()
        // Blocking work is storage (no more at once than its pool's connections),
        // password hashing (a permit per core but one) and upload files; actix's
        // default of 512 threads per worker only costs stacks. Beyond the bound, work
        // waits in tokio's queue of blocking tasks (each caller awaits its own).
        .worker_max_blocking_threads(
            settings.db_pool_size as usize + std::thread::available_parallelism().map_or(1, |n| n.get()) + 2,
        );
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let bind_err = |e| StartError::Bind(settings.bind.clone(), e);
    let builder = builder
        .listen("chat", listener, move || {
            let shutdown = shutdown.clone();
            let (app, config) = (app.clone(), config.clone());
            let upgrade = {
                let (app, config) = (app.clone(), config.clone());
                fn_factory(move || {
                    let factory = app().into_factory();
                    let config = config();
                    async move {
                        let svc = Rc::new(factory.new_service(config).await?);
                        Ok::<_, ()>(fn_service(move |(req, framed)| {
                            http::upgrade::serve(svc.clone(), req, framed)
                        }))
                    }
                })
            };
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .on_connect_ext(|tcp: &TcpStream, ext| {
                    let _ = tcp.set_nodelay(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::io::AsRawFd;
                        ext.insert(ConnFd(tcp.as_raw_fd()));
                    }
                })
                .upgrade(upgrade)
                .finish(map_config(app(), move |_| config()))
                .tcp()
        })
        .map_err(bind_err)?;
    Ok(builder.run())
}

/// A small HTTP server of its own for `/metrics` on `addr` (one worker).
fn metrics_server(addr: SocketAddr, state: &AppState) -> std::io::Result<(Server, SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(http::metrics_routes))
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok((server, addr))
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

/// Every minute, forget feed state idle for longer than the configured idle time.
fn sweep_idle_feeds(feeds: Arc<Feeds>) {
    actix::spawn(async move {
        let mut iv = actix_web::rt::time::interval(std::time::Duration::from_secs(60));
        loop {
            iv.tick().await;
            let f = feeds.clone();
            let n = actix_web::rt::task::spawn_blocking(move || f.sweep())
                .await
                .unwrap_or(0);
            if n > 0 {
                log::debug!("forgot {n} idle feed entries");
            }
        }
    });
}

/// Every `every`, one heartbeat sweep over all connections: a ping each, and close
/// (1000) for those without a sign of life for `timeout`.
fn heartbeat(hub: Hub, every: std::time::Duration, timeout: std::time::Duration) {
    actix::spawn(async move {
        // The first sweep one period after the start, not at once: a connection's
        // first ping comes `every` after it opened at the earliest.
        let mut iv = actix_web::rt::time::interval_at(actix_web::rt::time::Instant::now() + every, every);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            let closed = hub.registry.heartbeat(timeout);
            if closed > 0 {
                log::debug!("heartbeat: closed {closed} connections without a sign of life");
            }
        }
    });
}

/// glibc keeps freed heap in its arenas: after thousands of connections close, the
/// process would stay at its peak size, and the transient memory of a join storm
/// (handshakes, snapshots, presence batches) stays behind the connections it brought.
/// Every 10 s, hand the free memory back when the number of connections is 1000 or
/// more below its peak of the last 10 s, or 1000 or more away from where it was at the
/// last release (a burst of connects that has settled).
fn release_free_memory(hub: Hub) {
    actix::spawn(async move {
        let mut iv = actix_web::rt::time::interval(std::time::Duration::from_secs(10));
        let mut at_last = 0usize;
        loop {
            iv.tick().await;
            let (peak, now) = hub.registry.take_high_water();
            if peak >= now + 1000 || now.abs_diff(at_last) >= 1000 {
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                // SAFETY: malloc_trim only releases free memory; it is thread-safe.
                unsafe {
                    libc::malloc_trim(0);
                }
                log::debug!("released free memory ({peak} connections at the peak, {now} now)");
                at_last = now;
            }
        }
    });
}

/// How often a node reads the change log of revocations and bans and the mutes in
/// force (changes made on another node or by the command line reach this node's
/// connections this fast).
const CHANGE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Applies the change log (token revocations, bans, unbans) from `after` on, and
/// refreshes the mutes in force, forever.
fn follow_changes(
    db: Db,
    hub: Hub,
    writer: writer::WriterHandle,
    mut after: i64,
    (mutes, archived): (Arc<Mutes>, Arc<Archived>),
) {
    actix::spawn(async move {
        let mut tick = actix_web::rt::time::interval(CHANGE_POLL);
        loop {
            tick.tick().await;
            let from = after;
            match db.run(move |c| queries::revocations_after(c, from, 1000)).await {
                Ok(changes) => {
                    for (id, user, change) in changes {
                        if let queries::Change::Unmember(channel) = &change {
                            // This node's writer forgets the membership it remembered.
                            writer.submit(writer::WriteOp::RemoveMember {
                                channel: channel.as_str().into(),
                                user_id: user.as_str().into(),
                                ack: crate::conn::Ack::None,
                            });
                        }
                        hub.apply_change(&user, change);
                        after = id;
                    }
                }
                Err(e) => log::warn!("reading the change log: {}", e.message),
            }
            match db.run(queries::active_mutes).await {
                Ok(rows) => mutes.replace(rows),
                Err(e) => log::warn!("reading the mutes: {}", e.message),
            }
            match db.run(queries::archived_rooms).await {
                Ok(rows) => archived.replace(rows),
                Err(e) => log::warn!("reading the archived rooms: {}", e.message),
            }
        }
    });
}

/// Ends calls that rang unanswered for 30 s (missed) and writes their records; one
/// sweep a second over the bounded call table.
fn end_stale_calls(chat: Chat) {
    actix::spawn(async move {
        let mut tick = actix_web::rt::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if chat.calls.is_empty() {
                continue;
            }
            for record in chat.calls.expire(std::time::Instant::now()) {
                crate::chat::signal::write_record(&chat, record);
            }
        }
    });
}
