//! SaslHandshake: on a SASL listener the connection's reader answers it itself, in order, before
//! anything else may be sent (`server`); this handler answers the other cases as Kafka's brokers
//! do: ILLEGAL_SASL_STATE on a listener without SASL.

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::Refusal;
use super::Context;
use crate::config::Mechanism;

pub async fn handle(
    _ctx: &Context,
    _req: SaslHandshakeRequest,
    _version: i16,
) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(Refusal::IllegalSaslState.code())
}

/// The answer to a handshake on a SASL listener: the mechanisms it enables, and an error if the
/// one asked for is not among them.
pub fn answer(enabled: &[Mechanism], accepted: bool) -> SaslHandshakeResponse {
    let resp = SaslHandshakeResponse::default().with_mechanisms(
        enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect(),
    );
    if accepted {
        resp
    } else {
        resp.with_error_code(Refusal::UnsupportedSaslMechanism.code())
    }
}
