//! Turning inputs into jobs (folder walking, output paths) and running them in parallel with a
//! progress bar, one outcome per file, in input order.

use crate::args::{Inputs, Outputs};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One file to process.
pub struct Job {
    pub input: PathBuf,
    /// Where the result goes (mark, propagate); `None` for verify.
    pub output: Option<PathBuf>,
    /// Found by walking a folder (an unsupported file is then skipped, not an error).
    pub walked: bool,
}

/// What happened to one file.
pub enum Outcome {
    /// Processed: a text line (or lines) and a JSON object; `ok` false counts as a failure for
    /// the exit status (e.g. `verify --require` on a non-compliant file).
    Done {
        text: String,
        json: serde_json::Value,
        ok: bool,
    },
    /// Not a supported format, found while walking a folder.
    Skipped(String),
    /// Could not be processed: a one-line reason (the file name is added when printed).
    Failed(String),
}

/// Where outputs go, resolved from `-o`, `--out-dir` and `--in-place`.
pub enum Destination<'a> {
    None,
    File(&'a Path),
    Dir(&'a Path),
    InPlace,
}

impl<'a> Destination<'a> {
    pub fn from_args(o: &'a Outputs) -> Result<Destination<'a>, String> {
        match (&o.output, &o.out_dir, o.in_place) {
            (Some(f), _, _) => Ok(Destination::File(f)),
            (_, Some(d), _) => Ok(Destination::Dir(d)),
            (_, _, true) => Ok(Destination::InPlace),
            _ => Err(
                "say where outputs go: -o FILE (one input), --out-dir DIR, or --in-place".into(),
            ),
        }
    }
}

/// Inputs that failed before any work, with the reason.
pub type Rejected = Vec<(PathBuf, String)>;

/// Expands inputs into jobs. Problems with the inputs themselves (a folder without -r, a missing
/// path, clashing outputs) become failed outcomes so the rest of the batch still runs.
pub fn expand(inputs: &Inputs, dest: &Destination) -> Result<(Vec<Job>, Rejected), String> {
    let mut jobs = Vec::new();
    let mut failed = Vec::new();
    for root in &inputs.inputs {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                failed.push((root.clone(), format!("cannot read: {e}")));
                continue;
            }
        };
        if meta.is_dir() {
            if !inputs.recursive {
                failed.push((
                    root.clone(),
                    "is a directory (add -r to process the files in it)".into(),
                ));
                continue;
            }
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in walkdir::WalkDir::new(root)
                .follow_links(false)
                .sort_by_file_name()
            {
                match entry {
                    Ok(e) if e.file_type().is_file() => {
                        let name = e.file_name().to_string_lossy();
                        if !(name.starts_with(".aigc-label-") && name.ends_with(".tmp")) {
                            files.push(e.into_path());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => failed.push((
                        e.path()
                            .map(Path::to_path_buf)
                            .unwrap_or_else(|| root.clone()),
                        format!("cannot read: {e}"),
                    )),
                }
            }
            for f in files {
                let output = match dest {
                    Destination::Dir(d) => Some(d.join(f.strip_prefix(root).unwrap_or(&f))),
                    Destination::InPlace => Some(f.clone()),
                    _ => None,
                };
                jobs.push(Job {
                    input: f,
                    output,
                    walked: true,
                });
            }
        } else {
            let output = match dest {
                Destination::Dir(d) => Some(d.join(root.file_name().unwrap_or(root.as_os_str()))),
                Destination::InPlace => Some(root.clone()),
                Destination::File(f) => Some(f.to_path_buf()),
                Destination::None => None,
            };
            jobs.push(Job {
                input: root.clone(),
                output,
                walked: false,
            });
        }
    }
    if let Destination::File(_) = dest {
        if jobs.len() + failed.len() > 1 {
            return Err("-o names one output file; use --out-dir for several inputs".into());
        }
    }
    // Two inputs must not land on one output, and an output must not silently replace its
    // input unless --in-place was asked for.
    let in_place = matches!(dest, Destination::InPlace);
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(out) = &job.output {
            let key = normalize(out);
            if !in_place && key == normalize(&job.input) {
                failed.push((
                    job.input,
                    "the output would overwrite the input; use --in-place to replace it".into(),
                ));
                continue;
            }
            if !seen.insert(key) {
                failed.push((
                    job.input,
                    format!("another input already writes {}", out.display()),
                ));
                continue;
            }
        }
        kept.push(job);
    }
    Ok((kept, failed))
}

fn normalize(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    // Not there yet: canonicalize the folder and keep the name.
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| p.to_path_buf()),
        _ => std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// Counts for the summary line.
#[derive(Default)]
pub struct Summary {
    pub done: usize,
    pub not_ok: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Runs `work` on every job on `threads` threads and prints each outcome in input order:
/// text or JSON on stdout, errors on stderr. A progress bar shows on a terminal unless `json`.
pub fn run<F>(
    verb: &str,
    jobs: Vec<Job>,
    pre_failed: Rejected,
    inputs: &Inputs,
    threads: usize,
    work: F,
) -> Summary
where
    F: Fn(&Job) -> Outcome + Sync,
{
    let started = Instant::now();
    let mut summary = Summary::default();
    for (path, why) in &pre_failed {
        print_failure(inputs.json, path, why);
        summary.failed += 1;
    }
    let bar = if !inputs.json && std::io::stderr().is_terminal() && jobs.len() > 1 {
        let b = ProgressBar::new(jobs.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} [{elapsed_precise}] {wide_bar} {per_sec}",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("thread pool");
    let outcomes: Vec<Outcome> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                // A bug in one file's handler must not take the batch down with it.
                let o = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job))).unwrap_or_else(|_| {
                    Outcome::Failed("internal error while processing this file (a bug in aigc-label; please report it with the file)".into())
                });
                bar.inc(1);
                o
            })
            .collect()
    });
    bar.finish_and_clear();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Outcome::Done { text, json, ok } => {
                if inputs.json {
                    println!("{json}");
                } else {
                    println!("{text}");
                }
                summary.done += 1;
                if !ok {
                    summary.not_ok += 1;
                }
            }
            Outcome::Skipped(why) => {
                if !inputs.json {
                    eprintln!("skipped: {}: {why}", job.input.display());
                }
                summary.skipped += 1;
            }
            Outcome::Failed(why) => {
                print_failure(inputs.json, &job.input, &why);
                summary.failed += 1;
            }
        }
    }
    eprintln!(
        "{verb}: {} file(s) done, {} failed, {} skipped (unsupported) in {:.2} s",
        summary.done,
        summary.failed,
        summary.skipped,
        started.elapsed().as_secs_f64()
    );
    summary
}

fn print_failure(json: bool, path: &Path, why: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({"path": path.display().to_string(), "error": why})
        );
    }
    eprintln!("error: {}: {why}", path.display());
}
