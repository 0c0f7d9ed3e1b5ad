//! `strata serve`: flags and the TOML config file become a `BrokerConfig`; flags win.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use strata_broker::BrokerConfig;

#[derive(Args)]
pub struct ServeArgs {
    /// Data directory [default: ./strata-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address]
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// TOML file with broker settings (snake_case keys of BrokerConfig); flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id [default: the data directory's (meta.properties), else 1]
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// The metadata quorum's voters (controller.quorum.voters): ID@HOST:PORT,… [default:
    /// none, a standalone node]
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum_voters: Option<String>,
    /// Where the HTTP admin listener serves /metrics, /healthz, /readyz and the /v1 admin
    /// API ("none" turns it off) [default: 127.0.0.1:8080; if that address is taken, the
    /// broker runs without it]
    #[arg(long, value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// How HTTP admin API and console users authenticate: "none" (they are User:ANONYMOUS
    /// to the broker's ACLs, as on a PLAINTEXT listener), or "basic" (HTTP Basic, checked
    /// against the broker's own SASL users; each request is then authorized with that
    /// user's ACLs) [default: none]
    #[arg(long, value_name = "METHOD")]
    http_auth: Option<String>,
    /// Where the SQL engine serves ksqlDB's REST API ("none" turns the engine off)
    /// [default: 127.0.0.1:8088; if that address is taken, the broker runs without it]
    #[arg(long, value_name = "HOST:PORT")]
    sql_listen: Option<String>,
    /// Where the other nodes' SQL engines reach this one (the pull queries they forward
    /// here) [default: the SQL listen address]
    #[arg(long, value_name = "HOST:PORT")]
    sql_advertised_listener: Option<String>,
    /// How SQL clients authenticate: "none", or "basic" (HTTP Basic, checked against the
    /// broker's own SASL users through this node's first SASL listener) [default: none]
    #[arg(long, value_name = "METHOD")]
    sql_auth: Option<String>,
    /// How many groups of an aggregation each SQL task caches in memory; the rest stay in
    /// its local state store on disk [default: 100000]
    #[arg(long, value_name = "N")]
    sql_state_cache_groups: Option<usize>,
    /// Where this node's controller listener binds [default: its entry in the voters]
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// process.roles: "broker,controller" or "broker" (follows the quorum without voting)
    #[arg(long, value_name = "ROLES")]
    process_roles: Option<String>,
}

fn load(args: ServeArgs) -> anyhow::Result<(BrokerConfig, std::fs::File)> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            BrokerConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?
        }
        None => BrokerConfig::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        if config.listeners.is_some() {
            bail!("--listen and the config file's `listeners` both say where to listen: use one");
        }
        config.listen = l;
    }
    if let Some(a) = args.advertised_listener {
        config.advertised_listener = Some(a);
    }
    if let Some(n) = args.node_id {
        config.node_id = n;
    }
    if let Some(v) = args.controller_quorum_voters {
        config.controller_quorum_voters = Some(v);
    }
    if let Some(l) = args.controller_listen {
        config.controller_listen = Some(l);
    }
    if let Some(r) = args.process_roles {
        config.process_roles = r;
    }
    // A formatted directory supplies the identity the config leaves at its defaults; one
    // that differs from an explicit setting is refused when the broker opens it.
    if let Some(meta) =
        strata_storage::MetaProperties::read(&strata_storage::RealFs, &config.data_dir)
            .with_context(|| format!("cannot read the identity of {}", config.data_dir.display()))?
    {
        let defaults = BrokerConfig::default();
        if config.cluster_id == defaults.cluster_id {
            config.cluster_id = meta.cluster_id;
        }
        if config.node_id == defaults.node_id && args.node_id.is_none() {
            config.node_id = meta.node_id;
        }
    }
    config.validate()?;
    let lock = check_data_dir(&config.data_dir)?;
    Ok((config, lock))
}

