use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Defaults read from a TOML file, so a pipeline need not repeat its provider code.
///
/// ```toml
/// producer = "001191110102MACQD9K64010000"
/// propagator = "001191440300708461136T1XGW3"
/// label = "1"
/// iptc = true
/// lenient = false
/// jobs = 8
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub producer: Option<String>,
    pub propagator: Option<String>,
    pub label: Option<String>,
    pub iptc: Option<bool>,
    pub lenient: Option<bool>,
    pub jobs: Option<usize>,
}

/// Loads `--config FILE`, else `$AIGC_LABEL_CONFIG`, else nothing.
pub fn load(explicit: Option<&Path>) -> Result<Config, String> {
    let path: Option<PathBuf> = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("AIGC_LABEL_CONFIG").map(PathBuf::from));
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read config: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        format!("{}: bad config: {msg}", path.display())
    })
}
