//! The EWS emulator's NTLM acceptor, written from [MS-NLMP] and independent of any client's
//! implementation (the connector uses the `sspi` crate), so that a misreading of the
//! specification on one side cannot hide behind the same misreading on the other.
//!
//! A NEGOTIATE_MESSAGE gets a CHALLENGE_MESSAGE with a fresh random server challenge and the
//! target information (names, timestamp) Exchange's servers send; the AUTHENTICATE_MESSAGE
//! must carry an NTLMv2 response whose NTProofStr (`HMAC_MD5(NTOWFv2, ServerChallenge ‖
//! blob)`) matches the configured password, and, when the client says it sent one, a MIC over
//! the three messages. LM, NTLMv1 and anonymous sign-ins are refused, as Exchange's "NTLMv2
//! only" domain policy does. The session keys serve SPNEGO's `mechListMIC` (signing, §3.4.4).
//! MD4, MD5, HMAC and RC4 come from the RustCrypto crates.

use hmac::{Hmac, Mac};
use md4::Md4;
use md5::{Digest as _, Md5};
use rc4::{KeyInit as _, Rc4, StreamCipher as _};

type HmacMd5 = Hmac<Md5>;

/// Every NTLM message starts with this.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NegotiateFlags bits ([MS-NLMP] 2.2.2.5) the acceptor looks at or sets.
pub mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// The flags a client may ask for and the acceptor grants when asked.
const GRANTED_WHEN_ASKED: u32 = flags::SIGN
    | flags::SEAL
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSION_SECURITY
    | flags::VERSION
    | flags::N128
    | flags::KEY_EXCH
    | flags::N56
    | flags::REQUEST_TARGET;

/// AV_PAIR ids ([MS-NLMP] 2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const NB_COMPUTER_NAME: u16 = 1;
    pub const NB_DOMAIN_NAME: u16 = 2;
    pub const DNS_COMPUTER_NAME: u16 = 3;
    pub const DNS_DOMAIN_NAME: u16 = 4;
    pub const FLAGS: u16 = 6;
    pub const TIMESTAMP: u16 = 7;
}

/// MsvAvFlags bit: the AUTHENTICATE_MESSAGE carries a MIC.
const AV_FLAG_MIC_PRESENT: u32 = 0x2;
/// Where the MIC sits in an AUTHENTICATE_MESSAGE (after the Version field).
const MIC_OFFSET: usize = 72;

const CLIENT_SIGNING: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGNING: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEALING: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEALING: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// The one account the emulator knows, as a domain controller would: its NetBIOS domain,
/// its DNS domain (the UPN suffix), the account name and the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub netbios_domain: String,
    pub dns_domain: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("netbios_domain", &self.netbios_domain)
            .field("dns_domain", &self.dns_domain)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The emulated domain when the configured user names none.
pub const DEFAULT_NETBIOS_DOMAIN: &str = "TANDEM";
pub const DEFAULT_DNS_DOMAIN: &str = "tandem.test";
/// The emulated server's own names in the target information.
const COMPUTER: &str = "EWS-SIM";

impl Account {
    /// From the emulator's user name: `DOMAIN\user`, a UPN `user@dns.domain`, or a bare
    /// name in the default domain.
    pub fn from_login(login: &str, password: &str) -> Self {
        let password = password.to_owned();
        if let Some((domain, user)) = login.split_once('\\') {
            let dns_domain = format!("{}.test", domain.to_ascii_lowercase());
            return Self { netbios_domain: domain.to_ascii_uppercase(), dns_domain, user: user.to_owned(), password };
        }
        if let Some((user, suffix)) = login.rsplit_once('@') {
            let netbios = suffix.split('.').next().unwrap_or(suffix).to_ascii_uppercase();
            return Self { netbios_domain: netbios, dns_domain: suffix.to_ascii_lowercase(), user: user.to_owned(), password };
        }
        Self {
            netbios_domain: DEFAULT_NETBIOS_DOMAIN.into(),
            dns_domain: DEFAULT_DNS_DOMAIN.into(),
            user: login.to_owned(),
            password,
        }
    }

