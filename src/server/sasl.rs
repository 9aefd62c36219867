//! One connection's SASL state on a SASL listener. Until a handshake and an exchange succeed,
//! only ApiVersions, SaslHandshake and SaslAuthenticate may be sent (anything else closes the
//! connection, as Kafka's brokers do). SaslHandshake v0 is followed by the mechanism's tokens as
//! bare length-prefixed frames; v1 by SaslAuthenticate requests (KIP-152). With
//! `connections.max.reauth.ms` a session expires: the client re-authenticates on the open
//! connection (KIP-368) as the same user, or the next request after expiry closes it. These
//! requests are answered here, in the reader and in arrival order, so nothing a client sends
//! after its authentication can overtake it.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};

use crate::auth::sasl::{Exchange, Step};
use crate::auth::{self, Sasl};
use crate::config::Mechanism;
use crate::handlers::{sasl_authenticate, sasl_handshake, Context};
use crate::protocol::{self, FrameError};

/// What the reader does with a frame.
pub(super) enum Verdict {
    /// Not SASL's business: serve it as usual.
    Pass,
    /// Send this answer (already framed) in order.
    Answer(Bytes),
    /// Send this answer, then close the connection for this reason.
    AnswerThenClose(Bytes, String),
    Close(String),
}

enum Gate {
    /// A handshake is due (first, or to re-authenticate).
    Handshake,
    Exchanging {
        exchange: Exchange,
        raw: bool,
    },
    Authenticated,
}

pub(super) struct SaslConnection {
    gate: Gate,
    /// Who the connection authenticated as, once it has.
    pub user: Option<String>,
    expires: Option<Instant>,
}

impl SaslConnection {
    pub fn new() -> SaslConnection {
        SaslConnection {
            gate: Gate::Handshake,
            user: None,
            expires: None,
        }
    }

    /// The next frame is a bare token (after a v0 handshake), not a request.
    pub fn expects_token(&self) -> bool {
        matches!(self.gate, Gate::Exchanging { raw: true, .. })
    }

    /// A bare token after a v0 handshake: answered bare; a failure just closes (v0 has no way
    /// to say why).
    pub fn on_token(&mut self, token: &[u8], sasl: &Sasl, ctx: &Context) -> Verdict {
        let Gate::Exchanging { exchange, .. } = &mut self.gate else {
            return Verdict::Close("unexpected SASL token".into());
        };
        let image = ctx.controller.image();
        let mechanism = exchange.mechanism();
        match exchange.step(token, &sasl.plain, &image, auth::nonce) {
            Step::Continue(reply) => Verdict::Answer(bare(&reply)),
            Step::Done { reply, user } => match self.authenticated(user, sasl, mechanism) {
                Ok(()) => Verdict::Answer(bare(&reply)),
                Err(why) => Verdict::Close(why),
            },
            Step::Failed { reason } => Verdict::Close(refused(mechanism, &reason)),
        }
    }

    /// A request on a SASL listener.
    pub fn on_request(
        &mut self,
        key: ApiKey,
        version: i16,
        frame: &Bytes,
        sasl: &Sasl,
        ctx: &Arc<Context>,
    ) -> Result<Verdict, FrameError> {
        match key {
            ApiKey::ApiVersions => Ok(Verdict::Pass),
            ApiKey::SaslHandshake => self.handshake(version, frame, sasl),
            ApiKey::SaslAuthenticate => self.authenticate(version, frame, sasl, ctx),
            _ if self.user.is_none() => Ok(Verdict::Close(format!(
                "{key:?} request before SASL authentication"
            ))),
            _ if self.expires.is_some_and(|at| Instant::now() >= at) => Ok(Verdict::Close(
                "the SASL session expired without re-authentication (connections.max.reauth.ms)"
                    .into(),
            )),
            // Authenticated (during a re-authentication the old session still holds).
            _ => Ok(Verdict::Pass),
        }
    }

