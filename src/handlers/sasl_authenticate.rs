//! SaslAuthenticate (KIP-152): on a SASL listener the connection's reader runs the exchange
//! (`server`, with `auth::sasl`); here are its answers, and Kafka's ILLEGAL_SASL_STATE for a
//! listener without SASL.

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::Refusal;
use super::Context;

pub async fn handle(
    _ctx: &Context,
    _req: SaslAuthenticateRequest,
    _version: i16,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default().with_error_code(Refusal::IllegalSaslState.code())
}

/// A step of the exchange: the server's token, and from v1 how long the session lasts (0: as
/// long as the connection).
pub fn step(reply: Vec<u8>, session_ms: i64, version: i16) -> SaslAuthenticateResponse {
    let resp = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
    if version >= 1 {
        resp.with_session_lifetime_ms(session_ms)
    } else {
        resp
    }
}

/// A refusal; `mechanism` names what was tried, as Kafka's message does, and nothing about why.
pub fn failed(mechanism: &str, illegal_state: bool) -> SaslAuthenticateResponse {
    let (refusal, message) = if illegal_state {
        (
            Refusal::IllegalSaslState,
            "SaslAuthenticate is not expected now".to_string(),
        )
    } else {
        (
            Refusal::SaslAuthenticationFailed,
            format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"),
        )
    };
    SaslAuthenticateResponse::default()
        .with_error_code(refusal.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
