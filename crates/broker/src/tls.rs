//! TLS for SSL and SASL_SSL listeners, with `rustls` (no OpenSSL): the server's certificate
//! chain and key from PEM (Kafka's `ssl.keystore.*` with type PEM), client certificates
//! checked against `ssl.truststore.*` when `ssl.client.auth` asks for them (mTLS), and the
//! principal of a client that presented one taken from its subject (Kafka's DEFAULT
//! `ssl.principal.mapping.rules`: the distinguished name as RFC 2253 writes it).
//!
//! The context can be rebuilt from the same settings while connections are served
//! ([`TlsContext::reload`]): new handshakes use the new certificates, established
//! connections keep theirs.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::BrokerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS settings of a node's TLS listeners.
pub struct TlsContext {
    config: RwLock<BrokerConfig>,
    acceptor: RwLock<TlsAcceptor>,
    /// `ssl.principal.mapping.rules`.
    mapper: strata_security::principal::PrincipalMapper,
}

/// The keystore and truststore settings that can change while the broker runs (dynamic
/// broker configs, as in Kafka), also under a listener's prefix
/// (`listener.name.ssl.ssl.keystore.location`: that listener only; unprefixed: every TLS
/// listener without a prefixed value of its own).
pub const DYNAMIC_KEYS: &[&str] = &[
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
];

/// The keystore/truststore setting a dynamic broker config key names, if it names one.
pub fn dynamic_key(key: &str) -> Option<&'static str> {
    let bare = match key.strip_prefix("listener.name.") {
        Some(rest) => rest.split_once('.').map(|(_, k)| k)?,
        None => key,
    };
    DYNAMIC_KEYS.iter().copied().find(|k| *k == bare)
}

/// The TLS settings one listener uses, as Kafka resolves them: a listener-prefixed setting
/// over an unprefixed one, and within each, a dynamic broker config (from `dynamic`) over the
/// file's. Other listeners' prefixed settings are ignored.
pub fn with_overrides(
    base: &BrokerConfig,
    dynamic: &std::collections::BTreeMap<String, String>,
    listener: &str,
) -> BrokerConfig {
    let apply = |c: &mut BrokerConfig, k: &str, v: &String| match dynamic_key(k) {
        Some("ssl.keystore.location") => c.ssl_keystore_location = Some(v.into()),
        Some("ssl.keystore.certificate.chain") => {
            c.ssl_keystore_certificate_chain = Some(v.clone())
        }
        Some("ssl.keystore.key") => c.ssl_keystore_key = Some(v.clone()),
        Some("ssl.truststore.location") => c.ssl_truststore_location = Some(v.into()),
        Some("ssl.truststore.certificates") => c.ssl_truststore_certificates = Some(v.clone()),
        _ => {}
    };
    let mut c = base.clone();
    for (k, v) in dynamic
        .iter()
        .filter(|(k, _)| !k.starts_with("listener.name."))
    {
        apply(&mut c, k, v);
    }
    let mut c = c.for_listener(listener);
    let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
    for (k, v) in dynamic.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        apply(&mut c, k, v);
    }
    c
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext").finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Reads the keystore and truststore the configuration names and builds the server
    /// side of TLS; any problem is an error naming the setting.
    pub fn new(config: &BrokerConfig) -> Result<Arc<Self>, TlsError> {
        let acceptor = build(config)?;
        let mapper =
            strata_security::principal::PrincipalMapper::parse(&config.ssl_principal_mapping_rules)
                .map_err(|e| TlsError::Invalid(format!("ssl.principal.mapping.rules: {e}")))?;
        Ok(Arc::new(TlsContext {
            config: RwLock::new(config.clone()),
            acceptor: RwLock::new(acceptor),
            mapper,
        }))
    }

    /// The user a client certificate's subject maps to (`ssl.principal.mapping.rules`);
    /// None if no rule matches (the client cannot authenticate).
    pub fn user_of(&self, subject: &str) -> Option<String> {
        self.mapper.map(subject)
    }

    /// Reads the files again (renewed certificates): later handshakes use them. On error
    /// the previous certificates stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let acceptor = build(&config)?;
        *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
        Ok(())
    }

    /// Checks that `config` makes a working TLS context (files readable, key matching).
    pub fn check(config: &BrokerConfig) -> Result<(), TlsError> {
        build(config).map(|_| ())
    }

    /// Switches to `config`'s keystore and truststore (read now): later handshakes use
    /// them. On error nothing changes.
    pub fn reconfigure(&self, config: &BrokerConfig) -> Result<(), TlsError> {
        let acceptor = build(config)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
        Ok(())
    }

    /// The acceptor new handshakes use now (the controller listener's connections).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs the server side of a TLS handshake.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let acceptor = self
            .acceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        acceptor.accept(stream).await
    }
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key of a PEM keystore: an encrypted PKCS#8 key decrypted with `password`
/// (`ssl.key.password`, as Kafka's PEM keystores take it), else an unencrypted PKCS#8,
/// PKCS#1 or SEC1 key.
pub fn private_key(pem: &[u8], password: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = String::from_utf8_lossy(pem);
    if let Some(start) = text.find(ENCRYPTED_BEGIN) {
        let end = text[start..]
            .find(ENCRYPTED_END)
            .map(|e| start + e + ENCRYPTED_END.len())
            .ok_or_else(|| {
                TlsError::Invalid("the keystore's encrypted private key has no END line".into())
            })?;
        let Some(password) = password else {
            return Err(TlsError::Invalid(
                "the keystore's private key is encrypted: set ssl.key.password".into(),
            ));
        };
        let (label, der) = pkcs8::der::pem::decode_vec(text[start..end].as_bytes())
            .map_err(|e| TlsError::Invalid(format!("the keystore's encrypted private key: {e}")))?;
        debug_assert_eq!(label, "ENCRYPTED PRIVATE KEY");
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| TlsError::Invalid(format!("the keystore's encrypted private key: {e}")))?;
        let plain = info.decrypt(password.as_bytes()).map_err(|e| {
            TlsError::Invalid(format!(
                "the keystore's private key does not decrypt with ssl.key.password ({e})"
            ))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TlsError::Invalid(format!(
            "the keystore holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM, or encrypted PKCS#8 with ssl.key.password): {e}"
        ))
    })
}

