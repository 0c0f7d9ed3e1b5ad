//! SASL/PLAIN (RFC 4616): one message, `authzid NUL authcid NUL password`, checked against
//! the user's SCRAM credentials (Strata keeps no other kind of password: a user made with
//! `kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=…]'` can use PLAIN too).
//! PLAIN sends the password itself, so listeners offering it should use TLS (SASL_SSL).

use crate::{AuthError, CredentialStore, ScramCredential, ScramMechanism, Step};

const NAME: &str = "PLAIN";

fn malformed(why: &str) -> AuthError {
    AuthError::Malformed {
        mechanism: NAME,
        why: why.to_string(),
    }
}

pub(crate) fn authenticate(input: &[u8], store: &dyn CredentialStore) -> Result<Step, AuthError> {
    let mut parts = input.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected authzid NUL username NUL password"));
    };
    let user = std::str::from_utf8(user).map_err(|_| malformed("the user name is not UTF-8"))?;
    if user.is_empty() {
        return Err(malformed("username not specified"));
    }
    if password.is_empty() {
        return Err(malformed("password not specified"));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(malformed("the authorization id differs from the user name"));
    }
    let authenticated = || {
        Ok(Step::Authenticated {
            user: user.to_string(),
            response: Vec::new(),
            expires_ms: None,
        })
    };
    // A listener's own PLAIN users (its JAAS line) first, as Kafka checks them.
    match store.check_plain(user, password) {
        Some(true) => return authenticated(),
        Some(false) => return Err(AuthError::InvalidCredentials(NAME)),
        None => {}
    }
    // The strongest credential the user has; a user with none is checked against a
    // made-up one, so the answer takes as long either way.
    let credential = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| store.scram_credential(user, m))
        .filter(|c| c.invalid().is_none());
    let verified = match &credential {
        Some(c) => c.verifies_password(password),
        None => {
            let _ =
                ScramCredential::made_up(ScramMechanism::Sha512, user).verifies_password(password);
            false
        }
    };
    if !verified {
        return Err(AuthError::InvalidCredentials(NAME));
    }
    authenticated()
}

#[cfg(test)]
mod tests {
    use crate::scram::tests::users;
    use crate::{AuthError, Mechanism, SaslServer, ScramMechanism, Step};

    fn plain(input: &[u8]) -> Result<Step, AuthError> {
        let store = users(&[
            ("alice", "alice-secret", ScramMechanism::Sha256),
            ("bob", "bob-secret", ScramMechanism::Sha512),
        ]);
        SaslServer::new(Mechanism::Plain).step(input, &store)
    }

    #[test]
    fn plain_checks_the_password_against_either_scram_credential() {
        for (user, pw) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
            let msg = format!("\0{user}\0{pw}");
            assert_eq!(
                plain(msg.as_bytes()),
                Ok(Step::Authenticated {
                    user: user.into(),
                    response: vec![],
                    expires_ms: None,
                })
            );
            let msg = format!("{user}\0{user}\0{pw}");
            assert!(plain(msg.as_bytes()).is_ok());
        }
        for bad in ["\0alice\0bob-secret", "\0carol\0x", "\0alice\0alice-secre"] {
            assert_eq!(
                plain(bad.as_bytes()),
                Err(AuthError::InvalidCredentials("PLAIN")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_listeners_own_users_are_checked_first() {
        let jaas = crate::JaasUsers::parse(r#"x required user_alice="jaas-pw" user_dave="d";"#);
        let ok = |msg: &str| SaslServer::new(Mechanism::Plain).step(msg.as_bytes(), &jaas);
        assert!(ok("\0dave\0d").is_ok());
        assert!(ok("\0alice\0jaas-pw").is_ok());
        assert_eq!(
            ok("\0alice\0alice-secret"),
            Err(AuthError::InvalidCredentials("PLAIN")),
            "a listed user's JAAS password is the one that counts"
        );
        assert_eq!(
            ok("\0carol\0x"),
            Err(AuthError::InvalidCredentials("PLAIN"))
        );
    }

    #[test]
    fn malformed_plain_messages() {
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"bob\0alice\0alice-secret",
            b"\0alice\0alice-secret\0",
            b"\0\xff\0pw",
        ] {
            assert!(
                matches!(plain(bad), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }
}
