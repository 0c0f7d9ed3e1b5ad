//! Keystores and truststores in Kafka's three types (`ssl.keystore.type`,
//! `ssl.truststore.type`): PEM (a file or inline text; an encrypted PKCS#8 key opens with
//! `ssl.key.password`), PKCS12 (`ssl.keystore.password`; the `p12-keystore` crate) and JKS
//! (Java's own format, read here: `ssl.keystore.password` checks the file's integrity,
//! `ssl.key.password` — else the store password — opens the private key).
//!
//! Everything read is bounded ([`STORE_BYTES_MAX`]) and every count and length inside a JKS
//! file is checked against the bytes that remain before anything is allocated for it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::TlsError;
use crate::BrokerConfig;

/// A keystore or truststore larger than this is a mistake, not a store.
pub const STORE_BYTES_MAX: u64 = 4 << 20;

/// Kafka's store types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    Pem,
    Pkcs12,
    Jks,
}

impl StoreType {
    pub fn parse(s: &str) -> Option<StoreType> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PEM" => Some(StoreType::Pem),
            "PKCS12" => Some(StoreType::Pkcs12),
            "JKS" => Some(StoreType::Jks),
            _ => None,
        }
    }
}

fn invalid(m: impl Into<String>) -> TlsError {
    TlsError::Invalid(m.into())
}

pub fn read_store(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read = |path: &std::path::Path| -> std::io::Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        file.take(STORE_BYTES_MAX + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > STORE_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {STORE_BYTES_MAX} bytes"),
            ));
        }
        Ok(bytes)
    };
    read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn pem_certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn store_type(key: &str, value: &str) -> Result<StoreType, TlsError> {
    StoreType::parse(value).ok_or_else(|| invalid(format!("{key} '{value}': PEM, PKCS12 or JKS")))
}

/// A file's type by its content when the configured type is PEM but the file is not:
/// Kafka's default type is JKS, so configurations often leave it out.
fn sniff(kind: StoreType, data: &[u8]) -> StoreType {
    if kind != StoreType::Pem || data.windows(11).any(|w| w == b"-----BEGIN ") {
        return kind;
    }
    match data {
        [0xFE, 0xED, 0xFE, 0xED, ..] => StoreType::Jks,
        [0x30, ..] => StoreType::Pkcs12,
        _ => kind,
    }
}

/// The node's certificate chain and private key (`ssl.keystore.*`).
pub fn keystore(
    config: &BrokerConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let kind = store_type("ssl.keystore.type", &config.ssl_keystore_type)?;
    let file = match &config.ssl_keystore_location {
        Some(path) => Some(read_store("ssl.keystore.location", path)?),
        None => None,
    };
    let kind = file.as_deref().map_or(kind, |d| sniff(kind, d));
    if kind == StoreType::Pem {
        let (chain, key) = match &file {
            Some(pem) => (pem.clone(), pem.clone()),
            None => (
                config
                    .ssl_keystore_certificate_chain
                    .clone()
                    .unwrap_or_default()
                    .into_bytes(),
                config
                    .ssl_keystore_key
                    .clone()
                    .unwrap_or_default()
                    .into_bytes(),
            ),
        };
        let chain = pem_certificates("the keystore", &chain)?;
        let key = crate::tls::private_key(&key, config.ssl_key_password.as_deref())?;
        return Ok((chain, key));
    }
    let data = file.ok_or_else(|| invalid("ssl.keystore.location must name the keystore file"))?;
    let password = config
        .ssl_keystore_password
        .as_deref()
        .ok_or_else(|| invalid("ssl.keystore.password is required for a PKCS12 or JKS keystore"))?;
    let (chain, key) = match kind {
        StoreType::Pkcs12 => {
            let store = p12_keystore::KeyStore::from_pkcs12(
                &data,
                password,
                p12_keystore::Pkcs12ImportPolicy::Strict,
            )
            .map_err(|e| invalid(format!("the PKCS12 keystore: {e}")))?;
            let (_, chain) = store.private_key_chain().ok_or_else(|| {
                invalid("the PKCS12 keystore holds no private key with its certificates")
            })?;
            (
                chain
                    .certs()
                    .iter()
                    .map(|c| c.as_der().to_vec())
                    .collect::<Vec<_>>(),
                chain.key().as_der().to_vec(),
            )
        }
        _ => {
            let store = jks::parse(&data, Some(password))
                .map_err(|e| invalid(format!("the JKS keystore: {e}")))?;
            let entry = store
                .keys
                .first()
                .ok_or_else(|| invalid("the JKS keystore holds no private key entry"))?;
            let key_password = config.ssl_key_password.as_deref().unwrap_or(password);
            let key = jks::decrypt_key(&entry.protected_key, key_password)
                .map_err(|e| invalid(format!("the JKS keystore's key '{}': {e}", entry.alias)))?;
            (entry.chain.clone(), key)
        }
    };
    if chain.is_empty() {
        return Err(invalid("the keystore's private key has no certificate"));
    }
    Ok((
        chain.into_iter().map(CertificateDer::from).collect(),
        PrivateKeyDer::Pkcs8(key.into()),
    ))
}

