//! A small async Kafka client for the `strata` CLI: one connection, requests at versions
//! negotiated through ApiVersions, and helpers for topic admin, produce, fetch and offsets.
//! It talks to one broker (the bootstrap); partition leadership routing comes with
//! replication. Real-client compatibility is tested with librdkafka and kafka-python, never
//! with this client.

pub mod groups;
pub mod partitions;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use strata_protocol::{decode_response_frame, encode_request, frame_length, FRAME_LENGTH_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response frame this client accepts.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] strata_protocol::ProtocolError),
    #[error("the broker does not support {0:?} at any version this client speaks")]
    Unsupported(ApiKey),
    #[error("response correlation id {got} does not match request {expected}")]
    Correlation { expected: i32, got: i32 },
    #[error("{context}: {message} (Kafka error code {code})")]
    Kafka {
        context: String,
        code: i16,
        message: String,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("security: {0}")]
    Security(String),
}

/// How long partition requests keep retrying a partition that is unavailable for now
/// (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE: e.g. still recovering after a restart).
const UNAVAILABLE_RETRY_MAX: Duration = Duration::from_secs(30);
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(20);
/// How long a request through the router retries UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_RETRY_MAX: Duration = Duration::from_secs(5);

/// Retries of a request on a partition that is unavailable for now.
#[derive(Default)]
struct UnavailableRetry {
    waited: Duration,
}

impl UnavailableRetry {
    /// If `result` failed on an unavailable partition and the retry budget is not spent,
    /// waits a backoff and returns true (try again); else false (give `result` back).
    async fn again<T>(&mut self, result: &Result<T, ClientError>) -> bool {
        let retriable = matches!(result, Err(e) if e.is_unavailable());
        self.wait_if(retriable, UNAVAILABLE_RETRY_MAX).await
    }

    /// The router's retry: as [`UnavailableRetry::again`] for an answer saying the leader is
    /// elsewhere or not settled (the router asks the metadata again before the next try),
    /// and for a few seconds an unknown topic (one just created is unknown to the brokers
    /// that have not applied it yet; it may also really not exist).
    async fn again_routed<T>(&mut self, result: &Result<T, ClientError>) -> bool {
        match result {
            Err(e) if e.is_leader_moving() => self.wait_if(true, UNAVAILABLE_RETRY_MAX).await,
            Err(ClientError::Kafka { code: 3, .. }) => {
                self.wait_if(true, UNKNOWN_TOPIC_RETRY_MAX).await
            }
            _ => false,
        }
    }

    async fn wait_if(&mut self, retriable: bool, budget: Duration) -> bool {
        if !retriable || self.waited >= budget {
            return false;
        }
        tokio::time::sleep(UNAVAILABLE_BACKOFF).await;
        self.waited += UNAVAILABLE_BACKOFF;
        true
    }
}

impl ClientError {
    /// A partition that will be back (no leader for now).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClientError::Kafka { code: 5 | 6, .. })
    }

    /// A partition whose leader is elsewhere or not yet settled (LEADER_NOT_AVAILABLE,
    /// NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH): asking the
    /// metadata again and retrying will reach it.
    pub fn is_leader_moving(&self) -> bool {
        matches!(
            self,
            ClientError::Kafka {
                code: 5 | 6 | 74 | 76,
                ..
            }
        )
    }

    /// An answer that says the request went to the wrong broker (a partition's leader or a
    /// group's coordinator moved): what is known of where things live should be asked again.
    pub fn is_stale_route(&self) -> bool {
        // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER,
        // REPLICA_NOT_AVAILABLE, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
        // FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH.
        matches!(
            self,
            ClientError::Kafka {
                code: 3 | 5 | 6 | 9 | 15 | 16 | 74 | 76,
                ..
            }
        )
    }
}

/// The error for a response that lacks the partition it was asked about.
fn empty_response(context: String) -> ClientError {
    ClientError::Kafka {
        context,
        code: -1,
        message: "empty response".into(),
    }
}

