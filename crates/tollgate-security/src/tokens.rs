//! Authentication tokens (`security-model.md` §7): `kauth-` + a JWT signed with HMAC-SHA256, in the
//! form the official SDK decodes (payload `_id`, `iat`, `exp`), and the `ms`-style timespans of
//! `expiresIn`.
//!
//! The JWT is built from the RustCrypto primitives directly (HMAC-SHA256, base64url): the format is
//! fixed by Kuzzle, only HS256 is accepted, and every check of §7 is explicit here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every token.
pub const PREFIX: &str = "kauth-";

/// The prefix of API key tokens (`auth:createApiKey`): the same JWT, told apart by its prefix, as in
/// Kuzzle.
pub const APIKEY_PREFIX: &str = "kapikey-";

/// The signing secret, ready to sign.
#[derive(Clone)]
pub struct Secret(HmacSha256);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `None` only if the key is refused (HMAC accepts keys of any length).
    pub fn new(key: &[u8]) -> Option<Self> {
        HmacSha256::new_from_slice(key).ok().map(Self)
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kuid: String,
    /// Expiry in seconds since the epoch; `None` never expires.
    pub exp: Option<u64>,
}

/// Why a token was refused before any store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

/// Issues a token for `kuid` at `iat` (seconds), expiring at `exp` (seconds) unless `None`.
pub fn issue(secret: &Secret, kuid: &str, iat: u64, exp: Option<u64>) -> String {
    let payload = match exp {
        Some(exp) => json!({"_id": kuid, "iat": iat, "exp": exp}),
        None => json!({"_id": kuid, "iat": iat}),
    };
    sign(secret, PREFIX, &payload)
}

/// Issues an API key token (`kapikey-`) for `kuid`. `jti` (random, from the caller) makes two keys
/// issued in the same second with the same lifetime different tokens.
pub fn issue_api_key(secret: &Secret, kuid: &str, iat: u64, exp: Option<u64>, jti: &str) -> String {
    let payload = match exp {
        Some(exp) => json!({"_id": kuid, "iat": iat, "exp": exp, "jti": jti}),
        None => json!({"_id": kuid, "iat": iat, "jti": jti}),
    };
    sign(secret, APIKEY_PREFIX, &payload)
}

/// Whether a token is an API key token (by its prefix; the signature is checked by [`verify`]).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(APIKEY_PREFIX)
}

fn sign(secret: &Secret, prefix: &str, payload: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = secret.mac();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{prefix}{signing_input}.{signature}")
}

/// The times of a token issued at `now_ms` for `ttl_ms` (`None` never expires): `iat` in seconds, the
/// `exp` claim in seconds and `expiresAt` in milliseconds. `exp` is `expiresAt` rounded **up** to the
/// second, so the signed claim never ends a token before the `expiresAt` the client was given; the
/// millisecond bound itself is enforced by the token's record (`security-model.md` §7, check 4).
pub fn lifetime(now_ms: u64, ttl_ms: Option<u64>) -> (u64, Option<u64>, Option<u64>) {
    let iat = now_ms / 1000;
    match ttl_ms {
        None => (iat, None, None),
        Some(ttl) => {
            let expires_at = now_ms.saturating_add(ttl);
            (iat, Some(expires_at.div_ceil(1000)), Some(expires_at))
        }
    }
}

/// Checks format, signature (constant time), algorithm, `_id` and `exp` against `now_s`.
pub fn verify(secret: &Secret, token: &str, now_s: u64) -> Result<Claims, TokenError> {
    let jwt = token
        .strip_prefix(PREFIX)
        .or_else(|| token.strip_prefix(APIKEY_PREFIX))
        .ok_or(TokenError::Invalid)?;
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid)?;
    let mut mac = secret.mac();
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Invalid)?;
    let header: Value = decode_json(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Invalid);
    }
    let payload: Value = decode_json(payload)?;
    let kuid = payload
        .get("_id")
        .and_then(Value::as_str)
        .ok_or(TokenError::Invalid)?;
    let exp = match payload.get("exp") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or(TokenError::Invalid)?),
    };
    if exp.is_some_and(|exp| exp <= now_s) {
        return Err(TokenError::Expired);
    }
    Ok(Claims {
        kuid: kuid.to_owned(),
        exp,
    })
}

fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)
}

