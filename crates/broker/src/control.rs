//! A cluster member's control plane: the tasks that talk to the active controller, and the
//! controller itself when this node leads the metadata quorum.
//!
//! - Every member heartbeats the controller (`broker.heartbeat.interval.ms`); the controller
//!   ([`strata_controller::Controller`], run by the quorum leader) fences a silent one after
//!   `broker.session.timeout.ms`, moving its leaderships and ISR places, and unfences a
//!   fenced broker that heartbeats again.
//! - Every partition leader asks for ISR changes (AlterPartition): followers that stopped
//!   catching up for `replica.lag.time.max.ms` leave, followers that caught up join.
//! - SIGTERM runs a controlled shutdown first: leaderships move to other in-sync replicas and
//!   the node leaves the ISRs before it stops serving, so clients see only retriable errors.
//!
//! Requests travel on the quorum's controller listener ([`Quorum::call_leader`]) as JSON
//! [`ControllerRequest`]s; what the controller decides is committed through the quorum.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use strata_controller::{ControllerError, ControllerReply, ControllerRequest, IsrChangeOutcome};
use strata_quorum::{Quorum, QuorumError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::Broker;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes this member answer controller requests (they reach it when it leads the quorum)
/// and other brokers' inter-broker requests (`inter_broker`).
pub(crate) fn install(broker: &Arc<Broker>, quorum: &Arc<Quorum>) {
    let weak: Weak<Broker> = Arc::downgrade(broker);
    quorum.set_call_handler(Arc::new(move |body: Vec<u8>| {
        let weak = weak.clone();
        Box::pin(async move {
            let broker = weak.upgrade();
            if body.first() == Some(&crate::inter_broker::IDENTITY_CALL) {
                return match broker {
                    Some(broker) => crate::inter_broker::identity_answer(&broker, &body[1..]),
                    None => Vec::new(),
                };
            }
            if body.first() == Some(&crate::inter_broker::KAFKA_CALL) {
                return match broker {
                    Some(broker) => crate::inter_broker::serve(&broker, &body[1..]).await,
                    None => Vec::new(),
                };
            }
            let reply = match broker {
                Some(broker) => handle(&broker, &body).await,
                None => ControllerReply::Refused(ControllerError::NotController),
            };
            serde_json::to_vec(&reply).expect("replies serialize")
        })
    }));
}

/// Answers one request as the active controller.
async fn handle(broker: &Arc<Broker>, body: &[u8]) -> ControllerReply {
    let Some(quorum) = broker.quorum().cloned() else {
        return ControllerReply::Refused(ControllerError::NotController);
    };
    if !quorum.is_leader() {
        return ControllerReply::Refused(ControllerError::NotController);
    }
    let request: ControllerRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "undecodable controller request");
            return ControllerReply::Refused(ControllerError::NotController);
        }
    };
    let image = quorum.image();
    let now = broker.clock.now_ms();
    let decided = broker
        .controller
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .handle(&image, &request, now);
    let (records, reply) = match decided {
        Ok(d) => d,
        Err(e) => return ControllerReply::Refused(e),
    };
    if !records.is_empty() {
        match quorum.write(records).await {
            Ok(_) => {}
            Err(QuorumError::Rejected(r)) => {
                debug!(error = %r, "controller change refused on apply (a newer change won)");
                return ControllerReply::Refused(ControllerError::InvalidUpdateVersion {
                    got: -1,
                    current: -1,
                });
            }
            Err(e) => {
                warn!(error = %e, "controller could not commit its decision");
                return ControllerReply::Refused(ControllerError::NotController);
            }
        }
    }
    reply
}

/// Sends a request to the active controller.
pub(crate) async fn call(
    quorum: &Quorum,
    request: &ControllerRequest,
) -> Result<ControllerReply, QuorumError> {
    call_within(quorum, request, CALL_TIMEOUT).await
}

async fn call_within(
    quorum: &Quorum,
    request: &ControllerRequest,
    ttl: Duration,
) -> Result<ControllerReply, QuorumError> {
    let body = serde_json::to_vec(request).expect("requests serialize");
    let answer = tokio::time::timeout(ttl, quorum.call_leader(body, ttl))
        .await
        .map_err(|_| QuorumError::Unavailable("controller call timed out".into()))??;
    serde_json::from_slice(&answer)
        .map_err(|e| QuorumError::Unavailable(format!("undecodable controller reply: {e}")))
}

