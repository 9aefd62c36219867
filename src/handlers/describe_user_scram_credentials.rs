//! DescribeUserScramCredentials: each user's SCRAM mechanisms and iteration counts (never salts
//! or keys), from the metadata image. No users named (null or empty): every user that has one.

use crate::metadata::acl::Operation;
use std::collections::BTreeSet;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::errors::Refusal;
use super::{s, Context};
use crate::metadata::ScramCredential;

/// Kafka's ScramMechanism ids.
pub fn mechanism_id(name: &str) -> i8 {
    match name {
        "SCRAM-SHA-256" => 1,
        "SCRAM-SHA-512" => 2,
        _ => 0,
    }
}

pub async fn handle(
    ctx: &Context,
    req: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(Refusal::ClusterAuthorizationFailed.code())
            .with_error_message(Some(s("Cluster authorization failed.")));
    }
    let image = ctx.controller.image();
    let found = |user: &str, creds: &std::collections::BTreeMap<String, ScramCredential>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(s(user))
            .with_credential_infos(
                creds
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(mechanism_id(m))
                            .with_iterations(c.iterations as i32)
                    })
                    .collect(),
            )
    };
    let asked: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if asked.is_empty() {
        image.scram.iter().map(|(u, c)| found(u, c)).collect()
    } else {
        let mut seen = BTreeSet::new();
        let twice: BTreeSet<&String> = asked.iter().filter(|u| !seen.insert(*u)).collect();
        let mut done = BTreeSet::new();
        asked
            .iter()
            .filter(|u| done.insert(*u))
            .map(|u| {
                let refused = |r: Refusal, why: &str| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(s(u.as_str()))
                        .with_error_code(r.code())
                        .with_error_message(Some(s(why)))
                };
                if twice.contains(u) {
                    return refused(Refusal::DuplicateResource, "Cannot describe SCRAM credentials for the same user twice in a single request");
                }
                match image.scram.get(u) {
                    Some(c) => found(u, c),
                    None => refused(
                        Refusal::ResourceNotFound,
                        "Attempt to describe a user credential that does not exist",
                    ),
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
