//! `--command-config FILE`: Kafka client properties for the CLI's connections, as Kafka's
//! tools take them (`security.protocol`, `sasl.mechanism`, `sasl.jaas.config` or
//! `sasl.username`/`sasl.password`, `ssl.truststore.location` or `ssl.ca.location` in PEM,
//! and for mTLS `ssl.keystore.location` or `ssl.certificate.location` + `ssl.key.location`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use strata_client::{tls_client_config, ClientSasl, ClientSecurity};
use strata_security::jaas_option;

fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('=').or_else(|| l.split_once(':')))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn read(path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {path}"))
}

pub fn load(path: &Path) -> anyhow::Result<ClientSecurity> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --command-config {}", path.display()))?;
    let p = properties(&text);
    let protocol = p
        .get("security.protocol")
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_else(|| "PLAINTEXT".into());
    let (tls, sasl) = match protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            bail!("security.protocol {other} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        }
    };
    let mut security = ClientSecurity::default();
    if tls {
        let ca = p
            .get("ssl.truststore.location")
            .or_else(|| p.get("ssl.ca.location"))
            .context("TLS needs ssl.truststore.location (PEM) or ssl.ca.location")?;
        let own = match (
            p.get("ssl.keystore.location"),
            p.get("ssl.certificate.location"),
            p.get("ssl.key.location"),
        ) {
            (Some(ks), _, _) => Some((read(ks)?, read(ks)?)),
            (None, Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        let own = own.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        security.tls =
            Some(tls_client_config(&read(ca)?, own).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    if sasl {
        let mechanism = p
            .get("sasl.mechanism")
            .or_else(|| p.get("sasl.mechanisms"))
            .map(String::as_str)
            .unwrap_or("PLAIN");
        let jaas = p.get("sasl.jaas.config");
        let user = p
            .get("sasl.username")
            .cloned()
            .or_else(|| jaas.and_then(|j| jaas_option(j, "username")))
            .context(
                "SASL needs sasl.jaas.config (username=\"…\" password=\"…\") or sasl.username",
            )?;
        let password = p
            .get("sasl.password")
            .cloned()
            .or_else(|| jaas.and_then(|j| jaas_option(j, "password")))
            .context("SASL needs a password")?;
        security.sasl = Some(
            ClientSasl::for_mechanism(mechanism, user, password).with_context(|| {
                format!("sasl.mechanism {mechanism}: the CLI speaks PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512")
            })?,
        );
    }
    Ok(security)
}
