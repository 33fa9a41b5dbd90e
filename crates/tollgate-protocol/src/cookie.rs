//! The `authToken` cookie of cookie authentication (`docs/protocol.md` §6.1, a Tollgate extension
//! of `shared/spec` following Kuzzle 2.x): reading it from a `Cookie` request header, writing the
//! `Set-Cookie` header that sets or clears it.
//!
//! Pure functions over bytes: any input is answered, none panics.

/// The cookie's name, as Kuzzle and its browser SDK use it.
pub const AUTH_COOKIE: &str = "authToken";

/// The largest `Cookie` header read (all `Cookie` fields of a request together): past it the header
/// is refused as `security.cookie.invalid` rather than scanned.
pub const MAX_COOKIE_HEADER_BYTES: usize = 16 * 1024;

/// A `Cookie` header that cannot be read: too large, not ASCII text, or an `authToken` value that is
/// not a cookie value (RFC 6265 `cookie-octet`s, optionally double-quoted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCookie;

/// The `authToken` value of a `Cookie` header. `Ok(None)` when there is no `authToken` pair, or when
/// its value is empty or `null` (what a cleared cookie holds). When the name appears more than once
/// the first pair wins, as in Kuzzle (browsers send the most specific path first). Other cookies are
/// skipped, whatever they hold, except that the whole header must be visible ASCII, spaces and tabs.
pub fn auth_token(header: &[u8]) -> Result<Option<&str>, InvalidCookie> {
    if header.len() > MAX_COOKIE_HEADER_BYTES
        || header
            .iter()
            .any(|&b| !(b == b'\t' || (b' '..=b'~').contains(&b)))
    {
        return Err(InvalidCookie);
    }
    // Only visible ASCII, space and tab: valid UTF-8.
    let text = std::str::from_utf8(header).map_err(|_| InvalidCookie)?;
    for pair in text.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name.trim_matches([' ', '\t']) != AUTH_COOKIE {
            continue;
        }
        let value = value.trim_matches([' ', '\t']);
        let value = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"').ok_or(InvalidCookie)?,
            None => value,
        };
        if !value.bytes().all(is_cookie_octet) {
            return Err(InvalidCookie);
        }
        return Ok(Some(value).filter(|v| !v.is_empty() && *v != "null"));
    }
    Ok(None)
}

/// RFC 6265 §4.1.1 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// How the cookie is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookieOptions {
    /// Add the `Secure` attribute (the browser then sends the cookie over HTTPS only).
    pub secure: bool,
}

/// `Set-Cookie` for a token expiring at `expires_at` (epoch ms; `-1`: never, which makes a session
/// cookie, one the browser drops when it closes). The attributes are Kuzzle's, in its order.
pub fn set_auth_token(jwt: &str, expires_at: i64, options: CookieOptions) -> String {
    let mut cookie = format!("{AUTH_COOKIE}={jwt}; Path=/");
    if expires_at >= 0 {
        cookie.push_str("; Expires=");
        cookie.push_str(&http_date(expires_at / 1000));
    }
    finish(cookie, options)
}

/// `Set-Cookie` that clears the cookie (logout): value `null`, as Kuzzle writes it, and an immediate
/// expiry so that the browser drops it.
pub fn clear_auth_token(options: CookieOptions) -> String {
    finish(
        format!("{AUTH_COOKIE}=null; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        options,
    )
}

fn finish(mut cookie: String, options: CookieOptions) -> String {
    cookie.push_str("; HttpOnly");
    if options.secure {
        cookie.push_str("; Secure");
    }
    cookie.push_str("; SameSite=Strict");
    cookie
}

/// An IMF-fixdate (RFC 9110 §5.6.7) for `secs` seconds since the epoch (clamped to 1970..=9999).
pub fn http_date(secs: i64) -> String {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = secs.clamp(0, MAX);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[usize::try_from(days % 7).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0).min(11)];
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_auth_token_among_other_cookies() {
        assert_eq!(auth_token(b"authToken=a.b-c_d"), Ok(Some("a.b-c_d")));
        assert_eq!(auth_token(b"x=1; authToken=tok; y=2"), Ok(Some("tok")));
        assert_eq!(auth_token(b"x=1;authToken = \"tok\" ;y"), Ok(Some("tok")));
        assert_eq!(
            auth_token(b"authToken=first; authToken=second"),
            Ok(Some("first"))
        );
        assert_eq!(auth_token(b"authToken=null"), Ok(None));
        assert_eq!(auth_token(b"authToken="), Ok(None));
        assert_eq!(auth_token(b"other=1; flag"), Ok(None));
        assert_eq!(auth_token(b""), Ok(None));
        assert_eq!(auth_token(b"AuthToken=x; authtoken=y"), Ok(None));
        // Other cookies are not judged.
        assert_eq!(auth_token(b"x=a,b\"c; authToken=t"), Ok(Some("t")));
    }

    #[test]
    fn refuses_what_cannot_be_read() {
        assert_eq!(auth_token(b"authToken=a b"), Err(InvalidCookie));
        assert_eq!(auth_token(b"authToken=a,b"), Err(InvalidCookie));
        assert_eq!(auth_token(b"authToken=\"tok"), Err(InvalidCookie));
        assert_eq!(auth_token(b"authToken=\xff"), Err(InvalidCookie));
        assert_eq!(auth_token(b"x=\x01; authToken=t"), Err(InvalidCookie));
        assert_eq!(auth_token("x=é".as_bytes()), Err(InvalidCookie));
        let long = format!("authToken={}", "a".repeat(MAX_COOKIE_HEADER_BYTES));
        assert_eq!(auth_token(long.as_bytes()), Err(InvalidCookie));
        // Any bytes: an answer, never a panic.
        for b in 0..=255u8 {
            let _ = auth_token(&[b'a', b'u', b'=', b]);
            let _ = auth_token(&[b]);
        }
    }

    #[test]
    fn writes_kuzzle_s_attributes() {
        assert_eq!(
            set_auth_token("j.w.t", 1_795_782_600_000, CookieOptions::default()),
            "authToken=j.w.t; Path=/; Expires=Fri, 27 Nov 2026 12:30:00 GMT; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            set_auth_token("j", -1, CookieOptions { secure: true }),
            "authToken=j; Path=/; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            clear_auth_token(CookieOptions::default()),
            "authToken=null; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
