//! Listeners as Kafka configures them: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `inter.broker.listener.name` and
//! `controller.listener.names`, turned into the list of endpoints this node binds and
//! advertises. Pure: parsing and checks only.
//!
//! Without `listeners`, the node has one `PLAINTEXT` listener on `--listen` (advertised as
//! `--advertised-listener`), as before listeners existed.

use std::collections::BTreeMap;

use crate::config::ConfigError;

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether a client must authenticate with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// One client listener: its name, protocol, where it binds and what clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Kafka's listener name, upper case (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, …).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// `HOST:PORT` to bind (an empty host binds every interface).
    pub bind: String,
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// Every listener of a node, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// Client (and inter-broker) listeners, in configuration order.
    pub clients: Vec<Listener>,
    /// The listener other brokers reach this one on (its registration's host and port).
    pub inter_broker: String,
    /// `HOST:PORT` of the controller listener, if `listeners` names one.
    pub controller: Option<String>,
    /// The controller listener's name (the first of `controller.listener.names`) and
    /// security protocol (from `listener.security.protocol.map`; PLAINTEXT if it has no
    /// entry, as in Kafka): how this node's controller listener is secured and how it
    /// connects to the other quorum members'.
    pub controller_name: String,
    pub controller_protocol: SecurityProtocol,
}

impl Listeners {
    pub fn get(&self, name: &str) -> Option<&Listener> {
        self.clients.iter().find(|l| l.name == name)
    }

    pub fn inter_broker(&self) -> &Listener {
        self.get(&self.inter_broker)
            .expect("the inter-broker listener is one of the clients (checked)")
    }
}

/// The listener settings of a node's configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListenerSettings<'a> {
    pub listen: &'a str,
    pub advertised_listener: Option<&'a str>,
    pub listeners: Option<&'a str>,
    pub advertised_listeners: Option<&'a str>,
    pub security_protocol_map: Option<&'a str>,
    pub inter_broker_listener_name: Option<&'a str>,
    pub controller_listener_names: Option<&'a str>,
}

/// Kafka's default `listener.security.protocol.map`: each protocol's name maps to itself.
const DEFAULT_MAP: [(&str, SecurityProtocol); 4] = [
    ("PLAINTEXT", SecurityProtocol::Plaintext),
    ("SSL", SecurityProtocol::Ssl),
    ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext),
    ("SASL_SSL", SecurityProtocol::SaslSsl),
];

fn invalid(m: String) -> ConfigError {
    ConfigError::Invalid(m)
}

/// `NAME://HOST:PORT,…` into (name, host, port) in order. Hosts may be empty (every
/// interface) or bracketed IPv6.
fn parse_endpoints(key: &str, spec: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once("://").and_then(|(name, addr)| {
            let (host, port) = addr.rsplit_once(':')?;
            let port = port.parse::<u16>().ok()?;
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            name_ok.then(|| (name.to_ascii_uppercase(), host.to_string(), port))
        });
        let Some(endpoint) = parsed else {
            return Err(invalid(format!(
                "{key} entry '{entry}' is not NAME://HOST:PORT"
            )));
        };
        if endpoint.0 == crate::config::HTTP_ENDPOINT {
            return Err(invalid(format!(
                "{key}: the listener name {} is reserved for the HTTP admin listener",
                endpoint.0
            )));
        }
        if out.iter().any(|(n, _, _)| *n == endpoint.0) {
            return Err(invalid(format!(
                "{key} names listener {} twice",
                endpoint.0
            )));
        }
        out.push(endpoint);
    }
    if out.is_empty() {
        return Err(invalid(format!("{key} is empty")));
    }
    Ok(out)
}

