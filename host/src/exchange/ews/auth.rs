//! How the EWS connector signs in: `[exchange] auth` (Basic, NTLM, Negotiate, OAuth), the
//! `WWW-Authenticate` challenges a server answers with, and the NTLMv2 / SPNEGO tokens, made
//! by the `sspi` crate (Devolutions' pure-Rust SSPI) rather than by crypto written here.
//!
//! Basic and OAuth bearer tokens (from [`crate::oauth`]) go with every request. NTLM and Negotiate sign in a TCP connection ([MS-NTHT],
//! RFC 4559), so [`Handshake`] is driven by the connection layer (`http.rs`) over one
//! connection. Negotiate is SPNEGO offering NTLM only: Kerberos would need sspi's network
//! client (a second HTTP and TLS stack) and a KDC, neither of which Tandem has here.

use std::fmt;

use serde::Deserialize;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, Credentials, CredentialsBuffers, DataRepresentation,
    Negotiate, NegotiateConfig, Ntlm, SecurityBuffer, SecurityStatus, Sspi, Username, ntlm::NtlmConfig,
};

/// How the service account signs in to EWS (`[exchange] auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EwsAuth {
    /// `Authorization: Basic` on every request.
    #[default]
    Basic,
    /// NTLMv2, signing in each connection.
    Ntlm,
    /// SPNEGO wrapping NTLMv2 (what IIS calls Negotiate), signing in each connection.
    Negotiate,
    /// `Authorization: Bearer` with an OAuth 2.0 client-credentials token
    /// (`[exchange.oauth]`): Exchange Online, or on-premises with hybrid modern authentication.
    #[serde(rename = "oauth")]
    OAuth,
}

impl EwsAuth {
    /// Every scheme, as configuration and `WWW-Authenticate` name them.
    pub const ALL: [EwsAuth; 4] = [EwsAuth::Basic, EwsAuth::Ntlm, EwsAuth::Negotiate, EwsAuth::OAuth];

    /// The configuration's name: `basic`, `ntlm`, `negotiate`, `oauth`.
    pub fn name(self) -> &'static str {
        match self {
            EwsAuth::Basic => "basic",
            EwsAuth::Ntlm => "ntlm",
            EwsAuth::Negotiate => "negotiate",
            EwsAuth::OAuth => "oauth",
        }
    }

    /// The name in `Authorization` and `WWW-Authenticate` headers.
    pub fn http_name(self) -> &'static str {
        match self {
            EwsAuth::Basic => "Basic",
            EwsAuth::Ntlm => "NTLM",
            EwsAuth::Negotiate => "Negotiate",
            EwsAuth::OAuth => "Bearer",
        }
    }

    /// Reads a configuration value (case-insensitive).
    pub fn parse(text: &str) -> Option<EwsAuth> {
        EwsAuth::ALL.into_iter().find(|scheme| scheme.name().eq_ignore_ascii_case(text.trim()))
    }

    /// Whether the scheme signs in a connection (a handshake per connection) rather than
    /// each request.
    pub fn is_connection_bound(self) -> bool {
        matches!(self, EwsAuth::Ntlm | EwsAuth::Negotiate)
    }
}

impl fmt::Display for EwsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the user name cannot sign in with NTLM or Negotiate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the EWS user `{user}` is not DOMAIN\\user or user@domain: {reason}")]
pub struct UserNameError {
    pub user: String,
    pub reason: String,
}

/// Checks a user name for NTLM: `DOMAIN\user` or a UPN `user@domain`.
pub fn check_windows_user(user: &str) -> Result<(), UserNameError> {
    let error = |reason: &str| UserNameError { user: user.to_owned(), reason: reason.to_owned() };
    let qualified = match (user.split_once('\\'), user.rsplit_once('@')) {
        (Some((domain, name)), _) => !domain.is_empty() && !name.is_empty(),
        (None, Some((name, suffix))) => !name.is_empty() && !suffix.is_empty(),
        (None, None) => return Err(error("Windows sign-in needs the account's domain")),
    };
    if !qualified {
        return Err(error("a part is empty"));
    }
    Username::parse(user).map(|_| ()).map_err(|e| error(&e.to_string()))
}

