//! `aigc-label`: the command line over `aigc-core` and `aigc-meta`. No media logic lives here:
//! argument handling, folder walking, parallelism, progress and report formatting only.

mod args;
mod batch;
mod config;

use aigc_core::{assess, new_content_id, validate, Label, LabelValue, Mode, Verdict};
use aigc_meta::{scan_file, write_file, ErrorKind, MetaError, WriteOptions};
use args::{Cli, Command, Inputs, MarkArgs, PropagateArgs, VerifyArgs};
use batch::{Destination, Job, Outcome};
use clap::Parser;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Mark(a) => mark(a, &cfg),
        Command::Verify(a) => verify(a, &cfg),
        Command::Propagate(a) => propagate(a, &cfg),
    };
    match result {
        Ok(summary) if summary.failed == 0 && summary.not_ok == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => usage_error(&e),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn threads(inputs: &Inputs, cfg: &config::Config) -> usize {
    inputs.jobs.or(cfg.jobs).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn mode(inputs: &Inputs, cfg: &config::Config) -> Mode {
    if inputs.lenient || cfg.lenient == Some(true) {
        Mode::Lenient
    } else {
        Mode::Strict
    }
}

fn label_from_config(cfg: &config::Config) -> Result<Option<LabelValue>, String> {
    cfg.label
        .as_deref()
        .map(|l| {
            LabelValue::from_code(l)
                .ok_or_else(|| format!("config: label must be \"1\", \"2\" or \"3\", not {l:?}"))
        })
        .transpose()
}

/// A failure outcome, or a skip when a file of no known format was met while walking a folder.
/// A recognised file that cannot be labeled is always a failure, never silently skipped.
fn failure(job: &Job, e: MetaError) -> Outcome {
    if job.walked && e.kind == ErrorKind::UnknownFormat {
        Outcome::Skipped(e.message)
    } else {
        Outcome::Failed(e.message)
    }
}

/// Refuses a label that would be non-compliant before any file is touched.
fn check_label(label: &Label, mode: Mode) -> Result<(), String> {
    let errors: Vec<String> = validate(label, mode)
        .into_iter()
        .filter(|f| f.is_error())
        .map(|f| f.message)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the label would not be compliant: {}",
            errors.join("; ")
        ))
    }
}

fn write_options(no_iptc: bool, cfg: &config::Config) -> WriteOptions {
    WriteOptions {
        iptc: !no_iptc && cfg.iptc != Some(false),
    }
}

/// Writes one labelled output (creating its folder) and describes what happened.
fn write_one(
    job: &Job,
    out: &Path,
    label: &Label,
    opts: &WriteOptions,
    verb: &str,
    id_name: &str,
    id: &str,
) -> Outcome {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
        }
    }
    match write_file(&job.input, out, label, opts) {
        Ok(format) => Outcome::Done {
            text: format!(
                "{verb} {} -> {} ({}, {id_name} {id})",
                job.input.display(),
                out.display(),
                format.name()
            ),
            json: json!({"path": job.input.display().to_string(), "output": out.display().to_string(), "format": format.name(), "label": label}),
            ok: true,
        },
        Err(e) => failure(job, e),
    }
}

fn mark(a: MarkArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let producer = a
        .producer
        .clone()
        .or_else(|| cfg.producer.clone())
        .or_else(|| std::env::var("AIGC_PRODUCER").ok())
        .ok_or("no producer code: pass --producer CODE, set producer in the config file, or set $AIGC_PRODUCER")?;
    if a.no_metadata {
        return Err(
            "--no-metadata leaves nothing to do: the metadata label is the only layer written so far".into(),
        );
    }
    let value = a
        .label
        .map(|l| l.value())
        .or(label_from_config(cfg)?)
        .unwrap_or(LabelValue::Is);
    let mode = mode(&a.inputs, cfg);
    let dest = Destination::from_args(&a.outputs)?;
    let (jobs, failed) = batch::expand(&a.inputs, &dest)?;
    if a.produce_id.is_some() && jobs.len() + failed.len() > 1 {
        return Err("--produce-id names one file's ID; leave it out for several files so each gets a fresh one".into());
    }
    let mut template = Label::produced(
        value,
        &producer,
        a.produce_id.as_deref().unwrap_or(&new_content_id()),
    );
    template.reserved_code1 = a.reserved_code1.clone().unwrap_or_default();
    check_label(&template, mode)?;
    let opts = write_options(a.outputs.no_iptc, cfg);
    let threads = threads(&a.inputs, cfg);
    Ok(batch::run(
        "mark",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let out = job.output.as_ref().expect("mark jobs have outputs");
            let mut label = template.clone();
            if a.produce_id.is_none() {
                label.produce_id = new_content_id();
            }
            write_one(
                job,
                out,
                &label,
                &opts,
                "marked",
                "ProduceID",
                &label.produce_id,
            )
        },
    ))
}