    /// Whether the user and domain of an AUTHENTICATE_MESSAGE name this account: the
    /// account in its NetBIOS or DNS domain (or with no domain), or its UPN with no domain.
    fn is_named_by(&self, user: &str, domain: &str) -> bool {
        let in_domain = domain.is_empty()
            || domain.eq_ignore_ascii_case(&self.netbios_domain)
            || domain.eq_ignore_ascii_case(&self.dns_domain);
        let by_name = user.eq_ignore_ascii_case(&self.user) && in_domain;
        let by_upn = domain.is_empty()
            && user
                .rsplit_once('@')
                .is_some_and(|(name, suffix)| name.eq_ignore_ascii_case(&self.user) && suffix.eq_ignore_ascii_case(&self.dns_domain));
        by_name || by_upn
    }
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an NTLM {expected} message: {reason}")]
    Malformed { expected: &'static str, reason: String },
    #[error("the client sent no NTLMv2 response (LM and NTLMv1 are refused)")]
    NotV2,
    #[error("anonymous sign-in is refused")]
    Anonymous,
    #[error("no such account: {0}")]
    UnknownAccount(String),
    #[error("the NTLMv2 response does not match the password of {0}")]
    WrongPassword(String),
    #[error("the MIC of the AUTHENTICATE_MESSAGE is wrong")]
    BadMic,
}

/// One handshake between the CHALLENGE_MESSAGE and the AUTHENTICATE_MESSAGE.
#[derive(Clone)]
pub struct Challenge {
    negotiate: Vec<u8>,
    message: Vec<u8>,
    server_challenge: [u8; 8],
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge").finish_non_exhaustive()
    }
}

impl Challenge {
    /// The CHALLENGE_MESSAGE to send.
    pub fn message(&self) -> &[u8] {
        &self.message
    }
}

/// A successful sign-in: who, and the keys of the session (for SPNEGO's mechListMIC).
#[derive(Clone)]
pub struct SignedIn {
    /// `DOMAIN\user` (or the UPN) as the client named itself.
    pub user: String,
    session: SessionKeys,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn").field("user", &self.user).finish_non_exhaustive()
    }
}

impl SignedIn {
    /// The keys of the session.
    pub fn session(&self) -> &SessionKeys {
        &self.session
    }
}

/// The exported session key and the negotiated flags.
#[derive(Clone)]
pub struct SessionKeys {
    exported: [u8; 16],
    flags: u32,
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <HmacMd5 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut digest = Md5::new();
    for part in parts {
        digest.update(part);
    }
    digest.finalize().into()
}

