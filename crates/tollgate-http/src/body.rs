//! Request bodies (`protocol.md` §7.3): size, content type, charset, content encodings, then JSON or
//! form parsing. Every failure here is answered as a bare error object.

use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::{Map, Value, json};
use tollgate_protocol::KuzzleError;
use tollgate_protocol::errors::{
    NETWORK_HTTP_BODY_PARSE_FAILED, NETWORK_HTTP_REQUEST_TOO_LARGE,
    NETWORK_HTTP_TOO_MANY_ENCODINGS, NETWORK_HTTP_UNEXPECTED_ERROR,
    NETWORK_HTTP_UNSUPPORTED_CHARSET, NETWORK_HTTP_UNSUPPORTED_COMPRESSION,
    NETWORK_HTTP_UNSUPPORTED_CONTENT,
};

/// The media types a body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    Form,
}

/// Content-Type and charset checks (steps 2 and 3). No `Content-Type` means JSON.
pub fn media_type(headers: &HeaderMap) -> Result<MediaType, KuzzleError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(MediaType::Json);
    };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let mut parts = raw.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let media = match essence.as_str() {
        "application/json" => MediaType::Json,
        "application/x-www-form-urlencoded" => MediaType::Form,
        _ => {
            return Err(KuzzleError::new(
                &NETWORK_HTTP_UNSUPPORTED_CONTENT,
                vec![json!(raw)],
            ));
        }
    };
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(KuzzleError::new(
                    &NETWORK_HTTP_UNSUPPORTED_CHARSET,
                    vec![json!(charset)],
                ));
            }
        }
    }
    Ok(media)
}

fn too_large() -> KuzzleError {
    KuzzleError::plain(&NETWORK_HTTP_REQUEST_TOO_LARGE)
}

/// Undoes the `Content-Encoding` layers (step 4), right to left, keeping the result within `max`.
pub fn decode(
    headers: &HeaderMap,
    raw: Vec<u8>,
    max: usize,
    max_layers: usize,
) -> Result<Vec<u8>, KuzzleError> {
    let mut layers = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        layers.extend(
            text.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty()),
        );
    }
    if layers.len() > max_layers {
        return Err(KuzzleError::plain(&NETWORK_HTTP_TOO_MANY_ENCODINGS));
    }
    for layer in &layers {
        if !matches!(layer.as_str(), "identity" | "gzip" | "deflate") {
            return Err(KuzzleError::new(
                &NETWORK_HTTP_UNSUPPORTED_COMPRESSION,
                vec![json!(layer)],
            ));
        }
    }
    let mut body = raw;
    for layer in layers.iter().rev() {
        body = match layer.as_str() {
            "gzip" => inflate(GzDecoder::new(body.as_slice()), max)?,
            "deflate" => inflate(ZlibDecoder::new(body.as_slice()), max)?,
            _ => body,
        };
    }
    Ok(body)
}

fn inflate(decoder: impl Read, max: usize) -> Result<Vec<u8>, KuzzleError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(limit).read_to_end(&mut out).map_err(|e| {
        KuzzleError::new(&NETWORK_HTTP_UNEXPECTED_ERROR, vec![json!(e.to_string())])
    })?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

/// The size check on the received bytes (step 1).
pub fn check_size(len: usize, max: usize) -> Result<(), KuzzleError> {
    if len > max { Err(too_large()) } else { Ok(()) }
}

