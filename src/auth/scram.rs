//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) on the server side: deriving a stored
//! credential from a password or a client's salted password, and checking one exchange
//! (client-first → server-first → client-final → server-final). Pure code over `ring`'s
//! primitives; the nonce comes from the caller so tests can fix it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

use crate::config::Mechanism;
use crate::metadata::ScramCredential;

/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

fn hmac_alg(m: Mechanism) -> hmac::Algorithm {
    match m {
        Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

fn digest_alg(m: Mechanism) -> &'static digest::Algorithm {
    match m {
        Mechanism::ScramSha512 => &digest::SHA512,
        _ => &digest::SHA256,
    }
}

fn mac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac_alg(m), key), data)
        .as_ref()
        .to_vec()
}

/// Hi(password, salt, i) of RFC 5802: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let alg = match m {
        Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => pbkdf2::PBKDF2_HMAC_SHA256,
    };
    let mut out = vec![0u8; digest_alg(m).output_len()];
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(alg, rounds, salt, password, &mut out);
    out
}

/// The stored credential for a salted password (what AlterUserScramCredentials carries).
pub fn credential(m: Mechanism, salted: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
    let client_key = mac(m, salted, b"Client Key");
    ScramCredential {
        salt: salt.to_vec(),
        stored_key: digest::digest(digest_alg(m), &client_key).as_ref().to_vec(),
        server_key: mac(m, salted, b"Server Key"),
        iterations,
    }
}

/// Equal in time independent of where the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed. The client only ever learns "authentication failed".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong proof (bad password)")]
    BadProof,
    #[error("channel binding is not supported")]
    ChannelBinding,
}

/// A `saslname` of RFC 5802 decoded: `=2C` is `,` and `=3D` is `=`.
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The client-first message's parts that the rest of the exchange needs.
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
    /// `n=…,r=…` (and any extensions): part of the signed AuthMessage.
    bare: String,
    /// The GS2 header, echoed base64-encoded as `c=` in client-final.
    gs2: String,
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = msg.splitn(3, ',');
    let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
    let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("no user"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad GS2 flag")),
    }
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = Some(decode_name(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
    }
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or(ScramError::Malformed("no user"))?;
    if let Some(a) = authzid.strip_prefix("a=") {
        if decode_name(a)? != user {
            return Err(ScramError::Malformed(
                "authorization id differs from the user",
            ));
        }
    }
    Ok(ClientFirst {
        user,
        nonce: nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no nonce"))?,
        bare: bare.to_string(),
        gs2: format!("{flag},{authzid},"),
    })
}