fn rc4(key: &[u8; 16], data: &mut [u8]) {
    let mut cipher = Rc4::<rc4::consts::U16>::new(key.into());
    cipher.apply_keystream(data);
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_utf16le(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() % 2 != 0 {
        return Err("a UTF-16 string of odd length".into());
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|pair| u16::from_le_bytes([pair[0], pair[1]])).collect();
    String::from_utf16(&units).map_err(|e| e.to_string())
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The payload a `(Len, MaxLen, BufferOffset)` field at `at` points to.
fn field(message: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16_at(message, at)?);
    let offset = usize::try_from(u32_at(message, at + 4)?).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    message.get(offset..offset.checked_add(len)?)
}

/// A message's type, after checking its signature.
fn message_type(message: &[u8]) -> Option<u32> {
    (message.get(..8)? == SIGNATURE).then(|| u32_at(message, 8)).flatten()
}

/// Whether these bytes are an NTLM message of the given type (1, 2 or 3).
pub fn is_message(bytes: &[u8], kind: u32) -> bool {
    message_type(bytes) == Some(kind)
}

/// Windows' FILETIME of now: 100 ns ticks since 1601-01-01.
fn filetime_now() -> u64 {
    const EPOCH_DIFFERENCE_SECS: u64 = 11_644_473_600;
    let since_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (since_unix.as_secs() + EPOCH_DIFFERENCE_SECS) * 10_000_000 + u64::from(since_unix.subsec_nanos() / 100)
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(value);
}

/// Answers a NEGOTIATE_MESSAGE with a CHALLENGE_MESSAGE for `account`'s domain: a random
/// server challenge, the flags granted, and the target information with a timestamp.
pub fn challenge(negotiate: &[u8], account: &Account) -> Result<Challenge, Refusal> {
    let malformed = |reason: &str| Refusal::Malformed { expected: "NEGOTIATE", reason: reason.into() };
    if message_type(negotiate) != Some(1) {
        return Err(malformed("wrong signature or message type"));
    }
    let asked = u32_at(negotiate, 12).ok_or_else(|| malformed("too short"))?;
    if asked & flags::UNICODE == 0 {
        return Err(malformed("the client does not speak Unicode"));
    }
    let granted = (asked & GRANTED_WHEN_ASKED)
        | flags::UNICODE
        | flags::NTLM
        | flags::TARGET_INFO
        | flags::TARGET_TYPE_DOMAIN;
    let server_challenge: [u8; 8] = rand::random();

    let target_name = utf16le(&account.netbios_domain);
    let mut target_info = Vec::new();
    push_av(&mut target_info, av::NB_DOMAIN_NAME, &utf16le(&account.netbios_domain));
    push_av(&mut target_info, av::NB_COMPUTER_NAME, &utf16le(COMPUTER));
    push_av(&mut target_info, av::DNS_DOMAIN_NAME, &utf16le(&account.dns_domain));
    let dns_computer = format!("{}.{}", COMPUTER.to_ascii_lowercase(), account.dns_domain);
    push_av(&mut target_info, av::DNS_COMPUTER_NAME, &utf16le(&dns_computer));
    push_av(&mut target_info, av::TIMESTAMP, &filetime_now().to_le_bytes());
    push_av(&mut target_info, av::EOL, &[]);

    const HEADER: usize = 56;
    let name_offset = HEADER;
    let info_offset = name_offset + target_name.len();
    let mut message = Vec::with_capacity(info_offset + target_info.len());
    message.extend_from_slice(SIGNATURE);
    message.extend_from_slice(&2u32.to_le_bytes());
    let length = |bytes: &[u8]| u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_le_bytes();
    let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX).to_le_bytes();
    message.extend_from_slice(&length(&target_name));
    message.extend_from_slice(&length(&target_name));
    message.extend_from_slice(&offset(name_offset));
    message.extend_from_slice(&granted.to_le_bytes());
    message.extend_from_slice(&server_challenge);
    message.extend_from_slice(&[0; 8]);
    message.extend_from_slice(&length(&target_info));
    message.extend_from_slice(&length(&target_info));
    message.extend_from_slice(&offset(info_offset));
    // Version: Windows Server 2016/2019 (10.0, build 17763), NTLMSSP revision 15.
    message.extend_from_slice(&[10, 0, 0x03, 0x45, 0, 0, 0, 15]);
    message.extend_from_slice(&target_name);
    message.extend_from_slice(&target_info);
    Ok(Challenge { negotiate: negotiate.to_vec(), message, server_challenge })
}

/// The AV pairs of an NTLMv2 client challenge (the blob after NTProofStr), by id.
fn blob_av_flags(blob: &[u8]) -> Option<u32> {
    // RespType, HiRespType, Reserved1 (2), Reserved2 (4), TimeStamp (8), ChallengeFromClient
    // (8), Reserved3 (4): the AV pairs start at 28.
    let mut at = 28;
    while let (Some(id), Some(len)) = (u16_at(blob, at), u16_at(blob, at + 2)) {
        let len = usize::from(len);
        if id == av::EOL {
            break;
        }
        if id == av::FLAGS {
            return u32_at(blob, at + 4);
        }
        at += 4 + len;
    }
    None
}

