//! Every API at every version we advertise produces an encodable response. kafka-protocol
//! refuses to encode a field the chosen version does not have, and the broker closes the
//! connection when that happens, so a handler that sets a too-new field would cut off every
//! client of an older version. This test walks the whole advertised table.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_broker::handlers::{dispatch, Outcome};
use strata_broker::{Broker, BrokerConfig};
use strata_protocol::{Request, RequestFrame, SUPPORTED_APIS};
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::{Clock, SimFs, SystemClock};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from_static(b"v")),
        timestamp_ms: SystemClock.now_ms(),
        ..Default::default()
    });
    b.build().unwrap()
}

fn request(key: ApiKey, v: i16) -> Vec<Request> {
    match key {
        ApiKey::Produce => {
            let data = produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch()));
            let topic = produce_request::TopicProduceData::default()
                .with_name(name("t"))
                .with_partition_data(vec![data]);
            vec![Request::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![topic]),
            )]
        }
        ApiKey::Fetch => (0..=1)
            .map(|isolation| {
                let p = fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20);
                let t = fetch_request::FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![p]);
                Request::Fetch(
                    FetchRequest::default()
                        .with_max_wait_ms(0)
                        .with_max_bytes(1 << 20)
                        .with_isolation_level(isolation)
                        .with_topics(vec![t]),
                )
            })
            .collect(),
        ApiKey::ListOffsets => [-1i64, -2, 0]
            .iter()
            .map(|&ts| {
                let p = list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts);
                let t = list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![p]);
                Request::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]))
            })
            .collect(),
        ApiKey::Metadata => {
            let all = if v == 0 { Some(vec![]) } else { None };
            let named = Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("t")))
            ]);
            let unknown = Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("nope")))
            ]);
            [all, named, unknown]
                .into_iter()
                .map(|topics| Request::Metadata(MetadataRequest::default().with_topics(topics)))
                .collect()
        }
        ApiKey::ApiVersions => vec![Request::ApiVersions(ApiVersionsRequest::default())],
        ApiKey::CreateTopics => {
            let ok = create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("c{v}")))
                .with_num_partitions(1)
                .with_replication_factor(1);
            let bad = create_topics_request::CreatableTopic::default()
                .with_name(name("t"))
                .with_num_partitions(1)
                .with_replication_factor(1);
            vec![Request::CreateTopics(
                CreateTopicsRequest::default().with_topics(vec![ok, bad]),
            )]
        }
        ApiKey::DeleteTopics => {
            let req = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(name(&format!("c{v}")))),
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(name("missing"))),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name("c2"), name("missing")])
            };
            vec![Request::DeleteTopics(req)]
        }
        ApiKey::InitProducerId => vec![
            Request::InitProducerId(InitProducerIdRequest::default()),
            Request::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx")))),
            ),
        ],
        ApiKey::DescribeConfigs => {
            let topic = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configuration_keys(None);
            let broker = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("1"))
                .with_configuration_keys(None);
            let missing = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("missing"));
            vec![Request::DescribeConfigs(
                DescribeConfigsRequest::default()
                    .with_include_synonyms(true)
                    .with_resources(vec![topic, broker, missing]),
            )]
        }
        ApiKey::CreatePartitions => {
            let grow = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("t"))
                .with_count(2 + v as i32);
            let shrink = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("t"))
                .with_count(1);
            vec![Request::CreatePartitions(
                CreatePartitionsRequest::default().with_topics(vec![grow, shrink]),
            )]
        }
        ApiKey::DescribeCluster => {
            vec![Request::DescribeCluster(DescribeClusterRequest::default())]
        }
        other => panic!("advertised API {other:?} has no case in this test"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_encodes_its_responses() {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        ..BrokerConfig::default()
    };
    let broker =
        Arc::new(Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("t", 1, Default::default(), false)
        .unwrap();
    broker.partition("t", 0).unwrap().append(&batch()).unwrap();
    let mut checked = 0;
    for api in SUPPORTED_APIS {
        for version in api.min..=api.max {
            for req in request(api.key, version) {
                let header = RequestHeader::default()
                    .with_request_api_key(api.key as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(9);
                let frame = RequestFrame {
                    api_key: api.key,
                    version,
                    header,
                    request: req,
                };
                match dispatch(&broker, frame, "127.0.0.1:1".parse().unwrap()).await {
                    Outcome::Respond(_) | Outcome::RespondParts(_) => checked += 1,
                    other => panic!("{:?} v{version}: {other:?}", api.key),
                }
            }
        }
    }
    assert!(checked > 100, "{checked} responses checked");
}
