use serde::Serialize;
use std::fmt;

/// How much a finding matters: an error makes a label non-compliant, a warning does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// What is wrong, as a stable machine-readable code (the `code` key in JSON reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    /// The carrier's text is not JSON, or not a JSON object.
    Unparseable,
    /// The carrier (or the file around it) ends early or is structurally damaged.
    DamagedCarrier,
    /// One of the seven keys is absent.
    MissingField,
    /// A required field (`Label`, `ContentProducer`, `ProduceID`) is the empty string.
    EmptyField,
    /// A value is a number, boolean, object... instead of a JSON string.
    NotAString,
    /// `Label` is not `"1"`, `"2"` or `"3"`.
    BadLabelValue,
    /// A value has characters outside printable ASCII 0x21-0x7E or a backslash (Annex E j).
    Charset,
    /// A key that Annex E does not define.
    UnknownKey,
    /// The same key twice in one object.
    DuplicateKey,
    /// `ContentProducer`/`ContentPropagator` is not a 27-character TC260-PG-20252A provider code.
    ProviderCode,
    /// `ContentPropagator` and `PropagateID`: one is set, the other empty.
    PropagatorIncomplete,
    /// The file holds the label more than once with the same content (6.1 c).
    DuplicateCopies,
    /// The file holds labels that disagree.
    DisagreeingCopies,
    /// A visible label was found whose text is under 5% of the shortest side tall.
    VisibleTooSmall,
    /// A video's visible label shows for less than the opening 2 s GB 45438 requires.
    VisibleTooShort,
    /// A watermark was found although the file carries no metadata label (stripped metadata).
    WatermarkOnly,
}

impl FindingCode {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Unparseable => "unparseable",
            FindingCode::DamagedCarrier => "damaged_carrier",
            FindingCode::MissingField => "missing_field",
            FindingCode::EmptyField => "empty_field",
            FindingCode::NotAString => "not_a_string",
            FindingCode::BadLabelValue => "bad_label_value",
            FindingCode::Charset => "charset",
            FindingCode::UnknownKey => "unknown_key",
            FindingCode::DuplicateKey => "duplicate_key",
            FindingCode::ProviderCode => "provider_code",
            FindingCode::PropagatorIncomplete => "propagator_incomplete",
            FindingCode::DuplicateCopies => "duplicate_copies",
            FindingCode::DisagreeingCopies => "disagreeing_copies",
            FindingCode::VisibleTooSmall => "visible_too_small",
            FindingCode::VisibleTooShort => "visible_too_short",
            FindingCode::WatermarkOnly => "watermark_only",
        }
    }
}

/// One thing a verifier noticed about a label or its carriers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: FindingCode,
    /// The Annex E key concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A sentence for people.
    pub message: String,
}

impl Finding {
    pub fn error(code: FindingCode, field: Option<&str>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn warning(code: FindingCode, field: Option<&str>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, field, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} [{}]: {}", self.code.as_str(), self.message)
    }
}
