use crate::finding::{Finding, FindingCode};
use crate::label::{Label, FIELDS};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Which JSON shape the label was stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapForm {
    /// The seven-field object itself (what per-format guides store under an `AIGC` key).
    Bare,
    /// `{"AIGC":{...}}` (Annex E form; PNG `tEXt`, EXIF UserComment).
    Wrapped,
}

/// A label read from a carrier, with what is wrong with its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLabel {
    pub label: Label,
    pub form: WrapForm,
    /// Structural findings: unknown, duplicate, missing or non-string keys. Rule checks on the
    /// values come from [`crate::validate`].
    pub findings: Vec<Finding>,
}

/// The carrier held text that is not a label object at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// A JSON object read as its key/value pairs in file order, duplicates kept (a map would
/// silently keep the last, hiding a non-compliant file).
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// Parses a label in either form, any key order, any whitespace.
///
/// Fails only when the text is not a JSON object (or its `AIGC` member is not one); everything
/// else (missing, unknown, duplicate or non-string keys) becomes a finding on the result.
pub fn parse_label(text: &str) -> Result<ParsedLabel, ParseError> {
    // Some writers leave a trailing NUL (EXIF, AVI INFO) or XMP whitespace around the JSON.
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let outer: Pairs = serde_json::from_str(text)
        .map_err(|e| ParseError(format!("label is not a JSON object: {e}")))?;
    let mut findings = Vec::new();

    let wrapped_at = outer.0.iter().position(|(k, _)| k == "AIGC");
    let (form, pairs) = match wrapped_at {
        Some(i) => {
            for (k, _) in outer.0.iter().filter(|(k, _)| k != "AIGC") {
                findings.push(Finding::error(
                    FindingCode::UnknownKey,
                    Some(k),
                    format!("unknown key \"{k}\" beside \"AIGC\" in the wrapper object"),
                ));
            }
            if outer.0.iter().filter(|(k, _)| k == "AIGC").count() > 1 {
                findings.push(Finding::error(
                    FindingCode::DuplicateKey,
                    Some("AIGC"),
                    "the wrapper holds \"AIGC\" more than once",
                ));
            }
            let inner = serde_json::from_value::<Pairs>(outer.0[i].1.clone())
                .map_err(|_| ParseError("the \"AIGC\" member is not a JSON object".into()))?;
            (WrapForm::Wrapped, inner.0)
        }
        None => (WrapForm::Bare, outer.0),
    };

    let mut label = Label::default();
    let mut seen = [false; 7];
    for (key, value) in &pairs {
        let Some(idx) = FIELDS.iter().position(|f| f == key) else {
            findings.push(Finding::error(
                FindingCode::UnknownKey,
                Some(key),
                format!("unknown key \"{key}\" (keys are case-sensitive; Annex E defines seven)"),
            ));
            continue;
        };
        if seen[idx] {
            findings.push(Finding::error(
                FindingCode::DuplicateKey,
                Some(key),
                format!("key \"{key}\" appears more than once"),
            ));
            continue;
        }
        seen[idx] = true;
        let text = match value {
            Value::String(s) => s.clone(),
            other => {
                findings.push(Finding::error(
                    FindingCode::NotAString,
                    Some(key),
                    format!("\"{key}\" is {other}, not a JSON string"),
                ));
                other.to_string()
            }
        };
        label.set(key, text);
    }
    for (idx, key) in FIELDS.iter().enumerate() {
        if !seen[idx] {
            findings.push(Finding::error(
                FindingCode::MissingField,
                Some(key),
                format!("key \"{key}\" is missing"),
            ));
        }
    }
    Ok(ParsedLabel {
        label,
        form,
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"Label":"1","ContentProducer":"p","ProduceID":"i","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}"#;

    #[test]
    fn reads_bare_and_wrapped_in_any_order_and_spacing() {
        let bare = parse_label(FULL).unwrap();
        assert_eq!(bare.form, WrapForm::Bare);
        assert!(bare.findings.is_empty());
        let wrapped = format!("{{ \"AIGC\" :\n {FULL} }}\0");
        let w = parse_label(&wrapped).unwrap();
        assert_eq!(w.form, WrapForm::Wrapped);
        assert_eq!(w.label, bare.label);
        let reordered = r#"{"ReservedCode2":"","PropagateID":"","ContentPropagator":"","ReservedCode1":"","ProduceID":"i","ContentProducer":"p","Label":"1"}"#;
        assert_eq!(parse_label(reordered).unwrap().label, bare.label);
    }

    #[test]
    fn keeps_structural_problems_as_findings() {
        let p = parse_label(
            r#"{"Label":1,"ContentProducer":"p","ProduceID":"i","ProduceID":"j","Extra":"x"}"#,
        )
        .unwrap();
        let codes: Vec<_> = p.findings.iter().map(|f| f.code).collect();
        assert!(codes.contains(&FindingCode::NotAString));
        assert!(codes.contains(&FindingCode::DuplicateKey));
        assert!(codes.contains(&FindingCode::UnknownKey));
        assert_eq!(
            codes
                .iter()
                .filter(|c| **c == FindingCode::MissingField)
                .count(),
            4
        );
        assert_eq!(p.label.produce_id, "i");
    }

    #[test]
    fn rejects_non_objects() {
        assert!(parse_label("[1,2]").is_err());
        assert!(parse_label(r#"{"AIGC":"x"}"#).is_err());
        assert!(parse_label(r#"{"Label":"1","#).is_err());
    }
}
