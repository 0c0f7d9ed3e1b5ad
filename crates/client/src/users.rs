//! SCRAM users as an admin client changes them (AlterUserScramCredentials, KIP-554): the
//! requests the CLI sends and the admin API hands to the broker's handler. A password is
//! salted here, with a fresh salt; only the salted form goes in the request, as Kafka's
//! admin client does it.

use kafka_protocol::messages::{
    alter_user_scram_credentials_request, AlterUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use strata_security::ScramMechanism;

/// Sets `name`'s credential for `mechanism` (creating the user).
pub fn set_password(
    name: &str,
    mechanism: ScramMechanism,
    password: &str,
    iterations: u32,
) -> AlterUserScramCredentialsRequest {
    let (salt, salted) = strata_security::salt_password(mechanism, password, iterations);
    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_mechanism(mechanism.code())
            .with_iterations(iterations as i32)
            .with_salt(salt.into())
            .with_salted_password(salted.into()),
    ])
}

/// Removes `name`'s credentials for `mechanisms`.
pub fn remove(name: &str, mechanisms: &[ScramMechanism]) -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest::default().with_deletions(
        mechanisms
            .iter()
            .map(|m| {
                alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_mechanism(m.code())
            })
            .collect(),
    )
}
