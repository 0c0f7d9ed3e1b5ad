//! OAUTHBEARER's key set: the JWKS named by `sasl.oauthbearer.jwks.endpoint.url` (a
//! `file://` URL), read at start and read again when a token names a key id it lacks (at
//! most every few seconds: a signing key rotated at the identity provider is picked up, a
//! flood of made-up key ids is not a flood of reads). Validation itself is
//! `strata_security::oauth`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_security::oauth::{self, Jwks, OAuthConfig, ValidToken};
use tracing::{info, warn};

/// How often an unknown key id may make the JWKS be read again.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused.
const JWKS_BYTES_MAX: u64 = 1 << 20;

pub struct OAuthValidator {
    path: PathBuf,
    config: OAuthConfig,
    jwks: Mutex<(Jwks, Instant)>,
}

/// The file a `file://` JWKS URL names.
pub fn jwks_path(url: &str) -> Result<PathBuf, String> {
    match url.strip_prefix("file://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ if url.starts_with("http://") || url.starts_with("https://") => Err(format!(
            "sasl.oauthbearer.jwks.endpoint.url {url}: fetching a JWKS over HTTP(S) is not supported yet (use a file:// URL kept up to date by your tooling)"
        )),
        _ => Err(format!(
            "sasl.oauthbearer.jwks.endpoint.url {url} is not a file:// URL"
        )),
    }
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
    let jwks = Jwks::parse(&bytes).map_err(|e| format!("JWKS {}: {e}", path.display()))?;
    if jwks.is_empty() {
        return Err(format!("JWKS {} has no signing keys", path.display()));
    }
    Ok(jwks)
}

impl OAuthValidator {
    pub fn new(url: &str, config: OAuthConfig) -> Result<OAuthValidator, String> {
        let path = jwks_path(url)?;
        let jwks = read_jwks(&path)?;
        info!(jwks = %path.display(), keys = jwks.len(), "OAUTHBEARER keys loaded");
        Ok(OAuthValidator {
            path,
            config,
            jwks: Mutex::new((jwks, Instant::now())),
        })
    }

    pub fn validate(&self, token: &str) -> Result<ValidToken, String> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut jwks = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kid) = oauth::key_id(token) {
            if !jwks.0.has(&kid) && jwks.1.elapsed() >= RELOAD_AT_MOST_EVERY {
                jwks.1 = Instant::now();
                match read_jwks(&self.path) {
                    Ok(fresh) => {
                        info!(jwks = %self.path.display(), keys = fresh.len(), "OAUTHBEARER keys reloaded");
                        jwks.0 = fresh;
                    }
                    Err(e) => warn!(error = %e, "OAUTHBEARER keys not reloaded"),
                }
            }
        }
        oauth::validate(token, &jwks.0, &self.config, now_ms)
    }
}
