//! HTTP Basic authentication of the REST API (ksqlDB's `authentication.method=BASIC`)
//! against the broker's own users: a username and password are good when this node's SASL
//! listener takes them (SASL/PLAIN or SCRAM, as a Kafka client would log in), so SQL and
//! Kafka share one set of credentials and one place to change them. A success is
//! remembered for a minute (by a keyed hash of the credentials, never the password), so a
//! busy client does not cost a SASL exchange per request.
//!
//! Authorization (ksqlDB's topic access validator): each statement, query, PRINT and insert
//! is checked against the broker's ACLs for the user, on the topics it touches — READ on
//! what it reads, WRITE on what it writes, CREATE for a topic it creates, DELETE for a topic
//! it deletes ([`BasicAuth::require`]). The broker answers as it would that user's own
//! Kafka client: a Metadata request as the user with `include_topic_authorized_operations`
//! (KIP-430), and a `validate_only` CreateTopics for a new topic. Answers are remembered
//! for `ACCESS_REMEMBERED` per user and topic. Persistent queries then run, as in ksqlDB,
//! as the engine's own principal (its node's).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_client::{Client, ClientError, ClientSasl, ClientSecurity};

/// How long a verified username and password are taken without asking the broker again.
const REMEMBERED: Duration = Duration::from_secs(60);
/// At most this many remembered credentials (the oldest go first).
const REMEMBERED_MAX: usize = 4096;
/// SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// How long a user's authorized operations on a topic are taken without asking again (an
/// ACL removed takes effect on SQL within this time).
const ACCESS_REMEMBERED: Duration = Duration::from_secs(10);
/// Kafka error codes the access checks read.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// What a statement does to a topic, as Kafka's ACL operations name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicOp {
    Read,
    Write,
    Create,
    Delete,
}

impl TopicOp {
    /// Kafka's AclOperation code (the bit of `topic_authorized_operations`).
    fn acl_code(self) -> u32 {
        match self {
            TopicOp::Read => 3,
            TopicOp::Write => 4,
            TopicOp::Create => 5,
            TopicOp::Delete => 6,
        }
    }

    /// As ksqlDB's messages write it.
    pub fn name(self) -> &'static str {
        match self {
            TopicOp::Read => "Read",
            TopicOp::Write => "Write",
            TopicOp::Create => "Create",
            TopicOp::Delete => "Delete",
        }
    }
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The user lacks an operation on some topics: ksqlDB's message, `Authorization denied
    /// to Read on topic(s): [t]` (HTTP 403, error code 40301).
    Topics(String),
    /// The broker could not be asked (HTTP 503).
    Unavailable(String),
}

/// The message for the first operation a user lacks.
fn denied_message(missing: &[(String, TopicOp)]) -> Option<String> {
    let op = missing.iter().map(|(_, op)| *op).min()?;
    let topics: Vec<&str> = missing
        .iter()
        .filter(|(_, o)| *o == op)
        .map(|(t, _)| t.as_str())
        .collect();
    Some(format!(
        "Authorization denied to {} on topic(s): [{}]",
        op.name(),
        topics.join(", ")
    ))
}

/// What a request's credentials come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The user they name.
    User(String),
    /// Missing, malformed or refused.
    Refused,
    /// The broker could not be asked (the reason).
    Unavailable(String),
}

pub struct BasicAuth {
    /// This node's SASL listener and how to reach it (TLS when it uses TLS).
    addr: String,
    tls: ClientSecurity,
    mechanism: String,
    keys: std::hash::RandomState,
    verified: Mutex<HashMap<u64, Instant>>,
    /// (credentials' key, topic) → the operations the broker allowed, and when asked.
    access: Mutex<HashMap<(u64, String), (u32, Instant)>>,
}

impl BasicAuth {
    /// Checks credentials against the SASL listener at `addr` with `mechanism` (PLAIN,
    /// SCRAM-SHA-256 or SCRAM-SHA-512), over TLS when `tls` has it (its SASL is ignored).
    pub fn new(addr: String, tls: ClientSecurity, mechanism: &str) -> Result<BasicAuth, String> {
        ClientSasl::for_mechanism(mechanism, String::new(), String::new()).ok_or_else(|| {
            format!("SQL authentication: mechanism {mechanism} is not PLAIN or SCRAM")
        })?;
        Ok(BasicAuth {
            addr,
            tls,
            mechanism: mechanism.to_string(),
            keys: std::hash::RandomState::new(),
            verified: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
        })
    }

