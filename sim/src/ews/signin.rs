//! How a caller signs in to the EWS emulator, as IIS in front of Exchange lets it: the
//! schemes of `--auth` (Basic, NTLM, Negotiate) are offered in `WWW-Authenticate`, one header
//! each, Negotiate before NTLM as IIS lists its Windows authentication providers, and only
//! they are accepted.
//!
//! Basic is checked on every request. NTLM and Negotiate sign in the TCP connection
//! ([MS-NTHT]): NEGOTIATE gets a 401 with a CHALLENGE, AUTHENTICATE is checked and, when
//! right, the request is served and every later request on the same connection is taken as
//! that account's (IIS's default, `authPersistSingleRequest="false"`). Negotiate wraps the
//! NTLM messages in SPNEGO and ends with IIS's `accept-completed` token carrying the
//! mechListMIC; a bare NTLM message in a Negotiate header is also taken, as IIS does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::ntlm::{self, Account, Direction};
use super::spnego::{self, NegState};
use crate::common::{ConnectionControl, Credentials, SimControl};

/// A sign-in scheme the emulator can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthScheme {
    /// OAuth 2.0 bearer tokens (`--auth oauth`), from the emulator's token endpoint.
    Bearer,
    /// SPNEGO (RFC 4559) wrapping NTLM.
    Negotiate,
    /// NTLM over HTTP ([MS-NTHT]).
    Ntlm,
    /// `Authorization: Basic` on every request.
    Basic,
}

impl AuthScheme {
    /// The name as `--auth` and the `WWW-Authenticate` header write it.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Negotiate => "Negotiate",
            AuthScheme::Ntlm => "NTLM",
            AuthScheme::Basic => "Basic",
        }
    }

    /// Reads `--auth`'s comma-separated list (`ntlm,negotiate`, `basic`): sorted in the
    /// order IIS offers them, each once.
    pub fn parse_list(text: &str) -> Result<Vec<AuthScheme>, String> {
        let mut schemes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            let scheme = match name.to_ascii_lowercase().as_str() {
                "basic" => AuthScheme::Basic,
                "ntlm" => AuthScheme::Ntlm,
                "negotiate" => AuthScheme::Negotiate,
                "oauth" | "bearer" => AuthScheme::Bearer,
                other => return Err(format!("unknown sign-in scheme `{other}`; use basic, ntlm, negotiate or oauth")),
            };
            schemes.push(scheme);
        }
        if schemes.is_empty() {
            return Err("name at least one sign-in scheme: basic, ntlm, negotiate or oauth".into());
        }
        schemes.sort();
        schemes.dedup();
        Ok(schemes)
    }
}

/// The sign-in state of one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnectionSignIn {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Anonymous,
    /// Negotiate chose NTLM for a client that offered another mechanism first: its
    /// NEGOTIATE_MESSAGE comes next (the mechTypes are kept for the mechListMIC).
    NtlmChosen { mech_types: Vec<u8> },
    /// A CHALLENGE_MESSAGE was sent; the AUTHENTICATE_MESSAGE must come next.
    Challenged { scheme: AuthScheme, challenge: ntlm::Challenge, spnego: Option<Spnego> },
    /// The connection is this account's, as long as the emulator's sign-in epoch is the same.
    SignedIn { epoch: u64 },
}

/// What SPNEGO adds to an NTLM handshake.
#[derive(Debug, Clone)]
struct Spnego {
    /// The DER of the client's mechTypes, which both mechListMICs sign; None when the client
    /// sent a bare NTLM message in the Negotiate header.
    mech_types: Option<Vec<u8>>,
}

/// What to do with a request.
pub(crate) enum Outcome {
    /// Serve it; add this `WWW-Authenticate` header to the reply (Negotiate's last token).
    Serve { header: Option<HeaderValue> },
    /// Answer this instead (a 401).
    Answer(Response),
}

/// The sign-in rules of one emulator.
#[derive(Debug, Clone)]
pub(crate) struct SignIn {
    pub schemes: Vec<AuthScheme>,
    pub credentials: Credentials,
    /// The token endpoint's app and tokens, for Bearer.
    pub tokens: super::oauth::TokenIssuer,
    pub account: Account,
    /// Bumped to make every signed-in connection anonymous again (a server restart, an
    /// application pool recycle).
    epoch: Arc<AtomicU64>,
}

impl SignIn {
    pub fn new(schemes: Vec<AuthScheme>, credentials: Credentials, tokens: super::oauth::TokenIssuer) -> Self {
        let account = Account::from_login(&credentials.user, &credentials.password);
        Self { schemes, credentials, tokens, account, epoch: Arc::default() }
    }