/// The active controller's clock: on the quorum leader, fences stale brokers and elects
/// leaders for leaderless partitions.
pub(crate) async fn controller_loop(
    broker: Arc<Broker>,
    quorum: Arc<Quorum>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut active = false;
    let mut last_tick = tokio::time::Instant::now();
    let mut last_rebalance_ms = broker.clock.now_ms();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // A node that was stopped (SIGSTOP, a long GC-like stall) heard no heartbeats meanwhile:
        // it starts its sessions over instead of fencing everyone it did not hear from.
        let stalled = last_tick.elapsed() > Duration::from_secs(2);
        last_tick = tokio::time::Instant::now();
        if !quorum.is_leader() || stalled {
            active = false;
            continue;
        }
        let image = quorum.image();
        let now = broker.clock.now_ms();
        let records = {
            let mut controller = broker.controller.lock().unwrap_or_else(|p| p.into_inner());
            if !active {
                info!(
                    node_id = broker.config.node_id,
                    "this node is now the active controller"
                );
                controller.activate(&image, now);
                active = true;
            }
            // The node running the controller is alive by definition.
            let _ = controller.heartbeat(
                &image,
                broker.config.node_id,
                broker.broker_epoch.load(Ordering::SeqCst),
                now,
            );
            let mut records = controller.tick(&image, now);
            // auto.leader.rebalance.enable: leadership goes back to preferred replicas.
            let interval = broker.config.leader_imbalance_check_interval_seconds as i64 * 1000;
            if records.is_empty()
                && broker.config.auto_leader_rebalance_enable
                && now - last_rebalance_ms >= interval
            {
                last_rebalance_ms = now;
                let (moves, _) = controller.elect(&image, true, None);
                if !moves.is_empty() {
                    info!(
                        partitions = moves.len(),
                        "moving leaderships back to preferred replicas"
                    );
                }
                records = moves;
            }
            records
        };
        if records.is_empty() {
            continue;
        }
        for r in &records {
            if let strata_cluster::MetadataRecord::FenceBroker { node_id, .. } = r {
                warn!(node_id, "fencing a broker that stopped heartbeating");
            }
        }
        if let Err(e) = quorum.write(records).await {
            debug!(error = %e, "controller decision not committed (retried next tick)");
        }
    }
}

/// Tells the controller this broker is alive, every `broker.heartbeat.interval.ms`.
pub(crate) async fn heartbeat_loop(
    broker: Arc<Broker>,
    quorum: Arc<Quorum>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        broker.config.broker_heartbeat_interval_ms.max(10),
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let request = ControllerRequest::Heartbeat {
            node_id: broker.config.node_id,
            broker_epoch: broker.broker_epoch.load(Ordering::SeqCst),
        };
        // Short: a heartbeat stuck on a controller that stopped answering must not outlive
        // the session it is meant to keep alive.
        let ttl = Duration::from_millis(
            (broker.config.broker_heartbeat_interval_ms * 2)
                .clamp(300, (broker.config.broker_session_timeout_ms / 3).max(300)),
        );
        match call_within(&quorum, &request, ttl).await {
            Ok(ControllerReply::Refused(e)) => debug!(error = %e, "heartbeat refused"),
            Ok(_) => {}
            Err(e) => debug!(error = %e, "heartbeat not delivered"),
        }
    }
}