/// One scheme a server offered in `WWW-Authenticate`, with its token when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// As the server wrote it (`Negotiate`, `NTLM`, `Basic`, `Bearer`, …).
    pub scheme: String,
    /// The base64 token after the scheme name (NTLM, Negotiate), if any.
    pub token: Option<String>,
}

/// The schemes of `WWW-Authenticate` header values: one scheme per header as IIS writes
/// them, or several in one header separated by commas (RFC 9110's list form). Parameters
/// (`realm="…"`) are dropped; a bare token68 after the name is kept.
pub fn offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Offer> {
    let mut found = Vec::new();
    for value in values {
        let mut in_quotes = false;
        let mut parts = Vec::new();
        let mut start = 0;
        for (index, ch) in value.char_indices() {
            match ch {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    parts.push(&value[start..index]);
                    start = index + 1;
                }
                _ => {}
            }
        }
        parts.push(&value[start..]);
        for part in parts.into_iter().map(str::trim).filter(|part| !part.is_empty()) {
            let (name, rest) = part.split_once(' ').map_or((part, ""), |(name, rest)| (name, rest.trim()));
            if name.contains('=') {
                // A parameter (`charset="UTF-8"`) of the scheme before it.
                continue;
            }
            let token = is_token68(rest).then(|| rest.to_owned());
            found.push(Offer { scheme: name.to_owned(), token });
        }
    }
    found
}

/// RFC 9110's token68: base64-like characters, `=` only as padding at the end.
fn is_token68(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty() && body.chars().all(|ch| ch.is_ascii_alphanumeric() || "-._~+/".contains(ch))
}

/// The token a server sent for `scheme` in its `WWW-Authenticate` headers.
pub fn token_for(offers: &[Offer], scheme: EwsAuth) -> Option<&str> {
    offers
        .iter()
        .find(|offer| offer.scheme.eq_ignore_ascii_case(scheme.http_name()))
        .and_then(|offer| offer.token.as_deref())
}

/// Whether `scheme` is among the offers (with or without a token).
pub fn is_offered(offers: &[Offer], scheme: EwsAuth) -> bool {
    offers.iter().any(|offer| offer.scheme.eq_ignore_ascii_case(scheme.http_name()))
}

/// A handshake that failed on our side: sspi refused a token or the user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(pub String);

impl From<sspi::Error> for HandshakeError {
    fn from(error: sspi::Error) -> Self {
        HandshakeError(format!("{:?}: {}", error.error_type, error.description))
    }
}

/// Where a handshake stands after a token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token; the server answers with another.
    Continue(Vec<u8>),
    /// Send this token with the request: it completes the sign-in (the server may answer
    /// with a last token of its own, see [`Handshake::finish`]).
    Last(Vec<u8>),
}

/// The client side of one NTLM or Negotiate sign-in (one connection).
pub struct Handshake {
    context: Context,
    identity: AuthIdentity,
    target: String,
    /// Negotiate: the server's last token (accept-completed, mechListMIC) is still due.
    awaits_mutual: bool,
}

enum Context {
    Ntlm { ntlm: Box<Ntlm>, credentials: Option<sspi::AuthIdentityBuffers> },
    Negotiate { negotiate: Box<Negotiate>, credentials: Option<CredentialsBuffers> },
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, nor a token.
        f.debug_struct("Handshake").field("target", &self.target).finish_non_exhaustive()
    }
}

/// The name this machine gives itself in NTLM messages ("workstation").
fn workstation() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "TANDEM".into())
}

/// What Tandem asks of the NTLM context: integrity and confidentiality, as Windows' HTTP
/// clients and pyspnego do, so the session key is exchanged and SPNEGO's mechListMIC can be
/// made (and the flags do not depend on anything else).
fn requirements() -> ClientRequestFlags {
    ClientRequestFlags::INTEGRITY | ClientRequestFlags::CONFIDENTIALITY | ClientRequestFlags::ALLOCATE_MEMORY
}

