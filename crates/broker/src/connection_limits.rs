//! Per-IP connection limits (KIP-402's `max.connections.per.ip` and its overrides) and the
//! per-IP connection creation rate (KIP-612's `connection_creation_rate` quota, set for an
//! `ip` entity or its default with AlterClientQuotas): a connection over either is closed as
//! soon as it is accepted, with a rate-limited log line, so one address cannot take the
//! broker's connection slots from everyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use strata_cluster::MetadataImage;

use crate::quotas::{CONNECTION_CREATION_RATE, IP};

pub struct ConnectionLimits {
    per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Token buckets of the creation rate: (tokens, last refill).
    created: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// An accepted connection's place in its address's count (given back when dropped).
pub struct IpSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// `max.connections.per.ip.overrides`: `host:count,host:count` (IP addresses).
pub fn parse_overrides(s: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut out = HashMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, n) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("max.connections.per.ip.overrides: '{item}' is not IP:COUNT"))?;
        let ip: IpAddr = host.trim_matches(['[', ']']).parse().map_err(|_| {
            format!("max.connections.per.ip.overrides: '{host}' is not an IP address")
        })?;
        let n = n
            .parse()
            .map_err(|_| format!("max.connections.per.ip.overrides: '{n}' is not a count"))?;
        out.insert(ip, n);
    }
    Ok(out)
}

impl ConnectionLimits {
    pub fn new(per_ip: usize, overrides: HashMap<IpAddr, usize>) -> ConnectionLimits {
        ConnectionLimits {
            per_ip,
            overrides,
            open: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for a new connection from `ip`, or says why it is refused.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        image: &MetadataImage,
        now: Instant,
    ) -> Result<IpSlot, String> {
        if let Some(rate) = creation_rate(image, ip) {
            let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
            if created.len() > 100_000 {
                created.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
            }
            let capacity = rate.max(1.0);
            let (tokens, at) = created.entry(ip).or_insert((capacity, now));
            *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(capacity);
            *at = now;
            if *tokens < 1.0 {
                return Err(format!(
                    "connection_creation_rate {rate}/s of {ip} exceeded"
                ));
            }
            *tokens -= 1.0;
        }
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.per_ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            return Err(format!("max.connections.per.ip {limit} of {ip} reached"));
        }
        *n += 1;
        Ok(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// The `connection_creation_rate` quota of `ip` (its own, else the ip default).
fn creation_rate(image: &MetadataImage, ip: IpAddr) -> Option<f64> {
    if image.client_quotas().is_empty() {
        return None;
    }
    let exact = vec![(IP.to_string(), Some(ip.to_string()))];
    let default = vec![(IP.to_string(), None)];
    [exact, default].iter().find_map(|e| {
        image
            .client_quota(e)
            .and_then(|q| q.values.get(CONNECTION_CREATION_RATE))
            .map(|v| v.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strata_cluster::{MetadataRecord, QuotaValue};

    #[test]
    fn per_ip_counts_with_overrides_and_places_given_back() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let limits = Arc::new(ConnectionLimits::new(
            2,
            parse_overrides("10.0.0.2:3").unwrap(),
        ));
        let image = MetadataImage::default();
        let now = Instant::now();
        let s1 = limits.admit(a, &image, now).unwrap();
        let _s2 = limits.admit(a, &image, now).unwrap();
        assert!(limits.admit(a, &image, now).is_err());
        for _ in 0..3 {
            std::mem::forget(limits.admit(b, &image, now).unwrap());
        }
        assert!(limits.admit(b, &image, now).is_err());
        drop(s1);
        assert!(
            limits.admit(a, &image, now).is_ok(),
            "a closed connection gives its place back"
        );
        assert!(parse_overrides("x:1").is_err() && parse_overrides("10.0.0.1").is_err());
        assert_eq!(parse_overrides("[::1]:4, 10.0.0.1:0").unwrap().len(), 2);
    }

    #[test]
    fn the_creation_rate_quota_of_an_ip() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::ClientQuota {
                entity: vec![(IP.into(), None)],
                key: CONNECTION_CREATION_RATE.into(),
                value: Some(QuotaValue(2.0)),
            })
            .unwrap();
        let limits = Arc::new(ConnectionLimits::new(usize::MAX, HashMap::new()));
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter_map(|_| limits.admit(ip, &image, t0).ok())
            .map(std::mem::forget)
            .count();
        assert_eq!(admitted, 2, "a burst of one second's worth");
        let later = t0 + Duration::from_millis(500);
        assert!(limits.admit(ip, &image, later).is_ok(), "refilled at 2/s");
        assert!(limits.admit(ip, &image, later).is_err());
    }
}