    fn key_of(&self, user: &str, password: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(user.as_bytes());
        h.write_u8(0);
        h.write(password.as_bytes());
        h.finish()
    }

    fn security_for(&self, user: &str, password: &str) -> Option<ClientSecurity> {
        let sasl = ClientSasl::for_mechanism(&self.mechanism, user.into(), password.into())?;
        Some(ClientSecurity {
            tls: self.tls.tls.clone(),
            sasl: Some(sasl),
        })
    }

    /// Whether the user of `authorization` (already authenticated by [`BasicAuth::check`])
    /// may do each operation on each topic, as the broker's ACLs say.
    pub async fn require(
        &self,
        authorization: Option<&str>,
        needs: &[(String, TopicOp)],
    ) -> Result<(), Denied> {
        if needs.is_empty() {
            return Ok(());
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Err(Denied::Unavailable("no credentials".into()));
        };
        let key = self.key_of(&user, &password);
        let mut missing = Vec::new();
        let mut ask: Vec<String> = Vec::new();
        let mut create: Vec<String> = Vec::new();
        {
            let access = self.access.lock().expect("access lock");
            for (topic, op) in needs {
                if *op == TopicOp::Create {
                    create.push(topic.clone());
                    continue;
                }
                match access.get(&(key, topic.clone())) {
                    Some((ops, at)) if at.elapsed() < ACCESS_REMEMBERED => {
                        if ops & (1 << op.acl_code()) == 0 {
                            missing.push((topic.clone(), *op));
                        }
                    }
                    _ => {
                        if !ask.contains(topic) {
                            ask.push(topic.clone())
                        }
                    }
                }
            }
        }
        if !ask.is_empty() || !create.is_empty() {
            let security = self
                .security_for(&user, &password)
                .ok_or_else(|| Denied::Unavailable(format!("mechanism {}", self.mechanism)))?;
            let mut client = Client::connect_secure(&self.addr, &security)
                .await
                .map_err(|e| Denied::Unavailable(e.to_string()))?;
            if !ask.is_empty() {
                let answered = topic_operations(&mut client, &ask)
                    .await
                    .map_err(|e| Denied::Unavailable(e.to_string()))?;
                let mut access = self.access.lock().expect("access lock");
                if access.len() >= REMEMBERED_MAX {
                    access.retain(|_, (_, at)| at.elapsed() < ACCESS_REMEMBERED);
                    if access.len() >= REMEMBERED_MAX {
                        access.clear();
                    }
                }
                for (topic, ops) in answered {
                    access.insert((key, topic), (ops, Instant::now()));
                }
                for (topic, op) in needs {
                    if *op == TopicOp::Create || !ask.contains(topic) {
                        continue;
                    }
                    let ops = access.get(&(key, topic.clone())).map_or(0, |(ops, _)| *ops);
                    if ops & (1 << op.acl_code()) == 0 {
                        missing.push((topic.clone(), *op));
                    }
                }
            }
            for topic in create {
                if !may_create(&mut client, &topic)
                    .await
                    .map_err(|e| Denied::Unavailable(e.to_string()))?
                {
                    missing.push((topic, TopicOp::Create));
                }
            }
        }
        match denied_message(&missing) {
            None => Ok(()),
            Some(m) => {
                tracing::info!(%user, denied = %m, "SQL request denied by the topics' ACLs");
                Err(Denied::Topics(m))
            }
        }
    }