impl Handshake {
    /// Starts a sign-in as `user` (`DOMAIN\user` or a UPN) to `host` (the SPN is
    /// `HTTP/host`).
    pub fn new(scheme: EwsAuth, user: &str, password: &str, host: &str) -> Result<Self, HandshakeError> {
        let username = Username::parse(user).map_err(|e| HandshakeError(format!("the user name: {e}")))?;
        let identity = AuthIdentity { username, password: password.to_owned().into() };
        let context = match scheme {
            EwsAuth::Ntlm => {
                let mut ntlm = Box::new(Ntlm::with_config(NtlmConfig::new(workstation())));
                let acquired = ntlm
                    .acquire_credentials_handle()
                    .with_credential_use(CredentialUse::Outbound)
                    .with_auth_data(&identity)
                    .execute(&mut *ntlm)?;
                Context::Ntlm { ntlm, credentials: acquired.credentials_handle }
            }
            EwsAuth::Negotiate => {
                let config = NegotiateConfig::new(Box::new(NtlmConfig::new(workstation())), Some("ntlm".into()), workstation());
                let mut negotiate = Box::new(Negotiate::new_client(config)?);
                let credentials = Credentials::AuthIdentity(identity.clone());
                let acquired = negotiate
                    .acquire_credentials_handle()
                    .with_credential_use(CredentialUse::Outbound)
                    .with_auth_data(&credentials)
                    .execute(&mut *negotiate)?;
                Context::Negotiate { negotiate, credentials: acquired.credentials_handle }
            }
            EwsAuth::Basic | EwsAuth::OAuth => return Err(HandshakeError(format!("{scheme} has no handshake"))),
        };
        Ok(Self { context, identity, target: format!("HTTP/{host}"), awaits_mutual: false })
    }

    /// One call of InitializeSecurityContext with the server's token (none the first time).
    fn step(&mut self, input: Option<&[u8]>) -> Result<(SecurityStatus, Vec<u8>), HandshakeError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input = input.map(|token| vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)]);
        let status = match &mut self.context {
            Context::Ntlm { ntlm, credentials } => initialize(&mut **ntlm, credentials, &self.target, input.as_mut(), &mut output)?,
            Context::Negotiate { negotiate, credentials } => {
                initialize(&mut **negotiate, credentials, &self.target, input.as_mut(), &mut output)?
            }
        };
        let token = output.pop().map(|buffer| buffer.buffer).unwrap_or_default();
        Ok((status, token))
    }

    /// The first token (NTLM NEGOTIATE_MESSAGE, or SPNEGO's NegTokenInit around it).
    pub fn first(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let (_, token) = self.step(None)?;
        if token.is_empty() {
            return Err(HandshakeError("no first token was made".into()));
        }
        Ok(token)
    }

    /// The answer to the server's challenge: the AUTHENTICATE_MESSAGE (in SPNEGO's
    /// NegTokenResp with the mechListMIC for Negotiate), which goes with the request.
    pub fn answer(&mut self, challenge: &[u8]) -> Result<Step, HandshakeError> {
        let (status, token) = self.step(Some(challenge))?;
        if token.is_empty() {
            return Err(HandshakeError(format!("the server's challenge gave no answer ({status:?})")));
        }
        match status {
            SecurityStatus::Ok | SecurityStatus::CompleteNeeded => Ok(Step::Last(token)),
            SecurityStatus::ContinueNeeded | SecurityStatus::CompleteAndContinue => match self.context {
                // SPNEGO's AUTHENTICATE leg continues only for the server's mechListMIC.
                Context::Negotiate { .. } => {
                    self.awaits_mutual = true;
                    Ok(Step::Last(token))
                }
                Context::Ntlm { .. } => Ok(Step::Continue(token)),
            },
            other => Err(HandshakeError(format!("unexpected status {other:?}"))),
        }
    }

    /// The server's last Negotiate token (accept-completed with its mechListMIC), which
    /// proves the server knew the session key; an error when it does not check out.
    pub fn finish(&mut self, last: Option<&[u8]>) -> Result<(), HandshakeError> {
        if !self.awaits_mutual {
            return Ok(());
        }
        let Some(last) = last else {
            // The server sent nothing: nothing to check (some proxies drop the header).
            return Ok(());
        };
        match self.step(Some(last))? {
            (SecurityStatus::Ok, _) => {
                self.awaits_mutual = false;
                Ok(())
            }
            (status, _) => Err(HandshakeError(format!("the server's last Negotiate token did not complete the sign-in ({status:?})"))),
        }
    }

    /// The account this handshake signs in as, for messages.
    pub fn user(&self) -> &str {
        self.identity.username.inner()
    }
}

