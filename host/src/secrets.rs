//! Secrets compared without keeping or leaking them: the admin token and webhook
//! clientStates are kept as SHA-256 digests and compared in constant time.

use sha2::{Digest, Sha256};

/// The SHA-256 digest of a bearer token, as `admin.token_sha256` holds it (in hex) and as
/// presented tokens are compared. Surrounding whitespace is not part of the token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Reads a token digest written as 64 hex digits (either case, surrounding whitespace
/// ignored); the error says what is wrong without echoing the value.
pub fn parse_token_digest(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!("a SHA-256 digest is 64 hex digits, this one has {} characters", text.len()));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).map_err(|_| "the digest holds characters other than 0-9 and a-f".to_owned())?;
    Ok(digest)
}

/// Compares two digests in time independent of where they differ.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}
