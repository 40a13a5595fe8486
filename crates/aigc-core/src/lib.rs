//! The GB 45438-2025 implicit label, independent of any file format.
//!
//! * [`Label`]: the seven Annex E fields, serialized compact in Annex E order ([`Label::to_json`]).
//! * [`parse_label`]: reads the bare object or the `{"AIGC":{...}}` wrapper, whatever the key order
//!   and whitespace, keeping what is wrong with it as [`Finding`]s instead of failing.
//! * [`validate`]: the rules of the standard (enum, charset, required fields, provider code).
//! * [`assess`]: turns every copy found in a file into one [`Verdict`] with its findings.

mod assess;
mod finding;
mod id;
mod label;
mod parse;
mod validate;

pub use assess::{assess, Assessment, CarrierProblem, LabelCopy, Verdict};
pub use finding::{Finding, FindingCode, Severity};
pub use id::new_content_id;
pub use label::{Label, LabelValue, FIELDS};
pub use parse::{parse_label, ParseError, ParsedLabel, WrapForm};
pub use validate::{is_provider_code, validate, validate_value_charset, Mode};