/// Parses a decoded body (steps 5 and 6). `Ok(None)` is "no body": empty, or exactly JSON `null`.
pub fn parse(bytes: &[u8], media: MediaType) -> Result<Option<Value>, KuzzleError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match media {
        MediaType::Json => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Null) => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                let head: String = text.chars().take(50).collect();
                Err(KuzzleError::new(
                    &NETWORK_HTTP_BODY_PARSE_FAILED,
                    vec![json!(head)],
                ))
            }
        },
        MediaType::Form => {
            let mut map = Map::new();
            for (key, value) in form_urlencoded::parse(bytes) {
                let value = Value::String(value.into_owned());
                match map.get_mut(key.as_ref()) {
                    Some(Value::Array(items)) => items.push(value),
                    Some(first) => {
                        let first = first.take();
                        map.insert(key.into_owned(), Value::Array(vec![first, value]));
                    }
                    None => {
                        map.insert(key.into_owned(), value);
                    }
                }
            }
            Ok(Some(Value::Object(map)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use http::HeaderValue;
    use std::io::Write;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(*k, v);
            }
        }
        h
    }

    fn id<T>(r: Result<T, KuzzleError>) -> &'static str {
        r.err().map(|e| e.id()).unwrap_or("ok")
    }

    #[test]
    fn media_type_rules() {
        assert_eq!(media_type(&headers(&[])).ok(), Some(MediaType::Json));
        assert_eq!(
            media_type(&headers(&[(
                "content-type",
                " Application/JSON ; charset=UTF-8"
            )]))
            .ok(),
            Some(MediaType::Json)
        );
        assert_eq!(
            media_type(&headers(&[(
                "content-type",
                "application/json; charset=utf8"
            )]))
            .ok(),
            Some(MediaType::Json)
        );
        assert_eq!(
            media_type(&headers(&[(
                "content-type",
                "application/x-www-form-urlencoded"
            )]))
            .ok(),
            Some(MediaType::Form)
        );
        assert_eq!(
            id(media_type(&headers(&[("content-type", "text/plain")]))),
            "network.http.unsupported_content"
        );
        assert_eq!(
            id(media_type(&headers(&[(
                "content-type",
                "application/json; charset=latin1"
            )]))),
            "network.http.unsupported_charset"
        );
    }

    #[test]
    fn decode_layers_right_to_left() {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        let _ = z.write_all(br#"{"a":1}"#);
        let deflated = z.finish().unwrap_or_default();
        let mut g = GzEncoder::new(Vec::new(), Compression::default());
        let _ = g.write_all(&deflated);
        let both = g.finish().unwrap_or_default();
        let h = headers(&[("content-encoding", "deflate, gzip")]);
        assert_eq!(decode(&h, both, 1024, 3).ok(), Some(br#"{"a":1}"#.to_vec()));
    }

    #[test]
    fn decode_errors() {
        let h = headers(&[("content-encoding", "gzip,gzip,gzip,gzip")]);
        assert_eq!(
            id(decode(&h, vec![], 10, 3)),
            "network.http.too_many_encodings"
        );
        let h = headers(&[("content-encoding", "br")]);
        assert_eq!(
            id(decode(&h, vec![], 10, 3)),
            "network.http.unsupported_compression"
        );
        let h = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            id(decode(&h, b"not gzip".to_vec(), 10, 3)),
            "network.http.unexpected_error"
        );
        let mut g = GzEncoder::new(Vec::new(), Compression::default());
        let _ = g.write_all(&[b' '; 5000]);
        let bomb = g.finish().unwrap_or_default();
        assert_eq!(
            id(decode(&h, bomb, 4096, 3)),
            "network.http.request_too_large"
        );
    }

    #[test]
    fn parse_rules() {
        assert_eq!(parse(b"", MediaType::Json).ok(), Some(None));
        assert_eq!(parse(b"null", MediaType::Json).ok(), Some(None));
        assert_eq!(parse(b"[1]", MediaType::Json).ok(), Some(Some(json!([1]))));
        let e = parse(
            br#"{"rateLimit": 1234567890123456789012345678901234567890123456789"#,
            MediaType::Json,
        )
        .err();
        assert_eq!(
            e.map(|e| e.props().to_vec()),
            Some(vec![json!(
                r#"{"rateLimit": 123456789012345678901234567890123456"#
            )])
        );
        assert_eq!(
            parse(b"a=1&b=x+y&a=2", MediaType::Form).ok(),
            Some(Some(json!({"a":["1","2"],"b":"x y"})))
        );
    }
}
