use crate::finding::{Finding, FindingCode, Severity};
use crate::label::{Label, LabelValue};

/// How strictly the Annex E j) charset rule is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Charset violations are errors (the default for `verify` and for writing).
    #[default]
    Strict,
    /// Charset violations are warnings.
    Lenient,
}

/// True for a TC260-PG-20252A provider code: `00` then 25 characters of `[0-9A-Z]`.
pub fn is_provider_code(s: &str) -> bool {
    s.len() == 27
        && s.starts_with("00")
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// Checks one value against Annex E j): printable ASCII 0x21-0x7E, no backslash. A `"` is
/// allowed because it can only appear escaped (`\"`) in the JSON. Returns a description of the
/// first offending character.
pub fn validate_value_charset(value: &str) -> Result<(), String> {
    for (i, c) in value.chars().enumerate() {
        let ok = matches!(c, '\u{21}'..='\u{7e}') && c != '\\';
        if !ok {
            let what = match c {
                ' ' => "a space".to_string(),
                '\\' => "a backslash".to_string(),
                c if c.is_control() => format!("control character U+{:04X}", c as u32),
                c => format!("'{c}' (U+{:04X})", c as u32),
            };
            return Err(format!("{what} at character {}", i + 1));
        }
    }
    Ok(())
}

/// The rule checks of GB 45438 Annex E on one label's values.
///
/// Required non-empty: `Label`, `ContentProducer`, `ProduceID` (the producer pair may be empty on
/// a Label 2/3 written by a platform with its propagator pair set). `ContentPropagator` and
/// `PropagateID` come as a pair. Provider codes that do not match `^00[0-9A-Z]{25}$` are warnings:
/// the standard allows "name or code", the code is what regulators expect.
pub fn validate(label: &Label, mode: Mode) -> Vec<Finding> {
    let mut out = Vec::new();
    // A platform labelling content it did not produce (Label 2 or 3, SPEC section 4) cannot know
    // the producer; its own propagator fields then identify the label instead.
    let platform_only = matches!(label.label.as_str(), "2" | "3")
        && !label.content_propagator.is_empty()
        && !label.propagate_id.is_empty();
    let required: &[&str] = if platform_only {
        &["Label"]
    } else {
        &["Label", "ContentProducer", "ProduceID"]
    };
    for &key in required {
        if label.get(key).unwrap_or_default().is_empty() {
            out.push(Finding::error(
                FindingCode::EmptyField,
                Some(key),
                format!("\"{key}\" is empty; it is required"),
            ));
        }
    }
    if !label.label.is_empty() && LabelValue::from_code(&label.label).is_none() {
        out.push(Finding::error(
            FindingCode::BadLabelValue,
            Some("Label"),
            format!(
                "\"Label\" is \"{}\"; it must be \"1\" (AI-generated), \"2\" (possibly) or \"3\" (suspected)",
                label.label
            ),
        ));
    }
    let charset_severity = match mode {
        Mode::Strict => Severity::Error,
        Mode::Lenient => Severity::Warning,
    };
    for (key, value) in label.fields() {
        if let Err(why) = validate_value_charset(value) {
            out.push(Finding {
                severity: charset_severity,
                code: FindingCode::Charset,
                field: Some(key.to_string()),
                message: format!("\"{key}\" has {why}; values must be printable ASCII without spaces or backslashes"),
            });
        }
    }
    if !label.content_producer.is_empty() && !is_provider_code(&label.content_producer) {
        out.push(Finding::warning(
            FindingCode::ProviderCode,
            Some("ContentProducer"),
            "\"ContentProducer\" is not a 27-character provider code (00 + 25 of [0-9A-Z], TC260-PG-20252A)",
        ));
    }
    if !label.content_propagator.is_empty() && !is_provider_code(&label.content_propagator) {
        out.push(Finding::warning(
            FindingCode::ProviderCode,
            Some("ContentPropagator"),
            "\"ContentPropagator\" is not a 27-character provider code (00 + 25 of [0-9A-Z], TC260-PG-20252A)",
        ));
    }
    match (
        label.content_propagator.is_empty(),
        label.propagate_id.is_empty(),
    ) {
        (false, true) => out.push(Finding::error(
            FindingCode::PropagatorIncomplete,
            Some("PropagateID"),
            "\"ContentPropagator\" is set but \"PropagateID\" is empty",
        )),
        (true, false) => out.push(Finding::error(
            FindingCode::PropagatorIncomplete,
            Some("ContentPropagator"),
            "\"PropagateID\" is set but \"ContentPropagator\" is empty",
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Label {
        Label::produced(LabelValue::Is, "001191110102MACQD9K64010000", "id-1")
    }

    #[test]
    fn provider_codes() {
        assert!(is_provider_code("001191110102MACQD9K64010000"));
        assert!(is_provider_code("001191440300708461136T1XGW3"));
        assert!(!is_provider_code("011191110102MACQD9K64010000"));
        assert!(!is_provider_code("001191110102macqd9k64010000"));
        assert!(!is_provider_code("0011911101"));
    }

    #[test]
    fn valid_label_has_no_findings() {
        assert!(validate(&good(), Mode::Strict).is_empty());
    }

    #[test]
    fn each_rule_fires() {
        let mut l = good();
        l.label = "4".into();
        l.produce_id = "".into();
        l.reserved_code1 = "a b".into();
        l.content_propagator = "platform".into();
        let f = validate(&l, Mode::Strict);
        let has = |c| f.iter().any(|x| x.code == c && x.is_error());
        assert!(has(FindingCode::BadLabelValue));
        assert!(has(FindingCode::EmptyField));
        assert!(has(FindingCode::Charset));
        assert!(has(FindingCode::PropagatorIncomplete));
        assert!(f
            .iter()
            .any(|x| x.code == FindingCode::ProviderCode && !x.is_error()));
    }

    #[test]
    fn charset_rules() {
        assert!(validate_value_charset("abc-123_XYZ").is_ok());
        assert!(validate_value_charset("a\"b").is_ok());
        assert!(validate_value_charset("a\\b").is_err());
        assert!(validate_value_charset("生成").is_err());
        assert!(validate_value_charset("tab\there").is_err());
        let mut l = good();
        l.produce_id = "中文".into();
        let f = validate(&l, Mode::Lenient);
        assert!(f.iter().all(|x| !x.is_error()));
    }
}