/// A clear error now beats a confusing one from deep inside storage.
/// Also takes the data directory's lock (`.lock`, flock'd as Kafka does) so two brokers
/// never share one directory; the lock lives as long as the returned file.
fn check_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "data directory {} exists and is not a directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let probe = dir.join(".strata-write-probe");
    std::fs::write(&probe, b"probe")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    std::fs::read_dir(dir)
        .with_context(|| format!("data directory {} is not readable", dir.display()))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "data directory {} is in use by another strata process",
            dir.display()
        );
    }
    Ok(lock)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        // openraft narrates every election and vote at info: warnings only by default. Its
        // heartbeat and replication tasks warn several times a second while a voter is down;
        // the node's own "fencing a broker that stopped heartbeating" line and `strata
        // cluster status` (voter lag) say it once.
        .unwrap_or_else(|_| {
            "info,openraft=warn,openraft::core::heartbeat=error,openraft::replication=error,\
             openraft::engine::handler::replication_handler=error"
                .into()
        });
    // STRATA_LOG_FORMAT=json: one JSON object a line (timestamp, level, message and the
    // event's fields: topic, partition, node ids…), for log pipelines.
    if std::env::var("STRATA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_target(false)
            .with_current_span(false)
            .init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(ansi)
            .init();
    }
    let http_listen = args.http_listen.clone();
    let sql_listen = args.sql_listen.clone();
    let sql_advertised = args.sql_advertised_listener.clone();
    let sql_auth_method = args.sql_auth.clone();
    let http_auth_method = args.http_auth.clone();
    let sql_cache_groups = args
        .sql_state_cache_groups
        .unwrap_or(strata_ksql::groups::DEFAULT_CACHE_GROUPS);
    let (config, _lock) = load(args)?;
    let sql_auth = basic_auth(&config, "--sql-auth", sql_auth_method.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let sql_authenticates = sql_auth.is_some();
    let http_auth = basic_auth(&config, "--http-auth", http_auth_method.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?
        .map(Arc::new);
    let sql_bootstrap = sql_bootstrap(&config);
    if let Ok((_, Some(security))) = &sql_bootstrap {
        // The engine's connections (the only ones in this process that take the default:
        // the broker's own set theirs explicitly).
        strata_client::set_default_security(security.clone());
    }
    let sql_bootstrap = sql_bootstrap.map(|(addr, _)| addr);
    let admin_bootstrap = sql_bootstrap.clone().ok();
    let sql_state = strata_ksql::run::StateOptions {
        dir: Some(config.data_dir.join("sql-state")),
        cache_groups: sql_cache_groups,
    };
    let clustered = config.controller_quorum_voters.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let served = runtime.block_on(async move {
        let sql_addr = start_sql_engine(
            sql_listen,
            sql_advertised,
            sql_bootstrap,
            sql_state,
            clustered,
            sql_auth,
        )
        .await?;
        let admin_options = strata_admin::AdminOptions {
            bootstrap: admin_bootstrap,
            sql: sql_addr.map(|a| a.to_string()),
            sql_authenticates,
            auth: http_auth,
        };
        let http = bind_http(http_listen).await?;
        // Registered with the broker, so the other nodes' admin APIs can ask this one.
        let mut config = config;
        if let Some(bound) = http.as_ref().and_then(|l| l.local_addr().ok()) {
            config.http_advertised = Some(http_advertised(&config, bound));
        }
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        strata_broker::run_with(
            config,
            Arc::new(strata_storage_fs()),
            Arc::new(strata_storage_clock()),
            shutdown,
            move |broker| {
                if let Some(listener) = http {
                    tokio::spawn(strata_admin::serve(listener, broker, admin_options));
                }
            },
        )
        .await
    });
    if let Err(e @ strata_broker::server::ServeError::Halted(_)) = &served {
        // Kafka's Exit.halt: no waiting for the runtime's blocking threads to finish.
        eprintln!("strata: {e}");
        std::process::exit(1);
    }
    served?;
    Ok(())
}

/// How the SQL engine reaches the broker: this node's first PLAINTEXT listener (the engine
/// is a Kafka client of its own node), else its inter-broker listener with the security the
/// node uses towards its peers (TLS with its truststore, SASL as its JAAS login), so the
/// engine acts as the node's own principal. None (with the reason): SQL is off.
fn sql_bootstrap(
    config: &BrokerConfig,
) -> Result<(String, Option<strata_client::ClientSecurity>), String> {
    let listeners = config.resolved_listeners().map_err(|e| e.to_string())?;
    let local = |bind: &str| -> Option<String> {
        let (host, port) = bind.rsplit_once(':')?;
        let host = match host {
            "" | "0.0.0.0" => "127.0.0.1",
            "[::]" => "[::1]",
            h => h,
        };
        Some(format!("{host}:{port}"))
    };
    if let Some(l) = listeners
        .clients
        .iter()
        .find(|l| l.protocol == strata_broker::listeners::SecurityProtocol::Plaintext)
    {
        return local(&l.bind)
            .map(|a| (a, None))
            .ok_or_else(|| format!("listener {}: no port in {}", l.name, l.bind));
    }
    let l = listeners.inter_broker();
    let security = strata_broker::peer_security::peer_security(config, &listeners)?;
    // The advertised name: the one the node's certificate is made out to.
    let addr = format!("{}:{}", l.advertised_host, l.advertised_port);
    Ok((addr, Some(security)))
}

/// `--sql-auth` and `--http-auth` (`flag`): None for "none"; for "basic", credentials are
/// checked by logging in to this node's first SASL listener (its advertised address, TLS as
/// the node's peers connect) with the first PLAIN or SCRAM mechanism it enables.
fn basic_auth(
    config: &BrokerConfig,
    flag: &str,
    method: Option<&str>,
) -> Result<Option<strata_ksql::auth::BasicAuth>, String> {
    match method.map(str::to_ascii_lowercase).as_deref() {
        None | Some("none") => return Ok(None),
        Some("basic") => {}
        Some(other) => return Err(format!("{flag} {other}: expected none or basic")),
    }
    let listeners = config.resolved_listeners().map_err(|e| e.to_string())?;
    let l = listeners
        .clients
        .iter()
        .find(|l| l.protocol.uses_sasl())
        .ok_or_else(|| format!("{flag} basic checks credentials against the broker's SASL users: no listener uses SASL"))?;
    let mechanism = config
        .sasl_enabled_mechanisms
        .split(',')
        .map(str::trim)
        .find(|m| {
            let m = m.to_ascii_uppercase();
            m == "PLAIN" || m.starts_with("SCRAM-")
        })
        .ok_or_else(|| {
            format!("{flag} basic: sasl.enabled.mechanisms has no PLAIN or SCRAM mechanism")
        })?;
    let tls = if l.protocol.uses_tls() {
        strata_broker::peer_security::tls_to_listener(config, &l.name)?
    } else {
        strata_client::ClientSecurity::default()
    };
    let addr = format!("{}:{}", l.advertised_host, l.advertised_port);
    strata_ksql::auth::BasicAuth::new(addr, tls, mechanism).map(Some)
}

/// Binds the HTTP admin listener (`--http-listen`): None when turned off, or when the
/// default address is taken (a warning); an explicit address that cannot be bound stops the
/// start.
/// The HTTP listener's address as other nodes reach it: the bound one, or for a wildcard
/// bind the host the node advertises to its peers.
fn http_advertised(config: &BrokerConfig, bound: std::net::SocketAddr) -> (String, u16) {
    let host = if bound.ip().is_unspecified() {
        config.advertised_host_port().0
    } else if bound.is_ipv6() {
        format!("[{}]", bound.ip())
    } else {
        bound.ip().to_string()
    };
    (host, bound.port())
}

async fn bind_http(
    listen: Option<String>,
) -> Result<Option<tokio::net::TcpListener>, strata_broker::server::ServeError> {
    let explicit = listen.is_some();
    let addr = listen.unwrap_or_else(|| "127.0.0.1:8080".to_string());
    if addr.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => {
            if let Ok(local) = listener.local_addr() {
                tracing::info!("HTTP admin listener on {local}: /metrics, /healthz, /readyz, /v1");
            }
            Ok(Some(listener))
        }
        Err(e) if !explicit => {
            tracing::warn!(%addr, error = %e, "HTTP admin listener not started (use --http-listen)");
            Ok(None)
        }
        Err(source) => Err(strata_broker::server::ServeError::Bind { addr, source }),
    }
}

