use crate::finding::{Finding, FindingCode};
use crate::label::Label;
use crate::parse::parse_label;
use crate::validate::{validate, Mode};
use serde::Serialize;

/// The verifier's answer for one file (SPEC section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exactly one label, and it passes every rule.
    Compliant,
    /// A label is there but breaks a rule (see the findings).
    NonCompliant,
    /// No label in any carrier, and every carrier was readable.
    NotFound,
    /// A carrier could not be read (truncated, unparseable): the answer is unknown.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::NonCompliant => "non_compliant",
            Verdict::NotFound => "not_found",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The text of one label copy as a format handler found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelCopy {
    /// Where it was, e.g. `png:iTXt:XMP`, `jpeg:APP1:XMP`, `jpeg:Exif:UserComment`.
    pub carrier: String,
    /// The JSON text (bare or wrapped), already unescaped from its carrier.
    pub json: String,
}

/// A carrier or file structure that could not be read completely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierProblem {
    pub carrier: String,
    pub message: String,
}

/// Everything a verifier concludes about one file's metadata label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub verdict: Verdict,
    /// The label (the first copy when there are several).
    pub label: Option<Label>,
    /// The carriers that held a label copy, in file order.
    pub carriers: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Turns the label copies and carrier problems found in one file into a verdict.
///
/// * no copy and no problem: `not_found`;
/// * no readable copy but a damaged or unparseable carrier: `inconclusive` (never a silent
///   `not_found`);
/// * otherwise the first copy is validated; more than one copy is non-compliant (6.1 c), with
///   `disagreeing_copies` when they differ; any error finding makes it `non_compliant`.
pub fn assess(copies: &[LabelCopy], problems: &[CarrierProblem], mode: Mode) -> Assessment {
    let mut findings: Vec<Finding> = Vec::new();
    let mut parsed = Vec::new();
    for copy in copies {
        match parse_label(&copy.json) {
            Ok(p) => parsed.push((copy, p)),
            Err(e) => findings.push(Finding::error(
                FindingCode::Unparseable,
                None,
                format!("{}: {e}", copy.carrier),
            )),
        }
    }
    let damaged: Vec<Finding> = problems
        .iter()
        .map(|p| {
            Finding::error(
                FindingCode::DamagedCarrier,
                None,
                format!("{}: {}", p.carrier, p.message),
            )
        })
        .collect();
    let carriers = copies.iter().map(|c| c.carrier.clone()).collect();

    let Some((_, first)) = parsed.first() else {
        let verdict = if findings.is_empty() && damaged.is_empty() {
            Verdict::NotFound
        } else {
            Verdict::Inconclusive
        };
        findings.extend(damaged);
        return Assessment {
            verdict,
            label: None,
            carriers,
            findings,
        };
    };
    let label = first.label.clone();
    findings.extend(first.findings.iter().cloned());
    findings.extend(validate(&label, mode));
    if copies.len() > 1 {
        let all_same = findings.iter().all(|f| f.code != FindingCode::Unparseable)
            && parsed.iter().all(|(_, p)| p.label == label);
        let places = copies
            .iter()
            .map(|c| c.carrier.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        findings.push(if all_same {
            Finding::error(
                FindingCode::DuplicateCopies,
                None,
                format!(
                    "{} copies of the label ({places}); a file must hold exactly one",
                    copies.len()
                ),
            )
        } else {
            Finding::error(
                FindingCode::DisagreeingCopies,
                None,
                format!("{} label copies that disagree ({places})", copies.len()),
            )
        });
    }
    // A label was read, so damage elsewhere in the file does not hide it: reported, as a warning.
    findings.extend(damaged.into_iter().map(|f| Finding {
        severity: crate::Severity::Warning,
        ..f
    }));
    let verdict = if findings.iter().any(Finding::is_error) {
        Verdict::NonCompliant
    } else {
        Verdict::Compliant
    };
    Assessment {
        verdict,
        label: Some(label),
        carriers,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::LabelValue;

    fn copy(carrier: &str, label: &Label) -> LabelCopy {
        LabelCopy {
            carrier: carrier.into(),
            json: label.to_json(),
        }
    }

    fn good() -> Label {
        Label::produced(LabelValue::Is, "001191110102MACQD9K64010000", "id-1")
    }

    #[test]
    fn verdicts() {
        let g = good();
        assert_eq!(assess(&[], &[], Mode::Strict).verdict, Verdict::NotFound);
        assert_eq!(
            assess(&[copy("a", &g)], &[], Mode::Strict).verdict,
            Verdict::Compliant
        );
        let two = assess(&[copy("a", &g), copy("b", &g)], &[], Mode::Strict);
        assert_eq!(two.verdict, Verdict::NonCompliant);
        assert!(two
            .findings
            .iter()
            .any(|f| f.code == FindingCode::DuplicateCopies));
        let mut other = g.clone();
        other.produce_id = "id-2".into();
        let dis = assess(&[copy("a", &g), copy("b", &other)], &[], Mode::Strict);
        assert!(dis
            .findings
            .iter()
            .any(|f| f.code == FindingCode::DisagreeingCopies));
        let problem = CarrierProblem {
            carrier: "png:iTXt".into(),
            message: "truncated".into(),
        };
        assert_eq!(
            assess(&[], std::slice::from_ref(&problem), Mode::Strict).verdict,
            Verdict::Inconclusive
        );
        let garbage = LabelCopy {
            carrier: "a".into(),
            json: "{\"Label\":".into(),
        };
        assert_eq!(
            assess(&[garbage], &[], Mode::Strict).verdict,
            Verdict::Inconclusive
        );
    }
}