fn protocol_map(spec: Option<&str>) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let Some(spec) = spec else {
        return Ok(DEFAULT_MAP
            .iter()
            .map(|(n, p)| (n.to_string(), *p))
            .collect());
    };
    let mut map = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once(':').and_then(|(name, p)| {
            Some((
                name.trim().to_ascii_uppercase(),
                SecurityProtocol::parse(p)?,
            ))
        });
        let Some((name, protocol)) = parsed else {
            return Err(invalid(format!(
                "listener.security.protocol.map entry '{entry}' is not NAME:PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )));
        };
        if map.insert(name.clone(), protocol).is_some() {
            return Err(invalid(format!(
                "listener.security.protocol.map names {name} twice"
            )));
        }
    }
    Ok(map)
}

fn bracket(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The node's listeners from its settings (see the module doc).
pub fn resolve(s: &ListenerSettings<'_>) -> Result<Listeners, ConfigError> {
    let map = protocol_map(s.security_protocol_map)?;
    let controller_names: Vec<String> = s
        .controller_listener_names
        .unwrap_or("CONTROLLER")
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let controller_name = controller_names
        .first()
        .cloned()
        .ok_or_else(|| invalid("controller.listener.names is empty".into()))?;
    // Kafka maps a controller listener missing from the map to PLAINTEXT.
    let controller_protocol = map
        .get(&controller_name)
        .copied()
        .unwrap_or(SecurityProtocol::Plaintext);
    let Some(spec) = s.listeners else {
        let advertised = s.advertised_listener.unwrap_or(s.listen);
        let (host, port) = advertised
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                invalid(format!(
                    "--advertised-listener '{advertised}' is not HOST:PORT"
                ))
            })?;
        return Ok(Listeners {
            clients: vec![Listener {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                bind: s.listen.to_string(),
                advertised_host: bracket(host),
                advertised_port: i32::from(port),
            }],
            inter_broker: "PLAINTEXT".into(),
            controller: None,
            controller_name,
            controller_protocol,
        });
    };
    let endpoints = parse_endpoints("listeners", spec)?;
    let advertised = match s.advertised_listeners {
        Some(a) => parse_endpoints("advertised.listeners", a)?,
        None => Vec::new(),
    };
    for (name, _, _) in &advertised {
        if !endpoints.iter().any(|(n, _, _)| n == name) {
            return Err(invalid(format!(
                "advertised.listeners names {name}, which is not in listeners"
            )));
        }
        if controller_names.contains(name) {
            return Err(invalid(format!(
                "advertised.listeners must not name the controller listener {name}"
            )));
        }
    }
    let mut ports = BTreeMap::new();
    let mut clients = Vec::new();
    let mut controller = None;
    for (name, host, port) in &endpoints {
        if let Some(other) = ports.insert((host.clone(), *port), name.clone()) {
            return Err(invalid(format!(
                "listeners {other} and {name} bind the same address {host}:{port}"
            )));
        }
        let bind_host = if host.is_empty() {
            "0.0.0.0"
        } else {
            host.as_str()
        };
        let bind = format!("{bind_host}:{port}");
        if controller_names.contains(name) {
            if *name != controller_name {
                return Err(invalid(format!(
                    "listener {name} is a controller listener but not the first of controller.listener.names ({controller_name}): one controller listener per node"
                )));
            }
            if controller.replace(bind).is_some() {
                return Err(invalid(
                    "listeners names more than one controller listener".into(),
                ));
            }
            continue;
        }
        let Some(&protocol) = map.get(name) else {
            return Err(invalid(format!(
                "listener {name} has no security protocol: add {name}:PROTOCOL to listener.security.protocol.map"
            )));
        };
        let (adv_host, adv_port) = match advertised.iter().find(|(n, _, _)| n == name) {
            Some((_, h, p)) => (h.clone(), *p),
            None => (host.clone(), *port),
        };
        let adv_host = bracket(&adv_host);
        if adv_host.is_empty() || adv_host == "0.0.0.0" || adv_host == "::" {
            return Err(invalid(format!(
                "listener {name} binds every interface: say which address clients use in advertised.listeners ({name}://HOST:{adv_port})"
            )));
        }
        clients.push(Listener {
            name: name.clone(),
            protocol,
            bind,
            advertised_host: adv_host,
            advertised_port: i32::from(adv_port),
        });
    }
    if clients.is_empty() {
        return Err(invalid(
            "listeners has no listener for clients (only the controller's)".into(),
        ));
    }
    let inter_broker = match s.inter_broker_listener_name {
        Some(n) => {
            let n = n.trim().to_ascii_uppercase();
            if !clients.iter().any(|l| l.name == n) {
                return Err(invalid(format!(
                    "inter.broker.listener.name {n} is not one of the listeners"
                )));
            }
            n
        }
        // Kafka's default is the listener of security.inter.broker.protocol PLAINTEXT;
        // without one, the first listener.
        None => clients
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .unwrap_or(&clients[0])
            .name
            .clone(),
    };
    Ok(Listeners {
        clients,
        inter_broker,
        controller,
        controller_name,
        controller_protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listeners: &str) -> ListenerSettings<'_> {
        ListenerSettings {
            listen: "127.0.0.1:9092",
            listeners: Some(listeners),
            ..Default::default()
        }
    }

    #[test]
    fn without_listeners_the_node_has_one_plaintext_listener() {
        let l = resolve(&ListenerSettings {
            listen: "0.0.0.0:9092",
            advertised_listener: Some("[::1]:19092"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.clients.len(), 1);
        let p = &l.clients[0];
        assert_eq!(
            (p.name.as_str(), p.protocol),
            ("PLAINTEXT", SecurityProtocol::Plaintext)
        );
        assert_eq!(p.bind, "0.0.0.0:9092");
        assert_eq!(
            (p.advertised_host.as_str(), p.advertised_port),
            ("::1", 19092)
        );
        assert_eq!(l.inter_broker, "PLAINTEXT");
    }

    #[test]
    fn kafka_style_listeners_with_a_map_and_advertised_addresses() {
        let l = resolve(&ListenerSettings {
            advertised_listeners: Some("INTERNAL://broker1:9093,EXTERNAL://kafka.example.com:443"),
            security_protocol_map: Some(
                "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT",
            ),
            inter_broker_listener_name: Some("internal"),
            ..settings("INTERNAL://10.0.0.1:9093,external://:9094,CONTROLLER://10.0.0.1:9095")
        })
        .unwrap();
        assert_eq!(
            l.clients.len(),
            2,
            "the controller listener is not a client listener"
        );
        let ext = l.get("EXTERNAL").unwrap();
        assert_eq!(ext.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            ext.bind, "0.0.0.0:9094",
            "an empty host binds every interface"
        );
        assert_eq!(
            (ext.advertised_host.as_str(), ext.advertised_port),
            ("kafka.example.com", 443)
        );
        assert_eq!(l.inter_broker().advertised_host, "broker1");
        assert_eq!(l.controller.as_deref(), Some("10.0.0.1:9095"));
        assert_eq!(
            (l.controller_name.as_str(), l.controller_protocol),
            ("CONTROLLER", SecurityProtocol::Plaintext)
        );
    }

    #[test]
    fn the_controller_listener_takes_its_protocol_from_the_map() {
        let l = resolve(&ListenerSettings {
            security_protocol_map: Some("PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL"),
            ..settings("PLAINTEXT://h:1,CONTROLLER://h:2")
        })
        .unwrap();
        assert_eq!(l.controller_protocol, SecurityProtocol::SaslSsl);
        // Also when the controller listener binds where --controller-listen or the voters
        // say (no `listeners`).
        let l = resolve(&ListenerSettings {
            listen: "127.0.0.1:9092",
            security_protocol_map: Some("PLAINTEXT:PLAINTEXT,KRAFT:SSL"),
            controller_listener_names: Some("kraft"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (l.controller_name.as_str(), l.controller_protocol),
            ("KRAFT", SecurityProtocol::Ssl)
        );
        // Kafka: a controller listener missing from the map is PLAINTEXT.
        let l = resolve(&settings("PLAINTEXT://h:1,CONTROLLER://h:2")).unwrap();
        assert_eq!(l.controller_protocol, SecurityProtocol::Plaintext);
    }

    #[test]
    fn the_default_map_names_each_protocol_after_itself() {
        let l = resolve(&settings(
            "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094",
        ))
        .unwrap();
        let protocols: Vec<_> = l.clients.iter().map(|c| c.protocol).collect();
        assert_eq!(
            protocols,
            [
                SecurityProtocol::Plaintext,
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslSsl
            ]
        );
        assert_eq!(l.inter_broker, "PLAINTEXT");
        assert!(l.get("SSL").unwrap().protocol.uses_tls());
    }

    #[test]
    fn bad_listener_settings_are_refused_with_the_reason() {
        let cases: &[(ListenerSettings<'_>, &str)] = &[
            (settings("PLAINTEXT://127.0.0.1"), "NAME://HOST:PORT"),
            (settings("127.0.0.1:9092"), "NAME://HOST:PORT"),
            (settings("A://h:1,a://h:2"), "twice"),
            (settings("PLAINTEXT://h:1,SSL://h:1"), "same address"),
            (settings("INTERNAL://h:1"), "no security protocol"),
            (settings("PLAINTEXT://:9092"), "advertised.listeners"),
            (settings("CONTROLLER://h:1"), "no listener for clients"),
            (
                ListenerSettings {
                    controller_listener_names: Some("CONTROLLER,CTL2"),
                    security_protocol_map: Some("PLAINTEXT:PLAINTEXT,CTL2:SSL"),
                    ..settings("PLAINTEXT://h:1,CTL2://h:2")
                },
                "not the first of controller.listener.names",
            ),
            (
                ListenerSettings {
                    security_protocol_map: Some("PLAINTEXT:TLS"),
                    ..settings("PLAINTEXT://h:1")
                },
                "NAME:PROTOCOL",
            ),
            (
                ListenerSettings {
                    advertised_listeners: Some("SSL://h:2"),
                    ..settings("PLAINTEXT://h:1")
                },
                "not in listeners",
            ),
            (
                ListenerSettings {
                    inter_broker_listener_name: Some("SSL"),
                    ..settings("PLAINTEXT://h:1")
                },
                "inter.broker.listener.name",
            ),
        ];
        for (s, why) in cases {
            let e = resolve(s).expect_err(why).to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }
}
