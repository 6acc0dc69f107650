//! SPNEGO ([RFC 4178], [MS-SPNG]) for the EWS emulator's Negotiate scheme: reads the
//! client's NegTokenInit and NegTokenResp and writes the acceptor's NegTokenResp, in the
//! few DER forms they take. Only the NTLM mechanism is accepted (no Kerberos, as on a
//! server outside a domain), so the NTLM messages travel inside these tokens.

/// `1.3.6.1.4.1.311.2.2.10`, NTLMSSP, DER-encoded (contents of the OID).
pub const NTLMSSP_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
/// `1.3.6.1.5.5.2`, SPNEGO, the GSS-API framing's mechanism.
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_OCTETS: u8 = 0x04;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_APPLICATION_0: u8 = 0x60;

/// `negState` of a NegTokenResp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    AcceptCompleted = 0,
    AcceptIncomplete = 1,
    Reject = 2,
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientToken {
    /// The DER of the `mechTypes` SEQUENCE, which the mechListMIC signs (NegTokenInit only).
    pub mech_types: Option<Vec<u8>>,
    /// The mechanisms offered, most preferred first (NegTokenInit only).
    pub mechs: Vec<Vec<u8>>,
    /// `mechToken` or `responseToken`.
    pub token: Option<Vec<u8>>,
    pub mech_list_mic: Option<Vec<u8>>,
}

/// One DER element: its tag, contents and everything after it.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated token")?;
    let (&first, rest) = rest.split_first().ok_or("truncated length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err("unsupported length".into());
        }
        let len = rest[..count].iter().fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return Err("element longer than the token".into());
    }
    let header = input.len() - rest.len();
    Ok((Tlv { tag, contents: &rest[..len], whole: &input[..header + len] }, &rest[len..]))
}

/// The elements of a constructed element's contents.
fn children(mut contents: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    let mut items = Vec::new();
    while !contents.is_empty() {
        let (item, rest) = read(contents)?;
        items.push(item);
        contents = rest;
    }
    Ok(items)
}

fn octets(explicit: &Tlv<'_>) -> Result<Vec<u8>, String> {
    let (inner, _) = read(explicit.contents)?;
    if inner.tag != TAG_OCTETS {
        return Err("expected an OCTET STRING".into());
    }
    Ok(inner.contents.to_vec())
}

/// Reads a client's token: a NegTokenInit inside the GSS-API framing (the first leg), or a
/// bare NegTokenResp (later legs).
pub fn parse_client(token: &[u8]) -> Result<ClientToken, String> {
    let (outer, _) = read(token)?;
    match outer.tag {
        TAG_APPLICATION_0 => {
            let (oid, rest) = read(outer.contents)?;
            if oid.tag != TAG_OID || oid.contents != SPNEGO_OID {
                return Err("not an SPNEGO token".into());
            }
            let (choice, _) = read(rest)?;
            if choice.tag != 0xa0 {
                return Err("expected a NegTokenInit".into());
            }
            let (sequence, _) = read(choice.contents)?;
            if sequence.tag != TAG_SEQUENCE {
                return Err("NegTokenInit is not a SEQUENCE".into());
            }
            let mut parsed = ClientToken::default();
            for field in children(sequence.contents)? {
                match field.tag {
                    0xa0 => {
                        let (list, _) = read(field.contents)?;
                        if list.tag != TAG_SEQUENCE {
                            return Err("mechTypes is not a SEQUENCE".into());
                        }
                        parsed.mech_types = Some(list.whole.to_vec());
                        for mech in children(list.contents)? {
                            if mech.tag != TAG_OID {
                                return Err("mechTypes holds something else than OIDs".into());
                            }
                            parsed.mechs.push(mech.contents.to_vec());
                        }
                    }
                    0xa2 => parsed.token = Some(octets(&field)?),
                    0xa3 => parsed.mech_list_mic = Some(octets(&field)?),
                    _ => {}
                }
            }
            if parsed.mech_types.is_none() {
                return Err("NegTokenInit has no mechTypes".into());
            }
            Ok(parsed)
        }
        0xa1 => {
            let (sequence, _) = read(outer.contents)?;
            if sequence.tag != TAG_SEQUENCE {
                return Err("NegTokenResp is not a SEQUENCE".into());
            }
            let mut parsed = ClientToken::default();
            for field in children(sequence.contents)? {
                match field.tag {
                    0xa2 => parsed.token = Some(octets(&field)?),
                    0xa3 => parsed.mech_list_mic = Some(octets(&field)?),
                    _ => {}
                }
            }
            Ok(parsed)
        }
        _ => Err("neither a NegTokenInit nor a NegTokenResp".into()),
    }
}

