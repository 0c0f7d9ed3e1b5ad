//! Broker configuration: a plain struct with Kafka-like defaults and `validate()`. In a TOML
//! file each field may be written as its snake_case name or, quoted, as Kafka's property
//! name (`"num.partitions" = 3`). Only the binary reads files and flags; it hands the
//! result here.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Deserialize;

use crate::listeners::{self, ListenerSettings, Listeners};
use strata_storage::{LogConfig, TimestampType};

/// The name a broker's HTTP admin listener is registered under among its endpoints. No
/// Kafka listener may take it (`listeners` refuses it), and no Kafka client is ever given
/// it: clients are answered with the endpoints of the listener they came in on.
pub const HTTP_ENDPOINT: &str = "STRATA_ADMIN_HTTP";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `node.id`.
    #[serde(alias = "node.id")]
    pub node_id: i32,
    /// `broker.rack`: reported in Metadata and DescribeCluster (rack-aware placement and
    /// KIP-392 follower fetching use it).
    #[serde(alias = "broker.rack")]
    pub broker_rack: Option<String>,
    /// This node's HTTP admin listener as other nodes reach it (`HOST:PORT`), registered
    /// with the broker under [`HTTP_ENDPOINT`] so a node's admin API can ask its peers'
    /// (cluster-wide statistics). Set by `strata serve`, not a config file key.
    #[serde(skip)]
    pub http_advertised: Option<(String, u16)>,
    /// Where partitions and the metadata log live.
    pub data_dir: PathBuf,
    /// `HOST:PORT` to bind.
    pub listen: String,
    /// `HOST:PORT` clients are told to connect to (Metadata); defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// `listeners`: `NAME://HOST:PORT,…`, several listeners each with a security protocol
    /// (see [`crate::listeners`]). Unset: one PLAINTEXT listener on `listen`.
    pub listeners: Option<String>,
    /// `advertised.listeners`: what clients are told per listener (defaults to `listeners`).
    #[serde(alias = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    /// `listener.security.protocol.map`: `NAME:PROTOCOL,…` (default: each protocol's name
    /// maps to itself).
    #[serde(alias = "listener.security.protocol.map")]
    pub listener_security_protocol_map: Option<String>,
    /// `inter.broker.listener.name`: the listener other brokers reach this one on (default
    /// `PLAINTEXT`, else the first listener).
    #[serde(alias = "inter.broker.listener.name")]
    pub inter_broker_listener_name: Option<String>,
    /// `controller.listener.names` (default `CONTROLLER`): a listener of this name in
    /// `listeners` is the controller listener.
    #[serde(alias = "controller.listener.names")]
    pub controller_listener_names: Option<String>,
    /// `ssl.keystore.type`: `PEM` (the default here; Kafka's is JKS, and a JKS or PKCS12
    /// file is recognized by its content when the type is left at PEM), `PKCS12` or `JKS`.
    #[serde(alias = "ssl.keystore.type")]
    pub ssl_keystore_type: String,
    /// `ssl.keystore.location`: a PEM file holding the certificate chain and private key.
    #[serde(alias = "ssl.keystore.location")]
    pub ssl_keystore_location: Option<PathBuf>,
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`: the same, as PEM text.
    #[serde(alias = "ssl.keystore.certificate.chain")]
    pub ssl_keystore_certificate_chain: Option<String>,
    #[serde(alias = "ssl.keystore.key")]
    pub ssl_keystore_key: Option<String>,
    /// `ssl.keystore.password`: a PKCS12 or JKS keystore's password.
    #[serde(alias = "ssl.keystore.password")]
    pub ssl_keystore_password: Option<String>,
    /// `ssl.truststore.password`: a PKCS12 truststore's password (a JKS one's is optional:
    /// with it, the file's integrity is checked).
    #[serde(alias = "ssl.truststore.password")]
    pub ssl_truststore_password: Option<String>,
    /// `ssl.key.password`: the password of an encrypted PKCS#8 private key (`-----BEGIN
    /// ENCRYPTED PRIVATE KEY-----`, PBES2 as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it).
    #[serde(alias = "ssl.key.password")]
    pub ssl_key_password: Option<String>,
    /// `ssl.truststore.type`: `PEM`, `PKCS12` or `JKS` (recognized by content as above).
    #[serde(alias = "ssl.truststore.type")]
    pub ssl_truststore_type: String,
    /// `ssl.truststore.location`: PEM file of the CAs client certificates are checked
    /// against; `ssl.truststore.certificates`: the same as PEM text.
    #[serde(alias = "ssl.truststore.location")]
    pub ssl_truststore_location: Option<PathBuf>,
    #[serde(alias = "ssl.truststore.certificates")]
    pub ssl_truststore_certificates: Option<String>,
    /// `ssl.client.auth`: `none`, `requested` or `required` (mTLS).
    #[serde(alias = "ssl.client.auth")]
    pub ssl_client_auth: String,
    /// `ssl.enabled.protocols`: `TLSv1.2`, `TLSv1.3` or both.
    #[serde(alias = "ssl.enabled.protocols")]
    pub ssl_enabled_protocols: String,
    /// `ssl.principal.mapping.rules`: how a client certificate's subject becomes a user
    /// name: Kafka's `RULE:pattern/replacement/[LU]` list, `DEFAULT` (the whole
    /// distinguished name, RFC 2253) as the last resort.
    #[serde(alias = "ssl.principal.mapping.rules")]
    pub ssl_principal_mapping_rules: String,
    /// `sasl.enabled.mechanisms`: what SASL listeners offer, comma-separated: `PLAIN`,
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512` (Kafka's default, GSSAPI, is not offered).
    #[serde(alias = "sasl.enabled.mechanisms")]
    pub sasl_enabled_mechanisms: String,
    /// `sasl.oauthbearer.jwks.endpoint.url`: the JSON Web Key Set OAUTHBEARER tokens are
    /// checked against (`https://`, `http://` or `file://`).
    #[serde(alias = "sasl.oauthbearer.jwks.endpoint.url")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often an HTTP(S) key set is fetched
    /// again (an unknown key id also asks for a fetch at once).
    #[serde(alias = "sasl.oauthbearer.jwks.endpoint.refresh.ms")]
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: u64,
    /// `sasl.oauthbearer.expected.audience`: comma-separated; a token must name one in `aud`.
    #[serde(alias = "sasl.oauthbearer.expected.audience")]
    pub sasl_oauthbearer_expected_audience: String,
    /// `sasl.oauthbearer.expected.issuer`: a token's `iss` must be this.
    #[serde(alias = "sasl.oauthbearer.expected.issuer")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim naming the principal.
    #[serde(alias = "sasl.oauthbearer.sub.claim.name")]
    pub sasl_oauthbearer_sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds`: tolerance for `exp`, `nbf` and `iat`.
    #[serde(alias = "sasl.oauthbearer.clock.skew.seconds")]
    pub sasl_oauthbearer_clock_skew_seconds: i64,
    /// `sasl.mechanism.inter.broker.protocol`: how this broker authenticates to the others'
    /// inter-broker listener when it uses SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512).
    #[serde(alias = "sasl.mechanism.inter.broker.protocol")]
    pub sasl_mechanism_inter_broker_protocol: String,
    /// `sasl.jaas.config`: this broker's own credentials for that, in Kafka's JAAS form
    /// (`org.apache.kafka.common.security.scram.ScramLoginModule required username="broker"
    /// password="…";`).
    #[serde(alias = "sasl.jaas.config")]
    pub sasl_jaas_config: Option<String>,
    /// `sasl.mechanism.controller.protocol`: how this node authenticates to the other
    /// quorum members' controller listener when it uses SASL (PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512; Kafka's default, GSSAPI, is not offered, so PLAIN is ours).
    #[serde(alias = "sasl.mechanism.controller.protocol")]
    pub sasl_mechanism_controller_protocol: String,
    /// Kafka's per-listener settings, `listener.name.<listener>.<setting>` (listener names
    /// in lower case): the JAAS lines `listener.name.<l>.sasl.jaas.config` and
    /// `listener.name.<l>.<mechanism>.sasl.jaas.config`. Filled by [`BrokerConfig::from_toml`].
    #[serde(skip)]
    pub listener_overrides: std::collections::BTreeMap<String, String>,
    /// `sasl.server.max.receive.size`: the largest frame a connection may send before it has
    /// authenticated (CVE-2022-34917: an unauthenticated client must not make the broker
    /// allocate a large frame).
    #[serde(alias = "sasl.server.max.receive.size")]
    pub sasl_server_max_receive_size: usize,
    /// `connection.failed.authentication.delay.ms`: a failed authentication is answered
    /// (and its connection closed) this much later, to slow down password guessing.
    #[serde(alias = "connection.failed.authentication.delay.ms")]
    pub connection_failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (KIP-368): a SASL session lasts at most this long before
    /// the client must re-authenticate on the same connection (0: sessions never expire).
    #[serde(alias = "connections.max.reauth.ms")]
    pub connections_max_reauth_ms: u64,
    /// `quota.window.num`: samples a client quota's rate is measured over.
    #[serde(alias = "quota.window.num")]
    pub quota_window_num: u32,
    /// `quota.window.size.seconds`: the length of one sample.
    #[serde(alias = "quota.window.size.seconds")]
    pub quota_window_size_seconds: u64,
    /// `authorizer.class.name`: Kafka's standard authorizer class names
    /// (`org.apache.kafka.metadata.authorizer.StandardAuthorizer`, and the older
    /// `kafka.security.authorizer.AclAuthorizer`) turn ACL enforcement on; empty: off.
    #[serde(alias = "authorizer.class.name")]
    pub authorizer_class_name: String,
    /// `super.users`: principals allowed everything, `;`-separated (`User:admin;User:ops`).
    #[serde(alias = "super.users")]
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found`: with an authorizer, whether a resource without any
    /// ACL is open to everyone (Kafka's default: no).
    #[serde(alias = "allow.everyone.if.no.acl.found")]
    pub allow_everyone_if_no_acl_found: bool,
    /// `controller.quorum.voters` (`1@host:port,2@host:port,…`): the metadata quorum's
    /// voters and their controller listeners. Unset: a standalone node whose metadata log is
    /// local (no quorum).
    #[serde(alias = "controller.quorum.voters")]
    pub controller_quorum_voters: Option<String>,
    /// `HOST:PORT` the controller listener binds (raft between quorum members and writes
    /// forwarded to the leader); defaults to this node's entry in the voters.
    #[serde(alias = "controller.listener")]
    pub controller_listen: Option<String>,
    /// `process.roles`: "broker,controller" (a quorum voter that also serves clients, the
    /// default with a quorum) or "broker" (serves clients and follows the quorum).
    #[serde(alias = "process.roles")]
    pub process_roles: String,
    /// `broker.heartbeat.interval.ms`: how often a cluster member tells the controller it is
    /// alive.
    #[serde(alias = "broker.heartbeat.interval.ms")]
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced (its leaderships
    /// move, it leaves the ISRs).
    #[serde(alias = "broker.session.timeout.ms")]
    pub broker_session_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up with its leader for this
    /// long leaves the ISR.
    #[serde(alias = "replica.lag.time.max.ms")]
    pub replica_lag_time_max_ms: u64,
    /// `offsets.topic.replication.factor`: replicas of `__consumer_offsets` on a cluster (at
    /// most the live brokers when it is created).
    #[serde(alias = "offsets.topic.replication.factor")]
    pub offsets_topic_replication_factor: i16,
    /// `auto.leader.rebalance.enable`: the controller moves leaderships back to each
    /// partition's preferred (first) replica once it is in sync again.
    #[serde(alias = "auto.leader.rebalance.enable")]
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often it looks.
    #[serde(alias = "leader.imbalance.check.interval.seconds")]
    pub leader_imbalance_check_interval_seconds: u64,
    /// `socket.request.max.bytes`: largest request frame accepted.
    #[serde(alias = "socket.request.max.bytes")]
    pub socket_request_max_bytes: usize,
    /// `max.connections`: connections served at once; more are refused, except on the
    /// inter-broker listener (KIP-402: brokers can always reach each other).
    #[serde(alias = "max.connections")]
    pub connections_max: usize,
    /// `max.connections.per.ip`: connections one address may hold at once (KIP-402).
    #[serde(alias = "max.connections.per.ip")]
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `IP:COUNT,IP:COUNT` exceptions to it.
    #[serde(alias = "max.connections.per.ip.overrides")]
    pub max_connections_per_ip_overrides: String,
    /// `queued.max.request.bytes`: memory all connections together may hold in requests
    /// being received or handled (Kafka's memory pool; its default, -1, is unbounded). A
    /// connection that needs more waits, reading nothing, until requests finish.
    #[serde(alias = "queued.max.request.bytes")]
    pub queued_max_request_bytes: usize,
    /// `connections.max.idle.ms`: a connection that sends nothing for this long is closed.
    #[serde(alias = "connections.max.idle.ms")]
    pub connections_max_idle_ms: u64,
    /// Requests read ahead on one connection while earlier ones are still being answered.
    pub connection_in_flight_max: usize,
    /// `fetch.max.bytes`: a fetch response carries at most this many record bytes (beyond
    /// the first batch, KIP-74), whatever the request asks.
    #[serde(alias = "fetch.max.bytes")]
    pub fetch_max_bytes: usize,
    /// Fetch `max_wait_ms` is capped at this.
    pub fetch_max_wait_ms_max: i32,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics with -1.
    #[serde(alias = "num.partitions")]
    pub num_partitions: i32,
    /// `default.replication.factor`: replicas of topics created without one. -1 (the
    /// default): 1 on a standalone node, 3 on a cluster (fewer while fewer brokers are live).
    #[serde(alias = "default.replication.factor")]
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    #[serde(alias = "auto.create.topics.enable")]
    pub auto_create_topics_enable: bool,
    /// `log.segment.bytes`.
    #[serde(alias = "log.segment.bytes")]
    pub log_segment_bytes: u64,
    /// `log.roll.ms`.
    #[serde(alias = "log.roll.ms")]
    pub log_roll_ms: i64,
    /// `log.retention.ms`.
    #[serde(alias = "log.retention.ms")]
    pub log_retention_ms: i64,
    /// `log.retention.bytes`.
    #[serde(alias = "log.retention.bytes")]
    pub log_retention_bytes: i64,
    /// `message.max.bytes`.
    #[serde(alias = "message.max.bytes")]
    pub message_max_bytes: usize,
    /// `log.message.timestamp.type`: "CreateTime" or "LogAppendTime".
    #[serde(alias = "log.message.timestamp.type")]
    pub log_message_timestamp_type: String,
    /// `log.flush.interval.messages`; 1 (default) = fsync before every acknowledgement.
    #[serde(alias = "log.flush.interval.messages")]
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`.
    #[serde(alias = "log.flush.interval.ms")]
    pub log_flush_interval_ms: i64,
    /// `log.retention.check.interval.ms`.
    #[serde(alias = "log.retention.check.interval.ms")]
    pub log_retention_check_interval_ms: u64,
    /// `log.cleanup.policy`: "delete", "compact" or "compact,delete".
    #[serde(alias = "log.cleanup.policy")]
    pub log_cleanup_policy: String,
    /// `compression.type`: "producer" (keep the producer's codec) or a codec every stored
    /// batch is re-encoded with (uncompressed, gzip, snappy, lz4, zstd).
    #[serde(alias = "compression.type")]
    pub compression_type: String,
    /// `log.cleaner.enable`.
    #[serde(alias = "log.cleaner.enable")]
    pub log_cleaner_enable: bool,
    /// `log.cleaner.delete.retention.ms`: how long tombstones stay once cleanable.
    #[serde(alias = "log.cleaner.delete.retention.ms")]
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms` / `log.cleaner.max.compaction.lag.ms`.
    #[serde(alias = "log.cleaner.min.compaction.lag.ms")]
    pub log_cleaner_min_compaction_lag_ms: i64,
    #[serde(alias = "log.cleaner.max.compaction.lag.ms")]
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// `remote.log.storage.system.enable`: topics may enable tiered storage
    /// (`remote.storage.enable`), their sealed segments copied to `remote.log.storage.url`.
    #[serde(alias = "remote.log.storage.system.enable")]
    pub remote_log_storage_system_enable: bool,
    /// `remote.log.storage.url`: `file:///some/dir` or `s3://bucket/prefix`.
    #[serde(alias = "remote.log.storage.url")]
    pub remote_log_storage_url: Option<String>,
    /// `remote.log.storage.s3.endpoint` / `remote.log.storage.s3.region`: an
    /// S3-compatible store (credentials from the usual AWS environment variables).
    #[serde(alias = "remote.log.storage.s3.endpoint")]
    pub remote_log_storage_s3_endpoint: Option<String>,
    #[serde(alias = "remote.log.storage.s3.region")]
    pub remote_log_storage_s3_region: Option<String>,
    /// `remote.log.manager.task.interval.ms`: how often tiered storage looks for segments
    /// to copy and copies to delete (Kafka's default, 30 s).
    #[serde(alias = "remote.log.manager.task.interval.ms")]
    pub remote_log_manager_task_interval_ms: u64,
    /// `remote.log.manager.copy.max.bytes.per.second` / `…fetch.max.bytes.per.second`
    /// (KIP-956): the bandwidth copies and remote reads may take (unlimited by default).
    #[serde(alias = "remote.log.manager.copy.max.bytes.per.second")]
    pub remote_log_manager_copy_max_bytes_per_second: u64,
    #[serde(alias = "remote.log.manager.fetch.max.bytes.per.second")]
    pub remote_log_manager_fetch_max_bytes_per_second: u64,
    /// `remote.log.reader.threads`: the threads of the pool remote reads run on (apart
    /// from the request handling and local reads).
    #[serde(alias = "remote.log.reader.threads")]
    pub remote_log_reader_threads: usize,
    /// `remote.log.reader.max.pending.tasks`: remote reads queued or running at once;
    /// past that a fetch gets no remote data this time (the client asks again).
    #[serde(alias = "remote.log.reader.max.pending.tasks")]
    pub remote_log_reader_max_pending_tasks: usize,
    /// `remote.fetch.max.wait.ms`: how long a fetch waits for its remote reads before
    /// answering without them (the read goes on and fills the cache for the next fetch).
    #[serde(alias = "remote.fetch.max.wait.ms")]
    pub remote_fetch_max_wait_ms: u64,
    /// `remote.log.index.file.cache.total.size.bytes`: memory for remote copies' indexes.
    #[serde(alias = "remote.log.index.file.cache.total.size.bytes")]
    pub remote_log_index_file_cache_total_size_bytes: u64,
    /// `remote.log.reader.chunk.bytes`, `remote.log.reader.chunk.cache.size.bytes`,
    /// `remote.log.reader.prefetch.chunks`: remote logs are read in chunks of this size,
    /// kept in a cache of this many bytes, and this many read ahead for a sequential reader.
    #[serde(alias = "remote.log.reader.chunk.bytes")]
    pub remote_log_reader_chunk_bytes: u64,
    #[serde(alias = "remote.log.reader.chunk.cache.size.bytes")]
    pub remote_log_reader_chunk_cache_size_bytes: u64,
    #[serde(alias = "remote.log.reader.prefetch.chunks")]
    pub remote_log_reader_prefetch_chunks: u64,
    /// `remote.log.orphan.sweep.interval.ms`: how often the store is listed for objects no
    /// copy in the metadata names (left by a crash during a topic's deletion, or by a
    /// deposed leader still writing), first at start; `remote.log.orphan.min.age.ms`: how
    /// old such objects must be before they are deleted (a node's metadata may lag).
    #[serde(alias = "remote.log.orphan.sweep.interval.ms")]
    pub remote_log_orphan_sweep_interval_ms: u64,
    #[serde(alias = "remote.log.orphan.min.age.ms")]
    pub remote_log_orphan_min_age_ms: i64,
    /// `metrics.partition.level`: per-partition series in `GET /metrics` (log sizes and
    /// offsets, consumer lag); off bounds the series to per topic.
    #[serde(alias = "metrics.partition.level")]
    pub metrics_partition_level: bool,
    /// `log.cleaner.min.cleanable.ratio`: the dirty ratio a log must reach to be cleaned.
    #[serde(alias = "log.cleaner.min.cleanable.ratio")]
    pub log_cleaner_min_cleanable_ratio: f64,
    /// `log.cleaner.dedupe.buffer.size`: memory for one pass's key map.
    #[serde(alias = "log.cleaner.dedupe.buffer.size")]
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.io.max.bytes.per.second`: the cleaner's read rate limit.
    #[serde(alias = "log.cleaner.io.max.bytes.per.second")]
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: how long the cleaner sleeps when nothing needs cleaning.
    #[serde(alias = "log.cleaner.backoff.ms")]
    pub log_cleaner_backoff_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`: how often recovery points are written
    /// (default 1 s, where Kafka's is 60 s: a restart after a crash scans only what was
    /// written since the last one).
    #[serde(alias = "log.flush.offset.checkpoint.interval.ms")]
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// Strata's own: recovery points are also checkpointed as soon as this many bytes were
    /// appended (over all partitions) since the last checkpoint, bounding what a recovery
    /// scans by bytes as well as by time.
    #[serde(alias = "log.flush.offset.checkpoint.bytes")]
    pub log_flush_offset_checkpoint_bytes: u64,
    /// `num.recovery.threads.per.data.dir`: logs recovered at once at start (0: one per
    /// core, at least 2; Kafka's default is a fixed 2).
    #[serde(alias = "num.recovery.threads.per.data.dir")]
    pub num_recovery_threads_per_data_dir: usize,
    /// A produce that touched at least this many partitions is made durable with one
    /// syncfs of the data directory's file system instead of an fdatasync per partition
    /// (0 disables; on a file system shared with other busy writers, raise or disable it).
    pub syncfs_partitions_min: usize,
    /// Reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (created on first use).
    #[serde(alias = "offsets.topic.num.partitions")]
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes`: how long offsets of an empty group are kept.
    #[serde(alias = "offsets.retention.minutes")]
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    #[serde(alias = "offsets.retention.check.interval.ms")]
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    #[serde(alias = "offset.metadata.max.bytes")]
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`.
    #[serde(alias = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    #[serde(alias = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: i32,
    #[serde(alias = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`.
    #[serde(alias = "group.max.size")]
    pub group_max_size: usize,
    /// KIP-848: `group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`,
    /// `group.consumer.assignors` (the first is the default).
    #[serde(alias = "group.consumer.session.timeout.ms")]
    pub group_consumer_session_timeout_ms: i32,
    #[serde(alias = "group.consumer.heartbeat.interval.ms")]
    pub group_consumer_heartbeat_interval_ms: i32,
    #[serde(alias = "group.consumer.assignors")]
    pub group_consumer_assignors: Vec<String>,
    /// `offsets.topic.segment.bytes` / `transaction.state.log.segment.bytes`: segment size
    /// of the internal topics (compaction works on sealed segments).
    #[serde(alias = "offsets.topic.segment.bytes")]
    pub offsets_topic_segment_bytes: u64,
    #[serde(alias = "transaction.state.log.segment.bytes")]
    pub transaction_state_log_segment_bytes: u64,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    #[serde(alias = "transaction.state.log.num.partitions")]
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: replicas of `__transaction_state` on a
    /// cluster (at most the live brokers when it is created): transaction coordinators fail
    /// over with their partitions.
    #[serde(alias = "transaction.state.log.replication.factor")]
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    #[serde(alias = "transaction.max.timeout.ms")]
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    #[serde(alias = "transactional.id.expiration.ms")]
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are looked for (and aborted).
    #[serde(alias = "transaction.abort.timed.out.transaction.cleanup.interval.ms")]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            node_id: 1,
            broker_rack: None,
            http_advertised: None,
            data_dir: PathBuf::from("./strata-data"),
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            listeners: None,
            advertised_listeners: None,
            listener_security_protocol_map: None,
            inter_broker_listener_name: None,
            controller_listener_names: None,
            ssl_keystore_type: "PEM".into(),
            ssl_keystore_location: None,
            ssl_keystore_certificate_chain: None,
            ssl_keystore_key: None,
            ssl_key_password: None,
            ssl_keystore_password: None,
            ssl_truststore_password: None,
            ssl_truststore_type: "PEM".into(),
            ssl_truststore_location: None,
            ssl_truststore_certificates: None,
            ssl_client_auth: "none".into(),
            ssl_enabled_protocols: "TLSv1.2,TLSv1.3".into(),
            ssl_principal_mapping_rules: "DEFAULT".into(),
            sasl_enabled_mechanisms: "SCRAM-SHA-256,SCRAM-SHA-512".into(),
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            authorizer_class_name: String::new(),
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            sasl_server_max_receive_size: 524_288,
            sasl_mechanism_inter_broker_protocol: "SCRAM-SHA-512".into(),
            sasl_jaas_config: None,
            sasl_mechanism_controller_protocol: "PLAIN".into(),
            listener_overrides: Default::default(),
            sasl_oauthbearer_jwks_endpoint_url: None,
            sasl_oauthbearer_jwks_endpoint_refresh_ms: 3_600_000,
            sasl_oauthbearer_expected_audience: String::new(),
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_sub_claim_name: "sub".into(),
            sasl_oauthbearer_clock_skew_seconds: 30,
            connection_failed_authentication_delay_ms: 100,
            connections_max_reauth_ms: 0,
            controller_quorum_voters: None,
            controller_listen: None,
            process_roles: "broker,controller".into(),
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            replica_lag_time_max_ms: 30_000,
            offsets_topic_replication_factor: 3,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            socket_request_max_bytes: strata_protocol::REQUEST_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            max_connections_per_ip: usize::MAX,
            max_connections_per_ip_overrides: String::new(),
            queued_max_request_bytes: 512 << 20,
            connection_in_flight_max: 64,
            connections_max_idle_ms: 600_000,
            fetch_max_bytes: 55 * 1024 * 1024,
            fetch_max_wait_ms_max: 30_000,
            num_partitions: 1,
            default_replication_factor: -1,
            auto_create_topics_enable: true,
            log_segment_bytes: log.segment_bytes,
            log_roll_ms: log.segment_ms,
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            message_max_bytes: log.max_message_bytes,
            log_message_timestamp_type: "CreateTime".into(),
            log_flush_interval_messages: log.flush_messages,
            log_flush_interval_ms: log.flush_ms,
            log_retention_check_interval_ms: 300_000,
            log_cleanup_policy: "delete".into(),
            compression_type: "producer".into(),
            log_cleaner_enable: true,
            log_cleaner_delete_retention_ms: log.delete_retention_ms,
            log_cleaner_min_compaction_lag_ms: log.min_compaction_lag_ms,
            log_cleaner_max_compaction_lag_ms: log.max_compaction_lag_ms,
            log_cleaner_min_cleanable_ratio: 0.5,
            remote_log_storage_system_enable: false,
            remote_log_storage_url: None,
            remote_log_storage_s3_endpoint: None,
            remote_log_storage_s3_region: None,
            remote_log_manager_task_interval_ms: 30_000,
            remote_log_manager_copy_max_bytes_per_second: u64::MAX,
            remote_log_manager_fetch_max_bytes_per_second: u64::MAX,
            remote_log_reader_threads: 4,
            remote_log_reader_max_pending_tasks: 100,
            remote_fetch_max_wait_ms: 500,
            remote_log_index_file_cache_total_size_bytes: 256 << 20,
            remote_log_reader_chunk_bytes: 4 << 20,
            remote_log_reader_chunk_cache_size_bytes: 256 << 20,
            remote_log_reader_prefetch_chunks: 2,
            remote_log_orphan_sweep_interval_ms: 3_600_000,
            remote_log_orphan_min_age_ms: 600_000,
            metrics_partition_level: true,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            log_cleaner_backoff_ms: 15_000,
            log_flush_offset_checkpoint_interval_ms: 1_000,
            log_flush_offset_checkpoint_bytes: 256 << 20,
            num_recovery_threads_per_data_dir: 0,
            syncfs_partitions_min: 64,
            cluster_id: "strata-cluster-0000000".into(),
            offsets_topic_num_partitions: 50,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as usize,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5000,
            group_consumer_assignors: vec!["uniform".into(), "range".into()],
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            transaction_state_log_segment_bytes: 100 * 1024 * 1024,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
        }
    }
}

