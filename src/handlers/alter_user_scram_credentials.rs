//! AlterUserScramCredentials: SCRAM credentials created, replaced or deleted through the
//! controller as metadata records. The client sends the salted password; the broker keeps only
//! the stored and server keys derived from it. As in Kafka, each user is answered on its own,
//! and a user with any refused change gets none of its changes applied.

use crate::metadata::acl::Operation;
use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use super::errors::{self, Refusal};
use super::{s, Context};
use crate::auth::scram;
use crate::config::Mechanism;
use crate::controller::AdminOp;
use crate::metadata::ScramCredential;

fn mechanism(id: i8) -> Option<Mechanism> {
    match id {
        1 => Some(Mechanism::ScramSha256),
        2 => Some(Mechanism::ScramSha512),
        _ => None,
    }
}

type Change = (String, String, Option<ScramCredential>);

pub async fn handle(
    ctx: &Context,
    req: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    if !ctx.may_on_cluster(Operation::Alter) {
        let mut users: Vec<String> = req
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(req.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        users.dedup();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(s(u))
                        .with_error_code(Refusal::ClusterAuthorizationFailed.code())
                })
                .collect(),
        );
    }
    let image = ctx.controller.image();
    // Per user, in order of first mention: its changes, or the first reason to refuse them.
    let mut users: BTreeMap<String, Result<Vec<Change>, (Refusal, String)>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut named = BTreeSet::new();
    let mut note = |user: &str, change: Result<Change, (Refusal, String)>| {
        if !users.contains_key(user) {
            order.push(user.to_string());
        }
        let entry = users.entry(user.to_string()).or_insert(Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(list), Ok(c)) => list.push(c),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    let unacceptable = |why: &str| Err((Refusal::UnacceptableCredential, why.to_string()));
    for d in &req.deletions {
        let user = d.name.to_string();
        let change = match mechanism(d.mechanism) {
            _ if user.is_empty() => unacceptable("Username must not be empty"),
            None => Err((
                Refusal::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            )),
            Some(m) if !named.insert((user.clone(), m)) => Err((
                Refusal::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            )),
            Some(m)
                if image
                    .scram
                    .get(&user)
                    .and_then(|c| c.get(m.name()))
                    .is_none() =>
            {
                Err((
                    Refusal::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                ))
            }
            Some(m) => Ok((user.clone(), m.name().to_string(), None)),
        };
        note(&user, change);
    }
    for u in &req.upsertions {
        let user = u.name.to_string();
        let change = match mechanism(u.mechanism) {
            _ if user.is_empty() => unacceptable("Username must not be empty"),
            None => Err((
                Refusal::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            )),
            Some(_) if u.iterations < scram::MIN_ITERATIONS as i32 => {
                unacceptable("Too few iterations")
            }
            Some(_) if u.iterations > scram::MAX_ITERATIONS as i32 => {
                unacceptable("Too many iterations")
            }
            Some(_) if u.salt.is_empty() || u.salted_password.is_empty() => {
                unacceptable("Salt and salted password must not be empty")
            }
            Some(m) if !named.insert((user.clone(), m)) => Err((
                Refusal::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            )),
            Some(m) => Ok((
                user.clone(),
                m.name().to_string(),
                Some(scram::credential(
                    m,
                    &u.salted_password,
                    &u.salt,
                    u.iterations as u32,
                )),
            )),
        };
        note(&user, change);
    }
    let changes: Vec<Change> = users
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let written = if changes.is_empty() {
        Ok(())
    } else {
        ctx.controller
            .submit(AdminOp::AlterScramCredentials { changes })
            .await
            .map(|_| ())
            .map_err(|e| (errors::admin(&e), e.to_string()))
    };
    let results = order
        .iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(s(user.as_str()));
            let failure = match &users[user] {
                Err((r, why)) => Some((r.code(), why.clone())),
                Ok(_) => written.clone().err(),
            };
            match failure {
                Some((code, why)) => result
                    .with_error_code(code)
                    .with_error_message(Some(s(why))),
                None => result,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
