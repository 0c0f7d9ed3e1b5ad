//! OAUTHBEARER's key set: the JWKS named by `sasl.oauthbearer.jwks.endpoint.url`, as Kafka
//! takes it (KIP-768):
//!
//! - a `file://` URL is read at start and read again when a token names a key id it lacks
//!   (at most every few seconds: a signing key rotated at the identity provider is picked
//!   up, a flood of made-up key ids is not a flood of reads);
//! - an `https://` (or `http://`) URL is fetched at start and then every
//!   `sasl.oauthbearer.jwks.endpoint.refresh.ms` by a background thread, and at once (rate
//!   limited the same way) when a token names an unknown key id — that token fails, the
//!   client's retry finds the new key. TLS trusts `ssl.truststore.location` and the system's
//!   CA bundle. A provider that is down at start leaves the key set empty (every token
//!   fails) until a fetch succeeds; it never stops the broker.
//!
//! Validation itself is `strata_security::oauth`; nothing here blocks a request on the
//! network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use strata_security::oauth::{self, Jwks, OAuthConfig, ValidToken};
use tracing::{info, warn};

/// How often an unknown key id may make the JWKS be read again.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused.
const JWKS_BYTES_MAX: u64 = 1 << 20;
/// Connect, handshake and read timeout of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Where Debian (and most distributions) keep the system's trusted CAs.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Http {
        tls: bool,
        host: String,
        port: u16,
        /// The request target (`/path?query`).
        path: String,
    },
}

/// What `sasl.oauthbearer.jwks.endpoint.url` names.
pub fn jwks_source(url: &str) -> Result<JwksSource, String> {
    let bad = || {
        format!(
            "sasl.oauthbearer.jwks.endpoint.url {url} is not a file://, https:// or http:// URL"
        )
    };
    if let Some(p) = url.strip_prefix("file://") {
        return if p.is_empty() {
            Err(bad())
        } else {
            Ok(JwksSource::File(PathBuf::from(p)))
        };
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err(format!(
            "sasl.oauthbearer.jwks.endpoint.url {url}: credentials in the URL are not supported"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(JwksSource::Http {
        tls,
        host,
        port,
        path,
    })
}

fn parse_jwks(bytes: &[u8], from: &str) -> Result<Jwks, String> {
    let jwks = Jwks::parse(bytes).map_err(|e| format!("JWKS {from}: {e}"))?;
    if jwks.is_empty() {
        return Err(format!("JWKS {from} has no signing keys"));
    }
    Ok(jwks)
}

pub fn read_jwks(path: &PathBuf) -> Result<Jwks, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?
        .len();
    if len > JWKS_BYTES_MAX {
        return Err(format!("JWKS {} is {len} bytes: too large", path.display()));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?;
    parse_jwks(&bytes, &path.display().to_string())
}

/// The client side of TLS for the JWKS endpoint: the truststore's CAs and the system's.
pub fn jwks_tls(truststore: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut pem = truststore.map(<[u8]>::to_vec).unwrap_or_default();
    if let Ok(system) = std::fs::read(SYSTEM_CA_BUNDLE) {
        pem.push(b'\n');
        pem.extend(system);
    }
    strata_client::tls_client_config(&pem, None).map_err(|e| {
        format!(
            "the JWKS endpoint's TLS trust ({SYSTEM_CA_BUNDLE} and ssl.truststore.location): {e}"
        )
    })
}

/// One GET of the key set, bounded in time and size (blocking: the refresher thread's).
fn fetch(source: &JwksSource, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Vec<u8>, String> {
    let JwksSource::Http {
        tls: use_tls,
        host,
        port,
        path,
    } = source
    else {
        return Err("not an HTTP source".into());
    };
    let addr = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    tcp.set_read_timeout(Some(FETCH_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(FETCH_TIMEOUT)).ok();
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nUser-Agent: strata\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let limit = JWKS_BYTES_MAX + 64 * 1024;
    if *use_tls {
        let tls = tls.ok_or("no TLS settings for an https:// JWKS")?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("server name {host}: {e}"))?;
        let conn = rustls::ClientConnection::new(tls.clone(), name)
            .map_err(|e| format!("TLS to {authority}: {e}"))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("TLS to {authority}: {e}"))?;
        read_bounded(&mut stream, limit, &mut raw).map_err(|e| format!("{authority}: {e}"))?;
    } else {
        let mut stream = tcp;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("{authority}: {e}"))?;
        read_bounded(&mut stream, limit, &mut raw).map_err(|e| format!("{authority}: {e}"))?;
    }
    http_body(&raw).map_err(|e| format!("{authority}{path}: {e}"))
}

/// Reads to the end (the server closes: `Connection: close`) but no more than `limit`.
fn read_bounded(r: &mut impl Read, limit: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    match r.take(limit + 1).read_to_end(out) {
        Ok(_) => {}
        // Servers that close TLS without close_notify: what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer is too large for a JWKS",
        ));
    }
    Ok(())
}

