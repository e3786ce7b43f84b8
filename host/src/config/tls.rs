//! `[tls]` (the listener's certificate, and the CA client certificates must chain to)
//! and `[api_keys]` (names bound to the SHA-256 of a bearer key, never the key itself).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::{Invalid, invalid};

/// `[tls]`: serve TLS (1.2 and 1.3, ALPN h2 and http/1.1) on the listen address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; asks clients for one.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required (the default with `client_ca`) or optional.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

/// Whether clients must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a certificate that chains to `client_ca` fails.
    Required,
    /// A client may present no certificate; one it presents must chain to `client_ca`.
    Optional,
}

impl TlsConfig {
    /// Client certificates asked for, if any: `Required` unless said otherwise.
    pub fn client_auth(&self) -> Option<ClientAuth> {
        self.client_ca
            .as_ref()
            .map(|_| self.client_auth.unwrap_or(ClientAuth::Required))
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.client_auth.is_some() && self.client_ca.is_none() {
            return Err(invalid(
                "tls.client_auth",
                "needs tls.client_ca, the CA client certificates must chain to".into(),
            ));
        }
        Ok(())
    }
}

/// The SHA-256 of an API key, as `[api_keys]` holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_hash(&text).map(KeyHash).ok_or_else(|| {
            serde::de::Error::custom(
                "not a SHA-256 hash (64 hex digits); make one with `printf %s \"$KEY\" | sha256sum`",
            )
        })
    }
}

/// 64 hex digits as 32 bytes.
fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(hash)
}

/// Checks the names of `[api_keys]`: they become identities `key:<name>`.
pub(crate) fn validate_key_names<'a>(
    names: impl Iterator<Item = &'a String>,
) -> Result<(), Invalid> {
    for name in names {
        let fine = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !fine {
            return Err(invalid(
                &format!("api_keys.{name}"),
                "a key's name is letters, digits, '-', '_' or '.'".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_64_hex_digits_in_either_case() {
        let hash = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(parse_hash(hash).unwrap()[0], 0xba);
        assert_eq!(parse_hash(&hash.to_lowercase()), parse_hash(hash));
        let plus = format!("+a{}", &hash[2..]);
        for bad in [
            &plus,
            "",
            "abc",
            &hash[..63],
            &format!("{hash}0"),
            &hash.replace('B', "g"),
        ] {
            assert_eq!(parse_hash(bad), None, "{bad}");
        }
        // Multi-byte characters of the right byte length are refused, not split.
        assert_eq!(parse_hash(&"é".repeat(32)), None);
    }
}