fn build(config: &BrokerConfig) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = crate::keystore::keystore(config)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut versions = Vec::new();
    for p in config.ssl_enabled_protocols.split(',').map(str::trim) {
        match p {
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            other => {
                return Err(TlsError::Invalid(format!(
                    "ssl.enabled.protocols: {other} is not supported"
                )))
            }
        }
    }
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let builder = match config.ssl_client_auth.as_str() {
        "none" => builder.with_no_client_auth(),
        auth => {
            let mut roots = RootCertStore::empty();
            for cert in crate::keystore::truststore(config)? {
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(TlsError::Invalid(
                    "ssl.client.auth asks for client certificates: set ssl.truststore.location"
                        .into(),
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "requested" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Invalid(format!("the truststore: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key)?;
    server.alpn_protocols = Vec::new();
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The user name of a client certificate: its subject as an RFC 2253 distinguished name
/// (`CN=alice,OU=eng,O=Acme,C=DE`), as Java's `X500Principal.getName()` writes it and
/// Kafka's DEFAULT mapping rule keeps it. None if the certificate cannot be parsed.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter() {
        let mut attrs = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".into(),
                "2.5.4.7" => "L".into(),
                "2.5.4.8" => "ST".into(),
                "2.5.4.9" => "STREET".into(),
                "2.5.4.10" => "O".into(),
                "2.5.4.11" => "OU".into(),
                "0.9.2342.19200300.100.1.25" => "DC".into(),
                "0.9.2342.19200300.100.1.1" => "UID".into(),
                _ => oid.clone(),
            };
            let known = key != oid;
            let value = match attr.as_str() {
                Ok(s) if known => escape_rfc2253(s),
                // Unknown attribute types are written as '#' and the hex of their DER
                // encoding, as RFC 2253 (and Java) do.
                _ => {
                    let any = attr.attr_value();
                    let mut der = vec![any.header.tag().0 as u8];
                    let data = any.data;
                    let len = data.len();
                    if len < 0x80 {
                        der.push(len as u8);
                    } else {
                        let bytes = (len as u32).to_be_bytes();
                        let skip = bytes.iter().take_while(|b| **b == 0).count();
                        der.push(0x80 | (4 - skip) as u8);
                        der.extend_from_slice(&bytes[skip..]);
                    }
                    der.extend_from_slice(data);
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    format!("#{hex}")
                }
            };
            attrs.push(format!("{key}={value}"));
        }
        rdns.push(attrs.join("+"));
    }
    // The most specific name first, as RFC 2253 orders them.
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listeners_tls_settings_its_own_first_then_dynamic_ones() {
        let mut base = BrokerConfig {
            ssl_keystore_location: Some("/file/all.pem".into()),
            ..BrokerConfig::default()
        };
        base.listener_overrides.insert(
            "listener.name.internal.ssl.keystore.location".into(),
            "/file/internal.pem".into(),
        );
        base.listener_overrides.insert(
            "listener.name.internal.ssl.client.auth".into(),
            "required".into(),
        );
        let none = std::collections::BTreeMap::new();
        let internal = with_overrides(&base, &none, "INTERNAL");
        assert_eq!(
            internal.ssl_keystore_location.as_deref(),
            Some(std::path::Path::new("/file/internal.pem"))
        );
        assert_eq!(internal.ssl_client_auth, "required");
        let external = with_overrides(&base, &none, "EXTERNAL");
        assert_eq!(
            external.ssl_keystore_location.as_deref(),
            Some(std::path::Path::new("/file/all.pem"))
        );
        assert_eq!(external.ssl_client_auth, "none");
        // Dynamic: unprefixed for listeners without a prefixed value, a listener's prefixed
        // one over everything, other listeners' ignored.
        let dynamic = std::collections::BTreeMap::from([
            (
                "ssl.keystore.location".to_string(),
                "/dyn/all.pem".to_string(),
            ),
            (
                "listener.name.external.ssl.keystore.location".to_string(),
                "/dyn/external.pem".to_string(),
            ),
        ]);
        let at = |l: &str| with_overrides(&base, &dynamic, l).ssl_keystore_location;
        assert_eq!(
            at("EXTERNAL").as_deref(),
            Some(std::path::Path::new("/dyn/external.pem"))
        );
        assert_eq!(
            at("INTERNAL").as_deref(),
            Some(std::path::Path::new("/file/internal.pem")),
            "a prefixed setting beats an unprefixed one, even a dynamic one"
        );
        assert_eq!(
            at("OTHER").as_deref(),
            Some(std::path::Path::new("/dyn/all.pem"))
        );
    }

    #[test]
    fn distinguished_names_escape_as_rfc_2253_does() {
        assert_eq!(escape_rfc2253("alice"), "alice");
        assert_eq!(escape_rfc2253("Smith, John"), "Smith\\, John");
        assert_eq!(escape_rfc2253("#1 "), "\\#1\\ ");
        assert_eq!(
            escape_rfc2253("a+b=c;d<e>\"\\"),
            "a\\+b=c\\;d\\<e\\>\\\"\\\\"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// A client certificate is the client's bytes: reading its subject never panics,
        /// whatever they are (rustls has checked the chain by then, but not every field).
        #[test]
        fn certificate_subjects_of_arbitrary_bytes_never_panic(
            der in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let _ = certificate_subject(&der);
        }

        /// Certificate-shaped bytes: a DER SEQUENCE header in front of noise.
        #[test]
        fn certificate_shaped_noise_never_panics(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let mut der = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
            der.extend(&body);
            let _ = certificate_subject(&der);
        }
    }

    #[test]
    fn a_keystore_without_a_certificate_or_key_is_refused_with_the_reason() {
        let mut config = BrokerConfig {
            ssl_keystore_certificate_chain: Some("not pem".into()),
            ssl_keystore_key: Some("not pem".into()),
            ..BrokerConfig::default()
        };
        let e = TlsContext::new(&config).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        config.ssl_keystore_certificate_chain = None;
        config.ssl_keystore_location = Some("/nonexistent/keystore.pem".into());
        let e = TlsContext::new(&config).unwrap_err().to_string();
        assert!(e.contains("ssl.keystore.location"), "{e}");
    }
}
