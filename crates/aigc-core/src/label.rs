use serde::Serialize;
use std::fmt;

/// The seven keys of the Annex E object, in the order they are written.
pub const FIELDS: [&str; 7] = [
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
];

/// The `Label` field: how sure the labeller is that the content is AI-generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelValue {
    /// `"1"`: the content is AI-generated.
    Is,
    /// `"2"`: possibly AI-generated (the uploader declared it).
    Possibly,
    /// `"3"`: suspected (explicit label or watermark traces found).
    Suspected,
}

impl LabelValue {
    /// The string stored in the `Label` field.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelValue::Is => "1",
            LabelValue::Possibly => "2",
            LabelValue::Suspected => "3",
        }
    }

    /// Parses `"1"`, `"2"` or `"3"`.
    pub fn from_code(code: &str) -> Option<LabelValue> {
        match code {
            "1" => Some(LabelValue::Is),
            "2" => Some(LabelValue::Possibly),
            "3" => Some(LabelValue::Suspected),
            _ => None,
        }
    }
}

/// The implicit label: all seven fields as the strings they are stored as.
///
/// Fields keep whatever a file held, valid or not, so that a verifier can report it; use
/// [`crate::validate`] to check them. Serialization follows Annex E: compact, fixed key order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Label {
    #[serde(rename = "Label")]
    pub label: String,
    #[serde(rename = "ContentProducer")]
    pub content_producer: String,
    #[serde(rename = "ProduceID")]
    pub produce_id: String,
    #[serde(rename = "ReservedCode1")]
    pub reserved_code1: String,
    #[serde(rename = "ContentPropagator")]
    pub content_propagator: String,
    #[serde(rename = "PropagateID")]
    pub propagate_id: String,
    #[serde(rename = "ReservedCode2")]
    pub reserved_code2: String,
}

impl Label {
    /// A producer's label: `Label`, `ContentProducer` and `ProduceID` set, the rest empty.
    pub fn produced(value: LabelValue, producer: &str, produce_id: &str) -> Label {
        Label {
            label: value.as_str().to_string(),
            content_producer: producer.to_string(),
            produce_id: produce_id.to_string(),
            ..Label::default()
        }
    }

    /// The bare seven-field object, compact, in Annex E order: what goes under an `AIGC` key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings always serializes")
    }

    /// The Annex E form `{"AIGC":{...}}`.
    pub fn to_wrapped_json(&self) -> String {
        format!("{{\"AIGC\":{}}}", self.to_json())
    }

    /// The field named by its Annex E key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.slot(key).map(|s| s.as_str())
    }

    /// Sets the field named by its Annex E key; returns false for an unknown key.
    pub fn set(&mut self, key: &str, value: String) -> bool {
        match self.slot_mut(key) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// `(key, value)` for the seven fields in Annex E order.
    pub fn fields(&self) -> [(&'static str, &str); 7] {
        FIELDS.map(|k| (k, self.get(k).unwrap_or_default()))
    }

    fn slot(&self, key: &str) -> Option<&String> {
        Some(match key {
            "Label" => &self.label,
            "ContentProducer" => &self.content_producer,
            "ProduceID" => &self.produce_id,
            "ReservedCode1" => &self.reserved_code1,
            "ContentPropagator" => &self.content_propagator,
            "PropagateID" => &self.propagate_id,
            "ReservedCode2" => &self.reserved_code2,
            _ => return None,
        })
    }

    fn slot_mut(&mut self, key: &str) -> Option<&mut String> {
        Some(match key {
            "Label" => &mut self.label,
            "ContentProducer" => &mut self.content_producer,
            "ProduceID" => &mut self.produce_id,
            "ReservedCode1" => &mut self.reserved_code1,
            "ContentPropagator" => &mut self.content_propagator,
            "PropagateID" => &mut self.propagate_id,
            "ReservedCode2" => &mut self.reserved_code2,
            _ => return None,
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_compact_in_annex_e_order() {
        let l = Label::produced(LabelValue::Is, "001191110102MACQD9K64010000", "abc");
        assert_eq!(
            l.to_json(),
            r#"{"Label":"1","ContentProducer":"001191110102MACQD9K64010000","ProduceID":"abc","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}"#
        );
        assert!(l.to_wrapped_json().starts_with(r#"{"AIGC":{"Label":"1""#));
    }

    #[test]
    fn escapes_quotes_in_values() {
        let l = Label {
            reserved_code1: "a\"b".into(),
            ..Label::default()
        };
        assert!(l.to_json().contains(r#""ReservedCode1":"a\"b""#));
    }
}
