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

fn group(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
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

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

/// A transactional id with an ongoing transaction on t-0 (pid, epoch), set up directly on
/// the coordinator so the EndTxn / TxnOffsetCommit cases reach their success paths.
fn open_txn(broker: &Broker, id: &str, offsets: bool) -> (i64, i16) {
    let now = SystemClock.now_ms();
    let (r, pending) = broker.txn_call(|c, alloc| c.init_producer_id(id, 60_000, now, alloc));
    assert!(broker.txn_finish_blocking(pending).0);
    let (pid, epoch) = r.unwrap();
    let mut partitions = vec![("t".to_string(), 0)];
    if offsets {
        broker.ensure_offsets_topic().unwrap();
        let p = broker.groups.coordinator().partition_for("g");
        partitions.push(("__consumer_offsets".to_string(), p));
    }
    let (r, pending) = broker.txn_call(|c, _| c.add_partitions(id, pid, epoch, &partitions, now));
    assert!(broker.txn_finish_blocking(pending).0);
    r.unwrap();
    (pid, epoch)
}

fn request(broker: &Broker, key: ApiKey, v: i16) -> Vec<Request> {
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
            Request::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id("tx")))
                    .with_transaction_timeout_ms(60_000),
            ),
        ],
        ApiKey::AddPartitionsToTxn => {
            let id = format!("add-partitions-v{v}");
            let (pid, epoch) = open_txn(broker, &id, false);
            let topics = |partitions: Vec<i32>| {
                vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name("t"))
                        .with_partitions(partitions),
                ]
            };
            [vec![0], vec![0, 7]]
                .into_iter()
                .map(|partitions| {
                    Request::AddPartitionsToTxn(
                        AddPartitionsToTxnRequest::default()
                            .with_v3_and_below_transactional_id(txn_id(&id))
                            .with_v3_and_below_producer_id(ProducerId(pid))
                            .with_v3_and_below_producer_epoch(epoch)
                            .with_v3_and_below_topics(topics(partitions)),
                    )
                })
                .collect()
        }
        ApiKey::AddOffsetsToTxn => {
            let id = format!("add-offsets-v{v}");
            let (pid, epoch) = open_txn(broker, &id, false);
            vec![Request::AddOffsetsToTxn(
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn_id(&id))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_group_id(group("g")),
            )]
        }
        ApiKey::TxnOffsetCommit => {
            let id = format!("txn-commit-v{v}");
            let (pid, epoch) = open_txn(broker, &id, true);
            let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_metadata(Some(StrBytes::from_static_str("m")));
            let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![p]);
            // Accepted, then fenced (an old epoch).
            [epoch, epoch - 1]
                .into_iter()
                .map(|e| {
                    Request::TxnOffsetCommit(
                        TxnOffsetCommitRequest::default()
                            .with_transactional_id(txn_id(&id))
                            .with_group_id(group("g"))
                            .with_producer_id(ProducerId(pid))
                            .with_producer_epoch(e)
                            .with_generation_id(-1)
                            .with_topics(vec![t.clone()]),
                    )
                })
                .collect()
        }
        ApiKey::EndTxn => {
            let id = format!("end-v{v}");
            let (pid, epoch) = open_txn(broker, &id, false);
            // Commit, its retry, then one from nowhere.
            let end = |id: &str, pid: i64| {
                Request::EndTxn(
                    EndTxnRequest::default()
                        .with_transactional_id(txn_id(id))
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_committed(true),
                )
            };
            vec![end(&id, pid), end(&id, pid), end("nobody", 1)]
        }
        ApiKey::DescribeTransactions => {
            open_txn(broker, "described", true);
            vec![Request::DescribeTransactions(
                DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![txn_id("described"), txn_id("missing")]),
            )]
        }
        ApiKey::DeleteRecords => {
            let t = delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(0),
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(9)
                        .with_offset(0),
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1 << 40),
                ]);
            vec![Request::DeleteRecords(
                DeleteRecordsRequest::default().with_topics(vec![t]),
            )]
        }
        ApiKey::OffsetForLeaderEpoch => [(0, -1), (0, 0), (5, -1), (-1, -1)]
            .iter()
            .map(|&(epoch, current)| {
                let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_leader_epoch(epoch)
                    .with_current_leader_epoch(current);
                let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        p,
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(9)
                            .with_leader_epoch(0),
                    ]);
                Request::OffsetForLeaderEpoch(
                    OffsetForLeaderEpochRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![t]),
                )
            })
            .collect(),
        ApiKey::DescribeLogDirs => vec![
            Request::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
            Request::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![0, 5]),
            ]))),
        ],
        ApiKey::DescribeQuorum => vec![
            Request::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(name("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0),
                    ]),
            ])),
            Request::DescribeQuorum(DescribeQuorumRequest::default()),
        ],
        ApiKey::AlterConfigs => {
            let res = |kind: i8, name: &str, key: &str, value: &str| {
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(StrBytes::from_string(name.to_string()))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.to_string()))
                        .with_value(Some(StrBytes::from_string(value.to_string())))])
            };
            vec![Request::AlterConfigs(
                AlterConfigsRequest::default().with_resources(vec![
                    res(2, "t", "retention.ms", "86400000"),
                    res(2, "t", "retention.ms", "nonsense"),
                    res(2, "missing", "retention.ms", "1"),
                    res(4, "", "log.retention.ms", "604800000"),
                    res(4, "", "node.id", "7"),
                    res(9, "x", "a", "b"),
                ]),
            )]
        }
        ApiKey::IncrementalAlterConfigs => {
            let res = |kind: i8, name: &str, op: i8, key: &str, value: &str| {
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(StrBytes::from_string(name.to_string()))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(key.to_string()))
                            .with_config_operation(op)
                            .with_value(Some(StrBytes::from_string(value.to_string()))),
                    ])
            };
            vec![Request::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    res(2, "t", 0, "retention.ms", "86400000"),
                    res(2, "t", 1, "retention.ms", ""),
                    res(2, "t", 2, "retention.ms", "1"),
                    res(4, "1", 0, "log.segment.bytes", "1048576"),
                    res(4, "1", 1, "log.segment.bytes", ""),
                ]),
            )]
        }
        ApiKey::WriteTxnMarkers => {
            let (pid, epoch) = open_txn(broker, &format!("markers-v{v}"), false);
            let topic = write_txn_markers_request::WritableTxnMarkerTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0, 9]);
            [false, true]
                .into_iter()
                .map(|commit| {
                    let marker = write_txn_markers_request::WritableTxnMarker::default()
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_transaction_result(commit)
                        .with_topics(vec![topic.clone()])
                        .with_coordinator_epoch(-1);
                    Request::WriteTxnMarkers(
                        WriteTxnMarkersRequest::default().with_markers(vec![marker]),
                    )
                })
                .collect()
        }
        ApiKey::AlterPartitionReassignments => vec![Request::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default().with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(1)])),
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(9)
                            .with_replicas(None),
                    ]),
            ]),
        )],
        ApiKey::ListPartitionReassignments => vec![
            Request::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
            Request::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default().with_topics(Some(vec![
                    list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0]),
                ])),
            ),
        ],
        ApiKey::ElectLeaders => vec![
            Request::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(None)),
            Request::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(Some(
                vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![0, 9]),
                ],
            ))),
        ],
        ApiKey::ListTransactions => vec![
            Request::ListTransactions(ListTransactionsRequest::default()),
            Request::ListTransactions(
                ListTransactionsRequest::default()
                    .with_state_filters(vec![
                        StrBytes::from_static_str("Ongoing"),
                        StrBytes::from_static_str("Bogus"),
                    ])
                    .with_duration_filter(if v >= 1 { 0 } else { -1 }),
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
        ApiKey::FindCoordinator => (0..=1i8)
            .map(|key_type| {
                let r = FindCoordinatorRequest::default().with_key_type(key_type);
                Request::FindCoordinator(if v >= 4 {
                    r.with_coordinator_keys(vec![
                        StrBytes::from_static_str("g"),
                        StrBytes::default(),
                    ])
                } else {
                    r.with_key(StrBytes::from_static_str("g"))
                })
            })
            .collect(),
        ApiKey::JoinGroup => {
            let protocol = join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(&[
                    0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0,
                ]));
            let req = |instance: Option<&str>| {
                // A pending MEMBER_ID_REQUIRED member holds a rebalance until it joins or
                // expires: static members get a group of their own.
                let id = match instance {
                    Some(_) => format!("static{v}"),
                    None => format!("join{v}"),
                };
                JoinGroupRequest::default()
                    .with_group_id(group(&id))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_group_instance_id(instance.map(|i| StrBytes::from_string(i.to_string())))
                    .with_protocols(vec![protocol.clone()])
            };
            let mut out = vec![Request::JoinGroup(req(None))];
            if v >= 5 {
                // Static members join without the member-id round trip: a full response.
                out.push(Request::JoinGroup(req(Some("i"))));
                // The same instance again: the KIP-345 no-rebalance path.
                out.push(Request::JoinGroup(req(Some("i"))));
            }
            // Bad session timeout.
            out.push(Request::JoinGroup(req(None).with_session_timeout_ms(1)));
            out
        }
        ApiKey::SyncGroup => vec![Request::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(group("static5"))
                .with_member_id(StrBytes::from_static_str("nobody"))
                .with_generation_id(1),
        )],
        ApiKey::Heartbeat => vec![Request::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group("static5"))
                .with_member_id(StrBytes::from_static_str("nobody"))
                .with_generation_id(1),
        )],
        ApiKey::LeaveGroup => {
            let r = LeaveGroupRequest::default().with_group_id(group("static5"));
            vec![Request::LeaveGroup(if v >= 3 {
                r.with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_static_str("nobody"))])
            } else {
                r.with_member_id(StrBytes::from_static_str("nobody"))
            })]
        }
        ApiKey::OffsetCommit => {
            let p = |i: i32| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(i)
                    .with_committed_offset(1)
                    .with_committed_metadata(Some(StrBytes::from_static_str("m")))
            };
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![p(0), p(7)]);
            vec![
                Request::OffsetCommit(
                    OffsetCommitRequest::default()
                        .with_group_id(group("simple"))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![t.clone()]),
                ),
                Request::OffsetCommit(
                    OffsetCommitRequest::default()
                        .with_group_id(group("missing"))
                        .with_generation_id_or_member_epoch(3)
                        .with_topics(vec![t]),
                ),
            ]
        }
        ApiKey::OffsetFetch => {
            if v >= 8 {
                let all = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("simple"))
                    .with_topics(None);
                let some = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("missing"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0]),
                    ]));
                vec![Request::OffsetFetch(
                    OffsetFetchRequest::default().with_groups(vec![all, some]),
                )]
            } else {
                let topics = Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0, 1]),
                ]);
                let mut out = vec![Request::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(group("simple"))
                        .with_topics(topics),
                )];
                if v >= 2 {
                    out.push(Request::OffsetFetch(
                        OffsetFetchRequest::default()
                            .with_group_id(group("simple"))
                            .with_topics(None),
                    ));
                }
                out
            }
        }
        ApiKey::DescribeGroups => vec![Request::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![group("static5"), group("missing")]),
        )],
        ApiKey::ListGroups => vec![
            Request::ListGroups(ListGroupsRequest::default()),
            Request::ListGroups(if v >= 4 {
                ListGroupsRequest::default()
                    .with_states_filter(vec![StrBytes::from_static_str("stable")])
            } else {
                ListGroupsRequest::default()
            }),
        ],
        ApiKey::DeleteGroups => vec![Request::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![
                group("missing"),
                group("static5"),
                group(&format!("del{v}")),
            ]),
        )],
        ApiKey::OffsetDelete => vec![Request::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(group("simple"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        )],
        ApiKey::ConsumerGroupHeartbeat => vec![
            Request::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group(&format!("kip848-{v}")))
                    .with_member_id(StrBytes::from_string(format!("member-{v}")))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(10_000)
                    .with_subscribed_topic_names(Some(vec![name("t")])),
            ),
            Request::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group("static5"))
                    .with_member_id(StrBytes::from_static_str("x"))
                    .with_member_epoch(3),
            ),
        ],
        ApiKey::ConsumerGroupDescribe => vec![Request::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![group("kip848-0"), group("missing")]),
        )],
        ApiKey::DescribeProducers => vec![Request::DescribeProducers(
            DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 9]),
            ]),
        )],
        // On a PLAINTEXT connection both are answered ILLEGAL_SASL_STATE.
        ApiKey::SaslHandshake => vec![Request::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )],
        ApiKey::SaslAuthenticate => vec![Request::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b")),
        )],
        ApiKey::AlterUserScramCredentials => vec![Request::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![
                    alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_static_str("alice"))
                        .with_mechanism(1)
                        .with_iterations(4096)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from(vec![7u8; 32])),
                ])
                .with_deletions(vec![
                    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_static_str("nobody"))
                        .with_mechanism(2),
                ]),
        )],
        ApiKey::DescribeUserScramCredentials => vec![
            Request::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default()),
            Request::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                    describe_user_scram_credentials_request::UserName::default()
                        .with_name(StrBytes::from_static_str("alice")),
                    describe_user_scram_credentials_request::UserName::default()
                        .with_name(StrBytes::from_static_str("nobody")),
                ])),
            ),
        ],
        // Without an authorizer these answer SECURITY_DISABLED.
        ApiKey::CreateAcls => vec![Request::CreateAcls(CreateAclsRequest::default().with_creations(
            vec![create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_resource_pattern_type(3)
                .with_principal(StrBytes::from_static_str("User:a"))
                .with_host(StrBytes::from_static_str("*"))
                .with_operation(3)
                .with_permission_type(3)],
        ))],
        ApiKey::DescribeAcls => vec![Request::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        )],
        ApiKey::DeleteAcls => vec![Request::DeleteAcls(DeleteAclsRequest::default().with_filters(
            vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)],
        ))],
        ApiKey::DescribeClientQuotas => vec![Request::DescribeClientQuotas(
            DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(StrBytes::from_static_str("user"))
                    .with_match_type(2),
            ]),
        )],
        ApiKey::AlterClientQuotas => vec![Request::AlterClientQuotas(
            AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(StrBytes::from_static_str("user"))
                        .with_entity_name(Some(StrBytes::from_static_str("alice")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(StrBytes::from_static_str("producer_byte_rate"))
                        .with_value(1024.0)]),
            ]),
        )],
        other => panic!("advertised API {other:?} has no case in this test"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_encodes_its_responses() {
    walk_every_version(BrokerConfig::default()).await;
}

/// The same walk with an authorizer and no ACLs: every request is denied, so every
/// authorization error answer is encoded at every version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_encodes_its_authorization_errors() {
    walk_every_version(BrokerConfig {
        authorizer_class_name: "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        ..BrokerConfig::default()
    })
    .await;
}

async fn walk_every_version(base: BrokerConfig) {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        group_initial_rebalance_delay_ms: 0,
        offsets_topic_num_partitions: 3,
        ..base
    };
    let broker =
        Arc::new(Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    broker.partition("t", 0).unwrap().append(&batch()).unwrap();
    let mut checked = 0;
    for api in SUPPORTED_APIS {
        for version in api.min..=api.max {
            for req in request(&broker, api.key, version) {
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
                match dispatch(
                    &broker,
                    frame,
                    &strata_broker::connection::ConnectionContext::client(
                        "127.0.0.1:1".parse().unwrap(),
                    ),
                )
                .await
                {
                    Outcome::Respond(_) | Outcome::RespondParts(_) => checked += 1,
                    other => panic!("{:?} v{version}: {other:?}", api.key),
                }
            }
        }
    }
    assert!(checked > 100, "{checked} responses checked");
}