/// The body of an HTTP/1.1 answer: status 200 required; Content-Length, chunked or
/// to-the-end bodies.
pub fn http_body(raw: &[u8]) -> Result<Vec<u8>, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP header")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "HTTP header is not text")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("answered '{status}'"));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk")?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size '{size_text}'"))?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(out);
            }
            if rest.len() < size + 2 {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    match header("content-length") {
        Some(n) => {
            let n: usize = n.parse().map_err(|_| "bad Content-Length")?;
            body.get(..n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "truncated body".to_string())
        }
        None => Ok(body.to_vec()),
    }
}

struct Keys {
    jwks: Jwks,
    /// When the key set was last read (or a read was asked for).
    read_at: Instant,
    /// An unknown key id asked the refresher for a fetch now.
    expedite: bool,
}

struct Shared {
    keys: Mutex<Keys>,
    wake: Condvar,
}

pub struct OAuthValidator {
    source: JwksSource,
    config: OAuthConfig,
    shared: Arc<Shared>,
}

impl OAuthValidator {
    /// `truststore`: the PEM CAs the JWKS endpoint's certificate may chain to (besides the
    /// system's); `refresh`: how often an HTTP(S) key set is fetched again.
    pub fn new(
        url: &str,
        config: OAuthConfig,
        truststore: Option<&[u8]>,
        refresh: Duration,
    ) -> Result<OAuthValidator, String> {
        let source = jwks_source(url)?;
        let jwks = match &source {
            JwksSource::File(path) => {
                let jwks = read_jwks(path)?;
                info!(jwks = %path.display(), keys = jwks.len(), "OAUTHBEARER keys loaded");
                jwks
            }
            JwksSource::Http { .. } => Jwks::default(),
        };
        let shared = Arc::new(Shared {
            keys: Mutex::new(Keys {
                jwks,
                read_at: Instant::now(),
                expedite: false,
            }),
            wake: Condvar::new(),
        });
        if matches!(source, JwksSource::Http { .. }) {
            let tls = match &source {
                JwksSource::Http { tls: true, .. } => Some(jwks_tls(truststore)?),
                _ => None,
            };
            // The first fetch before serving (a provider that is up is used at once).
            match fetch(&source, tls.as_ref()).and_then(|b| parse_jwks(&b, url)) {
                Ok(jwks) => {
                    info!(jwks = url, keys = jwks.len(), "OAUTHBEARER keys fetched");
                    shared.keys.lock().unwrap_or_else(|p| p.into_inner()).jwks = jwks;
                }
                Err(e) => {
                    warn!(jwks = url, error = %e, "OAUTHBEARER keys not fetched yet: every token fails until they are")
                }
            }
            let weak = Arc::downgrade(&shared);
            let source = source.clone();
            let url = url.to_string();
            std::thread::Builder::new()
                .name("jwks-refresh".into())
                .spawn(move || refresher(weak, source, tls, url, refresh))
                .map_err(|e| format!("cannot start the JWKS refresher: {e}"))?;
        }
        Ok(OAuthValidator {
            source,
            config,
            shared,
        })
    }

