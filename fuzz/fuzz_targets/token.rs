//! Tokens and timespans: `tokens::verify` on arbitrary strings, on tokens issued by
//! `tokens::issue` and then mutated, and `tokens::parse_timespan`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tollgate_security::tokens::{self, Claims, TokenError};

/// One mutation of an issued token.
#[derive(Arbitrary, Debug)]
enum Edit {
    /// Replace the byte at `at` (modulo the length).
    Set { at: u16, byte: u8 },
    /// Insert a byte at `at`.
    Insert { at: u16, byte: u8 },
    /// Remove the byte at `at`.
    Remove { at: u16 },
    /// Cut the token at `at`.
    Truncate { at: u16 },
}

#[derive(Arbitrary, Debug)]
struct Issued {
    kuid: String,
    iat: u64,
    exp: Option<u64>,
    now: u64,
    edits: Vec<Edit>,
}

fn secret() -> &'static tokens::Secret {
    static SECRET: std::sync::OnceLock<tokens::Secret> = std::sync::OnceLock::new();
    SECRET.get_or_init(tollgate_fuzz::fixed_secret)
}

fn check_verify(token: &str, now: u64) -> Result<Claims, TokenError> {
    let result = tokens::verify(secret(), token, now);
    if let Ok(claims) = &result {
        assert!(token.starts_with(tokens::PREFIX));
        assert!(
            claims.exp.is_none_or(|exp| exp > now),
            "accepted an expired token"
        );
    }
    let id = tokens::token_id("k", token);
    assert_eq!(id.len(), 66);
    assert!(id.starts_with(&tokens::user_tokens_prefix("k")));
    result
}

fn mutated(issued: Issued) {
    let token = tokens::issue(secret(), &issued.kuid, issued.iat, issued.exp);
    // A fresh token verifies, with its claims, until it expires.
    match check_verify(&token, issued.now) {
        Ok(claims) => {
            assert_eq!(claims.kuid, issued.kuid);
            assert_eq!(claims.exp, issued.exp);
        }
        Err(TokenError::Expired) => assert!(issued.exp.is_some_and(|exp| exp <= issued.now)),
        Err(TokenError::Invalid) => panic!("an issued token is invalid: {token}"),
    }
    let mut bytes = token.clone().into_bytes();
    for edit in &issued.edits {
        let pos = |at: u16, len: usize| usize::from(at) % len.max(1);
        match *edit {
            Edit::Set { at, byte } if !bytes.is_empty() => {
                let i = pos(at, bytes.len());
                bytes[i] = byte;
            }
            Edit::Insert { at, byte } => {
                let i = pos(at, bytes.len() + 1);
                bytes.insert(i, byte);
            }
            Edit::Remove { at } if !bytes.is_empty() => {
                let i = pos(at, bytes.len());
                bytes.remove(i);
            }
            Edit::Truncate { at } => {
                let i = pos(at, bytes.len() + 1);
                bytes.truncate(i);
            }
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    if let Ok(claims) = check_verify(&text, issued.now)
        && text != token
    {
        // base64url without padding may carry unused low bits in the last character of the
        // signature: a change there decodes to the same MAC. Anything else is a forgery.
        let (orig_head, orig_sig) = token.rsplit_once('.').unwrap_or((&token, ""));
        let (new_head, new_sig) = text.rsplit_once('.').unwrap_or((&text, ""));
        assert_eq!(orig_head, new_head, "a changed token verified: {text}");
        assert_eq!(
            orig_sig.len(),
            new_sig.len(),
            "a changed signature verified: {text}"
        );
        assert_eq!(claims.kuid, issued.kuid);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // A string as sent by a client (header, `jwt` field or `checkToken` body).
        0 => {
            let text = String::from_utf8_lossy(rest);
            let now = 1_795_782_001;
            let _ = check_verify(&text, now);
            let _ = check_verify(&text, 0);
            let _ = check_verify(&text, u64::MAX);
        }
        // An issued token, then mutated.
        1 => {
            if let Ok(issued) = Issued::arbitrary_take_rest(Unstructured::new(rest)) {
                mutated(issued);
            }
        }
        // An `expiresIn` timespan.
        _ => {
            let text = String::from_utf8_lossy(rest);
            if let Some(ms) = tokens::parse_timespan(&text) {
                // Round trip of a plain integer number of milliseconds.
                let _ = ms;
                let trimmed = text.trim();
                if let Ok(n) = trimmed.parse::<i64>()
                    && n.unsigned_abs() < (1 << 53)
                {
                    assert_eq!(ms, n, "{trimmed:?}");
                }
            }
        }
    }
});