/// Turns a non-zero Kafka error code into an error with context.
pub fn check(
    code: i16,
    context: impl Into<String>,
    message: Option<&StrBytes>,
) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    let name = kafka_protocol::error::ParseResponseErrorCode::err(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    let message = message
        .map(|m| m.to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or(name);
    Err(ClientError::Kafka {
        context: context.into(),
        code,
        message,
    })
}

/// What a connection runs over: TCP, or TLS on TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// How to authenticate with SASL.
#[derive(Clone)]
pub enum ClientSasl {
    Plain {
        user: String,
        password: String,
    },
    Scram {
        mechanism: strata_security::ScramMechanism,
        user: String,
        password: String,
    },
}

impl ClientSasl {
    /// SASL with the mechanism Kafka names `mechanism`; None for one this client does not
    /// speak (only PLAIN and SCRAM).
    pub fn for_mechanism(mechanism: &str, user: String, password: String) -> Option<ClientSasl> {
        match strata_security::Mechanism::parse(mechanism)? {
            strata_security::Mechanism::Plain => Some(ClientSasl::Plain { user, password }),
            strata_security::Mechanism::Scram(m) => Some(ClientSasl::Scram {
                mechanism: m,
                user,
                password,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ClientSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSasl::Plain { user, .. } => write!(f, "PLAIN as {user}"),
            ClientSasl::Scram {
                mechanism, user, ..
            } => write!(f, "{} as {user}", mechanism.name()),
        }
    }
}

/// The security a connection uses: TLS (with the CAs to trust and, for mTLS, our own
/// certificate in the config) and SASL.
#[derive(Clone, Default, Debug)]
pub struct ClientSecurity {
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub sasl: Option<ClientSasl>,
}

/// The client side of TLS from PEM: the CAs to trust (`trust`, one or more certificates)
/// and, for servers that require client certificates, our own chain (`chain`) and
/// unencrypted private key (`key`, often the same file's bytes).
pub fn tls_client_config(
    trust: &[u8],
    own: Option<(&[u8], &[u8])>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let own = match own {
        Some((chain, key)) => Some((
            CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the client certificate: {e}"))?,
            PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the client key: {e}"))?,
        )),
        None => None,
    };
    let trust = CertificateDer::pem_slice_iter(trust)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the truststore: {e}"))?;
    tls_client_config_with(trust, own)
}

/// [`tls_client_config`] with the CAs, our own certificate chain and key already parsed.
pub fn tls_client_config_with(
    trust: Vec<rustls::pki_types::CertificateDer<'static>>,
    own: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trust {
        roots
            .add(cert)
            .map_err(|e| format!("the truststore: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the truststore holds no PEM certificate".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match own {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(std::sync::Arc::new(config))
}

static DEFAULT_SECURITY: std::sync::OnceLock<ClientSecurity> = std::sync::OnceLock::new();

/// The security every [`Client::connect`] of this process uses (the CLI's
/// `--command-config`). Set once, before connecting.
pub fn set_default_security(security: ClientSecurity) {
    let _ = DEFAULT_SECURITY.set(security);
}

pub struct Client {
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
    /// The broker's version ranges by API key.
    versions: HashMap<i16, (i16, i16)>,
    read_buf: BytesMut,
}

impl Client {
    /// Connects with the process's default security (plaintext unless
    /// [`set_default_security`] chose otherwise) and negotiates versions.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let security = DEFAULT_SECURITY.get().cloned().unwrap_or_default();
        Self::connect_secure(addr, &security).await
    }

    /// Connects over TLS and/or authenticates with SASL as `security` says, then
    /// negotiates versions.
    pub async fn connect_secure(
        addr: &str,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.into(),
                source: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| ClientError::Security(format!("server name {host}: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls =
                    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                        .await
                        .map_err(|_| {
                            ClientError::Security(format!("TLS handshake with {addr} timed out"))
                        })?
                        .map_err(|e| {
                            ClientError::Security(format!("TLS handshake with {addr}: {e}"))
                        })?;
                Box::new(tls)
            }
        };
        let mut client = Self {
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
            read_buf: BytesMut::new(),
        };
        let resp: ApiVersionsResponse = client.send_at(ApiVersionsRequest::default(), 0).await?;
        check(resp.error_code, "ApiVersions", None)?;
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(sasl) = &security.sasl {
            client.authenticate(sasl).await?;
        }
        Ok(client)
    }

    /// SaslHandshake v1, then SaslAuthenticate until the mechanism is done.
    async fn authenticate(&mut self, sasl: &ClientSasl) -> Result<(), ClientError> {
        let mechanism = match sasl {
            ClientSasl::Plain { .. } => "PLAIN",
            ClientSasl::Scram { mechanism, .. } => mechanism.name(),
        };
        let resp = self
            .send_at(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
                1,
            )
            .await?;
        check(resp.error_code, format!("SaslHandshake {mechanism}"), None)?;
        let version = self.version(ApiKey::SaslAuthenticate, 2)?;
        let step =
            |bytes: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        match sasl {
            ClientSasl::Plain { user, password } => {
                let r = self
                    .send_at(step(format!("\0{user}\0{password}").into_bytes()), version)
                    .await?;
                check(r.error_code, "SASL/PLAIN", r.error_message.as_ref())
            }
            ClientSasl::Scram {
                mechanism,
                user,
                password,
            } => {
                let mut scram = strata_security::ScramClient::new(*mechanism, user, password);
                let r = self.send_at(step(scram.first()), version).await?;
                check(r.error_code, mechanism.name(), r.error_message.as_ref())?;
                let last = scram
                    .last(&r.auth_bytes)
                    .map_err(|e| ClientError::Security(e.to_string()))?;
                let r = self.send_at(step(last), version).await?;
                check(r.error_code, mechanism.name(), r.error_message.as_ref())?;
                scram.verify(&r.auth_bytes).map_err(|_| {
                    ClientError::Security(format!(
                        "{}: the broker's signature does not verify",
                        mechanism.name()
                    ))
                })
            }
        }
    }

    /// The highest version both sides speak, up to `ours`.
    pub fn version(&self, key: ApiKey, ours: i16) -> Result<i16, ClientError> {
        let &(min, max) = self
            .versions
            .get(&(key as i16))
            .ok_or(ClientError::Unsupported(key))?;
        let v = max.min(ours);
        if v < min {
            return Err(ClientError::Unsupported(key));
        }
        Ok(v)
    }

    /// Sends a request at the best common version (up to `ours`) and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        request: R,
        ours: i16,
    ) -> Result<R::Response, ClientError> {
        let key = ApiKey::try_from(R::KEY).expect("known key");
        let version = self.version(key, ours)?;
        self.send_at(request, version).await
    }

    /// Sends a request at exactly `version` (one [`Client::version`] chose).
    pub async fn send_at<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let key = ApiKey::try_from(R::KEY).expect("known key");
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strata-cli")));
        let frame = encode_request(&header, key, &request)?;
        self.stream.write_all(&frame).await?;
        let body = self.read_frame().await?;
        let (got, response) = decode_response_frame::<R::Response>(body, key, version)?;
        if got != correlation_id {
            return Err(ClientError::Correlation {
                expected: correlation_id,
                got,
            });
        }
        Ok(response)
    }

    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if let Some(len) = frame_length(&self.read_buf, RESPONSE_BYTES_MAX)? {
                let mut frame = self.read_buf.split_to(FRAME_LENGTH_BYTES + len);
                return Ok(frame.split_off(FRAME_LENGTH_BYTES).freeze());
            }
            self.read_buf.reserve(64 * 1024);
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    pub async fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        let topics = topics.map(|ts| {
            ts.into_iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t))))
                })
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        self.send(req, 12).await
    }

    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let topic = create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(configs);
        let resp = self
            .send(
                CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(30_000),
                7,
            )
            .await?;
        for t in resp.topics {
            check(
                t.error_code,
                format!("create topic {name}"),
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(StrBytes::from_string(name.into()))])
            .with_timeout_ms(30_000);
        let resp = self.send(req, 5).await?;
        for r in resp.responses {
            check(
                r.error_code,
                format!("delete topic {name}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    pub async fn describe_topic_configs(
        &mut self,
        name: &str,
    ) -> Result<Vec<(String, String, i8)>, ClientError> {
        let resource = describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configuration_keys(None);
        let resp = self
            .send(
                DescribeConfigsRequest::default().with_resources(vec![resource]),
                4,
            )
            .await?;
        let mut out = Vec::new();
        for r in resp.results {
            check(
                r.error_code,
                format!("describe configs of {name}"),
                r.error_message.as_ref(),
            )?;
            out.extend(r.configs.into_iter().map(|c| {
                (
                    c.name.to_string(),
                    c.value.map(|v| v.to_string()).unwrap_or_default(),
                    c.config_source,
                )
            }));
        }
        Ok(out)
    }

    /// DescribeLogDirs for one partition on this broker: the size in each of its log
    /// directories, as (directory, bytes). A broker with tiered storage names its object
    /// store as a directory too, with the bytes of the partition's copies there.
    pub async fn log_dir_sizes(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<(String, i64)>, ClientError> {
        let wanted = describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![partition]);
        let resp = self
            .send(
                DescribeLogDirsRequest::default().with_topics(Some(vec![wanted])),
                4,
            )
            .await?;
        check(
            resp.error_code,
            format!("describe log dirs of {topic}"),
            None,
        )?;
        let mut out = Vec::new();
        for dir in resp.results {
            check(
                dir.error_code,
                format!("log dir {}", dir.log_dir.as_str()),
                None,
            )?;
            for t in dir.topics {
                if t.name.as_str() != topic {
                    continue;
                }
                for p in t.partitions {
                    if p.partition_index == partition {
                        out.push((dir.log_dir.to_string(), p.partition_size));
                    }
                }
            }
        }
        Ok(out)
    }

    /// IncrementalAlterConfigs for one resource (2 = topic, 4 = broker; "" = cluster
    /// default): `ops` are (key, operation 0 SET / 1 DELETE / 2 APPEND / 3 SUBTRACT, value).
    pub async fn incremental_alter_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        ops: &[(String, i8, Option<String>)],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        use kafka_protocol::messages::incremental_alter_configs_request as iac;
        let resource = iac::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        iac::AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_config_operation(*op)
                            .with_value(v.clone().map(StrBytes::from_string))
                    })
                    .collect(),
            );
        let resp = self
            .send(
                IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![resource])
                    .with_validate_only(validate_only),
                1,
            )
            .await?;
        for r in resp.responses {
            check(
                r.error_code,
                format!("alter configs of {name}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Produces one batch; returns its base offset. Retries while the partition is
    /// unavailable (a broker still recovering it), as Kafka's clients do.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> Result<i64, ClientError> {
        let mut retry = UnavailableRetry::default();
        loop {
            let r = self
                .produce_once(topic, partition, batch.clone(), acks)
                .await;
            if !retry.again(&r).await {
                return r;
            }
        }
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> Result<i64, ClientError> {
        let data = produce_request::PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch));
        let topic_data = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![data]);
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic_data]);
        let resp = self.send(req, 9).await?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .next()
            .ok_or_else(|| empty_response(format!("produce to {topic}-{partition}")))?;
        check(
            p.error_code,
            format!("produce to {topic}-{partition}"),
            p.error_message.as_ref(),
        )?;
        Ok(p.base_offset)
    }

    /// Fetches from one partition: returns (record batch bytes, high watermark). Retries
    /// while the partition is unavailable.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(Bytes, i64), ClientError> {
        let mut retry = UnavailableRetry::default();
        loop {
            let r = self.fetch_once(topic, partition, offset, max_wait_ms).await;
            if !retry.again(&r).await {
                return r;
            }
        }
    }

    async fn fetch_once(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(Bytes, i64), ClientError> {
        let p = fetch_request::FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20);
        let t = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![p]);
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![t])
            .with_session_epoch(-1);
        let resp = self.send(req, 11).await?;
        check(resp.error_code, "fetch", None)?;
        let data = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| empty_response(format!("fetch {topic}-{partition}")))?;
        check(
            data.error_code,
            format!("fetch {topic}-{partition} at offset {offset}"),
            None,
        )?;
        Ok((data.records.unwrap_or_default(), data.high_watermark))
    }

    /// ListOffsets for one partition (`timestamp` -1 latest, -2 earliest, or a time).
    /// Retries while the partition is unavailable.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        self.list_offset_isolated(topic, partition, timestamp, false)
            .await
    }

    /// ListOffsets as a read_committed consumer sees the log when `read_committed` (the
    /// latest offset is then the last stable offset).
    pub async fn list_offset_isolated(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        read_committed: bool,
    ) -> Result<i64, ClientError> {
        let mut retry = UnavailableRetry::default();
        loop {
            let r = self
                .list_offset_once(topic, partition, timestamp, read_committed)
                .await;
            if !retry.again(&r).await {
                return r;
            }
        }
    }

    async fn list_offset_once(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        read_committed: bool,
    ) -> Result<i64, ClientError> {
        let p = list_offsets_request::ListOffsetsPartition::default()
            .with_partition_index(partition)
            .with_timestamp(timestamp);
        let t = list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![p]);
        let resp = self
            .send(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(i8::from(read_committed))
                    .with_topics(vec![t]),
                7,
            )
            .await?;
        let p = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .ok_or_else(|| empty_response(format!("list offsets {topic}-{partition}")))?;
        check(
            p.error_code,
            format!("list offsets {topic}-{partition}"),
            None,
        )?;
        Ok(p.offset)
    }

    /// The latest offsets (high watermarks) of many partitions this broker leads, in one
    /// ListOffsets request: each partition's offset, or the Kafka error code it answered
    /// (no retries: a partition led elsewhere says so and is left to the caller).
    pub async fn high_watermarks(
        &mut self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), Result<i64, i16>)>, ClientError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let topics = by_topic
            .into_iter()
            .map(|(topic, indexes)| {
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(
                        indexes
                            .into_iter()
                            .map(|p| {
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(-1)
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = self
            .send(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(topics),
                7,
            )
            .await?;
        Ok(resp
            .topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| {
                    let offset = if p.error_code == 0 {
                        Ok(p.offset)
                    } else {
                        Err(p.error_code)
                    };
                    ((name.clone(), p.partition_index), offset)
                })
            })
            .collect())
    }
}

