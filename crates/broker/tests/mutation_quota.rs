//! KIP-599 through the request path: with a `controller_mutation_rate` quota, the
//! CreateTopics that crosses it is let through whole, the next one (v6+) is refused with
//! THROTTLING_QUOTA_EXCEEDED and a throttle time, and other entities are not affected.

use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use strata_broker::connection::ConnectionContext;
use strata_broker::handlers::{dispatch, Outcome};
use strata_broker::{Broker, BrokerConfig};
use strata_protocol::{Request, RequestFrame};
use strata_storage::{SimFs, SystemClock};

fn create(broker: &Arc<Broker>, client: &str, name: &str, partitions: i32) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)]);
    let frame = RequestFrame {
        api_key: ApiKey::CreateTopics,
        version: 7,
        header: RequestHeader::default()
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_string(client.into()))),
        request: Request::CreateTopics(req),
    };
    let context = ConnectionContext::client("127.0.0.1:1".parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(dispatch(broker, frame, &context));
    let Outcome::Respond(bytes) = out else {
        panic!("{out:?}")
    };
    // length, correlation id, then the v7 (flexible) response header's tagged fields
    let mut body = bytes.slice(4 + 4 + 1..);
    CreateTopicsResponse::decode(&mut body, 7).unwrap()
}

#[test]
fn a_mutation_rate_quota_refuses_creations_once_crossed() {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        ..BrokerConfig::default()
    };
    let broker =
        Arc::new(Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap());
    // 2 partitions per second for client "ops" (Kafka's 11 s window: 20 partitions cross it).
    broker
        .commit_client_quota(
            vec![("client-id".into(), Some("ops".into()))],
            "controller_mutation_rate",
            Some(2.0),
        )
        .unwrap();
    let first = create(&broker, "ops", "big", 30);
    assert_eq!(
        first.topics[0].error_code, 0,
        "the request that crosses it goes through"
    );
    let second = create(&broker, "ops", "more", 1);
    assert_eq!(second.topics[0].error_code, 89, "THROTTLING_QUOTA_EXCEEDED");
    assert!(second.throttle_time_ms > 0);
    assert!(broker.image().topic("more").is_none());
    let other = create(&broker, "someone-else", "theirs", 1);
    assert_eq!(
        other.topics[0].error_code, 0,
        "another client has its own budget"
    );
}