fn write(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

fn explicit(out: &mut Vec<u8>, tag: u8, inner_tag: u8, contents: &[u8]) {
    let mut inner = Vec::new();
    write(&mut inner, inner_tag, contents);
    write(out, tag, &inner);
}

/// The acceptor's NegTokenResp: its state, the mechanism it chose (NTLM, on its first
/// answer), the NTLM message and the mechListMIC.
pub fn response(state: NegState, select_ntlm: bool, token: Option<&[u8]>, mech_list_mic: Option<&[u8]>) -> Vec<u8> {
    let mut fields = Vec::new();
    explicit(&mut fields, 0xa0, TAG_ENUMERATED, &[state as u8]);
    if select_ntlm {
        explicit(&mut fields, 0xa1, TAG_OID, NTLMSSP_OID);
    }
    if let Some(token) = token {
        explicit(&mut fields, 0xa2, TAG_OCTETS, token);
    }
    if let Some(mic) = mech_list_mic {
        explicit(&mut fields, 0xa3, TAG_OCTETS, mic);
    }
    let mut sequence = Vec::new();
    write(&mut sequence, TAG_SEQUENCE, &fields);
    let mut out = Vec::new();
    write(&mut out, 0xa1, &sequence);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NegTokenInit as Windows and pyspnego write it: mechTypes [NTLMSSP] and an NTLM
    /// NEGOTIATE_MESSAGE as mechToken.
    fn init(mechs: &[&[u8]], token: &[u8]) -> Vec<u8> {
        let mut list = Vec::new();
        for mech in mechs {
            write(&mut list, TAG_OID, mech);
        }
        let mut fields = Vec::new();
        let mut mech_types = Vec::new();
        write(&mut mech_types, TAG_SEQUENCE, &list);
        write(&mut fields, 0xa0, &mech_types);
        explicit(&mut fields, 0xa2, TAG_OCTETS, token);
        let mut sequence = Vec::new();
        write(&mut sequence, TAG_SEQUENCE, &fields);
        let mut choice = Vec::new();
        write(&mut choice, 0xa0, &sequence);
        let mut inner = Vec::new();
        write(&mut inner, TAG_OID, SPNEGO_OID);
        inner.extend_from_slice(&choice);
        let mut out = Vec::new();
        write(&mut out, TAG_APPLICATION_0, &inner);
        out
    }

    #[test]
    fn reads_a_neg_token_init_and_keeps_the_mech_types_der() {
        let negotiate = vec![0x4e; 300];
        let token = init(&[NTLMSSP_OID], &negotiate);
        let parsed = parse_client(&token).expect("parsed");
        assert_eq!(parsed.mechs, vec![NTLMSSP_OID.to_vec()]);
        assert_eq!(parsed.token.as_deref(), Some(&negotiate[..]), "a long-form length is read");
        let mech_types = parsed.mech_types.expect("mech types");
        assert_eq!(mech_types[0], TAG_SEQUENCE);
        assert_eq!(&mech_types[4..], NTLMSSP_OID);
    }

    #[test]
    fn the_acceptors_answer_reads_back() {
        let answer = response(NegState::AcceptIncomplete, true, Some(b"challenge"), None);
        assert_eq!(answer[0], 0xa1);
        let parsed = parse_client(&answer).expect("a NegTokenResp");
        assert_eq!(parsed.token.as_deref(), Some(&b"challenge"[..]));
        // The well-known final answer of IIS with a mechListMIC starts `oRswGaADCgEAoxIEEA`.
        let last = response(NegState::AcceptCompleted, false, None, Some(&[1, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0]));
        use base64::Engine as _;
        assert!(base64::engine::general_purpose::STANDARD.encode(&last).starts_with("oRswGaADCgEAoxIEEA"));
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [&b""[..], &[0x60], &[0x60, 0x82, 0xff], &[0xa1, 0x03, 0x30, 0x05], &[0x30, 0x00]] {
            assert!(parse_client(bytes).is_err(), "{bytes:?}");
        }
    }
}