    fn handshake(
        &mut self,
        version: i16,
        frame: &Bytes,
        sasl: &Sasl,
    ) -> Result<Verdict, FrameError> {
        let p = protocol::parse(frame.clone())?;
        let corr = p.header.correlation_id;
        let mut body = p.body;
        let req: SaslHandshakeRequest =
            protocol::decode(ApiKey::SaslHandshake, &mut body, version)?;
        let again = matches!(self.gate, Gate::Authenticated);
        if matches!(self.gate, Gate::Exchanging { .. }) || (again && version == 0) {
            return Ok(Verdict::Close(
                "SaslHandshake in the middle of an exchange".into(),
            ));
        }
        let wanted =
            Mechanism::parse(req.mechanism.as_str()).filter(|m| sasl.mechanisms.contains(m));
        let answer = protocol::encode_response(
            ApiKey::SaslHandshake,
            version,
            corr,
            &sasl_handshake::answer(&sasl.mechanisms, wanted.is_some()),
        )?;
        Ok(match wanted {
            Some(m) => {
                self.gate = Gate::Exchanging {
                    exchange: Exchange::new(m),
                    raw: version == 0,
                };
                Verdict::Answer(answer)
            }
            None => Verdict::AnswerThenClose(
                answer,
                format!(
                    "SASL mechanism {:?} is not enabled on this listener",
                    req.mechanism.as_str()
                ),
            ),
        })
    }

    fn authenticate(
        &mut self,
        version: i16,
        frame: &Bytes,
        sasl: &Sasl,
        ctx: &Arc<Context>,
    ) -> Result<Verdict, FrameError> {
        let p = protocol::parse(frame.clone())?;
        let corr = p.header.correlation_id;
        let mut body = p.body;
        let req: SaslAuthenticateRequest =
            protocol::decode(ApiKey::SaslAuthenticate, &mut body, version)?;
        let encode =
            |resp| protocol::encode_response(ApiKey::SaslAuthenticate, version, corr, &resp);
        let Gate::Exchanging {
            exchange,
            raw: false,
        } = &mut self.gate
        else {
            return Ok(Verdict::AnswerThenClose(
                encode(sasl_authenticate::failed("", true))?,
                "SaslAuthenticate without a SaslHandshake v1".into(),
            ));
        };
        let mechanism = exchange.mechanism();
        let image = ctx.controller.image();
        Ok(
            match exchange.step(&req.auth_bytes, &sasl.plain, &image, auth::nonce) {
                Step::Continue(reply) => {
                    Verdict::Answer(encode(sasl_authenticate::step(reply, 0, version))?)
                }
                Step::Done { reply, user } => match self.authenticated(user, sasl, mechanism) {
                    Ok(()) => {
                        let lifetime = sasl.session.map(|d| d.as_millis() as i64).unwrap_or(0);
                        Verdict::Answer(encode(sasl_authenticate::step(reply, lifetime, version))?)
                    }
                    Err(why) => Verdict::AnswerThenClose(
                        encode(sasl_authenticate::failed(mechanism.name(), false))?,
                        why,
                    ),
                },
                Step::Failed { reason } => Verdict::AnswerThenClose(
                    encode(sasl_authenticate::failed(mechanism.name(), false))?,
                    refused(mechanism, &reason),
                ),
            },
        )
    }

    fn authenticated(
        &mut self,
        user: String,
        sasl: &Sasl,
        mechanism: Mechanism,
    ) -> Result<(), String> {
        if let Some(before) = &self.user {
            if *before != user {
                return Err(format!(
                    "re-authentication as {user:?} on a connection of {before:?} (KIP-368 allows only the same user)"
                ));
            }
        } else {
            tracing::debug!(%user, mechanism = mechanism.name(), "SASL authentication succeeded");
        }
        self.user = Some(user);
        self.gate = Gate::Authenticated;
        self.expires = sasl.session.map(|d| Instant::now() + d);
        Ok(())
    }
}

/// Why a connection closes after a refused exchange (for the log; never a password).
fn refused(mechanism: Mechanism, reason: &str) -> String {
    format!("SASL {} authentication failed: {reason}", mechanism.name())
}

/// A bare SASL token frame (v0).
fn bare(token: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + token.len());
    b.put_u32(token.len() as u32);
    b.extend_from_slice(token);
    b.freeze()
}
