//! How this broker connects to its peers, with the settings Kafka brokers use:
//!
//! - replica fetches go to the peers' inter-broker listener: TLS with the node's truststore
//!   (and its own keystore as client certificate, for listeners that require one), SASL with
//!   `sasl.mechanism.inter.broker.protocol` and the username and password of the listener's
//!   JAAS line; the peers authorize that principal like any other (CLUSTER_ACTION, or
//!   `super.users`);
//! - the metadata quorum's connections (raft, forwarded writes, inter-broker calls) go to
//!   the peers' controller listener, secured by its protocol in
//!   `listener.security.protocol.map`: TLS as above (its server side shares the client
//!   listeners' keystore and reloads), SASL with `sasl.mechanism.controller.protocol`; the
//!   controller listener checks peers against the `user_NAME="password"` entries of its JAAS
//!   line (Kafka's PLAIN users; SCRAM works from the same entries) and, with an authorizer,
//!   admits only principals allowed CLUSTER_ACTION on the cluster (super users, as Kafka's
//!   controllers are configured).

use std::sync::Arc;
use std::time::Duration;

use strata_client::{tls_client_config_with, ClientSasl, ClientSecurity};
use strata_cluster::MetadataImage;
use strata_quorum::transport::{JaasUsers, Peer, Sasl, TlsServer, Transport};
use strata_security::acl::{authorize, Operation, Requester, ResourceType, CLUSTER_NAME};
use strata_security::{jaas_option, Mechanism, ScramMechanism};

use crate::listeners::Listeners;
use crate::tls::TlsContext;
use crate::BrokerConfig;

/// TLS to peers: the truststore's CAs and, when there is one, the keystore as our client
/// certificate. `listener` names what needs it, for the error.
fn tls_to_peers(
    config: &BrokerConfig,
    listener: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let config = &config.for_listener(listener);
    let trust =
        crate::keystore::truststore(config).map_err(|e| format!("listener {listener}: {e}"))?;
    if trust.is_empty() {
        return Err(format!(
            "listener {listener} uses TLS between nodes: ssl.truststore.location must name the CA that signed the nodes' certificates"
        ));
    }
    // Our own certificate, for peers that require client certificates (mTLS).
    let has_keystore = config.ssl_keystore_location.is_some()
        || (config.ssl_keystore_certificate_chain.is_some() && config.ssl_keystore_key.is_some());
    let own = if has_keystore {
        Some(crate::keystore::keystore(config).map_err(|e| format!("listener {listener}: {e}"))?)
    } else {
        None
    };
    tls_client_config_with(trust, own).map_err(|e| format!("listener {listener}: {e}"))
}

/// This node's username and password for `listener` with `mechanism`, from its JAAS line.
fn login(
    config: &BrokerConfig,
    listener: &str,
    mechanism: &str,
) -> Result<(String, String), String> {
    let jaas = config.jaas_for(listener, mechanism).ok_or_else(|| {
        format!(
            "listener {listener} uses SASL between nodes: listener.name.{}.{}.sasl.jaas.config or sasl.jaas.config must give this node's username and password",
            listener.to_ascii_lowercase(),
            mechanism.to_ascii_lowercase()
        )
    })?;
    match (jaas_option(jaas, "username"), jaas_option(jaas, "password")) {
        (Some(user), Some(password)) => Ok((user, password)),
        _ => Err(format!(
            "the JAAS line for listener {listener}: expected username=\"…\" password=\"…\""
        )),
    }
}

/// TLS towards this node's `listener` as its peers would connect (the truststore's CAs and
/// the keystore as client certificate), for local clients such as the SQL engine. No SASL.
pub fn tls_to_listener(config: &BrokerConfig, listener: &str) -> Result<ClientSecurity, String> {
    Ok(ClientSecurity {
        tls: Some(tls_to_peers(config, listener)?),
        sasl: None,
    })
}

