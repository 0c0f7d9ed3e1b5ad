//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM users live in
//! the cluster metadata, so every broker of a cluster authenticates them the same way.
//! Validation follows Kafka's controller (`ScramControlManager`): per user, every change is
//! accepted or none is, and all accepted users change in one metadata commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use strata_cluster::MetadataRecord;
use strata_security::{ScramCredential, ScramMechanism};
use tracing::info;

use super::str;
use crate::Broker;

pub fn describe(
    broker: &Arc<Broker>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.image();
    let infos = |creds: &BTreeMap<String, strata_cluster::ScramCredentialImage>| {
        creds
            .iter()
            .filter_map(|(m, c)| {
                Some(
                    CredentialInfo::default()
                        .with_mechanism(ScramMechanism::parse(m)?.code())
                        .with_iterations(c.iterations as i32),
                )
            })
            .collect()
    };
    let mut response = DescribeUserScramCredentialsResponse::default();
    let asked: Vec<String> = request
        .users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.to_string())
        .collect();
    if asked.is_empty() {
        response.results = image
            .scram_users()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str(user))
                    .with_credential_infos(infos(creds))
            })
            .collect();
        return response;
    }
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<&String> = asked.iter().filter(|u| !seen.insert(*u)).collect();
    let mut reported = BTreeSet::new();
    for user in &asked {
        if !reported.insert(user) {
            continue;
        }
        let mut result = DescribeUserScramCredentialsResult::default().with_user(str(user));
        if duplicated.contains(user) {
            result.error_code = ResponseError::DuplicateResource.code();
            result.error_message = Some(str(&format!(
                "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
            )));
        } else {
            match image.scram_users().find(|(u, _)| *u == user) {
                Some((_, creds)) => result.credential_infos = infos(creds),
                None => {
                    result.error_code = ResponseError::ResourceNotFound.code();
                    result.error_message = Some(str(&format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )));
                }
            }
        }
        response.results.push(result);
    }
    response
}

/// One change of a user's credentials: (mechanism code, the upsertion's iterations, salt
/// and salted password, or None for a deletion).
type Change = (i8, Option<(i32, bytes::Bytes, bytes::Bytes)>);

pub fn alter(
    broker: &Arc<Broker>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut by_user: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        if !by_user.contains_key(&user) {
            order.push(user.clone());
        }
        by_user.entry(user).or_default().push((d.mechanism, None));
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        if !by_user.contains_key(&user) {
            order.push(user.clone());
        }
        by_user.entry(user).or_default().push((
            u.mechanism,
            Some((u.iterations, u.salt.clone(), u.salted_password.clone())),
        ));
    }
    let metadata = broker.metadata();
    let image = metadata.image();
    let mut records = Vec::new();
    let mut errors: BTreeMap<String, (i16, String)> = BTreeMap::new();
    for user in &order {
        match user_records(&image, user, &by_user[user]) {
            Ok(mut r) => records.append(&mut r),
            Err(e) => {
                errors.insert(user.clone(), e);
            }
        }
    }
    let committed = if records.is_empty() {
        drop(metadata);
        Ok(())
    } else {
        broker.commit_metadata(metadata, &records).map(|_| ())
    };
    let mut response = AlterUserScramCredentialsResponse::default();
    for user in &order {
        let mut result = AlterUserScramCredentialsResult::default().with_user(str(user));
        if let Some((code, message)) = errors.get(user) {
            result.error_code = *code;
            result.error_message = Some(str(message));
        } else if let Err(e) = &committed {
            result.error_code = e.code();
            result.error_message = Some(str(&e.to_string()));
        } else {
            info!(user = %user, "SCRAM credentials changed");
        }
        response.results.push(result);
    }
    response
}

/// One user's changes as metadata records, or Kafka's error for the first invalid one.
fn user_records(
    image: &strata_cluster::MetadataImage,
    user: &str,
    changes: &[Change],
) -> Result<Vec<MetadataRecord>, (i16, String)> {
    let unacceptable = |m: String| (ResponseError::UnacceptableCredential.code(), m);
    if user.is_empty() {
        return Err(unacceptable("Username must not be empty".into()));
    }
    let mut mechanisms = BTreeSet::new();
    let mut records = Vec::new();
    for (code, upsertion) in changes {
        let Some(mechanism) = ScramMechanism::from_code(*code) else {
            return Err((
                ResponseError::UnsupportedSaslMechanism.code(),
                format!("Unknown SCRAM mechanism {code}"),
            ));
        };
        if !mechanisms.insert(mechanism) {
            return Err((
                ResponseError::DuplicateResource.code(),
                "A user credential cannot be altered twice in the same request".into(),
            ));
        }
        match upsertion {
            None => {
                if image.scram_credential(user, mechanism.name()).is_none() {
                    return Err((
                        ResponseError::ResourceNotFound.code(),
                        "Attempt to delete a user credential that does not exist".into(),
                    ));
                }
                records.push(MetadataRecord::RemoveScramCredential {
                    user: user.to_string(),
                    mechanism: mechanism.name().to_string(),
                });
            }
            Some((iterations, salt, salted_password)) => {
                if salted_password.is_empty() {
                    return Err(unacceptable("The salted password must not be empty".into()));
                }
                let iterations = u32::try_from(*iterations).unwrap_or(0);
                let credential = ScramCredential::from_salted_password(
                    mechanism,
                    salt.to_vec(),
                    salted_password,
                    iterations,
                );
                if let Some(why) = credential.invalid() {
                    return Err(unacceptable(why));
                }
                records.push(MetadataRecord::ScramCredential {
                    user: user.to_string(),
                    mechanism: mechanism.name().to_string(),
                    salt: credential.salt,
                    stored_key: credential.stored_key,
                    server_key: credential.server_key,
                    iterations,
                });
            }
        }
    }
    Ok(records)
}
