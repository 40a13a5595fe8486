use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Puts the labels GB 45438-2025 requires on AI-generated media and checks whether media
/// carries them.
#[derive(Parser, Debug)]
#[command(name = "aigc-label", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// TOML file with defaults (producer, label, propagator, iptc, lenient, jobs). Also read from
    /// $AIGC_LABEL_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Label AI-generated files: writes the implicit metadata label (one per file).
    Mark(Box<MarkArgs>),
    /// Check files for labels and report a verdict per file. Never writes.
    Verify(VerifyArgs),
    /// As a distributing platform, add your propagator fields to each file's label.
    Propagate(PropagateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Inputs {
    /// Files, or folders with -r.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Walk folders given as inputs.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Files processed at once (default: all cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// One JSON object per file on stdout (JSON Lines) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Charset violations are warnings instead of errors.
    #[arg(long)]
    pub lenient: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Outputs {
    /// Output file (one input only).
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with_all = ["out_dir", "in_place"])]
    pub output: Option<PathBuf>,
    /// Write outputs under this folder, mirroring the input tree.
    #[arg(long, value_name = "DIR", conflicts_with = "in_place")]
    pub out_dir: Option<PathBuf>,
    /// Replace each input atomically (written to a temporary file, checked, then renamed).
    #[arg(long)]
    pub in_place: bool,
    /// Do not add IPTC DigitalSourceType=trainedAlgorithmicMedia to the XMP.
    #[arg(long)]
    pub no_iptc: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LabelArg {
    #[value(name = "1")]
    One,
    #[value(name = "2")]
    Two,
    #[value(name = "3")]
    Three,
}

impl LabelArg {
    pub fn value(self) -> aigc_core::LabelValue {
        match self {
            LabelArg::One => aigc_core::LabelValue::Is,
            LabelArg::Two => aigc_core::LabelValue::Possibly,
            LabelArg::Three => aigc_core::LabelValue::Suspected,
        }
    }
}

#[derive(Args, Debug)]
pub struct MarkArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub outputs: Outputs,
    /// ContentProducer: your provider code (also from the config file or $AIGC_PRODUCER).
    #[arg(long, value_name = "CODE")]
    pub producer: Option<String>,
    /// ProduceID for a single file (default: a fresh unique ID per file).
    #[arg(long, value_name = "ID")]
    pub produce_id: Option<String>,
    /// ReservedCode1: the producer's integrity or signature data.
    #[arg(long, value_name = "DATA")]
    pub reserved_code1: Option<String>,
    /// The Label field: 1 AI-generated, 2 possibly, 3 suspected.
    #[arg(long, value_enum)]
    pub label: Option<LabelArg>,
    /// Refused: the metadata label is mandatory for every file (GB 45438 implicit label).
    #[arg(long)]
    pub no_metadata: bool,
    /// Skip the visible label (images: drawn by default).
    #[arg(long)]
    pub no_visible: bool,
    /// Skip the watermark.
    #[arg(long)]
    pub no_watermark: bool,
    #[command(flatten)]
    pub visible: VisibleArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Watermark payload, 16 hex digits, or 32 for a 128-bit audio payload (default: the first
    /// 64 or 128 bits of SHA-256 of the ProduceID). Images carry the first 64 bits.
    #[arg(long, value_name = "HEX")]
    pub payload: Option<String>,
    /// Payload size for audio: 64 (default) or 128 bits. Images always carry 64.
    #[arg(long, value_name = "BITS", default_value_t = 64, value_parser = parse_payload_bits)]
    pub payload_bits: usize,
    /// Edge or corner of the visible label: top-left, top, top-right, left, right, bottom-left,
    /// bottom, bottom-right.
    #[arg(long, value_name = "POSITION", default_value = "bottom-right", value_parser = parse_position)]
    pub position: aigc_image::Position,
    /// Ink height of the visible label's text as a share of the shortest side (at least 0.05).
    #[arg(long, value_name = "RATIO", default_value_t = 0.06)]
    pub visible_size: f32,
    /// Opacity of the visible label (0.3-1).
    #[arg(long, value_name = "OPACITY", default_value_t = 1.0)]
    pub visible_opacity: f32,
    /// Draw the text without the dark plate behind it.
    #[arg(long)]
    pub no_plate: bool,
    #[command(flatten)]
    pub rhythm: RhythmArgs,
    #[command(flatten)]
    pub video: VideoArgs,
}

/// How videos are labeled and re-encoded.
#[derive(Args, Debug)]
pub struct VideoArgs {
    /// Video: how long the visible label shows, seconds (GB 45438: at least 2).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub visible_seconds: f64,
    /// Video: which frames show the visible label: start, end (the start and the end: the start
    /// is required) or all.
    #[arg(long, value_name = "WHERE", default_value = "start", value_parser = parse_visible_at)]
    pub visible_at: aigc_video::Span,
    /// Video: the encoder's constant rate factor (default: matched to the input's bits per pixel).
    #[arg(long, value_name = "CRF")]
    pub crf: Option<f32>,
    /// Video: the encoder's speed preset (x264/x265: ultrafast ... veryslow; default medium).
    #[arg(long, value_name = "PRESET")]
    pub preset: Option<String>,
}

fn parse_visible_at(s: &str) -> Result<aigc_video::Span, String> {
    match s {
        "start" => Ok(aigc_video::Span::Start),
        "end" => Ok(aigc_video::Span::End),
        "all" => Ok(aigc_video::Span::All),
        _ => Err("expected start, end or all".into()),
    }
}

/// The audible label for audio files: Morse "AI" (.- ..) as a tone.
#[derive(Args, Debug, Clone)]
pub struct RhythmArgs {
    /// Skip the rhythm label (audio: added by default).
    #[arg(long)]
    pub no_rhythm: bool,
    /// Where the rhythm label goes: start, end, or a time in seconds.
    #[arg(long, value_name = "WHERE", default_value = "start", value_parser = parse_rhythm_at)]
    pub rhythm_at: aigc_audio::rhythm::Placement,
    /// Mix the tone over the audio instead of inserting it with a pause.
    #[arg(long)]
    pub rhythm_mix: bool,
    /// Tone frequency in Hz (300-3000).
    #[arg(long, value_name = "HZ", default_value_t = 800.0)]
    pub rhythm_freq: f32,
    /// Length of a Morse dot in milliseconds (50-300); a dash is three dots.
    #[arg(long, value_name = "MS", default_value_t = 120.0)]
    pub rhythm_dot_ms: f32,
    /// A recorded voice prompt (any audio file, e.g. "本内容由人工智能生成") to insert as the
    /// voice label of GB 45438, besides the rhythm label (pass --no-rhythm for the voice alone).
    #[arg(long, value_name = "FILE")]
    pub voice_prompt: Option<PathBuf>,
    /// Where the voice prompt goes: start or end.
    #[arg(long, value_name = "WHERE", default_value = "start", value_parser = parse_voice_at)]
    pub voice_at: aigc_audio::rhythm::VoiceAt,
    /// Peak level of the tone in dBFS (-40 to -1).
    #[arg(long, value_name = "DB", default_value_t = -12.0, allow_negative_numbers = true)]
    pub rhythm_level: f32,
}

fn parse_payload_bits(v: &str) -> Result<usize, String> {
    match v {
        "64" => Ok(64),
        "128" => Ok(128),
        _ => Err("expected 64 or 128".to_string()),
    }
}

fn parse_voice_at(v: &str) -> Result<aigc_audio::rhythm::VoiceAt, String> {
    match v {
        "start" => Ok(aigc_audio::rhythm::VoiceAt::Start),
        "end" => Ok(aigc_audio::rhythm::VoiceAt::End),
        _ => Err("expected start or end".to_string()),
    }
}

fn parse_rhythm_at(v: &str) -> Result<aigc_audio::rhythm::Placement, String> {
    use aigc_audio::rhythm::Placement;
    match v {
        "start" => Ok(Placement::Start),
        "end" => Ok(Placement::End),
        s => s
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(Placement::At)
            .ok_or_else(|| "expected start, end or a time in seconds".to_string()),
    }
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Watermark key: a file holding 32 bytes, raw or as 64 hex digits (default: the public
    /// key documented in the README, so any platform can detect).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct VisibleArgs {
    /// Text of the visible label (drawn by mark, looked for by verify).
    #[arg(long, value_name = "TEXT", default_value = "AI生成")]
    pub text: String,
    /// Font file (TTF/OTF) for the visible label (default: the embedded Noto Sans SC subset).
    #[arg(long, value_name = "FILE")]
    pub font: Option<PathBuf>,
}

fn parse_position(name: &str) -> Result<aigc_image::Position, String> {
    aigc_image::Position::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = aigc_image::Position::ALL.iter().map(|p| p.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub visible: VisibleArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Do not look for the watermark (faster on large images).
    #[arg(long)]
    pub no_watermark: bool,
    /// Exit 1 unless every file is compliant.
    #[arg(long)]
    pub require: bool,
}

#[derive(Args, Debug)]
pub struct PropagateArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub outputs: Outputs,
    /// ContentPropagator: your platform's code (also from the config file).
    #[arg(long, value_name = "CODE")]
    pub propagator: Option<String>,
    /// PropagateID for a single file (default: a fresh unique ID per file).
    #[arg(long, value_name = "ID")]
    pub propagate_id: Option<String>,
    /// ReservedCode2: the platform's integrity or signature data.
    #[arg(long, value_name = "DATA")]
    pub reserved_code2: Option<String>,
    /// Label to write when a file has none: 2 (uploader declared AI) or 3 (suspected).
    #[arg(long, value_enum)]
    pub label: Option<LabelArg>,
}