/// The id under which a token of user `kuid` is recorded: `<kuid>:<hex SHA-256 of the token>`. The
/// token itself is never stored; the user's id first lets every token of a user be listed by prefix
/// ([`user_tokens_prefix`]) without holding them all in memory.
pub fn token_id(kuid: &str, token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(kuid.len() + 65);
    out.push_str(kuid);
    out.push(':');
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// The prefix of the ids of `kuid`'s tokens (which may also match tokens of users whose id starts
/// with `<kuid>:`: check the record's `kuid`).
pub fn user_tokens_prefix(kuid: &str) -> String {
    format!("{kuid}:")
}

/// Whether a stored token id is of the form before user prefixes (a bare 64-digit hex hash).
pub fn is_legacy_token_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses an `expiresIn` timespan (npm `ms` grammar) into milliseconds. `-1` is "never" and returns
/// `Some(-1)`; `None` when unparsable.
pub fn parse_timespan(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let number_end = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    let (number, unit) = rest.split_at(number_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "w" | "week" | "weeks" => 604_800_000.0,
        "y" | "yr" | "yrs" | "year" | "years" => 31_557_600_000.0,
        _ => return None,
    };
    let ms = value * factor;
    if !ms.is_finite() || ms > i64::MAX as f64 {
        return None;
    }
    let ms = ms.round() as i64;
    Some(if negative { -ms } else { ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_secret(key: &[u8]) -> Secret {
        Secret::new(key).unwrap_or_else(|| panic!("key refused"))
    }

    const SPEC_TOKEN: &str = "kauth-eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJfaWQiOiJrdWlkLWFkbWluIiwiaWF0IjoxNzk1NzgyMDAwLCJleHAiOjE3OTU3ODU2MDB9.TzSoH-pg3IV-pZfKI2QnlukkIr7L5g_4ef-iQvC1-z8";

    #[test]
    fn reproduces_the_spec_token() {
        let secret = make_secret(b"example-secret");
        assert_eq!(
            issue(&secret, "kuid-admin", 1795782000, Some(1795785600)),
            SPEC_TOKEN
        );
        assert_eq!(
            verify(&secret, SPEC_TOKEN, 1795782001),
            Ok(Claims {
                kuid: "kuid-admin".into(),
                exp: Some(1795785600)
            })
        );
        assert_eq!(
            verify(&secret, SPEC_TOKEN, 1795785600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn refuses_tampered_and_malformed_tokens() {
        let secret = make_secret(b"example-secret");
        let other = make_secret(b"other");
        assert_eq!(verify(&other, SPEC_TOKEN, 0), Err(TokenError::Invalid));
        let mut tampered = SPEC_TOKEN.to_owned();
        tampered.pop();
        tampered.push('A');
        assert_eq!(verify(&secret, &tampered, 0), Err(TokenError::Invalid));
        for bad in [
            "",
            "kauth-",
            "abc",
            &SPEC_TOKEN[6..],
            "kauth-a.b",
            "kauth-a.b.c.d",
            "kapikey-x.y.z",
        ] {
            assert_eq!(verify(&secret, bad, 0), Err(TokenError::Invalid), "{bad}");
        }
        // A payload without a string `_id`, signed correctly, is still invalid.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"_id":5,"iat":1}"#);
        let mut mac = secret.mac();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            verify(&secret, &format!("kauth-{header}.{payload}.{sig}"), 0),
            Err(TokenError::Invalid)
        );
        // alg none is refused even with a valid MAC over the parts.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"_id":"x","iat":1}"#);
        let mut mac = secret.mac();
        mac.update(format!("{header}.{payload}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            verify(&secret, &format!("kauth-{header}.{payload}.{sig}"), 0),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn exp_never_ends_a_token_before_its_expires_at() {
        let secret = make_secret(b"k");
        for now_ms in [1_000_000, 1_000_001, 1_000_500, 1_000_999] {
            for ttl in [1, 499, 500, 999, 1000, 1001, 3_600_000] {
                let (iat, exp, expires_at) = lifetime(now_ms, Some(ttl));
                let (Some(exp), Some(expires_at)) = (exp, expires_at) else {
                    panic!("no expiry for {ttl}");
                };
                assert_eq!(expires_at, now_ms + ttl);
                assert!(exp * 1000 >= expires_at && exp * 1000 - expires_at < 1000);
                let token = issue(&secret, "u", iat, Some(exp));
                // Valid at every millisecond before `expiresAt`, by the signed claim too.
                for t in [now_ms, expires_at - 1] {
                    assert!(
                        verify(&secret, &token, t / 1000).is_ok(),
                        "{now_ms} {ttl} {t}"
                    );
                }
            }
        }
        assert_eq!(lifetime(1_500, None), (1, None, None));
    }

    #[test]
    fn api_key_tokens_verify_and_differ_by_jti() {
        let secret = make_secret(b"k");
        let a = issue_api_key(&secret, "u", 10, None, "a");
        let b = issue_api_key(&secret, "u", 10, None, "b");
        assert!(a.starts_with(APIKEY_PREFIX) && is_api_key(&a) && a != b);
        assert_eq!(verify(&secret, &a, 11).map(|c| c.kuid), Ok("u".to_owned()));
        // The same JWT under the other prefix is another token (another record id).
        let swapped = a.replacen(APIKEY_PREFIX, PREFIX, 1);
        assert!(verify(&secret, &swapped, 11).is_ok());
        assert_ne!(token_id("u", &a), token_id("u", &swapped));
    }

    #[test]
    fn never_expiring_tokens_have_no_exp() {
        let secret = make_secret(&[1; 64]);
        let t = issue(&secret, "u", 10, None);
        assert_eq!(verify(&secret, &t, u64::MAX).map(|c| c.exp), Ok(None));
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("3600000"), Some(3_600_000));
        assert_eq!(parse_timespan("1h"), Some(3_600_000));
        assert_eq!(parse_timespan("1.5 Hours"), Some(5_400_000));
        assert_eq!(parse_timespan("2d"), Some(172_800_000));
        assert_eq!(parse_timespan("1y"), Some(31_557_600_000));
        assert_eq!(parse_timespan("-1"), Some(-1));
        assert_eq!(parse_timespan("10 msecs"), Some(10));
        for bad in ["", "h", "1 fortnight", "abc", "."] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_ids_are_the_user_then_the_sha256_hex() {
        assert_eq!(
            token_id("u1", "abc"),
            "u1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(token_id("u1", "abc").starts_with(&user_tokens_prefix("u1")));
        assert!(is_legacy_token_id(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ));
        assert!(!is_legacy_token_id(&token_id("u1", "abc")));
    }
}
