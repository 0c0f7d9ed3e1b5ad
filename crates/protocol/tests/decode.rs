//! Request decoding: round trips of real request shapes, and the property that arbitrary
//! bytes never panic the decoder (allocation is bounded by the vendored crate's checks; the
//! fuzz target in fuzz/ explores the same entry point with coverage guidance).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use strata_protocol::{
    decode_inter_broker_request, decode_request, encode_request, ProtocolError, Request,
};

fn frame_body(
    header: &RequestHeader,
    key: ApiKey,
    body: &impl kafka_protocol::protocol::Encodable,
) -> Bytes {
    encode_request(header, key, body).unwrap().slice(4..)
}

fn header(key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")))
}

#[test]
fn metadata_round_trips_across_versions() {
    for version in 0..=12 {
        let topics = if version == 0 { Some(vec![]) } else { None };
        let req = MetadataRequest::default().with_topics(topics);
        let decoded = decode_request(frame_body(
            &header(ApiKey::Metadata, version),
            ApiKey::Metadata,
            &req,
        ))
        .unwrap();
        assert_eq!(decoded.header.correlation_id, 42);
        assert_eq!(
            decoded.request,
            Request::Metadata(req.clone()),
            "v{version}"
        );
    }
}

#[test]
fn produce_round_trips_with_records() {
    let data = PartitionProduceData::default()
        .with_index(3)
        .with_records(Some(Bytes::from_static(b"abc")));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![topic]);
    for version in [3, 7, 9, 12] {
        let decoded = decode_request(frame_body(
            &header(ApiKey::Produce, version),
            ApiKey::Produce,
            &req,
        ))
        .unwrap();
        assert_eq!(decoded.request, Request::Produce(req.clone()));
    }
}

#[test]
fn inter_broker_requests_are_decoded_only_by_the_inter_broker_decoder() {
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("t")))
            .with_verify_only(true),
    ]);
    let frame = frame_body(
        &header(ApiKey::AddPartitionsToTxn, 4),
        ApiKey::AddPartitionsToTxn,
        &verify,
    );
    // Clients never get the broker-to-broker form.
    assert!(matches!(
        decode_request(frame.clone()),
        Err(ProtocolError::UnsupportedVersion { .. })
    ));
    let decoded = decode_inter_broker_request(frame).unwrap();
    assert_eq!(decoded.request, Request::AddPartitionsToTxn(verify));
    // And the inter-broker listener serves nothing else.
    let client_form = frame_body(
        &header(ApiKey::AddPartitionsToTxn, 3),
        ApiKey::AddPartitionsToTxn,
        &AddPartitionsToTxnRequest::default(),
    );
    assert!(decode_inter_broker_request(client_form).is_err());
    let metadata = frame_body(
        &header(ApiKey::Metadata, 12),
        ApiKey::Metadata,
        &MetadataRequest::default(),
    );
    assert!(matches!(
        decode_inter_broker_request(metadata),
        Err(ProtocolError::UnknownApiKey(3))
    ));
    let markers = frame_body(
        &header(ApiKey::WriteTxnMarkers, 1),
        ApiKey::WriteTxnMarkers,
        &WriteTxnMarkersRequest::default(),
    );
    assert!(decode_inter_broker_request(markers).is_ok());
}

#[test]
fn unknown_keys_and_versions_are_errors_and_new_api_versions_is_answered() {
    let mut f = BytesMut::new();
    f.put_i16(9999);
    f.put_i16(0);
    f.put_i32(1);
    assert_eq!(
        decode_request(f.freeze()),
        Err(ProtocolError::UnknownApiKey(9999))
    );
    let req = MetadataRequest::default();
    let body = frame_body(&header(ApiKey::Metadata, 12), ApiKey::Metadata, &req);
    let mut bumped = body.to_vec();
    bumped[2..4].copy_from_slice(&99i16.to_be_bytes());
    assert!(matches!(
        decode_request(Bytes::from(bumped)),
        Err(ProtocolError::UnsupportedVersion { version: 99, .. })
    ));
    let av = ApiVersionsRequest::default();
    let mut body = frame_body(&header(ApiKey::ApiVersions, 3), ApiKey::ApiVersions, &av).to_vec();
    body[2..4].copy_from_slice(&7i16.to_be_bytes());
    assert_eq!(
        decode_request(Bytes::from(body)).unwrap().request,
        Request::ApiVersionsTooNew
    );
}

#[test]
fn absurd_array_length_is_rejected_without_allocating() {
    // Metadata v1: header then topics array length i32::MAX with no elements behind it.
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(1);
    f.put_i32(7);
    f.put_i16(-1); // null client id
    f.put_i32(i32::MAX);
    assert!(matches!(
        decode_request(f.freeze()),
        Err(ProtocolError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn random_bodies_never_panic(key in 0i16..80, version in -1i16..16, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut f = BytesMut::new();
        f.put_i16(key);
        f.put_i16(version);
        f.put_slice(&body);
        let _ = decode_request(f.freeze());
    }

    #[test]
    fn corrupted_valid_requests_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
        let data = PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from_static(b"0123456789")));
        let topic = TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("topic"))).with_partition_data(vec![data]);
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![topic]);
        let mut body = frame_body(&header(ApiKey::Produce, 9), ApiKey::Produce, &req).to_vec();
        for (at, byte) in flips {
            let n = body.len();
            body[at % n] = byte;
        }
        let _ = decode_request(Bytes::from(body));
    }
}