/// Binds the SQL listener and starts the engine on it (it waits for the broker to answer);
/// returns the address bound. An explicit address that cannot be bound stops the start;
/// the default one only warns.
async fn start_sql_engine(
    listen: Option<String>,
    advertised: Option<String>,
    bootstrap: Result<String, String>,
    state: strata_ksql::run::StateOptions,
    clustered: bool,
    auth: Option<strata_ksql::auth::BasicAuth>,
) -> Result<Option<std::net::SocketAddr>, strata_broker::server::ServeError> {
    let explicit = listen.is_some();
    let addr = listen.unwrap_or_else(|| "127.0.0.1:8088".to_string());
    if addr.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bootstrap = match bootstrap {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "the SQL engine cannot reach the broker: SQL is off");
            return Ok(None);
        }
    };
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => {
            let local = listener.local_addr().ok();
            if clustered && advertised.is_none() && local.is_some_and(|a| a.ip().is_unspecified()) {
                tracing::warn!(%addr, "the SQL listener binds every address: give --sql-advertised-listener so the other nodes' engines can forward pull queries here");
            }
            let advertised = advertised.or_else(|| local.map(|a| a.to_string()));
            tokio::spawn(strata_ksql::serve(
                listener,
                bootstrap,
                state,
                clustered.then_some(advertised).flatten(),
                auth,
            ));
            Ok(local.map(|a| {
                // The passthrough connects here: an unspecified bind is reached on loopback.
                if a.ip().is_unspecified() {
                    std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
                } else {
                    a
                }
            }))
        }
        Err(e) if !explicit => {
            tracing::warn!(%addr, error = %e, "SQL listener not started (use --sql-listen)");
            Ok(None)
        }
        Err(source) => Err(strata_broker::server::ServeError::Bind { addr, source }),
    }
}

fn strata_storage_fs() -> strata_broker::server::RealFs {
    strata_broker::server::RealFs
}

fn strata_storage_clock() -> strata_broker::server::SystemClock {
    strata_broker::server::SystemClock
}
