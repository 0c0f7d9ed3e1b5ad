//! Strata's streaming SQL engine and ksqlDB's REST API. The language (parsing, types,
//! evaluation, formats, planning) is `strata-sql`'s, pure; this crate runs it: statements
//! against the catalog and the log ([`engine`]), persistent and push queries ([`run`]),
//! HTTP ([`rest`]). It reaches the log only through the Kafka protocol ([`log`]), as any
//! client does, so it knows nothing of the broker's internals and runs the same against
//! one node or a cluster.

pub mod auth;
pub mod engine;
pub mod groups;
pub mod join_rows;
pub mod join_sync;
pub mod log;
pub mod members;
pub mod rest;
pub mod run;
pub mod store;

use std::sync::Arc;

pub use engine::Engine;

/// Starts the engine against the brokers at `bootstrap` (waiting until they answer) and
/// serves the REST API on `listener`. Runs until the returned future is dropped.
/// `state`: where aggregations keep their local state stores ([`store`]; no directory
/// keeps state in memory only, restored from the changelogs) and how many groups each
/// task caches in memory ([`groups`]). `cluster_addr`: this node is one of a
/// cluster's, whose engines share out the persistent queries ([`members`]) and reach this
/// one there. `auth`: requests must carry credentials the broker takes ([`auth`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    bootstrap: String,
    state: run::StateOptions,
    cluster_addr: Option<String>,
    auth: Option<auth::BasicAuth>,
) {
    let clustered = cluster_addr.is_some();
    let engine = loop {
        match Engine::start_in(&bootstrap, state.clone(), cluster_addr.clone(), clustered).await {
            Ok(e) => break e,
            Err(e) => {
                tracing::debug!(error = %e, "SQL engine: waiting for the broker");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "SQL engine serving ksqlDB's REST API"
    );
    rest::Server::with_auth(Arc::clone(&engine), auth)
        .serve(listener)
        .await;
}