/// Kafka's default partitioner for keyed records (murmur2, as the Java client), so a key
/// maps to the same partition from `strata produce` as from Java producers.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Sends a request to `topic`-`partition`'s leader through a [`Router`]. An answer saying the
/// leader is elsewhere or not settled (or, for a few seconds, that the topic is unknown) is
/// retried: each try asks the metadata afresh, so a partition whose leader was unknown a
/// moment ago (a topic just created) is reached once it has one. (A macro rather than a
/// method taking a closure: the futures of an async closure over `&mut Client` would not be
/// `Send` for the tasks that spawn them.)
macro_rules! at_leader {
    ($router:expr, $topic:expr, $partition:expr, |$leader:ident| $request:expr) => {{
        let mut retry = UnavailableRetry::default();
        loop {
            let result = match $router.leader($topic, $partition).await {
                Ok($leader) => $request.await,
                Err(e) => Err(e),
            };
            let result = $router.settle($topic, $partition, result);
            if !retry.again_routed(&result).await {
                break result;
            }
        }
    }};
}

/// Requests for one partition go to its leader: a connection per broker, the leaders learnt
/// from Metadata (through the bootstrap connection) and forgotten when a request fails, so a
/// cluster's partitions are reached wherever they are led. An answer saying the leader is
/// elsewhere or not settled yet is retried (for at most 30 s) after asking the metadata again.
pub struct Router {
    bootstrap: Client,
    /// Connections by broker endpoint.
    brokers: HashMap<String, Client>,
    /// Each known partition's leader endpoint.
    leaders: HashMap<(String, i32), String>,
}