/// The CAs of `ssl.truststore.*` (empty when none is configured).
pub fn truststore(config: &BrokerConfig) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let kind = store_type("ssl.truststore.type", &config.ssl_truststore_type)?;
    let Some(path) = &config.ssl_truststore_location else {
        return match (&config.ssl_truststore_certificates, kind) {
            (Some(pem), StoreType::Pem) => pem_certificates("the truststore", pem.as_bytes()),
            (Some(_), _) => Err(invalid(
                "ssl.truststore.certificates is PEM text: ssl.truststore.type must be PEM",
            )),
            (None, _) => Ok(Vec::new()),
        };
    };
    let data = read_store("ssl.truststore.location", path)?;
    let password = config.ssl_truststore_password.as_deref();
    let certs: Vec<Vec<u8>> = match sniff(kind, &data) {
        StoreType::Pem => return pem_certificates("the truststore", &data),
        StoreType::Pkcs12 => {
            let password = password.ok_or_else(|| {
                invalid("ssl.truststore.password is required for a PKCS12 truststore")
            })?;
            let store = p12_keystore::KeyStore::from_pkcs12(
                &data,
                password,
                p12_keystore::Pkcs12ImportPolicy::Relaxed,
            )
            .map_err(|e| invalid(format!("the PKCS12 truststore: {e}")))?;
            store
                .entries()
                .filter_map(|(_, e)| match e {
                    p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
                    _ => None,
                })
                .collect()
        }
        StoreType::Jks => {
            jks::parse(&data, password)
                .map_err(|e| invalid(format!("the JKS truststore: {e}")))?
                .trusted
        }
    };
    if certs.is_empty() {
        return Err(invalid("the truststore holds no trusted certificate"));
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// Java KeyStore files, as `keytool` writes them (version 2).
pub mod jks {
    use ring::digest;

    const MAGIC: u32 = 0xFEED_FEED;
    const PRIVATE_KEY: u32 = 1;
    const TRUSTED_CERT: u32 = 2;
    /// Sun's key protection algorithm (1.3.6.1.4.1.42.2.17.1.1), DER-encoded.
    const KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];

    pub struct PrivateKeyEntry {
        pub alias: String,
        /// The EncryptedPrivateKeyInfo, as stored.
        pub protected_key: Vec<u8>,
        /// DER certificates, the node's first.
        pub chain: Vec<Vec<u8>>,
    }

    pub struct Jks {
        pub keys: Vec<PrivateKeyEntry>,
        pub trusted: Vec<Vec<u8>>,
    }

    struct Reader<'a> {
        data: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self
                .at
                .checked_add(n)
                .filter(|&e| e <= self.data.len())
                .ok_or("truncated")?;
            let out = &self.data[self.at..end];
            self.at = end;
            Ok(out)
        }
        fn u16(&mut self) -> Result<u16, String> {
            Ok(u16::from_be_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            ))
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_be_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            ))
        }
        fn utf(&mut self) -> Result<String, String> {
            let n = self.u16()? as usize;
            Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
        }
        fn bytes(&mut self) -> Result<Vec<u8>, String> {
            let n = self.u32()? as usize;
            Ok(self.take(n)?.to_vec())
        }
        /// A count of items each at least `min` bytes long, checked against what remains.
        fn count(&mut self, min: usize) -> Result<usize, String> {
            let n = self.u32()? as usize;
            if n.saturating_mul(min) > self.data.len() - self.at {
                return Err(format!("claims {n} entries, more than the file holds"));
            }
            Ok(n)
        }
        fn certificate(&mut self) -> Result<Vec<u8>, String> {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(format!("a {kind} certificate (only X.509)"));
            }
            self.bytes()
        }
    }

    /// Java's password bytes: each UTF-16 code unit big-endian.
    fn password_bytes(password: &str) -> Vec<u8> {
        password.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    /// Parses a JKS file; with `password`, checks its integrity digest first (a wrong
    /// password or a damaged file is refused, as keytool does).
    pub fn parse(data: &[u8], password: Option<&str>) -> Result<Jks, String> {
        if data.len() < 20 {
            return Err("too short for a JKS file".into());
        }
        let (body, digest) = data.split_at(data.len() - 20);
        if let Some(password) = password {
            let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(&password_bytes(password));
            ctx.update(b"Mighty Aphrodite");
            ctx.update(body);
            if ctx.finish().as_ref() != digest {
                return Err(
                    "the password is wrong or the file is damaged (integrity check failed)".into(),
                );
            }
        }
        let mut r = Reader { data: body, at: 0 };
        if r.u32()? != MAGIC {
            return Err(
                "not a JKS file (convert PKCS12 stores with ssl.keystore.type = \"PKCS12\")".into(),
            );
        }
        let version = r.u32()?;
        if version != 2 {
            return Err(format!("JKS version {version} (only 2)"));
        }
        let mut out = Jks {
            keys: Vec::new(),
            trusted: Vec::new(),
        };
        for _ in 0..r.count(14)? {
            let tag = r.u32()?;
            let alias = r.utf()?;
            let _created = r.take(8)?;
            match tag {
                PRIVATE_KEY => {
                    let protected_key = r.bytes()?;
                    let mut chain = Vec::new();
                    for _ in 0..r.count(6)? {
                        chain.push(r.certificate()?);
                    }
                    out.keys.push(PrivateKeyEntry {
                        alias,
                        protected_key,
                        chain,
                    });
                }
                TRUSTED_CERT => out.trusted.push(r.certificate()?),
                other => return Err(format!("entry '{alias}' of unknown kind {other}")),
            }
        }
        Ok(out)
    }

    /// The length and the start of the content of the DER element at `at`.
    fn der_element(data: &[u8], at: usize, tag: u8) -> Result<(usize, usize), String> {
        let bad = || "the protected key is not DER".to_string();
        if data.get(at) != Some(&tag) {
            return Err(bad());
        }
        let first = *data.get(at + 1).ok_or_else(bad)?;
        let (len, start) = if first < 0x80 {
            (first as usize, at + 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(bad());
            }
            let bytes = data.get(at + 2..at + 2 + n).ok_or_else(bad)?;
            (
                bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
                at + 2 + n,
            )
        };
        if start.checked_add(len).is_none_or(|e| e > data.len()) {
            return Err(bad());
        }
        Ok((len, start))
    }

    /// Opens a private key protected with Sun's JKS key protector: the PKCS#8 key.
    pub fn decrypt_key(protected: &[u8], password: &str) -> Result<Vec<u8>, String> {
        // EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
        let (_, seq) = der_element(protected, 0, 0x30)?;
        let (alg_len, alg) = der_element(protected, seq, 0x30)?;
        let (oid_len, oid) = der_element(protected, alg, 0x06)?;
        if &protected[oid..oid + oid_len] != KEY_PROTECTOR_OID {
            return Err("the key is not protected with JKS's key protector".into());
        }
        let (data_len, data) = der_element(protected, alg + alg_len, 0x04)?;
        let encrypted = &protected[data..data + data_len];
        if encrypted.len() < 40 {
            return Err("the protected key is too short".into());
        }
        let (salt, rest) = encrypted.split_at(20);
        let (cipher, check) = rest.split_at(rest.len() - 20);
        let pw = password_bytes(password);
        let mut key = Vec::with_capacity(cipher.len());
        let mut block = salt.to_vec();
        for chunk in cipher.chunks(20) {
            let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(&pw);
            ctx.update(&block);
            block = ctx.finish().as_ref().to_vec();
            key.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
        }
        let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&pw);
        ctx.update(&key);
        if ctx.finish().as_ref() != check {
            return Err("ssl.key.password (or the store password) does not open it".into());
        }
        Ok(key)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn hostile_files_are_refused_without_allocating_their_claims() {
            for data in [
                &b""[..],
                &[0u8; 20],
                &[
                    0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ][..],
            ] {
                assert!(parse(data, None).is_err());
            }
            // A claimed 4 GiB certificate in a tiny file.
            let mut f = vec![
                0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, b'a',
            ];
            f.extend([0; 8]);
            f.extend([0, 5]);
            f.extend(b"X.509");
            f.extend([0xFF, 0xFF, 0xFF, 0xFF]);
            f.extend([0; 20]);
            assert_eq!(parse(&f, None).err().as_deref(), Some("truncated"));
            assert!(decrypt_key(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF], "x").is_err());
            assert!(decrypt_key(&[], "x").is_err());
        }

        proptest::proptest! {
            /// Whatever a keystore file holds, reading it ends in a store or an error.
            #[test]
            fn arbitrary_files_never_panic(
                body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                magic in proptest::bool::ANY,
                password in proptest::option::of("[a-z]{0,6}"),
            ) {
                let mut data = if magic { vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2] } else { Vec::new() };
                data.extend(&body);
                if let Ok(store) = parse(&data, password.as_deref()) {
                    for k in &store.keys {
                        let _ = decrypt_key(&k.protected_key, "pw");
                    }
                }
                let _ = decrypt_key(&body, "pw");
            }
        }

        #[test]
        fn java_password_bytes_are_utf16_big_endian() {
            assert_eq!(password_bytes("aé"), [0, b'a', 0, 0xe9]);
        }
    }
}