    /// The verdict on an `Authorization` header's value.
    /// Forgets every remembered login and access answer (a user's credentials changed or
    /// went: the next request is checked afresh).
    pub fn forget(&self) {
        self.verified.lock().expect("auth lock").clear();
        self.access.lock().expect("auth lock").clear();
    }

    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Refused;
        };
        let key = self.key_of(&user, &password);
        let remembered = self
            .verified
            .lock()
            .expect("auth lock")
            .get(&key)
            .is_some_and(|at| at.elapsed() < REMEMBERED);
        if remembered {
            return Verdict::User(user);
        }
        let Some(sasl) = ClientSasl::for_mechanism(&self.mechanism, user.clone(), password) else {
            return Verdict::Unavailable(format!("mechanism {}", self.mechanism));
        };
        let security = ClientSecurity {
            tls: self.tls.tls.clone(),
            sasl: Some(sasl),
        };
        match Client::connect_secure(&self.addr, &security).await {
            Ok(_) => {
                let mut verified = self.verified.lock().expect("auth lock");
                if verified.len() >= REMEMBERED_MAX {
                    verified.retain(|_, at| at.elapsed() < REMEMBERED);
                    if verified.len() >= REMEMBERED_MAX {
                        verified.clear();
                    }
                }
                verified.insert(key, Instant::now());
                Verdict::User(user)
            }
            Err(ClientError::Kafka { code, .. }) if code == SASL_AUTHENTICATION_FAILED => {
                Verdict::Refused
            }
            Err(ClientError::Security(_)) => Verdict::Refused,
            Err(e) => Verdict::Unavailable(e.to_string()),
        }
    }
}

/// The operations (a bitfield of AclOperation codes) the connection's principal has on each
/// topic. A topic the principal may not even describe has none; a topic that does not
/// exist has every one (the statement then fails on its own, as without authorization).
async fn topic_operations(
    client: &mut Client,
    topics: &[String],
) -> Result<Vec<(String, u32)>, ClientError> {
    use kafka_protocol::messages::{metadata_request, MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true);
    let resp = client.send(req, 12).await?;
    let mut out = Vec::new();
    for t in resp.topics {
        let Some(name) = t.name else { continue };
        let ops = match t.error_code {
            0 if t.topic_authorized_operations >= 0 => t.topic_authorized_operations as u32,
            UNKNOWN_TOPIC_OR_PARTITION => u32::MAX,
            _ => 0,
        };
        out.push((name.0.to_string(), ops));
    }
    Ok(out)
}

/// Whether the connection's principal may create `topic` (a `validate_only` CreateTopics:
/// nothing is created). A topic that exists already needs no creating.
async fn may_create(client: &mut Client, topic: &str) -> Result<bool, ClientError> {
    use kafka_protocol::messages::{create_topics_request, CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(-1)
            .with_replication_factor(-1)])
        .with_timeout_ms(30_000)
        .with_validate_only(true);
    let resp = client.send(req, 7).await?;
    Ok(!resp.topics.iter().any(|t| {
        t.error_code == TOPIC_AUTHORIZATION_FAILED || t.error_code == CLUSTER_AUTHORIZATION_FAILED
    }) || resp
        .topics
        .iter()
        .any(|t| t.error_code == TOPIC_ALREADY_EXISTS))
}

/// A request's credentials with the checker that takes them: what the engine asks before
/// running a statement for that user.
pub struct Caller<'a> {
    pub auth: &'a BasicAuth,
    pub authorization: Option<&'a str>,
}

impl Caller<'_> {
    pub async fn require(&self, needs: &[(String, TopicOp)]) -> Result<(), Denied> {
        self.auth.require(self.authorization, needs).await
    }
}

/// `Basic <base64(user:password)>`'s user and password.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = strata_sql::format::base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_the_first_missing_operation_and_its_topics_as_ksqldb_does() {
        let missing = vec![
            ("orders".to_string(), TopicOp::Write),
            ("clicks".to_string(), TopicOp::Read),
            ("pages".to_string(), TopicOp::Read),
        ];
        assert_eq!(
            denied_message(&missing).as_deref(),
            Some("Authorization denied to Read on topic(s): [clicks, pages]")
        );
        assert_eq!(denied_message(&[]), None);
    }

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        // "alice:s3cr:et" — a password may hold colons; the user may not.
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjpldA=="),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(
            parse_basic("basic YWxpY2U6czNjcjpldA=="),
            parse_basic("Basic YWxpY2U6czNjcjpldA==")
        );
        assert_eq!(parse_basic("Bearer YWxpY2U6czNjcjpldA=="), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        // ":pw" names no user.
        assert_eq!(parse_basic("Basic OnB3"), None);
        assert_eq!(parse_basic("Basic"), None);
    }
}