    pub fn validate(&self, token: &str) -> Result<ValidToken, String> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut keys = self.shared.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kid) = oauth::key_id(token) {
            if !keys.jwks.has(&kid) && keys.read_at.elapsed() >= RELOAD_AT_MOST_EVERY {
                keys.read_at = Instant::now();
                match &self.source {
                    JwksSource::File(path) => match read_jwks(path) {
                        Ok(fresh) => {
                            info!(jwks = %path.display(), keys = fresh.len(), "OAUTHBEARER keys reloaded");
                            keys.jwks = fresh;
                        }
                        Err(e) => warn!(error = %e, "OAUTHBEARER keys not reloaded"),
                    },
                    // Never a network wait here: the refresher fetches now, a retry of
                    // this token finds the key.
                    JwksSource::Http { .. } => {
                        keys.expedite = true;
                        self.shared.wake.notify_one();
                    }
                }
            }
        }
        oauth::validate(token, &keys.jwks, &self.config, now_ms)
    }
}

/// Fetches the key set every `refresh`, or at once when asked; ends with its validator.
fn refresher(
    shared: Weak<Shared>,
    source: JwksSource,
    tls: Option<Arc<rustls::ClientConfig>>,
    url: String,
    refresh: Duration,
) {
    let mut failures = 0u32;
    loop {
        // Failed fetches are retried sooner (1 s, doubling, up to the refresh interval).
        let wait = if failures == 0 {
            refresh
        } else {
            Duration::from_secs(1 << failures.min(10)).min(refresh)
        };
        {
            let Some(s) = shared.upgrade() else { return };
            let keys = s.keys.lock().unwrap_or_else(|p| p.into_inner());
            let (mut keys, _) = s
                .wake
                .wait_timeout_while(keys, wait, |k| !k.expedite)
                .unwrap_or_else(|p| p.into_inner());
            keys.expedite = false;
        }
        let fetched = fetch(&source, tls.as_ref()).and_then(|b| parse_jwks(&b, &url));
        let Some(s) = shared.upgrade() else { return };
        match fetched {
            Ok(jwks) => {
                failures = 0;
                info!(jwks = %url, keys = jwks.len(), "OAUTHBEARER keys refreshed");
                s.keys.lock().unwrap_or_else(|p| p.into_inner()).jwks = jwks;
            }
            Err(e) => {
                failures += 1;
                warn!(jwks = %url, error = %e, "OAUTHBEARER keys not refreshed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls() {
        assert_eq!(
            jwks_source("file:///etc/jwks.json").unwrap(),
            JwksSource::File("/etc/jwks.json".into())
        );
        assert_eq!(
            jwks_source("https://idp.example/realms/k/certs?x=1").unwrap(),
            JwksSource::Http {
                tls: true,
                host: "idp.example".into(),
                port: 443,
                path: "/realms/k/certs?x=1".into()
            }
        );
        assert_eq!(
            jwks_source("http://[::1]:8080").unwrap(),
            JwksSource::Http {
                tls: false,
                host: "::1".into(),
                port: 8080,
                path: "/".into()
            }
        );
        for bad in [
            "ftp://x/y",
            "file://",
            "https://:443/x",
            "https://u:p@idp/x",
            "https://idp:99999/x",
            "https://idp/a b",
        ] {
            assert!(jwks_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_bodies_by_length_chunks_or_close() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(http_body(ok).unwrap(), b"hello");
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=1\r\nlo\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"hello");
        assert_eq!(
            http_body(b"HTTP/1.0 200 OK\r\n\r\nhello").unwrap(),
            b"hello"
        );
        for bad in [
            &b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc",
            b"garbage",
        ] {
            assert!(http_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
