//! Users listed in a JAAS line, Kafka's way of naming a listener's PLAIN users
//! (`listener.name.sasl_ssl.plain.sasl.jaas.config = "…PlainLoginModule required
//! user_alice=\"alice-secret\";"`), as a [`CredentialStore`]: PLAIN checks the password
//! itself; SCRAM (the controller listener's) uses credentials derived once from each
//! password with a random salt ([`JaasUsers::with_scram`]).

use crate::{constant_time_eq, CredentialStore, ScramCredential, ScramMechanism};

pub struct JaasUsers {
    users: Vec<(String, String)>,
    scram: Vec<(String, ScramMechanism, ScramCredential)>,
}

impl JaasUsers {
    /// The `user_NAME="password"` options of `jaas`.
    pub fn parse(jaas: &str) -> JaasUsers {
        let mut users = Vec::new();
        let mut rest = jaas;
        while let Some(at) = rest.find("user_") {
            let after = &rest[at + 5..];
            let Some(eq) = after.find("=\"") else { break };
            let name = &after[..eq];
            let value = &after[eq + 2..];
            let Some(end) = value.find('"') else { break };
            let boundary = at == 0 || rest[..at].ends_with(|c: char| c.is_whitespace());
            if boundary && !name.is_empty() && !name.contains(char::is_whitespace) {
                users.push((name.to_string(), value[..end].to_string()));
            }
            rest = &value[end + 1..];
        }
        JaasUsers {
            users,
            scram: Vec::new(),
        }
    }

    /// Derives SCRAM-SHA-256 and SCRAM-SHA-512 credentials for every user (4096
    /// iterations each: done once, at start).
    pub fn with_scram(mut self) -> JaasUsers {
        for (name, password) in &self.users {
            for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                let cred = ScramCredential::from_password(m, password, crate::SCRAM_ITERATIONS_MIN);
                self.scram.push((name.clone(), m, cred));
            }
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(n, _)| n.as_str())
    }
}

impl CredentialStore for JaasUsers {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.scram
            .iter()
            .find(|(n, m, _)| n == user && *m == mechanism)
            .map(|(_, _, c)| c.clone())
    }

    fn check_plain(&self, user: &str, password: &[u8]) -> Option<bool> {
        self.users
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, p)| constant_time_eq(p.as_bytes(), password))
    }
}

impl std::fmt::Debug for JaasUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_options_are_the_users() {
        let users = JaasUsers::parse(
            r#"x required username="ctl" password="p" user_ctl="a" user_ops="b c"; "#,
        );
        assert_eq!(users.names().collect::<Vec<_>>(), ["ctl", "ops"]);
        assert_eq!(users.check_plain("ops", b"b c"), Some(true));
        assert_eq!(users.check_plain("ops", b"b"), Some(false));
        assert_eq!(users.check_plain("nobody", b"a"), None);
        assert!(users
            .scram_credential("ctl", ScramMechanism::Sha256)
            .is_none());
        let users = users.with_scram();
        let cred = users
            .scram_credential("ctl", ScramMechanism::Sha512)
            .unwrap();
        assert!(cred.verifies_password(b"a"));
        assert!(JaasUsers::parse(r#"x required username="u" password="p";"#).is_empty());
        // `myuser_x` is not a user option.
        assert!(JaasUsers::parse(r#"x required myuser_x="p";"#).is_empty());
    }
}