/// The security of connections to the peers' inter-broker listener.
pub fn peer_security(
    config: &BrokerConfig,
    listeners: &Listeners,
) -> Result<ClientSecurity, String> {
    let protocol = listeners.inter_broker().protocol;
    let name = &listeners.inter_broker;
    let mut security = ClientSecurity::default();
    if protocol.uses_tls() {
        security.tls = Some(tls_to_peers(config, name)?);
    }
    if protocol.uses_sasl() {
        let mechanism = config.sasl_mechanism_inter_broker_protocol.trim();
        let (user, password) = login(config, name, mechanism)?;
        security.sasl = Some(
            ClientSasl::for_mechanism(mechanism, user, password).ok_or_else(|| {
                format!(
                "sasl.mechanism.inter.broker.protocol {mechanism}: PLAIN, {} or {} between brokers",
                ScramMechanism::Sha256.name(),
                ScramMechanism::Sha512.name()
            )
            })?,
        );
    }
    Ok(security)
}

/// The mechanisms the controller listener takes: the controller protocol's and every PLAIN
/// or SCRAM one in `sasl.enabled.mechanisms`.
fn controller_mechanisms(config: &BrokerConfig, own: Mechanism) -> Vec<Mechanism> {
    let mut accepted = vec![own];
    for m in config
        .sasl_enabled_mechanisms
        .split(',')
        .filter_map(|m| Mechanism::parse(m.trim()))
        .filter(|m| *m != Mechanism::OAuthBearer)
    {
        if !accepted.contains(&m) {
            accepted.push(m);
        }
    }
    accepted
}

/// The security of the controller listener, both ways. `tls`: the context TLS listeners
/// share (required when the controller listener uses TLS); `authorizer`: whether ACLs are
/// enforced (then only principals allowed CLUSTER_ACTION on the cluster are admitted).
pub fn controller_transport(
    config: &BrokerConfig,
    listeners: &Listeners,
    tls: Option<Arc<TlsContext>>,
) -> Result<Transport, String> {
    let protocol = listeners.controller_protocol;
    let name = &listeners.controller_name;
    let mut transport = Transport::default();
    if protocol.uses_tls() {
        let tls = tls.ok_or_else(|| format!("controller listener {name}: no TLS context"))?;
        transport.tls_client = Some(tls_to_peers(config, name)?);
        let acceptor = tls.clone();
        transport.tls_server = Some(TlsServer {
            acceptor: Arc::new(move || acceptor.acceptor()),
            user_of: Arc::new(move |der| {
                crate::tls::certificate_subject(der).and_then(|subject| tls.user_of(&subject))
            }),
        });
    }
    if protocol.uses_sasl() {
        let mechanism_name = config.sasl_mechanism_controller_protocol.trim();
        let mechanism = Mechanism::parse(mechanism_name)
            .filter(|m| *m != Mechanism::OAuthBearer)
            .ok_or_else(|| {
                format!(
                    "sasl.mechanism.controller.protocol {mechanism_name}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 on the controller listener"
                )
            })?;
        let (user, password) = login(config, name, mechanism_name)?;
        let accepted = controller_mechanisms(config, mechanism);
        // The server side: every accepted mechanism's JAAS line lists its users.
        let mut users = String::new();
        for m in &accepted {
            if let Some(jaas) = config.jaas_for(name, m.name()) {
                users.push_str(jaas);
                users.push(' ');
            }
        }
        let credentials = JaasUsers::parse(&users).with_scram();
        if credentials.is_empty() {
            return Err(format!(
                "controller listener {name} uses SASL: its JAAS line (listener.name.{}.{}.sasl.jaas.config) must list the nodes' users as user_NAME=\"password\"",
                name.to_ascii_lowercase(),
                mechanism_name.to_ascii_lowercase()
            ));
        }
        transport.sasl = Some(Sasl {
            mechanism,
            user,
            password,
            accepted,
            credentials: Arc::new(credentials),
            failure_delay: Duration::from_millis(config.connection_failed_authentication_delay_ms),
        });
    }
    if let Some(authorizer) = config.authorizer_config().map_err(|e| e.to_string())? {
        let authorizer = Arc::new(authorizer);
        transport.admit = Some(Arc::new(move |peer: &Peer, image: &MetadataImage| {
            let acls: Vec<_> = image
                .acls()
                .values()
                .filter_map(crate::authorizer::binding)
                .collect();
            let host = peer.addr.ip().to_string();
            authorize(
                &acls,
                &authorizer,
                &Requester {
                    principal: &peer.principal,
                    host: &host,
                },
                Operation::ClusterAction,
                ResourceType::Cluster,
                CLUSTER_NAME,
            )
        }));
    }
    Ok(transport)
}
