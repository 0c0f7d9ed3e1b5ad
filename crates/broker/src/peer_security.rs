//! How this broker connects to its peers' inter-broker listener (replica fetches): TLS with
//! the node's truststore (and its own keystore as client certificate, for listeners that
//! require one), and SASL with `sasl.mechanism.inter.broker.protocol` and the username and
//! password of `sasl.jaas.config` — the same settings Kafka brokers use. The peers
//! authorize that principal like any other (CLUSTER_ACTION, or `super.users`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use strata_client::{ClientSasl, ClientSecurity};
use strata_security::{jaas_option, ScramMechanism};

use crate::listeners::Listeners;
use crate::BrokerConfig;

fn pem(
    path: &Option<std::path::PathBuf>,
    inline: &Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    match (path, inline) {
        (Some(p), _) => std::fs::read(p)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        (None, Some(text)) => Ok(Some(text.clone().into_bytes())),
        (None, None) => Ok(None),
    }
}

/// The security of connections to the peers' inter-broker listener.
pub fn peer_security(
    config: &BrokerConfig,
    listeners: &Listeners,
) -> Result<ClientSecurity, String> {
    let protocol = listeners.inter_broker().protocol;
    let mut security = ClientSecurity::default();
    if protocol.uses_tls() {
        let trust = pem(&config.ssl_truststore_location, &config.ssl_truststore_certificates)?
            .ok_or_else(|| {
                format!(
                    "inter.broker.listener.name {} uses TLS: ssl.truststore.location must name the CA that signed the brokers' certificates",
                    listeners.inter_broker
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&trust) {
            let cert = cert.map_err(|e| format!("the truststore: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the truststore: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        // Our own certificate, for peers that require client certificates (mTLS).
        let keystore = match &config.ssl_keystore_location {
            Some(p) => {
                Some(std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?)
            }
            None => None,
        };
        let client = match keystore {
            Some(ks) => {
                let chain = CertificateDer::pem_slice_iter(&ks)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("the keystore: {e}"))?;
                let key =
                    PrivateKeyDer::from_pem_slice(&ks).map_err(|e| format!("the keystore: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("the keystore: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        security.tls = Some(Arc::new(client));
    }
    if protocol.uses_sasl() {
        let jaas = config.sasl_jaas_config.as_deref().ok_or_else(|| {
            format!(
                "inter.broker.listener.name {} uses SASL: sasl.jaas.config must give this broker's username and password",
                listeners.inter_broker
            )
        })?;
        let (Some(user), Some(password)) =
            (jaas_option(jaas, "username"), jaas_option(jaas, "password"))
        else {
            return Err("sasl.jaas.config: expected username=\"…\" password=\"…\"".into());
        };
        let mechanism = config.sasl_mechanism_inter_broker_protocol.trim();
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