fn verify(a: VerifyArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let mode = mode(&a.inputs, cfg);
    let (jobs, failed) = batch::expand(&a.inputs, &Destination::None)?;
    let threads = threads(&a.inputs, cfg);
    let require = a.require;
    Ok(batch::run(
        "verify",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let fs = match scan_file(&job.input) {
                Ok(fs) => fs,
                Err(e) => return failure(job, e),
            };
            let verdict = assess(&fs.scan.copies, &fs.scan.problems, mode);
            let mut text = format!(
                "{:<14} {:<5} {}",
                verdict.verdict.as_str(),
                fs.format.name(),
                job.input.display()
            );
            if let Some(l) = &verdict.label {
                text.push_str(&format!("\n    label: {}", l.to_json()));
            }
            for f in &verdict.findings {
                text.push_str(&format!("\n    {f}"));
            }
            let json = json!({
                "path": job.input.display().to_string(),
                "format": fs.format.name(),
                "verdict": verdict.verdict,
                "metadata": {"label": verdict.label, "carriers": verdict.carriers, "findings": verdict.findings},
                "iptc_digital_source_type": fs.scan.digital_source_type,
                "c2pa": fs.scan.c2pa,
                "watermark": null,
                "visible": null,
            });
            Outcome::Done {
                text,
                json,
                ok: !require || verdict.verdict == Verdict::Compliant,
            }
        },
    ))
}

fn propagate(a: PropagateArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let propagator = a
        .propagator
        .clone()
        .or_else(|| cfg.propagator.clone())
        .ok_or("no propagator code: pass --propagator CODE or set propagator in the config file")?;
    if a.label == Some(args::LabelArg::One) {
        return Err(
            "--label 1 is the producer's to give; a platform writes 2 (declared) or 3 (suspected)"
                .into(),
        );
    }
    let mode = mode(&a.inputs, cfg);
    let dest = Destination::from_args(&a.outputs)?;
    let (jobs, failed) = batch::expand(&a.inputs, &dest)?;
    if a.propagate_id.is_some() && jobs.len() + failed.len() > 1 {
        return Err("--propagate-id names one file's ID; leave it out for several files so each gets a fresh one".into());
    }
    let opts = write_options(a.outputs.no_iptc, cfg);
    let threads = threads(&a.inputs, cfg);
    Ok(batch::run(
        "propagate",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let out = job.output.as_ref().expect("propagate jobs have outputs");
            let fs = match scan_file(&job.input) {
                Ok(fs) => fs,
                Err(e) => return failure(job, e),
            };
            let found = assess(&fs.scan.copies, &fs.scan.problems, Mode::Lenient);
            let mut label = match (found.verdict, found.label, a.label) {
            (Verdict::Inconclusive, _, _) => {
                let why = found.findings.first().map(|f| f.message.clone()).unwrap_or_default();
                return Outcome::Failed(format!("the existing label cannot be read ({why}); not overwriting it"));
            }
            (_, Some(existing), _) => existing,
            (_, None, Some(l)) => Label { label: l.value().as_str().to_string(), ..Label::default() },
            (_, None, None) => {
                return Outcome::Failed("has no label: pass --label 2 (the uploader declared AI) or --label 3 (suspected) to write one".into())
            }
        };
            label.content_propagator = propagator.clone();
            label.propagate_id = a.propagate_id.clone().unwrap_or_else(new_content_id);
            label.reserved_code2 = a.reserved_code2.clone().unwrap_or_default();
            if let Err(e) = check_label(&label, mode) {
                return Outcome::Failed(e);
            }
            write_one(
                job,
                out,
                &label,
                &opts,
                "propagated",
                "PropagateID",
                &label.propagate_id,
            )
        },
    ))
}
