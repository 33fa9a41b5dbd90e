//! A JSON payload split into the envelope's fields and the other arguments, as it is read: the
//! WebSocket front-end deserializes a frame straight into an [`Envelope`] (the envelope's keys are
//! matched while parsing, never stored as strings or hashed), and [`Envelope::from_value`] does the
//! same split for an already parsed value (`POST /_query`). [`crate::Request::from_envelope`] then
//! runs the construction checks.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The envelope's fields of a JSON payload, as found (typed afterwards by the construction checks).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub(crate) jwt: Option<Value>,
    pub(crate) volatile: Option<Value>,
    pub(crate) body: Option<Value>,
    pub(crate) controller: Option<Value>,
    pub(crate) action: Option<Value>,
    pub(crate) request_id: Option<Value>,
    pub(crate) index: Option<Value>,
    pub(crate) collection: Option<Value>,
}

impl Fields {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value>> {
        Some(match key {
            "jwt" => &mut self.jwt,
            "volatile" => &mut self.volatile,
            "body" => &mut self.body,
            "controller" => &mut self.controller,
            "action" => &mut self.action,
            "requestId" => &mut self.request_id,
            "index" => &mut self.index,
            "collection" => &mut self.collection,
            _ => return None,
        })
    }

    fn is_empty(&self) -> bool {
        self.jwt.is_none()
            && self.volatile.is_none()
            && self.body.is_none()
            && self.controller.is_none()
            && self.action.is_none()
            && self.request_id.is_none()
            && self.index.is_none()
            && self.collection.is_none()
    }
}

/// A JSON payload: an object split into envelope fields and arguments, or some other value.
#[derive(Debug, Default)]
pub struct Envelope {
    pub(crate) fields: Fields,
    /// Every other key, in payload order (a repeated key keeps its last value, as in a JSON map).
    pub(crate) args: Map<String, Value>,
    /// `false` when the payload was not a JSON object (an array, a string…).
    pub(crate) object: bool,
}

impl Envelope {
    /// Splits a parsed value.
    pub fn from_value(payload: Value) -> Self {
        let Value::Object(map) = payload else {
            return Self::default();
        };
        let mut envelope = Envelope {
            object: true,
            args: Map::with_capacity(map.len()),
            ..Self::default()
        };
        for (key, value) in map {
            match envelope.fields.slot(&key) {
                Some(slot) => *slot = Some(value),
                None => {
                    envelope.args.insert(key, value);
                }
            }
        }
        envelope
    }

    /// The payload's `requestId` when it is a non-empty string.
    pub fn request_id(&self) -> Option<&str> {
        match &self.fields.request_id {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The payload's only key and its value, when it is an object of one key that is not an
    /// envelope field (`{"p":1}`, the SDK's heartbeat).
    pub fn sole_argument(&self) -> Option<(&str, &Value)> {
        if !self.object || !self.fields.is_empty() || self.args.len() != 1 {
            return None;
        }
        self.args.iter().next().map(|(k, v)| (k.as_str(), v))
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope {
            object: true,
            ..Envelope::default()
        };
        while let Some(key) = map.next_key_seed(KeySeed(&mut envelope.fields))? {
            match key {
                Key::Field(slot) => *slot = Some(map.next_value()?),
                Key::Other(name) => {
                    let value = map.next_value()?;
                    envelope.args.insert(name, value);
                }
            }
        }
        Ok(envelope)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
        // Read as values, not skipped: a number out of range is refused here as in a `Value`
        // parse (`POST /_query`), so both transports reject the same payloads.
        while seq.next_element::<Value>()?.is_some() {}
        Ok(Envelope::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Envelope, E> {
        Ok(Envelope::default())
    }
}

/// A key of the payload: an envelope field's slot (matched without allocating), or an argument.
enum Key<'a> {
    Field(&'a mut Option<Value>),
    Other(String),
}

struct KeySeed<'a>(&'a mut Fields);

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Key<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'a>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Key<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'a>, E> {
        // The match is on the borrowed text: only argument names are copied.
        match self.0.slot(key) {
            Some(slot) => Ok(Key::Field(slot)),
            None => Ok(Key::Other(key.to_owned())),
        }
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'a>, E> {
        match self.0.slot(&key) {
            Some(slot) => Ok(Key::Field(slot)),
            None => Ok(Key::Other(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Parsing a payload straight into an envelope and splitting its parsed value agree.
    #[test]
    fn parsed_and_split_envelopes_agree() -> Result<(), String> {
        let payloads = [
            r#"{"controller":"security","action":"getProfile","_id":"p","requestId":"r"}"#,
            r#"{"body":{"a":1},"jwt":null,"x":[1,2],"x":3,"index":"i","collection":null}"#,
            r#"{"contr\u006fller":"escaped key","volatile":{"v":true}}"#,
            r#"[1,{"a":2}]"#,
            r#""text""#,
            r#"12"#,
            r#"null"#,
            r#"{}"#,
        ];
        for text in payloads {
            let parsed: Envelope = parse(text)?;
            let split = Envelope::from_value(parse(text)?);
            assert_eq!(format!("{parsed:?}"), format!("{split:?}"), "{text}");
        }
        Ok(())
    }

    /// A payload a `Value` parse refuses is refused as an envelope too, even where the envelope
    /// would not keep the offending part (the elements of a top-level array).
    #[test]
    fn an_out_of_range_number_is_refused_in_a_top_level_array() {
        for text in ["[1e999]", "[[5e5510]]", r#"[{"a":-1e400}]"#] {
            let value = parse::<Value>(text).err();
            let envelope = parse::<Envelope>(text).err();
            assert!(value.is_some(), "{text}");
            assert_eq!(envelope, value, "{text}");
        }
    }

    #[test]
    fn the_heartbeat_is_a_sole_argument() -> Result<(), String> {
        let e: Envelope = parse(r#"{"p":1}"#)?;
        assert_eq!(e.sole_argument(), Some(("p", &json!(1))));
        let e: Envelope = parse(r#"{"p":1,"requestId":"r"}"#)?;
        assert_eq!(e.sole_argument(), None);
        assert_eq!(e.request_id(), Some("r"));
        let e: Envelope = parse(r#"{"requestId":"p"}"#)?;
        assert_eq!(e.sole_argument(), None);
        Ok(())
    }

    #[test]
    fn syntax_errors_are_serde_json_errors() {
        for text in [r#"{"a":}"#, r#"{"a":1"#, r#"{"a":1} x"#, r#"{1:2}"#] {
            let mine = parse::<Envelope>(text).err();
            let theirs = parse::<Value>(text).err();
            assert!(mine.is_some(), "{text}");
            assert_eq!(mine, theirs, "{text}");
        }
    }
}