impl Router {
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        Ok(Self {
            bootstrap: Client::connect(bootstrap).await?,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
        })
    }

    /// The bootstrap connection (any broker answers metadata and admin requests).
    pub fn any(&mut self) -> &mut Client {
        &mut self.bootstrap
    }

    /// Every broker the cluster's metadata lists, by id and endpoint: for requests each
    /// broker answers for what it holds itself (ListGroups, ListTransactions). Reach one with
    /// [`Router::connection`].
    pub async fn brokers(&mut self) -> Result<Vec<(i32, String)>, ClientError> {
        let md = self.bootstrap.metadata(Some(vec![])).await?;
        Ok(md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect())
    }

    /// The connection to the broker at `addr` (made on first use, then kept).
    pub async fn connection(&mut self, addr: &str) -> Result<&mut Client, ClientError> {
        if !self.brokers.contains_key(addr) {
            let client = Client::connect(addr).await?;
            self.brokers.insert(addr.to_string(), client);
        }
        Ok(self.brokers.get_mut(addr).expect("inserted above"))
    }

    /// The connection to `topic`-`partition`'s leader (metadata asked when not known; the
    /// bootstrap broker itself when it leads or no leader is known yet).
    pub async fn leader(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut Client, ClientError> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            let md = self
                .bootstrap
                .metadata(Some(vec![topic.to_string()]))
                .await?;
            let endpoints: HashMap<i32, String> = md
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect();
            for t in &md.topics {
                let Some(name) = t.name.as_ref() else {
                    continue;
                };
                for p in &t.partitions {
                    if let Some(addr) = endpoints.get(&p.leader_id.0) {
                        self.leaders
                            .insert((name.0.to_string(), p.partition_index), addr.clone());
                    }
                }
            }
        }
        let Some(addr) = self.leaders.get(&key).cloned() else {
            return Ok(&mut self.bootstrap);
        };
        if !self.brokers.contains_key(&addr) {
            let client = Client::connect(&addr).await?;
            self.brokers.insert(addr.clone(), client);
        }
        Ok(self.brokers.get_mut(&addr).expect("inserted above"))
    }

    /// The connection to the coordinator of `key` (`key_type` 0: a group, 1: a
    /// transactional id), found with FindCoordinator through the bootstrap connection.
    pub async fn coordinator(
        &mut self,
        key_type: i8,
        key: &str,
    ) -> Result<&mut Client, ClientError> {
        use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
        let mut attempts = 0;
        let addr = loop {
            let version = self
                .bootstrap
                .version(ApiKey::FindCoordinator, 4)
                .unwrap_or(3);
            let request = FindCoordinatorRequest::default().with_key_type(key_type);
            let request = if version >= 4 {
                request.with_coordinator_keys(vec![StrBytes::from_string(key.to_string())])
            } else {
                request.with_key(StrBytes::from_string(key.to_string()))
            };
            let resp: FindCoordinatorResponse = self.bootstrap.send_at(request, version).await?;
            let (code, message, host, port) = match resp.coordinators.first() {
                Some(c) if version >= 4 => (
                    c.error_code,
                    c.error_message.clone(),
                    c.host.clone(),
                    c.port,
                ),
                _ => (
                    resp.error_code,
                    resp.error_message.clone(),
                    resp.host.clone(),
                    resp.port,
                ),
            };
            // COORDINATOR_NOT_AVAILABLE while its partition gets a leader: ask again.
            if code == 15 && attempts < 50 {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            check(code, format!("coordinator of {key}"), message.as_ref())?;
            break format!("{}:{}", host.as_str(), port);
        };
        if !self.brokers.contains_key(&addr) {
            let client = Client::connect(&addr).await?;
            self.brokers.insert(addr.clone(), client);
        }
        Ok(self.brokers.get_mut(&addr).expect("inserted above"))
    }

    /// A request's result; a failure forgets the partition's leader (asked again next time).
    fn settle<T>(
        &mut self,
        topic: &str,
        partition: i32,
        result: Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        if result.is_err() {
            self.forget(topic, partition);
        }
        result
    }

    /// Forgets what is known of `topic`-`partition` (after a failed request: its leader may
    /// have moved, or its connection broke).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(addr) = self.leaders.remove(&(topic.to_string(), partition)) {
            self.brokers.remove(&addr);
        }
    }

    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        self.list_offset_isolated(topic, partition, timestamp, false)
            .await
    }

    /// ListOffsets at the partition's leader, read_committed when asked.
    pub async fn list_offset_isolated(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        read_committed: bool,
    ) -> Result<i64, ClientError> {
        at_leader!(self, topic, partition, |leader| leader.list_offset_once(
            topic,
            partition,
            timestamp,
            read_committed
        ))
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(Bytes, i64), ClientError> {
        at_leader!(self, topic, partition, |leader| leader.fetch_once(
            topic,
            partition,
            offset,
            max_wait_ms
        ))
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<i64, ClientError> {
        // Retried only on answers that say nothing was appended (see `at_leader!`).
        at_leader!(self, topic, partition, |leader| leader.produce_once(
            topic,
            partition,
            records.clone(),
            acks
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2 (as signed ints in Java).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    /// What a scripted broker answers: Metadata names no leader for `t`-0 until it has been
    /// asked `leaderless_answers` times, then `leader`; node 1 refuses its first
    /// `node1_refusals` produces with `node1_refusal` and then appends at offset 3; node 2
    /// appends at offset 7.
    struct Script {
        leaderless_answers: usize,
        leader: i32,
        node1_refusals: usize,
        node1_refusal: i16,
        metadata_asked: usize,
        produces: [usize; 2],
        endpoints: [u16; 2],
    }

    impl Script {
        fn new(endpoints: [u16; 2]) -> Script {
            Script {
                leaderless_answers: 0,
                leader: 2,
                node1_refusals: usize::MAX,
                node1_refusal: 6,
                metadata_asked: 0,
                produces: [0, 0],
                endpoints,
            }
        }
    }

    async fn scripted_broker(
        listener: tokio::net::TcpListener,
        node: i32,
        script: std::sync::Arc<std::sync::Mutex<Script>>,
    ) {
        use kafka_protocol::messages::{
            api_versions_response::ApiVersion, metadata_response, produce_response,
            ApiVersionsResponse, BrokerId, MetadataResponse, ProduceResponse,
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(len) = conn.read_i32().await else {
                        return;
                    };
                    let mut frame = vec![0u8; len as usize];
                    if conn.read_exact(&mut frame).await.is_err() {
                        return;
                    }
                    let f = strata_protocol::decode_request(Bytes::from(frame)).expect("decodes");
                    let id = f.header.correlation_id;
                    let out = match f.request {
                        strata_protocol::Request::ApiVersions(_) => {
                            let keys = [(ApiKey::Produce, 9), (ApiKey::Metadata, 12)]
                                .map(|(k, max)| {
                                    ApiVersion::default()
                                        .with_api_key(k as i16)
                                        .with_max_version(max)
                                })
                                .to_vec();
                            let r = ApiVersionsResponse::default().with_api_keys(keys);
                            strata_protocol::encode_response(id, f.api_key, f.version, &r)
                        }
                        strata_protocol::Request::Metadata(_) => {
                            let mut s = script.lock().unwrap();
                            s.metadata_asked += 1;
                            let leader = if s.metadata_asked > s.leaderless_answers {
                                s.leader
                            } else {
                                -1
                            };
                            let brokers = (0..2)
                                .map(|i| {
                                    metadata_response::MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(i as i32 + 1))
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(s.endpoints[i] as i32)
                                })
                                .collect();
                            let partition = metadata_response::MetadataResponsePartition::default()
                                .with_partition_index(0)
                                .with_leader_id(BrokerId(leader));
                            let topic = metadata_response::MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                                .with_partitions(vec![partition]);
                            let r = MetadataResponse::default()
                                .with_brokers(brokers)
                                .with_topics(vec![topic]);
                            strata_protocol::encode_response(id, f.api_key, f.version, &r)
                        }
                        strata_protocol::Request::Produce(_) => {
                            let mut s = script.lock().unwrap();
                            s.produces[node as usize - 1] += 1;
                            let (code, offset) = match node {
                                2 => (0, 7),
                                _ if s.produces[0] <= s.node1_refusals => (s.node1_refusal, -1),
                                _ => (0, 3),
                            };
                            drop(s);
                            let p = produce_response::PartitionProduceResponse::default()
                                .with_index(0)
                                .with_error_code(code)
                                .with_base_offset(offset);
                            let t = produce_response::TopicProduceResponse::default()
                                .with_name(TopicName(StrBytes::from_static_str("t")))
                                .with_partition_responses(vec![p]);
                            let r = ProduceResponse::default().with_responses(vec![t]);
                            strata_protocol::encode_response(id, f.api_key, f.version, &r)
                        }
                        other => panic!("the script has no answer to {other:?}"),
                    };
                    if conn.write_all(&out.expect("encodes")).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// Two scripted brokers and a router bootstrapped on the first.
    async fn scripted_cluster(
        script: impl FnOnce(&mut Script),
    ) -> (Router, std::sync::Arc<std::sync::Mutex<Script>>) {
        let listeners = [
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ];
        let endpoints = [0, 1].map(|i| listeners[i].local_addr().unwrap().port());
        let mut s = Script::new(endpoints);
        script(&mut s);
        let script = std::sync::Arc::new(std::sync::Mutex::new(s));
        for (i, l) in listeners.into_iter().enumerate() {
            tokio::spawn(scripted_broker(l, i as i32 + 1, script.clone()));
        }
        let router = Router::connect(&format!("127.0.0.1:{}", endpoints[0]))
            .await
            .unwrap();
        (router, script)
    }

    fn one_record() -> Bytes {
        let mut b = strata_records::BatchBuilder::new(strata_records::Compression::None);
        b.push(strata_records::Record {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp_ms: 0,
        });
        b.build().unwrap()
    }

    /// A broker that has not applied a topic just created answers UNKNOWN_TOPIC_OR_PARTITION
    /// for a moment: the router tries again (the SQL engine's first command on a fresh
    /// cluster failed so).
    #[tokio::test]
    async fn a_topic_not_yet_known_to_its_leader_is_retried() {
        let (mut router, script) = scripted_cluster(|s| {
            s.leader = 1;
            s.node1_refusals = 3;
            s.node1_refusal = 3;
        })
        .await;
        let offset = router.produce("t", 0, one_record(), -1).await;
        assert_eq!(offset.expect("appended once the topic is known"), 3);
        assert_eq!(script.lock().unwrap().produces, [4, 0]);
    }

    /// A topic just created has no leader in the first metadata answers; a produce first
    /// lands on the bootstrap broker, which is not the leader. The router must ask the
    /// metadata again and reach the leader, not retry the wrong broker until it gives up
    /// (which kept a SQL statement waiting 30 s on a cluster).
    #[tokio::test]
    async fn a_produce_refused_by_a_broker_that_does_not_lead_is_routed_again() {
        let (mut router, script) = scripted_cluster(|s| s.leaderless_answers = 2).await;
        let batch = one_record();
        let offset =
            tokio::time::timeout(Duration::from_secs(20), router.produce("t", 0, batch, -1))
                .await
                .expect("the produce gave up or was stuck on the wrong broker")
                .expect("the leader appended the batch");
        assert_eq!(offset, 7);
        let s = script.lock().unwrap();
        // Refused by node 1 while the metadata named no leader, then appended by node 2.
        assert_eq!(s.produces, [2, 1]);
        assert_eq!(s.metadata_asked, 3);
    }
}