/// The first address `HOST:PORT` resolves to.
pub fn resolve_addr(addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Invalid(format!("listen address {addr}: {e}")))?
        .next()
        .ok_or_else(|| {
            ConfigError::Invalid(format!("listen address {addr}: resolves to no address"))
        })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The TLS settings a listener may set for itself (`listener.name.<l>.<key>`).
pub const LISTENER_SSL_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.principal.mapping.rules",
];

impl BrokerConfig {
    /// A configuration file's settings: keys as [`BrokerConfig`]'s fields or Kafka's
    /// property names, and Kafka's per-listener `listener.name.*` keys (string values).
    pub fn from_toml(text: &str) -> Result<BrokerConfig, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut overrides = std::collections::BTreeMap::new();
        let keys: Vec<String> = table
            .keys()
            .filter(|k| k.starts_with("listener.name."))
            .cloned()
            .collect();
        for key in keys {
            match table.remove(&key) {
                Some(toml::Value::String(v)) => {
                    overrides.insert(key, v);
                }
                _ => return Err(format!("{key} must be a string")),
            }
        }
        let mut config: BrokerConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        config.listener_overrides = overrides;
        Ok(config)
    }

    /// The JAAS line a listener uses for `mechanism`, most specific first:
    /// `listener.name.<l>.<mechanism>.sasl.jaas.config`, `listener.name.<l>.sasl.jaas.config`,
    /// then `sasl.jaas.config` (Kafka's order).
    pub fn jaas_for(&self, listener: &str, mechanism: &str) -> Option<&str> {
        let l = listener.to_ascii_lowercase();
        let m = mechanism.to_ascii_lowercase();
        self.listener_overrides
            .get(&format!("listener.name.{l}.{m}.sasl.jaas.config"))
            .or_else(|| {
                self.listener_overrides
                    .get(&format!("listener.name.{l}.sasl.jaas.config"))
            })
            .or(self.sasl_jaas_config.as_ref())
            .map(String::as_str)
    }

    /// The configuration as `listener` sees it: its `listener.name.<l>.ssl.*` keys (Kafka's
    /// per-listener TLS settings) in place of the unprefixed ones.
    pub fn for_listener(&self, listener: &str) -> BrokerConfig {
        let mut c = self.clone();
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        for (key, value) in &self.listener_overrides {
            let Some(setting) = key.strip_prefix(&prefix) else {
                continue;
            };
            let v = value.clone();
            match setting {
                "ssl.keystore.type" => c.ssl_keystore_type = v,
                "ssl.keystore.location" => c.ssl_keystore_location = Some(v.into()),
                "ssl.keystore.certificate.chain" => c.ssl_keystore_certificate_chain = Some(v),
                "ssl.keystore.key" => c.ssl_keystore_key = Some(v),
                "ssl.key.password" => c.ssl_key_password = Some(v),
                "ssl.keystore.password" => c.ssl_keystore_password = Some(v),
                "ssl.truststore.password" => c.ssl_truststore_password = Some(v),
                "ssl.truststore.type" => c.ssl_truststore_type = v,
                "ssl.truststore.location" => c.ssl_truststore_location = Some(v.into()),
                "ssl.truststore.certificates" => c.ssl_truststore_certificates = Some(v),
                "ssl.client.auth" => c.ssl_client_auth = v,
                "ssl.enabled.protocols" => c.ssl_enabled_protocols = v,
                "ssl.principal.mapping.rules" => c.ssl_principal_mapping_rules = v,
                _ => {}
            }
        }
        c
    }

    /// A SASL listener's own JAAS line for PLAIN, whose `user_NAME="password"` entries are
    /// its PLAIN users (as in Kafka: only the listener-prefixed keys, never the broker's own
    /// `sasl.jaas.config`).
    pub fn listener_plain_jaas(&self, listener: &str) -> Option<&str> {
        let l = listener.to_ascii_lowercase();
        self.listener_overrides
            .get(&format!("listener.name.{l}.plain.sasl.jaas.config"))
            .or_else(|| {
                self.listener_overrides
                    .get(&format!("listener.name.{l}.sasl.jaas.config"))
            })
            .map(String::as_str)
    }

    /// `listener.name.<l>.max.connections` (KIP-402): connections served at once on that
    /// listener; None: only the broker-wide `max.connections` applies.
    pub fn listener_max_connections(&self, listener: &str) -> Option<usize> {
        self.listener_overrides
            .get(&format!(
                "listener.name.{}.max.connections",
                listener.to_ascii_lowercase()
            ))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Every `listener.name.*` key names a listener of this node and a setting Strata takes
    /// per listener.
    fn validate_listener_overrides(&self, listeners: &Listeners) -> Result<(), ConfigError> {
        let mut names: Vec<String> = listeners
            .clients
            .iter()
            .map(|l| l.name.to_ascii_lowercase())
            .collect();
        names.push(listeners.controller_name.to_ascii_lowercase());
        for key in self.listener_overrides.keys() {
            let rest = key.strip_prefix("listener.name.").unwrap_or(key);
            let Some((listener, setting)) = rest.split_once('.') else {
                return Err(ConfigError::Invalid(format!(
                    "{key} is not listener.name.<listener>.<setting>"
                )));
            };
            if !names.iter().any(|n| n == listener) {
                return Err(ConfigError::Invalid(format!(
                    "{key}: this node has no listener {listener} (listener names are lower case here: {})",
                    names.join(", ")
                )));
            }
            let mechanism_jaas = setting.strip_suffix(".sasl.jaas.config").is_some_and(|m| {
                strata_security::Mechanism::parse(&m.to_ascii_uppercase()).is_some()
            });
            if LISTENER_SSL_KEYS.contains(&setting) {
                // Checked with the listener's TLS settings (validate_ssl).
            } else if setting == "max.connections" {
                if self.listener_overrides[key]
                    .trim()
                    .parse::<usize>()
                    .is_err()
                {
                    return Err(ConfigError::Invalid(format!(
                        "{key} '{}' is not a count",
                        self.listener_overrides[key]
                    )));
                }
            } else if setting != "sasl.jaas.config" && !mechanism_jaas {
                return Err(ConfigError::Invalid(format!(
                    "{key}: {setting} cannot be set per listener here (only max.connections, sasl.jaas.config, <mechanism>.sasl.jaas.config and {})",
                    LISTENER_SSL_KEYS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The node's listeners (see [`crate::listeners`]).
    pub fn resolved_listeners(&self) -> Result<Listeners, ConfigError> {
        listeners::resolve(&ListenerSettings {
            listen: &self.listen,
            advertised_listener: self.advertised_listener.as_deref(),
            listeners: self.listeners.as_deref(),
            advertised_listeners: self.advertised_listeners.as_deref(),
            security_protocol_map: self.listener_security_protocol_map.as_deref(),
            inter_broker_listener_name: self.inter_broker_listener_name.as_deref(),
            controller_listener_names: self.controller_listener_names.as_deref(),
        })
    }

    /// What the inter-broker listener advertises, as `HOST:PORT`.
    pub fn advertised(&self) -> String {
        let (host, port) = self.advertised_host_port();
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Host and port other brokers (and, on one listener, clients) are told to use: the
    /// inter-broker listener's.
    pub fn advertised_host_port(&self) -> (String, i32) {
        let l = self.resolved_listeners().expect("validated listeners");
        let ib = l.inter_broker();
        (ib.advertised_host.clone(), ib.advertised_port)
    }

    /// The quorum voters by node id, from `controller.quorum.voters` (None: standalone).
    pub fn quorum_voters(
        &self,
    ) -> Result<Option<std::collections::BTreeMap<u64, String>>, ConfigError> {
        let Some(spec) = &self.controller_quorum_voters else {
            return Ok(None);
        };
        let mut voters = std::collections::BTreeMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('@').and_then(|(id, addr)| {
                let id = id.parse::<u64>().ok().filter(|&i| i <= i32::MAX as u64)?;
                let (host, port) = addr.rsplit_once(':')?;
                (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| (id, addr.to_string()))
            });
            let Some((id, addr)) = parsed else {
                return Err(ConfigError::Invalid(format!(
                    "controller.quorum.voters entry '{entry}' is not ID@HOST:PORT"
                )));
            };
            if voters.insert(id, addr).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "controller.quorum.voters names node {id} twice"
                )));
            }
        }
        if voters.is_empty() {
            return Err(ConfigError::Invalid(
                "controller.quorum.voters is empty".into(),
            ));
        }
        Ok(Some(voters))
    }

    /// Whether this node votes in the metadata quorum (`process.roles` has `controller`).
    pub fn is_controller(&self) -> bool {
        self.process_roles
            .split(',')
            .any(|r| r.trim() == "controller")
    }

    /// Where the controller listener binds, if this node runs the quorum.
    pub fn controller_listen_addr(&self) -> Result<Option<String>, ConfigError> {
        let Some(voters) = self.quorum_voters()? else {
            return Ok(None);
        };
        if let Some(l) = &self.controller_listen {
            return Ok(Some(l.clone()));
        }
        if let Some(l) = self.resolved_listeners()?.controller {
            return Ok(Some(l));
        }
        match voters.get(&(self.node_id as u64)) {
            Some(a) => Ok(Some(a.clone())),
            None => Err(ConfigError::Invalid(format!(
                "node {} is not among controller.quorum.voters; give it --controller-listen",
                self.node_id
            ))),
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_addr(&self.listen)
    }

    /// Broker-wide defaults for every topic's log.
    pub fn log_defaults(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            max_message_bytes: self.message_max_bytes,
            timestamp_type: if self.log_message_timestamp_type == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms,
            cleanup_delete: self
                .log_cleanup_policy
                .split(',')
                .any(|p| p.trim() == "delete"),
            cleanup_compact: self
                .log_cleanup_policy
                .split(',')
                .any(|p| p.trim() == "compact"),
            delete_retention_ms: self.log_cleaner_delete_retention_ms,
            min_compaction_lag_ms: self.log_cleaner_min_compaction_lag_ms,
            max_compaction_lag_ms: self.log_cleaner_max_compaction_lag_ms,
            min_cleanable_dirty_ratio_ppm: (self.log_cleaner_min_cleanable_ratio.clamp(0.0, 1.0)
                * 1e6) as u32,
            // anything but a known name is refused by validate()
            compression: crate::topic_config::compression_type(&self.compression_type)
                .unwrap_or(None),
            ..LogConfig::default()
        }
    }

    /// The log cleaner's settings.
    pub fn cleaner_config(&self) -> strata_storage::cleaner::CleanerConfig {
        strata_storage::cleaner::CleanerConfig {
            dedupe_buffer_bytes: self.log_cleaner_dedupe_buffer_size.max(1 << 10),
            io_max_bytes_per_second: self.log_cleaner_io_max_bytes_per_second,
        }
    }

    /// The group coordinator's settings.
    /// How many logs recover at once at start.
    pub fn recovery_threads(&self) -> usize {
        match self.num_recovery_threads_per_data_dir {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            n => n,
        }
    }

    pub fn group_config(&self) -> strata_group::GroupConfig {
        strata_group::GroupConfig {
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            max_size: self.group_max_size,
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: self.offsets_retention_check_interval_ms,
            offsets_topic_partitions: self.offsets_topic_num_partitions,
            consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            consumer_assignors: self.group_consumer_assignors.clone(),
        }
    }

    /// The transaction coordinator's settings.
    pub fn txn_config(&self) -> strata_txn::TxnConfig {
        strata_txn::TxnConfig {
            max_timeout_ms: self.transaction_max_timeout_ms,
            transactional_id_expiration_ms: self.transactional_id_expiration_ms,
        }
    }

    /// OAUTHBEARER's token checks, or None when the mechanism is not enabled (an HTTP(S) key
    /// set is fetched now and refreshed by a thread of its own).
    pub fn oauth_validator(&self) -> Result<Option<crate::oauth::OAuthValidator>, ConfigError> {
        let Some((url, config)) = self.oauth_settings()? else {
            return Ok(None);
        };
        let trust = self.oauth_truststore()?;
        crate::oauth::OAuthValidator::new(
            &url,
            config,
            trust.as_deref(),
            std::time::Duration::from_millis(
                self.sasl_oauthbearer_jwks_endpoint_refresh_ms.max(1000),
            ),
        )
        .map(Some)
        .map_err(ConfigError::Invalid)
    }

    fn oauth_truststore(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        match (
            &self.ssl_truststore_location,
            &self.ssl_truststore_certificates,
        ) {
            (Some(p), _) => std::fs::read(p)
                .map(Some)
                .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", p.display()))),
            (None, Some(pem)) => Ok(Some(pem.clone().into_bytes())),
            (None, None) => Ok(None),
        }
    }

    /// What [`BrokerConfig::oauth_validator`] checks, without fetching anything over the
    /// network.
    fn check_oauth(&self) -> Result<(), ConfigError> {
        let Some((url, _)) = self.oauth_settings()? else {
            return Ok(());
        };
        match crate::oauth::jwks_source(&url).map_err(ConfigError::Invalid)? {
            crate::oauth::JwksSource::File(path) => crate::oauth::read_jwks(&path)
                .map(|_| ())
                .map_err(ConfigError::Invalid),
            crate::oauth::JwksSource::Http { tls: false, .. } => Ok(()),
            crate::oauth::JwksSource::Http { tls: true, .. } => {
                crate::oauth::jwks_tls(self.oauth_truststore()?.as_deref())
                    .map(|_| ())
                    .map_err(ConfigError::Invalid)
            }
        }
    }

    fn oauth_settings(
        &self,
    ) -> Result<Option<(String, strata_security::oauth::OAuthConfig)>, ConfigError> {
        if !self
            .sasl_mechanisms()?
            .contains(&strata_security::Mechanism::OAuthBearer)
        {
            return Ok(None);
        }
        let Some(url) = &self.sasl_oauthbearer_jwks_endpoint_url else {
            return Err(ConfigError::Invalid(
                "OAUTHBEARER is enabled but sasl.oauthbearer.jwks.endpoint.url is not set".into(),
            ));
        };
        let config = strata_security::oauth::OAuthConfig {
            expected_audience: self
                .sasl_oauthbearer_expected_audience
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            expected_issuer: self.sasl_oauthbearer_expected_issuer.clone(),
            sub_claim_name: self.sasl_oauthbearer_sub_claim_name.clone(),
            clock_skew_seconds: self.sasl_oauthbearer_clock_skew_seconds,
        };
        Ok(Some((url.clone(), config)))
    }

    /// The authorizer's settings, or None when ACLs are not enforced.
    pub fn authorizer_config(
        &self,
    ) -> Result<Option<strata_security::acl::AuthorizerConfig>, ConfigError> {
        const STANDARD: [&str; 3] = [
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "kafka.security.authorizer.AclAuthorizer",
            "kafka.security.auth.SimpleAclAuthorizer",
        ];
        let class = self.authorizer_class_name.trim();
        if class.is_empty() {
            return Ok(None);
        }
        if !STANDARD.contains(&class) {
            return Err(ConfigError::Invalid(format!(
                "authorizer.class.name '{class}' is not one of Kafka's standard authorizers ({})",
                STANDARD.join(", ")
            )));
        }
        let mut super_users = std::collections::BTreeSet::new();
        for p in self
            .super_users
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    super_users.insert(p.to_string());
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "super.users: '{p}' is not a principal (User:NAME)"
                    )))
                }
            }
        }
        Ok(Some(strata_security::acl::AuthorizerConfig {
            super_users,
            allow_if_no_acl: self.allow_everyone_if_no_acl_found,
        }))
    }

    /// `sasl.enabled.mechanisms`, parsed (each at most once, in the order given).
    pub fn sasl_mechanisms(&self) -> Result<Vec<strata_security::Mechanism>, ConfigError> {
        let mut out = Vec::new();
        for name in self
            .sasl_enabled_mechanisms
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some(m) = strata_security::Mechanism::parse(name) else {
                let why = match name {
                    "GSSAPI" => "is not supported yet",
                    _ => "is not a SASL mechanism Strata knows",
                };
                return Err(ConfigError::Invalid(format!(
                    "sasl.enabled.mechanisms: {name} {why} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER are)"
                )));
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (flag, value) in [
            ("--listen", Some(&self.listen)),
            ("--advertised-listener", self.advertised_listener.as_ref()),
        ] {
            let Some(v) = value else { continue };
            match v.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return bad(format!("{flag} '{v}' is not HOST:PORT")),
            }
        }
        let listeners = self.resolved_listeners()?;
        self.validate_listener_overrides(&listeners)?;
        self.authorizer_config()?;
        self.check_oauth()?;
        if self.remote_log_storage_system_enable {
            match self.remote_log_storage_url.as_deref() {
                Some(url) if url.starts_with("file:///") || url.starts_with("s3://") => {}
                Some(url) => {
                    return bad(format!(
                        "remote.log.storage.url '{url}' must be file:///some/dir or s3://bucket/prefix"
                    ))
                }
                None => {
                    return bad("remote.log.storage.system.enable is true but remote.log.storage.url is not set".into())
                }
            }
            if self.remote_log_reader_threads == 0 || self.remote_log_reader_threads > 256 {
                return bad(format!(
                    "remote.log.reader.threads {} must be from 1 to 256",
                    self.remote_log_reader_threads
                ));
            }
            if self.remote_log_reader_max_pending_tasks == 0 {
                return bad("remote.log.reader.max.pending.tasks must be at least 1".into());
            }
            if !(4 << 10..=256 << 20).contains(&self.remote_log_reader_chunk_bytes) {
                return bad(format!(
                    "remote.log.reader.chunk.bytes {} must be from 4096 to 268435456",
                    self.remote_log_reader_chunk_bytes
                ));
            }
        }
        if self.quota_window_num < 2 || self.quota_window_size_seconds == 0 {
            return bad(format!(
                "quota.window.num {} must be at least 2 and quota.window.size.seconds {} at least 1",
                self.quota_window_num, self.quota_window_size_seconds
            ));
        }
        let mechanisms = self.sasl_mechanisms()?;
        if let Some(l) = listeners.clients.iter().find(|l| l.protocol.uses_sasl()) {
            if mechanisms.is_empty() {
                return bad(format!(
                    "listener {} is {} but sasl.enabled.mechanisms is empty",
                    l.name,
                    l.protocol.name()
                ));
            }
        }
        if self.sasl_server_max_receive_size < 1024 {
            return bad(format!(
                "sasl.server.max.receive.size {} must be at least 1024",
                self.sasl_server_max_receive_size
            ));
        }
        self.validate_ssl(&listeners)?;
        if self.controller_quorum_voters.is_some() {
            // Replication connects to the peers' inter-broker listener: it must be able to
            // speak that listener's protocol.
            crate::peer_security::peer_security(self, &listeners).map_err(ConfigError::Invalid)?;
        }
        let roles: Vec<&str> = self.process_roles.split(',').map(str::trim).collect();
        if !roles.contains(&"broker") || roles.iter().any(|r| !["broker", "controller"].contains(r))
        {
            return bad(format!(
                "process.roles '{}' must be \"broker,controller\" or \"broker\" (controller-only nodes are not supported yet)",
                self.process_roles
            ));
        }
        if let Some(voters) = self.quorum_voters()? {
            if self.node_id < 0 {
                return bad(format!("node.id {} must not be negative", self.node_id));
            }
            let votes = voters.contains_key(&(self.node_id as u64));
            if votes && !self.is_controller() {
                return bad(format!(
                    "node {} is one of controller.quorum.voters: its process.roles must be \"broker,controller\"",
                    self.node_id
                ));
            }
            if !votes && self.is_controller() {
                return bad(format!(
                    "node {} runs the controller role but is not one of controller.quorum.voters; a broker-only node has process.roles \"broker\"",
                    self.node_id
                ));
            }
            // A broker-only node follows the quorum as a learner: the leader replicates the
            // metadata log to its controller listener (--controller-listen).
            self.controller_listen_addr()?;
        } else if !self.is_controller() {
            return bad(
                "process.roles \"broker\" (a broker-only node) needs controller.quorum.voters"
                    .into(),
            );
        }
        if let Err(e) = crate::topic_config::compression_type(&self.compression_type) {
            return bad(format!("compression_type: {e}"));
        }
        if !["CreateTime", "LogAppendTime"].contains(&self.log_message_timestamp_type.as_str()) {
            return bad(format!(
                "log_message_timestamp_type '{}' must be CreateTime or LogAppendTime",
                self.log_message_timestamp_type
            ));
        }
        if self.num_partitions < 1 {
            return bad(format!(
                "num_partitions {} must be at least 1",
                self.num_partitions
            ));
        }
        if self.default_replication_factor != -1 && self.default_replication_factor < 1 {
            return bad(format!(
                "default_replication_factor {} must be -1 (automatic) or at least 1",
                self.default_replication_factor
            ));
        }
        if self.controller_quorum_voters.is_none() && self.default_replication_factor > 1 {
            return bad("default_replication_factor must be 1 on a single node".into());
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize
        {
            return bad(format!(
                "socket_request_max_bytes {} must be in [1024, {}]",
                self.socket_request_max_bytes,
                i32::MAX
            ));
        }
        if !(1..=1000).contains(&self.offsets_topic_num_partitions) {
            return bad(format!(
                "offsets_topic_num_partitions {} must be in [1, 1000]",
                self.offsets_topic_num_partitions
            ));
        }
        if !(1..=1000).contains(&self.transaction_state_log_num_partitions) {
            return bad(format!(
                "transaction_state_log_num_partitions {} must be in [1, 1000]",
                self.transaction_state_log_num_partitions
            ));
        }
        if self.transaction_max_timeout_ms < 1 {
            return bad("transaction_max_timeout_ms must be positive".into());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return bad(
                "group_min_session_timeout_ms is above group_max_session_timeout_ms".into(),
            );
        }
        if self.group_consumer_assignors.is_empty()
            || self
                .group_consumer_assignors
                .iter()
                .any(|a| a != "uniform" && a != "range")
        {
            return bad(format!(
                "group_consumer_assignors {:?}: the assignors are 'uniform' and 'range'",
                self.group_consumer_assignors
            ));
        }
        if self.group_consumer_heartbeat_interval_ms < 1
            || self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms
        {
            return bad("group_consumer_heartbeat_interval_ms must be positive and below group_consumer_session_timeout_ms".into());
        }
        if self.connections_max_idle_ms < 100 {
            return bad(format!(
                "connections_max_idle_ms {} must be at least 100",
                self.connections_max_idle_ms
            ));
        }
        if self.queued_max_request_bytes < self.socket_request_max_bytes.min(1 << 20) {
            return bad(format!(
                "queued.max.request.bytes {} must hold at least one request of 1 MiB (or socket.request.max.bytes)",
                self.queued_max_request_bytes
            ));
        }
        crate::connection_limits::parse_overrides(&self.max_connections_per_ip_overrides)
            .map_err(ConfigError::Invalid)?;
        if self.connections_max == 0 || self.connection_in_flight_max == 0 {
            return bad("connections_max and connection_in_flight_max must be at least 1".into());
        }
        self.log_defaults()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

impl BrokerConfig {
    /// The TLS settings are complete and supported wherever a listener uses TLS (the files
    /// themselves are read when the listener starts).
    fn validate_ssl(&self, listeners: &Listeners) -> Result<(), ConfigError> {
        self.validate_ssl_of(None)?;
        let controller_tls =
            self.controller_quorum_voters.is_some() && listeners.controller_protocol.uses_tls();
        let tls_listeners = listeners
            .clients
            .iter()
            .filter(|l| l.protocol.uses_tls())
            .map(|l| l.name.as_str())
            .chain(controller_tls.then_some(listeners.controller_name.as_str()));
        for name in tls_listeners {
            self.for_listener(name).validate_ssl_of(Some(name))?;
        }
        Ok(())
    }

    /// One TLS listener's settings (`None`: only the settings' own syntax).
    fn validate_ssl_of(&self, tls_name: Option<&str>) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !["none", "requested", "required"].contains(&self.ssl_client_auth.as_str()) {
            return bad(format!(
                "ssl.client.auth '{}' must be none, requested or required",
                self.ssl_client_auth
            ));
        }
        for p in self.ssl_enabled_protocols.split(',').map(str::trim) {
            if !["TLSv1.2", "TLSv1.3"].contains(&p) {
                return bad(format!(
                    "ssl.enabled.protocols: '{p}' is not supported (TLSv1.2 and TLSv1.3 are)"
                ));
            }
        }
        if let Err(e) =
            strata_security::principal::PrincipalMapper::parse(&self.ssl_principal_mapping_rules)
        {
            return bad(format!("ssl.principal.mapping.rules: {e}"));
        }
        let Some(tls_name) = tls_name else {
            return Ok(());
        };
        for (key, value) in [
            ("ssl.keystore.type", &self.ssl_keystore_type),
            ("ssl.truststore.type", &self.ssl_truststore_type),
        ] {
            if crate::keystore::StoreType::parse(value).is_none() {
                return bad(format!("{key} '{value}': PEM, PKCS12 or JKS"));
            }
        }
        let pem = crate::keystore::StoreType::parse(&self.ssl_keystore_type)
            == Some(crate::keystore::StoreType::Pem);
        if !pem && self.ssl_keystore_location.is_some() && self.ssl_keystore_password.is_none() {
            return bad(format!(
                "ssl.keystore.type {}: set ssl.keystore.password",
                self.ssl_keystore_type
            ));
        }
        let inline =
            self.ssl_keystore_certificate_chain.is_some() || self.ssl_keystore_key.is_some();
        match (&self.ssl_keystore_location, inline) {
            (Some(_), true) => bad("give either ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key, not both".into()),
            (None, false) => bad(format!(
                "listener {tls_name} uses TLS: set ssl.keystore.location (a PEM file with the certificate chain and private key)",
            )),
            (None, true) if self.ssl_keystore_certificate_chain.is_none() || self.ssl_keystore_key.is_none() => bad(
                "ssl.keystore.certificate.chain and ssl.keystore.key go together".into(),
            ),
            _ => {
                if self.ssl_client_auth != "none"
                    && self.ssl_truststore_location.is_none()
                    && self.ssl_truststore_certificates.is_none()
                {
                    return bad(format!(
                        "ssl.client.auth {}: set ssl.truststore.location (the CAs client certificates must chain to)",
                        self.ssl_client_auth
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quorum_voters_parse_and_bad_ones_are_refused() {
        let mut c = BrokerConfig {
            node_id: 2,
            controller_quorum_voters: Some("1@a:1, 2@b:2,3@[::1]:3".into()),
            ..BrokerConfig::default()
        };
        let voters = c.quorum_voters().unwrap().unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&3], "[::1]:3");
        assert_eq!(c.controller_listen_addr().unwrap().as_deref(), Some("b:2"));
        c.validate().unwrap();
        for bad in ["1@a", "x@a:1", "1@a:1,1@b:2", "", "1@:5"] {
            c.controller_quorum_voters = Some(bad.into());
            assert!(c.validate().is_err(), "{bad}");
        }
        c.controller_quorum_voters = Some("1@a:1".into());
        assert!(
            c.validate().is_err(),
            "a controller outside the voters (or a broker without a controller listener)"
        );
        // A broker-only node: outside the voters, with its own controller listener.
        c.process_roles = "broker".into();
        assert!(c.validate().is_err(), "no --controller-listen");
        c.controller_listen = Some("127.0.0.1:9".into());
        c.validate().unwrap();
        // A voter must run the controller role.
        c.controller_quorum_voters = Some("2@b:2".into());
        assert!(c.validate().is_err(), "a voter without the controller role");
        c.controller_quorum_voters = None;
        assert!(c.validate().is_err(), "a broker-only node without voters");
        c.process_roles = "broker,controller".into();
        c.controller_listen = None;
        c.process_roles = "controller".into();
        assert!(c.validate().is_err(), "controller-only");
    }

    use super::*;

    #[test]
    fn toml_takes_snake_case_and_kafka_names_and_rejects_unknown_keys() {
        let c: BrokerConfig =
            toml::from_str("num_partitions = 3\n\"log.retention.ms\" = 1000\n").unwrap();
        assert_eq!((c.num_partitions, c.log_retention_ms), (3, 1000));
        assert_eq!(c.listen, "127.0.0.1:9092", "unset keys keep their defaults");
        assert!(toml::from_str::<BrokerConfig>("no_such_key = 1").is_err());
        assert!(BrokerConfig::from_toml("no_such_key = 1").is_err());
    }

    #[test]
    fn per_listener_jaas_lines_are_taken_most_specific_first() {
        let text = r#"
listeners = "PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094"
"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
"sasl.jaas.config" = 'x required username="any" password="a";'
"listener.name.internal.sasl.jaas.config" = 'x required username="int" password="b";'
"listener.name.controller.scram-sha-512.sasl.jaas.config" = 'x required username="ctl" password="c";'
"#;
        let c = BrokerConfig::from_toml(text).unwrap();
        c.validate().unwrap();
        let user =
            |l: &str, m: &str| strata_security::jaas_option(c.jaas_for(l, m).unwrap(), "username");
        assert_eq!(user("CONTROLLER", "SCRAM-SHA-512").as_deref(), Some("ctl"));
        assert_eq!(user("CONTROLLER", "PLAIN").as_deref(), Some("any"));
        assert_eq!(user("INTERNAL", "SCRAM-SHA-512").as_deref(), Some("int"));
        assert_eq!(user("PLAINTEXT", "PLAIN").as_deref(), Some("any"));
        for (key, why) in [
            (
                "listener.name.nosuch.sasl.jaas.config",
                "no listener nosuch",
            ),
            (
                "listener.name.internal.ssl.cipher.suites",
                "cannot be set per listener",
            ),
            (
                "listener.name.internal.gssapi.sasl.jaas.config",
                "cannot be set per listener",
            ),
        ] {
            let c = BrokerConfig::from_toml(&format!("{text}\n\"{key}\" = \"x\"\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{key}: {e}");
        }
        let e = BrokerConfig::from_toml(&format!(
            "{text}\n\"listener.name.plaintext.sasl.jaas.config\" = 3\n"
        ));
        assert!(e.unwrap_err().contains("must be a string"));
    }

    #[test]
    fn validate_checks_addresses_and_relations() {
        assert!(BrokerConfig::default().validate().is_ok());
        assert!(BrokerConfig {
            listen: "nohostport".into(),
            ..BrokerConfig::default()
        }
        .validate()
        .is_err());
        assert!(BrokerConfig {
            advertised_listener: Some("h:99999".into()),
            ..BrokerConfig::default()
        }
        .validate()
        .is_err());
        assert!(BrokerConfig {
            num_partitions: 0,
            ..BrokerConfig::default()
        }
        .validate()
        .is_err());
        assert!(BrokerConfig {
            log_segment_bytes: 1,
            ..BrokerConfig::default()
        }
        .validate()
        .is_err());
        let c = BrokerConfig {
            advertised_listener: Some("[::1]:9093".into()),
            ..BrokerConfig::default()
        };
        assert_eq!(c.advertised_host_port(), ("::1".to_string(), 9093));
    }
}
