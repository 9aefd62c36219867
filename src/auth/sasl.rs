//! One SASL exchange on one connection: PLAIN (a single message) or SCRAM (two round trips),
//! given the tokens the client sends. Pure except for the server nonce, which the caller passes.
//! Who the user is, and whether the password or proof is right, is decided here; the connection
//! state around it (handshake first, re-authentication, what may be sent before) is `server`'s.

use std::collections::HashMap;

use super::scram::{self, ServerFirst};
use crate::config::Mechanism;
use crate::metadata::MetadataImage;

/// PLAIN's users, from `sasl.plain.users.file` (`name=password` lines, `#` comments).
#[derive(Default)]
pub struct PlainUsers(HashMap<String, String>);

impl PlainUsers {
    pub fn parse(text: &str) -> Result<PlainUsers, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The line itself is never quoted back: it holds a password.
            let (name, password) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not name=password", i + 1))?;
            if name.trim().is_empty() {
                return Err(format!("line {} has no name", i + 1));
            }
            users.insert(name.trim().to_string(), password.to_string());
        }
        Ok(PlainUsers(users))
    }

    fn check(&self, user: &str, password: &str) -> bool {
        // Compared in constant time; an unknown user costs the same comparison.
        let stored = self.0.get(user);
        let ok = scram::same(
            stored.map(String::as_bytes).unwrap_or(b"\0unknown"),
            password.as_bytes(),
        );
        ok && stored.is_some()
    }
}

/// What the connection does after a token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the client's next token.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send these bytes (possibly empty) as the last answer.
    Done { reply: Vec<u8>, user: String },
    /// Authentication failed; `reason` is for the broker's log only (the client is told
    /// that its credentials were refused, nothing more).
    Failed { reason: String },
}

enum State {
    Start,
    ScramSent(Box<ServerFirst>),
    Finished,
}

/// One authentication with one mechanism.
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the client's next token. `image` holds SCRAM credentials; `nonce` makes the
    /// server's part of a SCRAM nonce.
    pub fn step(
        &mut self,
        token: &[u8],
        plain: &PlainUsers,
        image: &MetadataImage,
        nonce: impl FnOnce() -> String,
    ) -> Step {
        let failed = |reason: String| Step::Failed { reason };
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Finished => failed("the exchange had already ended".into()),
            State::Start if self.mechanism == Mechanism::Plain => {
                // authzid NUL authcid NUL password
                let mut parts = token.split(|b| *b == 0);
                let (Some(authzid), Some(user), Some(password), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return failed("malformed PLAIN message".into());
                };
                let (Ok(authzid), Ok(user), Ok(password)) = (
                    std::str::from_utf8(authzid),
                    std::str::from_utf8(user),
                    std::str::from_utf8(password),
                ) else {
                    return failed("PLAIN message is not UTF-8".into());
                };
                if !authzid.is_empty() && authzid != user {
                    return failed(format!("user {user} asked to act as {authzid}"));
                }
                if plain.check(user, password) {
                    Step::Done {
                        reply: Vec::new(),
                        user: user.to_string(),
                    }
                } else {
                    failed(format!("wrong password or unknown user {user:?}"))
                }
            }
            State::Start => {
                let first = match scram::parse_client_first(token) {
                    Ok(f) => f,
                    Err(e) => return failed(e.to_string()),
                };
                let credential = image
                    .scram
                    .get(&first.user)
                    .and_then(|m| m.get(self.mechanism.name()))
                    .cloned();
                let Some(credential) = credential else {
                    return failed(format!(
                        "unknown user {:?} for {}",
                        first.user,
                        self.mechanism.name()
                    ));
                };
                let server = ServerFirst::new(self.mechanism, first, credential, &nonce());
                let reply = server.message().to_vec();
                self.state = State::ScramSent(Box::new(server));
                Step::Continue(reply)
            }
            State::ScramSent(server) => match server.finish(token) {
                Ok(reply) => Step::Done {
                    reply,
                    user: server.user().to_string(),
                },
                Err(e) => failed(format!("user {:?}: {e}", server.user())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord;

    #[test]
    fn plain_accepts_its_users_and_refuses_everything_else() {
        let users = PlainUsers::parse("# users\nalice=wonder land\nbob=b\n").expect("valid");
        let image = MetadataImage::default();
        let run =
            |token: &[u8]| Exchange::new(Mechanism::Plain).step(token, &users, &image, String::new);
        assert_eq!(
            run(b"\0alice\0wonder land"),
            Step::Done {
                reply: vec![],
                user: "alice".into()
            }
        );
        assert!(matches!(
            run(b"alice\0alice\0wonder land"),
            Step::Done { .. }
        ));
        for bad in [
            &b"\0alice\0wonder"[..],
            b"\0carol\0b",
            b"bob\0alice\0wonder land",
            b"\0alice",
            b"\0alice\0wonder land\0x",
        ] {
            assert!(matches!(run(bad), Step::Failed { .. }), "{bad:?}");
        }
        assert!(PlainUsers::parse("no-equals-sign").is_err());
    }

    #[test]
    fn scram_uses_the_credentials_in_the_image() {
        let m = Mechanism::ScramSha256;
        let salted = scram::salted_password(m, b"pw", b"salt", 4096);
        let image = MetadataImage::default()
            .apply(&MetadataRecord::ScramCredential {
                user: "app".into(),
                mechanism: m.name().into(),
                credential: Some(scram::credential(m, &salted, b"salt", 4096)),
            })
            .0;
        let plain = PlainUsers::default();
        let mut ex = Exchange::new(m);
        let Step::Continue(first) = ex.step(b"n,,n=app,r=abc", &plain, &image, || "xyz".into())
        else {
            panic!("a known user gets server-first");
        };
        assert!(first.starts_with(b"r=abcxyz,"));
        // A wrong proof fails; the exchange cannot be continued after.
        assert!(matches!(
            ex.step(b"c=biws,r=abcxyz,p=AAAA", &plain, &image, String::new),
            Step::Failed { .. }
        ));
        let mut other = Exchange::new(Mechanism::ScramSha512);
        assert!(matches!(
            other.step(b"n,,n=app,r=abc", &plain, &image, String::new),
            Step::Failed { .. }
        ));
    }
}