/// Checks an AUTHENTICATE_MESSAGE against the challenge this connection was sent and the
/// account's password ([MS-NLMP] 3.2.5.1.2 and 3.3.2).
pub fn authenticate(challenge: &Challenge, message: &[u8], account: &Account) -> Result<SignedIn, Refusal> {
    let malformed = |reason: &str| Refusal::Malformed { expected: "AUTHENTICATE", reason: reason.into() };
    if message_type(message) != Some(3) {
        return Err(malformed("wrong signature or message type"));
    }
    let nt_response = field(message, 20).ok_or_else(|| malformed("NtChallengeResponse out of bounds"))?;
    let domain = field(message, 28).ok_or_else(|| malformed("DomainName out of bounds"))?;
    let user = field(message, 36).ok_or_else(|| malformed("UserName out of bounds"))?;
    let session_key = field(message, 52).ok_or_else(|| malformed("EncryptedRandomSessionKey out of bounds"))?;
    let negotiated = u32_at(message, 60).ok_or_else(|| malformed("too short"))?;
    if negotiated & flags::UNICODE == 0 {
        return Err(malformed("the names are not in Unicode"));
    }
    let user = from_utf16le(user).map_err(|e| malformed(&format!("UserName: {e}")))?;
    let domain = from_utf16le(domain).map_err(|e| malformed(&format!("DomainName: {e}")))?;
    if user.is_empty() && nt_response.is_empty() {
        return Err(Refusal::Anonymous);
    }
    // An NTLMv1 response is 24 bytes; NTLMv2's is NTProofStr (16) and a blob of at least 28.
    if nt_response.len() < 16 + 28 {
        return Err(Refusal::NotV2);
    }
    let named = if domain.is_empty() { user.clone() } else { format!("{domain}\\{user}") };
    if !account.is_named_by(&user, &domain) {
        return Err(Refusal::UnknownAccount(named));
    }
    let (proof, blob) = nt_response.split_at(16);
    // NTOWFv2: HMAC_MD5(MD4(UNICODE(Passwd)), UNICODE(Uppercase(User) ‖ UserDom)), with the
    // names as the client sent them.
    let nt_hash: [u8; 16] = Md4::digest(utf16le(&account.password)).into();
    let response_key = hmac_md5(&nt_hash, &[&utf16le(&format!("{}{domain}", user.to_uppercase()))]);
    let mut check = <HmacMd5 as Mac>::new_from_slice(&response_key).expect("any key length");
    check.update(&challenge.server_challenge);
    check.update(blob);
    if check.verify_slice(proof).is_err() {
        return Err(Refusal::WrongPassword(named));
    }
    let session_base_key = hmac_md5(&response_key, &[proof]);
    let mut exported = session_base_key;
    if negotiated & flags::KEY_EXCH != 0 && negotiated & (flags::SIGN | flags::SEAL) != 0 {
        let encrypted: [u8; 16] = session_key.try_into().map_err(|_| malformed("EncryptedRandomSessionKey is not 16 bytes"))?;
        exported = encrypted;
        rc4(&session_base_key, &mut exported);
    }
    if blob_av_flags(blob).is_some_and(|av_flags| av_flags & AV_FLAG_MIC_PRESENT != 0) {
        let sent = message.get(MIC_OFFSET..MIC_OFFSET + 16).ok_or_else(|| malformed("no room for the MIC"))?;
        let mut zeroed = message.to_vec();
        zeroed[MIC_OFFSET..MIC_OFFSET + 16].fill(0);
        let mut mic = <HmacMd5 as Mac>::new_from_slice(&exported).expect("any key length");
        mic.update(&challenge.negotiate);
        mic.update(&challenge.message);
        mic.update(&zeroed);
        if mic.verify_slice(sent).is_err() {
            return Err(Refusal::BadMic);
        }
    }
    Ok(SignedIn { user: named, session: SessionKeys { exported, flags: negotiated } })
}