/// One InitializeSecurityContext call of an sspi package (NTLM or Negotiate): writes the
/// token to `output`, reading the server's from `input`.
fn initialize<S: Sspi>(
    package: &mut S,
    credentials: &mut S::CredentialsHandle,
    target: &str,
    input: Option<&mut Vec<SecurityBuffer>>,
    output: &mut Vec<SecurityBuffer>,
) -> Result<SecurityStatus, HandshakeError> {
    let mut builder = package
        .initialize_security_context()
        .with_credentials_handle(credentials)
        .with_context_requirements(requirements())
        .with_target_data_representation(DataRepresentation::Native)
        .with_target_name(target)
        .with_output(output);
    if let Some(input) = input {
        builder = builder.with_input(input);
    }
    Ok(package.initialize_security_context_impl(&mut builder)?.resolve_to_result()?.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_authenticate_headers_are_read_one_scheme_per_header_or_as_a_list() {
        let iis = offers(["Negotiate", "NTLM", "Basic realm=\"mail.contoso.com\""]);
        let names: Vec<&str> = iis.iter().map(|offer| offer.scheme.as_str()).collect();
        assert_eq!(names, ["Negotiate", "NTLM", "Basic"]);
        assert!(iis.iter().all(|offer| offer.token.is_none()), "{iis:?}");
        assert!(is_offered(&iis, EwsAuth::Ntlm) && is_offered(&iis, EwsAuth::Basic));

        let listed = offers(["Basic realm=\"a, b\", charset=\"UTF-8\", NTLM, Bearer authorization_uri=\"https://login/x\""]);
        let names: Vec<&str> = listed.iter().map(|offer| offer.scheme.as_str()).collect();
        assert_eq!(names, ["Basic", "NTLM", "Bearer"], "quoted commas and parameters are not schemes");

        let challenge = offers(["NTLM TlRMTVNTUAACAAAADAAMADAAAAA=", "negotiate oRswGaADCgEAoxIEEAEAAAA="]);
        assert_eq!(token_for(&challenge, EwsAuth::Ntlm), Some("TlRMTVNTUAACAAAADAAMADAAAAA="));
        assert_eq!(token_for(&challenge, EwsAuth::Negotiate), Some("oRswGaADCgEAoxIEEAEAAAA="), "scheme names ignore case");
        assert_eq!(token_for(&challenge, EwsAuth::Basic), None);
        assert!(offers(["", " , "]).is_empty());
    }

    #[test]
    fn windows_user_names_need_a_domain() {
        assert!(check_windows_user(r"CONTOSO\svc-tandem").is_ok());
        assert!(check_windows_user("svc-tandem@contoso.com").is_ok());
        for bad in ["svc-tandem", r"\svc", r"CONTOSO\", "@contoso.com", "svc@"] {
            assert!(check_windows_user(bad).is_err(), "{bad}");
        }
        assert_eq!(EwsAuth::parse(" NTLM "), Some(EwsAuth::Ntlm));
        assert_eq!(EwsAuth::parse("kerberos"), None);
    }

    /// sspi makes the NTLM messages the emulator expects: a NEGOTIATE_MESSAGE first, and
    /// for Negotiate an SPNEGO NegTokenInit offering NTLM.
    #[test]
    fn first_tokens_are_ntlm_negotiate_messages() {
        let mut ntlm = Handshake::new(EwsAuth::Ntlm, r"CONTOSO\svc", "secret", "mail.contoso.com").expect("handshake");
        let first = ntlm.first().expect("a token");
        assert_eq!(&first[..8], b"NTLMSSP\0");
        assert_eq!(first[8], 1, "NEGOTIATE_MESSAGE");
        let mut negotiate = Handshake::new(EwsAuth::Negotiate, "svc@contoso.com", "secret", "mail.contoso.com").expect("handshake");
        let first = negotiate.first().expect("a token");
        assert_eq!(first[0], 0x60, "GSS-API framing of a NegTokenInit");
        assert!(!format!("{negotiate:?}").contains("secret"));
        assert!(Handshake::new(EwsAuth::Basic, "a@b", "p", "h").is_err());
    }
}