/// On each partition this broker leads: asks the controller for the ISR changes the
/// replication rules call for. A request whose outcome is unknown (no answer, or refused
/// because the partition moved on) is sent again, unchanged, until it is answered or the
/// metadata shows a newer partition epoch; its pending addition keeps counting meanwhile
/// (`strata_controller::IsrChangeOutcome`).
pub(crate) async fn isr_loop(
    broker: Arc<Broker>,
    quorum: Arc<Quorum>,
    mut stop: watch::Receiver<bool>,
) {
    let lag = broker.config.replica_lag_time_max_ms as i64;
    let mut tick = tokio::time::interval(Duration::from_millis((lag as u64 / 4).clamp(100, 1000)));
    let mut unsettled: std::collections::HashMap<(String, i32), ControllerRequest> =
        std::collections::HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for p in broker.all_partitions() {
            let key = (p.topic.clone(), p.partition);
            // The image as it is now, not as it was when this pass began: the calls for the
            // partitions before this one may have taken seconds, and a request decided on a
            // stale partition epoch can never commit.
            let current = broker.image().topic(&p.topic).and_then(|t| {
                t.partitions
                    .get(&p.partition)
                    .map(|c| (t.topic_id, c.clone()))
            });
            let retry = match unsettled.remove(&key) {
                Some(r)
                    if matches!(&r, ControllerRequest::AlterPartition { partition_epoch, .. }
                        if current.as_ref().is_some_and(|(_, c)| c.partition_epoch == *partition_epoch))
                        && p.is_leader() =>
                {
                    Some(r)
                }
                Some(_) => {
                    // The partition moved on without it: this request can never commit (its
                    // partition epoch is gone). An addition it carried is settled as refused,
                    // or it would wait forever for an answer nobody will send, counting for
                    // the high watermark while the ISR stays below min.insync.replicas
                    // (found by `scripts/chaos`: a transaction's markers never committed).
                    p.isr_change_refused();
                    None
                }
                None => None,
            };
            let request = match retry {
                Some(request) => request,
                None => {
                    let Some(new_isr) = p.isr_change(lag) else {
                        continue;
                    };
                    let Some((topic_id, current)) = current else {
                        p.isr_change_refused();
                        continue;
                    };
                    ControllerRequest::AlterPartition {
                        node_id: broker.config.node_id,
                        broker_epoch: broker.broker_epoch.load(Ordering::SeqCst),
                        topic_id,
                        partition: p.partition,
                        leader_epoch: current.leader_epoch,
                        partition_epoch: current.partition_epoch,
                        new_isr,
                    }
                }
            };
            let ControllerRequest::AlterPartition {
                new_isr,
                partition_epoch,
                ..
            } = &request
            else {
                continue;
            };
            let reply = call(&quorum, &request).await;
            match strata_controller::isr_change_outcome(reply.as_ref().ok()) {
                IsrChangeOutcome::Committed => {
                    // Counted here or where the metadata delta applies it, whichever comes
                    // first (the other then sees no change).
                    let before = p.isr().0.len();
                    if new_isr.len() != before {
                        let counter = if new_isr.len() < before {
                            &broker.metrics.isr_shrinks
                        } else {
                            &broker.metrics.isr_expands
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    info!(topic = %p.topic, partition = p.partition, to = ?new_isr, "ISR changed");
                    p.isr_change_committed(new_isr, partition_epoch + 1);
                }
                IsrChangeOutcome::Refused => {
                    debug!(topic = %p.topic, partition = p.partition, reply = ?reply, "ISR change refused");
                    p.isr_change_refused();
                }
                IsrChangeOutcome::Unknown => {
                    debug!(topic = %p.topic, partition = p.partition, reply = ?reply, "ISR change not settled; asking again");
                    unsettled.insert(key, request);
                }
            }
        }
    }
}

/// Moves this broker's leaderships away (and it out of the ISRs) before it stops; gives up
/// after `limit` (the node then stops anyway and is fenced when its session expires).
pub(crate) async fn controlled_shutdown(
    broker: &Arc<Broker>,
    quorum: &Arc<Quorum>,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    // With no reachable controller (most of the quorum is down too) there is no one to hand
    // leaderships to: give up after a few tries instead of holding the stop for `limit`.
    let mut undelivered = 0;
    let request = ControllerRequest::ControlledShutdown {
        node_id: broker.config.node_id,
        broker_epoch: broker.broker_epoch.load(Ordering::SeqCst),
    };
    loop {
        match call_within(quorum, &request, Duration::from_secs(2)).await {
            Ok(ControllerReply::ShutdownProgress { still_leading }) => {
                // Apply what the controller decided before answering clients any further.
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.catch_up_with_quorum()).await;
                if still_leading == 0 {
                    info!("controlled shutdown: no partition led here any more");
                    return;
                }
                debug!(still_leading, "controlled shutdown: leaderships still here");
            }
            Ok(other) => {
                undelivered += 1;
                debug!(reply = ?other, "controlled shutdown refused");
            }
            Err(e) => {
                undelivered += 1;
                debug!(error = %e, "controlled shutdown not delivered");
            }
        }
        if undelivered >= 3 {
            warn!("controlled shutdown: no controller answered; stopping without it");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!("controlled shutdown did not finish in time; stopping anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