/// A SCRAM exchange after the server-first message was sent.
pub struct ServerFirst {
    mechanism: Mechanism,
    first: ClientFirst,
    credential: ScramCredential,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Answers `first` for a user with `credential`; `server_nonce` is fresh randomness.
    pub fn new(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> ServerFirst {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        ServerFirst {
            mechanism,
            first,
            credential,
            nonce,
            message,
        }
    }

    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    pub fn user(&self) -> &str {
        &self.first.user
    }

    /// Checks client-final; returns server-final (`v=…`) when the proof is right.
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if binding != Some(B64.encode(&self.first.gs2).as_str()) {
            return Err(ScramError::Malformed(
                "channel binding differs from the GS2 header",
            ));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce differs"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.message);
        let m = self.mechanism;
        let signature = mac(m, &self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = digest::digest(digest_alg(m), &client_key);
        if !same(stored.as_ref(), &self.credential.stored_key) {
            return Err(ScramError::BadProof);
        }
        let verifier = mac(m, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(verifier)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the exchange, as RFC 5802 describes it.
    fn client_final(m: Mechanism, password: &str, first_bare: &str, server_first: &str) -> String {
        let mut salt = None;
        let mut iterations = 0;
        let mut nonce = "";
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("s=") {
                salt = Some(B64.decode(v).expect("salt"));
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse().expect("iterations");
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = v;
            }
        }
        let salted = salted_password(m, password.as_bytes(), &salt.expect("salt"), iterations);
        let client_key = mac(m, &salted, b"Client Key");
        let stored = digest::digest(digest_alg(m), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let sig = mac(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn exchange(m: Mechanism, stored_password: &str, tried: &str) -> Result<Vec<u8>, ScramError> {
        let salt = b"0123456789abcdef";
        let salted = salted_password(m, stored_password.as_bytes(), salt, 4096);
        let cred = credential(m, &salted, salt, 4096);
        let first = parse_client_first(b"n,,n=ad=3Dmin,r=clientnonce").expect("first");
        assert_eq!(first.user, "ad=min");
        let server = ServerFirst::new(m, first, cred, "servernonce");
        let sf = String::from_utf8(server.message().to_vec()).expect("utf8");
        assert!(sf.starts_with("r=clientnonceservernonce,s="), "{sf}");
        server.finish(client_final(m, tried, "n=ad=3Dmin,r=clientnonce", &sf).as_bytes())
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails_for_both_mechanisms() {
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let v = exchange(m, "secret", "secret").expect("right password");
            assert!(v.starts_with(b"v="));
            assert_eq!(exchange(m, "secret", "Secret"), Err(ScramError::BadProof));
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc_7677_example_verifies() {
        let m = Mechanism::ScramSha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = credential(m, &salted, &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("first");
        let server = ServerFirst::new(m, first, cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server.message(),
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let v = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("the RFC's proof");
        assert_eq!(v, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn malformed_and_channel_bound_first_messages_are_refused() {
        assert!(parse_client_first(b"p=tls-unique,,n=a,r=b").is_err());
        assert!(parse_client_first(b"n,,r=b").is_err());
        assert!(parse_client_first(b"n,,n=a").is_err());
        assert!(parse_client_first(b"n,a=other,n=a,r=b").is_err());
        assert!(parse_client_first(b"n,,n=a=ZZ,r=b").is_err());
        assert!(parse_client_first(&[0xff, 0xfe]).is_err());
    }
}

/// The client's side of a SCRAM exchange (for broker-to-broker connections and strom's tools).
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    nonce: String,
    first_bare: String,
    /// The server signature the final message must carry, once the proof is sent.
    expected: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange as `user`; returns it and the client-first message.
    pub fn start(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> (ScramClient, Vec<u8>) {
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={name},r={nonce}");
        let client = ScramClient {
            mechanism,
            password: password.to_string(),
            nonce: nonce.to_string(),
            first_bare: first_bare.clone(),
            expected: None,
        };
        (client, format!("n,,{first_bare}").into_bytes())
    }

    /// Answers server-first with client-final (the proof).
    pub fn proof(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let nonce = nonce
            .filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len())
            .ok_or(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ))?;
        let salt = salt.ok_or(ScramError::Malformed("no salt"))?;
        let iterations = iterations
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or(ScramError::Malformed("iterations missing or out of bounds"))?;
        let m = self.mechanism;
        let salted = salted_password(m, self.password.as_bytes(), &salt, iterations);
        let client_key = mac(m, &salted, b"Client Key");
        let stored = digest::digest(digest_alg(m), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.first_bare);
        let signature = mac(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.expected = Some(mac(m, &mac(m, &salted, b"Server Key"), auth.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proved it knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let got = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match &self.expected {
            Some(want) if same(want, &got) => Ok(()),
            _ => Err(ScramError::BadProof),
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn the_client_and_the_server_agree_and_a_wrong_password_is_caught_by_both() {
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
            let salt = b"salty";
            let cred = credential(m, &salted_password(m, b"pw", salt, 4096), salt, 4096);
            let (mut client, first) = ScramClient::start(m, "a,b=c", "pw", "cnonce");
            let parsed = parse_client_first(&first).expect("first");
            assert_eq!(parsed.user, "a,b=c");
            let server = ServerFirst::new(m, parsed, cred.clone(), "snonce");
            let fin = client.proof(server.message()).expect("proof");
            let v = server.finish(&fin).expect("accepted");
            client.verify(&v).expect("the server is genuine");
            assert!(client.verify(b"v=AAAA").is_err());
            let (mut wrong, first) = ScramClient::start(m, "a,b=c", "pw", "nonce2");
            let server =
                ServerFirst::new(m, parse_client_first(&first).expect("first"), cred, "s2");
            let fin = wrong.proof(server.message()).expect("proof");
            // Same password here; make it wrong by changing what the client derived from.
            wrong.password = "nope".into();
            let fin_wrong = wrong.proof(server.message()).expect("proof");
            assert!(server.finish(&fin).is_ok());
            assert_eq!(server.finish(&fin_wrong), Err(ScramError::BadProof));
        }
    }
}