/// Which way a signed message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl SessionKeys {
    /// SIGNKEY ([MS-NLMP] 3.4.5.2).
    fn signing_key(&self, direction: Direction) -> [u8; 16] {
        let magic = match direction {
            Direction::ClientToServer => CLIENT_SIGNING,
            Direction::ServerToClient => SERVER_SIGNING,
        };
        md5(&[&self.exported, magic])
    }

    /// SEALKEY ([MS-NLMP] 3.4.5.3), with extended session security.
    fn sealing_key(&self, direction: Direction) -> [u8; 16] {
        let magic = match direction {
            Direction::ClientToServer => CLIENT_SEALING,
            Direction::ServerToClient => SERVER_SEALING,
        };
        let key = if self.flags & flags::N128 != 0 {
            &self.exported[..]
        } else if self.flags & flags::N56 != 0 {
            &self.exported[..7]
        } else {
            &self.exported[..5]
        };
        md5(&[key, magic])
    }

    /// The NTLMSSP_MESSAGE_SIGNATURE of the first message (sequence number 0) sent in
    /// `direction` ([MS-NLMP] 3.4.4.2, extended session security): what SPNEGO's
    /// mechListMIC is.
    pub fn first_signature(&self, direction: Direction, message: &[u8]) -> [u8; 16] {
        let sequence = 0u32.to_le_bytes();
        let digest = hmac_md5(&self.signing_key(direction), &[&sequence, message]);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&digest[..8]);
        if self.flags & flags::KEY_EXCH != 0 {
            let key = self.sealing_key(direction);
            let mut cipher = Rc4::<rc4::consts::U16>::new((&key).into());
            cipher.apply_keystream(&mut checksum);
        }
        let mut signature = [0u8; 16];
        signature[..4].copy_from_slice(&1u32.to_le_bytes());
        signature[4..12].copy_from_slice(&checksum);
        signature[12..].copy_from_slice(&sequence);
        signature
    }

    /// Whether signing was negotiated with extended session security, which the
    /// mechListMIC needs.
    pub fn can_sign(&self) -> bool {
        self.flags & flags::EXTENDED_SESSION_SECURITY != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-NLMP] 4.2.4: the NTLMv2 example's inputs and expected values.
    #[test]
    fn ntowfv2_and_ntproofstr_match_the_specification_example() {
        let password = "Password";
        let (user, domain) = ("User", "Domain");
        let nt_hash: [u8; 16] = Md4::digest(utf16le(password)).into();
        assert_eq!(hex::encode(nt_hash), "a4f49c406510bdcab6824ee7c30fd852");
        let response_key = hmac_md5(&nt_hash, &[&utf16le(&format!("{}{domain}", user.to_uppercase()))]);
        assert_eq!(hex::encode(response_key), "0c868a403bfd7a93a3001ef22ef02e3f");
        // temp = 0x01 0x01 Z(6) Time ClientChallenge Z(4) ServerName Z(4)
        let server_challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let client_challenge = [0xaa; 8];
        let mut server_name = Vec::new();
        push_av(&mut server_name, av::NB_DOMAIN_NAME, &utf16le("Domain"));
        push_av(&mut server_name, av::NB_COMPUTER_NAME, &utf16le("Server"));
        push_av(&mut server_name, av::EOL, &[]);
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&[0; 8]);
        temp.extend_from_slice(&client_challenge);
        temp.extend_from_slice(&[0; 4]);
        temp.extend_from_slice(&server_name);
        temp.extend_from_slice(&[0; 4]);
        let proof = hmac_md5(&response_key, &[&server_challenge, &temp]);
        assert_eq!(hex::encode(proof), "68cd0ab851e51c96aabc927bebef6a1c");
        let session_base_key = hmac_md5(&response_key, &[&proof]);
        assert_eq!(hex::encode(session_base_key), "8de40ccadbc14a82f15cb0ad0de95ca3");
    }

    #[test]
    fn accounts_are_named_by_domain_user_or_upn() {
        let account = Account::from_login(r"CONTOSO\svc-tandem", "p");
        assert_eq!((account.netbios_domain.as_str(), account.dns_domain.as_str()), ("CONTOSO", "contoso.test"));
        assert!(account.is_named_by("SVC-TANDEM", "contoso"));
        assert!(account.is_named_by("svc-tandem", "contoso.test"));
        assert!(account.is_named_by("svc-tandem@contoso.test", ""));
        assert!(!account.is_named_by("svc-tandem", "fabrikam"));
        assert!(!account.is_named_by("other", "CONTOSO"));
        let upn = Account::from_login("svc@example.com", "p");
        assert_eq!((upn.netbios_domain.as_str(), upn.user.as_str()), ("EXAMPLE", "svc"));
        assert!(upn.is_named_by("svc", "EXAMPLE") && upn.is_named_by("svc@example.com", ""));
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let account = Account::from_login("svc", "p");
        assert!(challenge(b"", &account).is_err());
        assert!(challenge(b"NTLMSSP\0\x03\0\0\0", &account).is_err());
        let negotiate = [&SIGNATURE[..], &1u32.to_le_bytes(), &(flags::UNICODE | flags::NTLM).to_le_bytes()].concat();
        let sent = challenge(&negotiate, &account).expect("a challenge");
        assert!(is_message(sent.message(), 2));
        for bytes in [&b""[..], b"NTLMSSP\0\x03\0\0\0", &[0xff; 200]] {
            assert!(authenticate(&sent, bytes, &account).is_err());
        }
        // Offsets pointing past the end.
        let mut bad = [&SIGNATURE[..], &3u32.to_le_bytes()].concat();
        bad.extend_from_slice(&[0xff; 80]);
        assert!(matches!(authenticate(&sent, &bad, &account), Err(Refusal::Malformed { .. })));
    }
}