    /// Forgets every connection's sign-in: the next request on one gets a 401.
    pub fn forget_sign_ins(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn signed_in(&self) -> State {
        State::SignedIn { epoch: self.epoch.load(Ordering::SeqCst) }
    }

    fn offers(&self, scheme: AuthScheme) -> bool {
        self.schemes.contains(&scheme)
    }

    /// 401 with every offered scheme and no data, as a first answer or a refusal.
    fn unauthorized(&self) -> Response {
        let mut response = (StatusCode::UNAUTHORIZED, "401 - Unauthorized: Access is denied due to invalid credentials.").into_response();
        for scheme in &self.schemes {
            let value = match scheme {
                AuthScheme::Basic => HeaderValue::from_static("Basic realm=\"ews-sim\""),
                // As Exchange Online asks for a token: where to get one.
                AuthScheme::Bearer => HeaderValue::from_static(
                    "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\"",
                ),
                other => HeaderValue::from_static(other.name()),
            };
            response.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// 401 carrying a handshake token for `scheme`.
    fn continue_with(scheme: AuthScheme, token: &[u8]) -> Response {
        let mut response = (StatusCode::UNAUTHORIZED, "").into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("{} {}", scheme.name(), base64::engine::general_purpose::STANDARD.encode(token))) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// Decides about one request: signed-in connection, Basic credentials, or the next leg
    /// of an NTLM or Negotiate handshake.
    pub fn check(&self, connection: &ConnectionControl, headers: &HeaderMap, control: &SimControl) -> Outcome {
        let slot: Option<Arc<ConnectionSignIn>> = connection.kept();
        let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let Some((name, data)) = authorization.map(|value| value.split_once(' ').unwrap_or((value, ""))) else {
            let epoch = self.epoch.load(Ordering::SeqCst);
            return match slot.as_deref().map(|slot| slot.signed_in(epoch)) {
                Some(true) => Outcome::Serve { header: None },
                _ => Outcome::Answer(self.unauthorized()),
            };
        };
        let data = data.trim();
        if name.eq_ignore_ascii_case("Bearer") {
            if self.offers(AuthScheme::Bearer) && self.tokens.accepts(data) {
                return Outcome::Serve { header: None };
            }
            return Outcome::Answer(self.refused(control, "the bearer token is not one the token endpoint issued, or it expired"));
        }
        if name.eq_ignore_ascii_case("Basic") {
            if self.offers(AuthScheme::Basic) && self.credentials.check_basic(headers) {
                return Outcome::Serve { header: None };
            }
            control.stats.record_sign_in("refused");
            return Outcome::Answer(self.unauthorized());
        }
        let scheme = if name.eq_ignore_ascii_case("NTLM") {
            AuthScheme::Ntlm
        } else if name.eq_ignore_ascii_case("Negotiate") {
            AuthScheme::Negotiate
        } else {
            return Outcome::Answer(self.unauthorized());
        };
        if !self.offers(scheme) {
            control.stats.record_sign_in("refused");
            return Outcome::Answer(self.unauthorized());
        }
        // Windows sign-in needs the connection to remember the handshake.
        let Some(slot) = slot else {
            return Outcome::Answer(self.unauthorized());
        };
        let Ok(token) = base64::engine::general_purpose::STANDARD.decode(data) else {
            return Outcome::Answer(self.refuse(&slot, control, "the token is not base64"));
        };
        let mut state = slot.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match scheme {
            AuthScheme::Ntlm => self.ntlm_leg(&mut state, &token, control),
            _ => self.negotiate_leg(&mut state, &token, control),
        }
    }

    /// Answers an NTLM NEGOTIATE_MESSAGE carried by SPNEGO with the CHALLENGE in a NegTokenResp
    /// (`with_mech`: naming NTLM as the chosen mechanism, in the first reply only).
    fn spnego_challenge(&self, state: &mut State, negotiate: &[u8], mech_types: Vec<u8>, with_mech: bool, control: &SimControl) -> Outcome {
        match ntlm::challenge(negotiate, &self.account) {
            Ok(challenge) => {
                let answer = spnego::response(NegState::AcceptIncomplete, with_mech, Some(challenge.message()), None);
                *state = State::Challenged { scheme: AuthScheme::Negotiate, challenge, spnego: Some(Spnego { mech_types: Some(mech_types) }) };
                Outcome::Answer(Self::continue_with(AuthScheme::Negotiate, &answer))
            }
            Err(refusal) => {
                *state = State::Anonymous;
                Outcome::Answer(self.refused(control, &refusal.to_string()))
            }
        }
    }

    fn refuse(&self, slot: &ConnectionSignIn, control: &SimControl, why: &str) -> Response {
        *slot.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = State::Anonymous;
        self.refused(control, why)
    }

    fn refused(&self, control: &SimControl, why: &str) -> Response {
        tracing::info!(reason = why, "EWS emulator refused a sign-in");
        control.stats.record_sign_in("refused");
        self.unauthorized()
    }

    fn ntlm_leg(&self, state: &mut State, token: &[u8], control: &SimControl) -> Outcome {
        if ntlm::is_message(token, 1) {
            return match ntlm::challenge(token, &self.account) {
                Ok(challenge) => {
                    let answer = Self::continue_with(AuthScheme::Ntlm, challenge.message());
                    *state = State::Challenged { scheme: AuthScheme::Ntlm, challenge, spnego: None };
                    Outcome::Answer(answer)
                }
                Err(refusal) => {
                    *state = State::Anonymous;
                    Outcome::Answer(self.refused(control, &refusal.to_string()))
                }
            };
        }
        let State::Challenged { scheme: AuthScheme::Ntlm, challenge, .. } = &*state else {
            *state = State::Anonymous;
            return Outcome::Answer(self.refused(control, "an AUTHENTICATE_MESSAGE without a challenge on this connection"));
        };
        match ntlm::authenticate(challenge, token, &self.account) {
            Ok(signed_in) => {
                tracing::debug!(user = %signed_in.user, "EWS emulator: NTLM sign-in");
                control.stats.record_sign_in("ntlm");
                *state = self.signed_in();
                Outcome::Serve { header: None }
            }
            Err(refusal) => {
                *state = State::Anonymous;
                Outcome::Answer(self.refused(control, &refusal.to_string()))
            }
        }
    }

    fn negotiate_leg(&self, state: &mut State, token: &[u8], control: &SimControl) -> Outcome {
        // A bare NTLM message in the Negotiate header: NTLM, answered in the Negotiate header.
        if ntlm::is_message(token, 1) || ntlm::is_message(token, 3) {
            return self.raw_ntlm_in_negotiate(state, token, control);
        }
        let parsed = match spnego::parse_client(token) {
            Ok(parsed) => parsed,
            Err(why) => {
                *state = State::Anonymous;
                return Outcome::Answer(self.refused(control, &format!("SPNEGO: {why}")));
            }
        };
        if let Some(mech_types) = parsed.mech_types {
            // NegTokenInit: NTLM must be offered; its NEGOTIATE_MESSAGE may come along.
            if !parsed.mechs.iter().any(|mech| mech == spnego::NTLMSSP_OID) {
                *state = State::Anonymous;
                let reject = spnego::response(NegState::Reject, false, None, None);
                control.stats.record_sign_in("refused");
                let mut answer = self.unauthorized();
                if let Ok(value) = HeaderValue::from_str(&format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(reject))) {
                    answer.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
                return Outcome::Answer(answer);
            }
            let optimistic = parsed.mechs.first().is_some_and(|mech| mech == spnego::NTLMSSP_OID);
            let negotiate = parsed.token.filter(|token| optimistic && ntlm::is_message(token, 1));
            let Some(negotiate) = negotiate else {
                // NTLM chosen, but its first message is still to come.
                *state = State::NtlmChosen { mech_types };
                let answer = spnego::response(NegState::AcceptIncomplete, true, None, None);
                return Outcome::Answer(Self::continue_with(AuthScheme::Negotiate, &answer));
            };
            return self.spnego_challenge(state, &negotiate, mech_types, true, control);
        }
        // NegTokenResp: the AUTHENTICATE_MESSAGE (and the client's mechListMIC).
        let Some(token) = parsed.token else {
            *state = State::Anonymous;
            return Outcome::Answer(self.refused(control, "SPNEGO: a NegTokenResp without an NTLM message"));
        };
        if ntlm::is_message(&token, 1) {
            // The NEGOTIATE_MESSAGE after the acceptor chose NTLM over the client's first choice.
            let State::NtlmChosen { mech_types } = std::mem::take(state) else {
                return Outcome::Answer(self.refused(control, "SPNEGO: an NTLM NEGOTIATE_MESSAGE out of turn"));
            };
            return self.spnego_challenge(state, &token, mech_types, false, control);
        }
        let State::Challenged { scheme: AuthScheme::Negotiate, challenge, spnego: Some(spnego_state) } = &*state else {
            *state = State::Anonymous;
            return Outcome::Answer(self.refused(control, "SPNEGO: an AUTHENTICATE_MESSAGE without a challenge on this connection"));
        };
        let signed_in = match ntlm::authenticate(challenge, &token, &self.account) {
            Ok(signed_in) => signed_in,
            Err(refusal) => {
                *state = State::Anonymous;
                return Outcome::Answer(self.refused(control, &refusal.to_string()));
            }
        };
        let session = signed_in.session();
        let server_mic = match (&spnego_state.mech_types, parsed.mech_list_mic) {
            (Some(mech_types), Some(client_mic)) if session.can_sign() => {
                let expected = session.first_signature(Direction::ClientToServer, mech_types);
                if client_mic != expected {
                    *state = State::Anonymous;
                    return Outcome::Answer(self.refused(control, "SPNEGO: the client's mechListMIC is wrong"));
                }
                Some(session.first_signature(Direction::ServerToClient, mech_types))
            }
            (_, Some(_)) => {
                *state = State::Anonymous;
                return Outcome::Answer(self.refused(control, "SPNEGO: a mechListMIC that cannot be checked"));
            }
            _ => None,
        };
        tracing::debug!(user = %signed_in.user, "EWS emulator: Negotiate (NTLM) sign-in");
        control.stats.record_sign_in("negotiate");
        *state = self.signed_in();
        let last = spnego::response(NegState::AcceptCompleted, false, None, server_mic.as_ref().map(|mic| &mic[..]));
        let header = HeaderValue::from_str(&format!("Negotiate {}", base64::engine::general_purpose::STANDARD.encode(last))).ok();
        Outcome::Serve { header }
    }

    fn raw_ntlm_in_negotiate(&self, state: &mut State, token: &[u8], control: &SimControl) -> Outcome {
        if ntlm::is_message(token, 1) {
            return match ntlm::challenge(token, &self.account) {
                Ok(challenge) => {
                    let answer = Self::continue_with(AuthScheme::Negotiate, challenge.message());
                    *state = State::Challenged { scheme: AuthScheme::Negotiate, challenge, spnego: None };
                    Outcome::Answer(answer)
                }
                Err(refusal) => {
                    *state = State::Anonymous;
                    Outcome::Answer(self.refused(control, &refusal.to_string()))
                }
            };
        }
        let State::Challenged { scheme: AuthScheme::Negotiate, challenge, spnego: None } = &*state else {
            *state = State::Anonymous;
            return Outcome::Answer(self.refused(control, "an AUTHENTICATE_MESSAGE without a challenge on this connection"));
        };
        match ntlm::authenticate(challenge, token, &self.account) {
            Ok(_) => {
                control.stats.record_sign_in("negotiate");
                *state = self.signed_in();
                Outcome::Serve { header: None }
            }
            Err(refusal) => {
                *state = State::Anonymous;
                Outcome::Answer(self.refused(control, &refusal.to_string()))
            }
        }
    }
}

impl ConnectionSignIn {
    fn signed_in(&self, current: u64) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), State::SignedIn { epoch } if epoch == current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_lists_are_read_in_iis_order() {
        assert_eq!(AuthScheme::parse_list("ntlm,negotiate"), Ok(vec![AuthScheme::Negotiate, AuthScheme::Ntlm]));
        assert_eq!(AuthScheme::parse_list(" Basic , NTLM,basic"), Ok(vec![AuthScheme::Ntlm, AuthScheme::Basic]));
        assert!(AuthScheme::parse_list("kerberos").unwrap_err().contains("kerberos"));
        assert!(AuthScheme::parse_list(" , ").is_err());
    }

    #[test]
    fn an_unauthenticated_request_gets_every_offered_scheme() {
        let sign_in = SignIn::new(
            vec![AuthScheme::Negotiate, AuthScheme::Ntlm],
            Credentials::new(r"TANDEM\svc", "p"),
            super::super::oauth::TokenIssuer::new(Credentials::new("app", "s"), std::time::Duration::from_secs(60)),
        );
        let control = SimControl::new(0.0, 0);
        let Outcome::Answer(response) = sign_in.check(&ConnectionControl::default(), &HeaderMap::new(), &control) else {
            panic!("refused");
        };
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let offered: Vec<&str> =
            response.headers().get_all(header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).collect();
        assert_eq!(offered, ["Negotiate", "NTLM"]);
        // Basic, not offered, is refused even with the right password.
        let mut headers = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(r"TANDEM\svc:p");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {basic}")).expect("a header"));
        assert!(matches!(sign_in.check(&ConnectionControl::default(), &headers, &control), Outcome::Answer(_)));
    }
}
