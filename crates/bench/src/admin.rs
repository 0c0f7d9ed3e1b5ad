//! Topic creation and cleanup through librdkafka's admin client.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub const PREFIX: &str = "strata-bench-";

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")
}

fn client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("admin client")
}

static REPLICATION_FACTOR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);

/// Replicas of every topic created from now on.
pub fn set_replication_factor(rf: i32) {
    REPLICATION_FACTOR.store(rf.max(1), std::sync::atomic::Ordering::SeqCst);
}

/// Creates a uniquely named topic and returns its name.
pub fn create_topic(bootstrap: &str, kind: &str, partitions: i32) -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        % 1_000_000_000;
    let name = format!("{PREFIX}{kind}-{nanos}");
    let admin = client(bootstrap)?;
    let rf = REPLICATION_FACTOR.load(std::sync::atomic::Ordering::SeqCst);
    let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(rf));
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(60)))
        .request_timeout(Some(Duration::from_secs(120)));
    let results = runtime()?.block_on(admin.create_topics([&topic], &opts))?;
    for r in results {
        r.map_err(|(t, e)| anyhow!("creating {t}: {e}"))?;
    }
    wait_for_leaders(bootstrap, &name, partitions)?;
    Ok(name)
}

/// Waits until metadata shows every partition of `topic` with a leader, so a broker that
/// brings partitions online after answering CreateTopics (Kafka) is measured from the same
/// point as one that answers once they are (Strata).
fn wait_for_leaders(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        let ready = md.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
        });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow!("{topic}: partitions without a leader after 180 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes every topic this tool created.
pub fn cleanup(bootstrap: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    let ours: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = ours.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(120)));
    runtime()?.block_on(client(bootstrap)?.delete_topics(&names, &opts))?;
    Ok(())
}
