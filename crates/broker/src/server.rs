//! The server: bind, accept (up to `connections_max`), run background work, shut down cleanly.

use std::sync::Arc;
use std::time::Duration;

pub use strata_storage::{Clock, Fs, RealFs, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::state::TopicError;
use crate::{connection, Broker, BrokerConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open data directory: {0}")]
    Data(#[from] TopicError),
    #[error("cannot start the metadata quorum: {0}")]
    Quorum(#[from] strata_quorum::QuorumError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// See [`Broker::halt`].
    #[error("stopped at once: {0}")]
    Halted(String),
}

/// Opens the data directory, binds, and serves until `shutdown` resolves. Then stops
/// accepting, lets in-flight requests finish (bounded), and closes every log cleanly.
pub async fn run(
    config: BrokerConfig,
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with(config, fs, clock, shutdown, |_| {}).await
}

/// [`run`], calling `opened` with the broker once it is open and its listeners bound (the
/// binary starts its HTTP admin listener there).
pub async fn run_with(
    config: BrokerConfig,
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
    opened: impl FnOnce(Arc<Broker>),
) -> Result<(), ServeError> {
    config.validate()?;
    let listeners = config.resolved_listeners()?;
    let mut bound = Vec::new();
    for l in &listeners.clients {
        bound.push(bind(&l.bind).await?);
    }
    serve_listeners(bound, config, fs, clock, shutdown, opened).await
}

async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    let resolved = crate::config::resolve_addr(addr)?;
    TcpListener::bind(resolved)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves with `listener` as the first client listener (tests bind port 0 and read the
/// address first); any further listeners of the configuration are bound here.
pub async fn serve(
    listener: TcpListener,
    config: BrokerConfig,
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    config.validate()?;
    let listeners = config.resolved_listeners()?;
    let mut bound = vec![listener];
    for l in &listeners.clients[1..] {
        bound.push(bind(&l.bind).await?);
    }
    serve_listeners(bound, config, fs, clock, shutdown, |_| {}).await
}

/// Serves on the bound sockets of the configuration's client listeners, in order.
async fn serve_listeners(
    bound: Vec<TcpListener>,
    config: BrokerConfig,
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
    opened: impl FnOnce(Arc<Broker>),
) -> Result<(), ServeError> {
    let listeners = config.resolved_listeners()?;
    // TLS material is read before anything else opens: a bad keystore stops the start.
    let controller_tls =
        config.controller_quorum_voters.is_some() && listeners.controller_protocol.uses_tls();
    // One context per TLS listener (each may have its own `listener.name.<l>.ssl.*`).
    let mut tls = std::collections::BTreeMap::new();
    for name in listeners
        .clients
        .iter()
        .filter(|l| l.protocol.uses_tls())
        .map(|l| l.name.as_str())
        .chain(controller_tls.then_some(listeners.controller_name.as_str()))
    {
        tls.insert(
            name.to_string(),
            crate::tls::TlsContext::new(&config.for_listener(name))?,
        );
    }
    // Internal topics and coordinators first; other partitions recover in the background
    // while the ones already open are served.
    // A cluster member joins the metadata quorum first: its image is where the partitions
    // to open come from.
    let quorum = match config.quorum_voters()? {
        Some(voters) => {
            let listen = config
                .controller_listen_addr()?
                .expect("voters are configured");
            // The directory's identity first; a member with no raft state checks that its
            // node id is not registered with another directory (a wiped one) before voting.
            let directory_id = Broker::check_identity(fs.as_ref(), &config)?;
            let transport = Arc::new(
                crate::peer_security::controller_transport(
                    &config,
                    &listeners,
                    tls.get(&listeners.controller_name).cloned(),
                )
                .map_err(|e| ServeError::Config(crate::config::ConfigError::Invalid(e)))?,
            );
            if !strata_quorum::has_raft_state(fs.as_ref(), &config.data_dir) {
                crate::inter_broker::refuse_a_wiped_directory(
                    &voters,
                    config.node_id,
                    directory_id,
                    &transport,
                )
                .await
                .map_err(TopicError::Identity)?;
            }
            let mut quorum_config = strata_quorum::QuorumConfig::new(
                config.node_id as u64,
                voters,
                listen,
                config.data_dir.clone(),
            );
            quorum_config.transport = transport;
            Some(strata_quorum::Quorum::start(fs.clone(), clock.clone(), quorum_config).await?)
        }
        None => None,
    };
    let opening = quorum.clone();
    let broker = Arc::new(tokio::task::block_in_place(|| {
        Broker::open_member(config, fs, clock, opening)
    })?);
    if !tls.is_empty() {
        // Keystores / truststores changed at runtime before (dynamic broker configs) win
        // over the file's.
        let image = broker.image();
        let mut dynamic = image.broker_configs("").cloned().unwrap_or_default();
        dynamic.extend(
            image
                .broker_configs(&broker.config.node_id.to_string())
                .cloned()
                .unwrap_or_default(),
        );
        if dynamic.keys().any(|k| crate::tls::dynamic_key(k).is_some()) {
            for (name, context) in &tls {
                let config = crate::tls::with_overrides(&broker.config, &dynamic, name);
                match context.reconfigure(&config) {
                    Ok(()) => {
                        info!(listener = %name, "TLS keystore/truststore from the dynamic broker configs")
                    }
                    Err(e) => {
                        warn!(listener = %name, error = %e, "the dynamic TLS settings do not work; the file's stay in use")
                    }
                }
            }
        }
        let _ = broker.tls.set(tls.clone());
    }
    for (l, socket) in listeners.clients.iter().zip(&bound) {
        let local = socket.local_addr().map_err(|source| ServeError::Bind {
            addr: l.bind.clone(),
            source,
        })?;
        info!(
            "listening on {local}: listener {} ({}), advertised as {}:{}",
            l.name,
            l.protocol.name(),
            l.advertised_host,
            l.advertised_port
        );
    }

    opened(broker.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    // In a JoinSet so that dropping this future (a test simulating a crash) stops it too.
    let mut background = tokio::task::JoinSet::new();
    let recovering = broker.clone();
    background.spawn(async move {
        // Dropped unfinished (the server future dropped: a simulated crash): the recovery
        // thread stops after the partition it is on.
        struct StopOnDrop(Option<Arc<Broker>>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                if let Some(b) = self.0.take() {
                    b.shutdown_flag()
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        let mut guard = StopOnDrop(Some(recovering.clone()));
        let _ = tokio::task::spawn_blocking(move || recovering.recover_deferred()).await;
        guard.0 = None;
    });
    if let Some(q) = &quorum {
        background.spawn(follow_quorum(broker.clone(), q.clone(), stop_rx.clone()));
        background.spawn(crate::fetcher::supervise(broker.clone(), stop_rx.clone()));
        crate::control::install(&broker, q);
        background.spawn(crate::control::controller_loop(
            broker.clone(),
            q.clone(),
            stop_rx.clone(),
        ));
        background.spawn(crate::control::heartbeat_loop(
            broker.clone(),
            q.clone(),
            stop_rx.clone(),
        ));
        background.spawn(crate::control::isr_loop(
            broker.clone(),
            q.clone(),
            stop_rx.clone(),
        ));
    }
    background.spawn(background_work(broker.clone(), stop_rx.clone()));
    background.spawn(crate::cleaner::cleaner_work(
        broker.clone(),
        stop_rx.clone(),
    ));
    background.spawn(crate::tiering::tiering_work(
        broker.clone(),
        stop_rx.clone(),
    ));
    let slots = Arc::new(Semaphore::new(broker.config.connections_max));
    let per_ip = Arc::new(crate::connection_limits::ConnectionLimits::new(
        broker.config.max_connections_per_ip,
        crate::connection_limits::parse_overrides(&broker.config.max_connections_per_ip_overrides)
            .unwrap_or_default(),
    ));
    // KIP-402's per-listener limits.
    let listener_slots: std::collections::HashMap<String, (usize, Arc<Semaphore>)> = listeners
        .clients
        .iter()
        .filter_map(|l| {
            let n = broker.config.listener_max_connections(&l.name)?;
            Some((l.name.clone(), (n, Arc::new(Semaphore::new(n)))))
        })
        .collect();
    // As Kafka's protected listener: only when it is not the node's only listener.
    let protected: Option<Arc<str>> =
        (listeners.clients.len() > 1).then(|| Arc::from(listeners.inter_broker.as_str()));
    let mut connections = tokio::task::JoinSet::new();
    // One accepting task per listener, handing connections to this loop.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for (l, socket) in listeners.clients.iter().zip(bound) {
        let tx = accepted_tx.clone();
        let name: Arc<str> = Arc::from(l.name.as_str());
        let protocol = l.protocol;
        acceptors.spawn(async move {
            loop {
                match socket.accept().await {
                    Ok((stream, peer)) => {
                        if tx
                            .send((stream, peer, name.clone(), protocol))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(listener = %name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some((stream, peer, name, protocol)) = accepted_rx.recv() => {
                // Brokers reach each other on the inter-broker listener even when the broker-wide
                // limit is reached (KIP-402), if clients have listeners of their own.
                let permit = slots.clone().try_acquire_owned().ok();
                if permit.is_none() && protected.as_ref() != Some(&name) {
                    warn!(%peer, limit = broker.config.connections_max, "refusing connection: max.connections reached");
                    continue;
                }
                let listener_permit = match listener_slots.get(&*name) {
                    None => None,
                    Some((limit, slots)) => match slots.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            let why = format!("max.connections {limit} of listener {name} reached");
                            let context = connection::ConnectionContext::on(peer, name, protocol);
                            broker.audit.connection_refused(&context, &why);
                            continue;
                        }
                    },
                };
                let ip_slot = match per_ip.admit(peer.ip(), &broker.image(), std::time::Instant::now()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        let context = connection::ConnectionContext::on(peer, name, protocol);
                        broker.audit.connection_refused(&context, &why);
                        continue;
                    }
                };
                let b = broker.clone();
                let stop = stop_rx.clone();
                let tls = tls.get(&*name).cloned();
                connections.spawn(async move {
                    let stats = b.metrics.listener(&name);
                    stats.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _open = crate::metrics::Gauged::new(&stats.open);
                    let context = connection::ConnectionContext::on(peer, name, protocol);
                    if let Some((transport, context)) = open(&b, stream, context, tls.as_deref()).await {
                        connection::serve(b.clone(), transport, context, stop).await;
                    }
                    drop(permit);
                    drop(listener_permit);
                    drop(ip_slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
            reason = broker.halt_requested() => {
                // No controlled shutdown and no clean close: like a crash, so the next start
                // recovers from the files (a failed log may hold part of a change).
                let _ = stop_tx.send(true);
                broker.begin_shutdown();
                connections.abort_all();
                background.abort_all();
                if let Some(q) = &quorum {
                    q.abort().await;
                }
                return Err(ServeError::Halted(reason));
            }
        }
    }
    if let Some(q) = &quorum {
        // Leaderships move to other in-sync replicas while this node still answers (clients
        // get NOT_LEADER_OR_FOLLOWER and go to the new leaders).
        crate::control::controlled_shutdown(&broker, q, Duration::from_secs(30)).await;
    }
    info!("shutting down: no new connections; finishing in-flight requests");
    acceptors.abort_all();
    while acceptors.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    broker.begin_shutdown();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("in-flight requests did not finish within 10s; closing anyway");
        connections.abort_all();
    }
    while background.join_next().await.is_some() {}
    tokio::task::block_in_place(|| broker.close());
    if let Some(q) = quorum {
        q.shutdown().await;
    }
    info!("shutdown complete: logs synced and closed");
    Ok(())
}

/// How long a client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection's transport after its listener's security protocol: plain TCP, or TLS
/// (handshake bounded in time; a client certificate names the principal). None if the
/// handshake failed: the connection is closed and nothing else is affected.
async fn open(
    broker: &Broker,
    stream: tokio::net::TcpStream,
    mut context: connection::ConnectionContext,
    tls: Option<&crate::tls::TlsContext>,
) -> Option<(connection::Transport, connection::ConnectionContext)> {
    if !context.protocol.uses_tls() {
        return Some((connection::Transport::tcp(stream), context));
    }
    let _ = stream.set_nodelay(true);
    let tls = tls.expect("a TLS context exists when a listener uses TLS");
    let peer = context.peer;
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            broker
                .audit
                .authentication_failed(&context, &format!("TLS handshake: {e}"));
            return None;
        }
        Err(_) => {
            broker
                .audit
                .authentication_failed(&context, "TLS handshake not finished within 10 s");
            return None;
        }
    };
    if let Some(cert) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        match crate::tls::certificate_subject(cert.as_ref()) {
            Some(subject) => match tls.user_of(&subject) {
                Some(user) => context.principal = format!("User:{user}"),
                None => {
                    broker.audit.authentication_failed(
                        &context,
                        &format!("no ssl.principal.mapping.rules rule matches {subject}"),
                    );
                    return None;
                }
            },
            None => {
                broker
                    .audit
                    .authentication_failed(&context, "client certificate subject unreadable");
                return None;
            }
        }
    }
    tracing::debug!(%peer, listener = %context.listener, principal = %context.principal, "TLS connection");
    Some((connection::Transport::stream(stream), context))
}

/// A cluster member's replica manager follows the quorum: every image applied there (a
/// change made through any node) is applied to this node's partitions, in order.
async fn follow_quorum(
    broker: Arc<Broker>,
    quorum: Arc<strata_quorum::Quorum>,
    mut stop: watch::Receiver<bool>,
) {
    let mut images = quorum.subscribe();
    loop {
        // First whatever was applied between the broker's opening image and this
        // subscription, then each change.
        let b = broker.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let applied = b.catch_up_with_quorum();
            // Coordinators follow the leadership of their internal topics' partitions.
            b.refresh_txn_coordination();
            b.refresh_group_coordination();
            applied
        })
        .await;
        match applied {
            Ok(Err(e)) => warn!(error = %e, "a metadata change was not fully applied"),
            Err(e) => warn!(error = %e, "applying a metadata change panicked"),
            Ok(Ok(_)) => {}
        }
        tokio::select! {
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The group coordinator's clock, relaxed-mode flushes, retention, and recovery-point
/// checkpoints.
async fn background_work(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut flush_tick = tokio::time::interval(Duration::from_millis(100));
    let mut retention_tick = tokio::time::interval(Duration::from_millis(
        broker.config.log_retention_check_interval_ms.max(100),
    ));
    let mut checkpoint_tick = tokio::time::interval(Duration::from_millis(
        broker
            .config
            .log_flush_offset_checkpoint_interval_ms
            .max(100),
    ));
    let mut group_tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = group_tick.tick() => {
                broker.group_tick().await;
                broker.txn_tick().await;
            }
            _ = flush_tick.tick() => {
                let b = broker.clone();
                let flushed = tokio::task::spawn_blocking(move || {
                    let mut any = false;
                    let mut unchecked_bytes = 0u64;
                    b.check_logs_failed();
                    for p in b.all_partitions() {
                        match p.maybe_flush() {
                            Ok(f) => any |= f,
                            Err(e) => warn!(topic = %p.topic, partition = p.partition, error = %e, "background flush failed"),
                        }
                        unchecked_bytes += p.log().bytes_since_checkpoint();
                    }
                    // Bound what a recovery would scan by bytes, not only by time.
                    if unchecked_bytes >= b.config.log_flush_offset_checkpoint_bytes.max(1) {
                        b.checkpoint_recovery_points();
                    }
                    any
                }).await.unwrap_or(false);
                if flushed {
                    broker.data_arrived.notify_waiters();
                }
            }
            _ = retention_tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for p in b.all_partitions() {
                        if let Err(e) = p.log().apply_retention() {
                            warn!(topic = %p.topic, partition = p.partition, error = %e, "retention failed");
                        }
                    }
                }).await;
            }
            _ = checkpoint_tick.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.checkpoint_recovery_points()).await;
            }
            _ = stop.changed() => return,
        }
    }
}
