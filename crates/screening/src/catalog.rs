//! The `[agent]` configuration and the screening catalog: the loaded scripts plus the choice
//! of agent, turned into one [`Dialog`] per call.
//!
//! Both transports use [`Screenings::dialog`]: the ConversationRelay shell (`/relay`) with the
//! call's `setup.customParameters`, and the Media Streams speech pipeline with the stream's
//! `start.customParameters`. The `screening` parameter picks the script (else
//! [`AgentConfig::default_screening`]); `candidateId`, `firstName` and `jobTitle` fill it in.
//!
//! Scripts come from [`AgentConfig::screenings_dir`]. A relative directory is resolved against
//! the directory of the configuration file when there is one, else the working directory
//! ([`AgentConfig::resolve_screenings_dir`]). When the directory is the default one and does not
//! exist there (the binary started from elsewhere), the two scripts shipped in
//! `config/screenings/` are used from the binary ([`SHIPPED_SCRIPTS`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::script::{ScriptError, ScriptLibrary};
use super::{ScreeningAgent, Script};
use voxbridge_brain::dialog::{Dialog, Scripted};

/// The default of [`AgentConfig::screenings_dir`].
pub const DEFAULT_SCREENINGS_DIR: &str = "config/screenings";

/// The scripts shipped in `config/screenings/`, compiled in as a fallback.
pub const SHIPPED_SCRIPTS: [(&str, &str); 2] = [
    (
        "config/screenings/default.toml (built in)",
        include_str!("../../../config/screenings/default.toml"),
    ),
    (
        "config/screenings/driver.toml (built in)",
        include_str!("../../../config/screenings/driver.toml"),
    ),
];

/// `[agent]`: which screening agent runs calls and where its scripts are.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory of screening scripts (`*.toml`). Relative paths are resolved against the
    /// configuration file's directory, else the working directory. Default
    /// `config/screenings`; when that default is missing, the shipped scripts built into the
    /// binary are used.
    pub screenings_dir: String,
    /// Script used when a call has no `screening` parameter. Default `default`.
    pub default_screening: String,
    /// `[agent.llm]`: the optional LLM screening agent.
    pub llm: LlmAgentConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            screenings_dir: DEFAULT_SCREENINGS_DIR.to_owned(),
            default_screening: "default".to_owned(),
            llm: LlmAgentConfig::default(),
        }
    }
}

/// `[agent.llm]`: run the screening script through an OpenAI-compatible LLM with tool calls,
/// falling back to the scripted agent when the LLM fails mid-call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmAgentConfig {
    /// Use the LLM agent instead of the scripted one. Default `false`.
    pub enabled: bool,
    /// Sampling temperature. Default 0.3.
    pub temperature: f32,
    /// Longest wait for the first event of an answer, and between events, before the agent
    /// falls back to the script. Key `timeout_ms`, default 4000.
    #[serde(rename = "timeout_ms", with = "voxbridge_config::millis")]
    pub timeout: std::time::Duration,
    /// Invalid tool calls tolerated in one call before falling back. Default 2.
    pub max_invalid_tool_calls: u32,
}

impl Default for LlmAgentConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            temperature: 0.3,
            timeout: std::time::Duration::from_secs(4),
            max_invalid_tool_calls: 2,
        }
    }
}

/// Where the scripts were loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptsOrigin {
    /// A directory on disk.
    Dir(PathBuf),
    /// The scripts compiled into the binary.
    BuiltIn,
}

impl AgentConfig {
    /// `screenings_dir` as a path: absolute as given, relative to `config_file`'s directory
    /// when a configuration file was given, else relative to the working directory.
    pub fn resolve_screenings_dir(&self, config_file: Option<&Path>) -> PathBuf {
        let dir = Path::new(&self.screenings_dir);
        if dir.is_absolute() {
            return dir.to_path_buf();
        }
        match config_file.and_then(Path::parent) {
            Some(base) if !base.as_os_str().is_empty() => base.join(dir),
            _ => dir.to_path_buf(),
        }
    }

    /// Loads the scripts (see the module docs for the lookup) and checks that
    /// `default_screening` exists. Errors name the file and key.
    pub fn load_scripts(
        &self,
        config_file: Option<&Path>,
    ) -> Result<(ScriptLibrary, ScriptsOrigin), ScriptError> {
        let dir = self.resolve_screenings_dir(config_file);
        let (library, origin) = if !dir.exists() && self.screenings_dir == DEFAULT_SCREENINGS_DIR {
            (
                ScriptLibrary::from_sources(SHIPPED_SCRIPTS)?,
                ScriptsOrigin::BuiltIn,
            )
        } else {
            (ScriptLibrary::load_dir(&dir)?, ScriptsOrigin::Dir(dir))
        };
        library.get(&self.default_screening)?;
        Ok((library, origin))
    }
}

/// Builds a call's LLM screening dialog (installed when `[agent.llm] enabled`).
pub type LlmDialogBuilder = Arc<dyn Fn(Arc<Script>) -> Box<dyn Dialog> + Send + Sync + 'static>;

/// The loaded scripts and the agent choice: one [`Dialog`] per call. Cheap to clone.
#[derive(Clone)]
pub struct Screenings {
    library: Arc<ScriptLibrary>,
    default_screening: String,
    llm: Option<LlmDialogBuilder>,
}

impl std::fmt::Debug for Screenings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screenings")
            .field("scripts", &self.library.ids().collect::<Vec<_>>())
            .field("default_screening", &self.default_screening)
            .field("llm", &self.llm.is_some())
            .finish()
    }
}

impl Screenings {
    /// The scripted agent over `library`; `default_screening` must be one of its ids.
    pub fn new(library: ScriptLibrary, default_screening: &str) -> Result<Self, ScriptError> {
        library.get(default_screening)?;
        Ok(Self {
            library: Arc::new(library),
            default_screening: default_screening.to_owned(),
            llm: None,
        })
    }

    /// Uses `builder` (the LLM agent) instead of the scripted agent for every call.
    #[must_use]
    pub fn with_llm(mut self, builder: LlmDialogBuilder) -> Self {
        self.llm = Some(builder);
        self
    }

    /// The scripts.
    pub fn library(&self) -> &ScriptLibrary {
        &self.library
    }

    /// The agent's name for logs and the registry.
    pub fn agent_name(&self) -> &'static str {
        if self.llm.is_some() {
            "screening-llm"
        } else {
            "screening"
        }
    }

    /// The script a call with these custom parameters runs.
    pub fn script_for(
        &self,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Arc<Script>, ScriptError> {
        self.library.select(parameters, &self.default_screening)
    }

    /// A fresh dialog for one call. It starts once it gets
    /// [`voxbridge_brain::conversation::ConversationInput::Started`] with the same parameters.
    pub fn dialog(
        &self,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Box<dyn Dialog>, ScriptError> {
        let script = self.script_for(parameters)?;
        Ok(match &self.llm {
            Some(builder) => builder(script),
            None => Box::new(Scripted::new(ScreeningAgent::new(script))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scripts_are_built_in_and_valid() {
        let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).expect("shipped scripts load");
        assert_eq!(library.ids().collect::<Vec<_>>(), ["default", "driver"]);
    }

    #[test]
    fn relative_dir_is_resolved_against_the_config_file() {
        let config = AgentConfig::default();
        assert_eq!(
            config.resolve_screenings_dir(Some(Path::new("/etc/voxbridge/voxbridge.toml"))),
            Path::new("/etc/voxbridge/config/screenings")
        );
        assert_eq!(
            config.resolve_screenings_dir(None),
            Path::new("config/screenings")
        );
        let absolute = AgentConfig {
            screenings_dir: "/srv/scripts".into(),
            ..AgentConfig::default()
        };
        assert_eq!(
            absolute.resolve_screenings_dir(Some(Path::new("/etc/v.toml"))),
            Path::new("/srv/scripts")
        );
    }

    #[test]
    fn missing_default_dir_falls_back_to_the_built_in_scripts() {
        let config = AgentConfig::default();
        let (library, origin) = config
            .load_scripts(Some(Path::new("/nonexistent-voxbridge/v.toml")))
            .expect("built-in fallback");
        assert_eq!(origin, ScriptsOrigin::BuiltIn);
        assert_eq!(library.len(), 2);
    }

    #[test]
    fn missing_configured_dir_is_an_error() {
        let config = AgentConfig {
            screenings_dir: "/nonexistent-voxbridge/scripts".into(),
            ..AgentConfig::default()
        };
        assert!(matches!(
            config.load_scripts(None),
            Err(ScriptError::Io { .. })
        ));
    }

    #[test]
    fn bad_script_names_file_and_key() {
        let dir = std::env::temp_dir().join(format!("voxbridge-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.toml"),
            SHIPPED_SCRIPTS[0].1.replace("max = 60", "max = -5"),
        )
        .unwrap();
        let config = AgentConfig {
            screenings_dir: dir.display().to_string(),
            ..AgentConfig::default()
        };
        let message = config.load_scripts(None).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(message.contains("bad.toml"), "{message}");
        assert!(message.contains("questions[2]"), "{message}");
    }

    #[test]
    fn unknown_default_screening_is_an_error() {
        let config = AgentConfig {
            default_screening: "nope".into(),
            ..AgentConfig::default()
        };
        assert!(matches!(
            config.load_scripts(None),
            Err(ScriptError::Unknown { .. })
        ));
        let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).unwrap();
        assert!(Screenings::new(library, "nope").is_err());
    }

    #[test]
    fn dialog_uses_the_screening_parameter() {
        let library = ScriptLibrary::from_sources(SHIPPED_SCRIPTS).unwrap();
        let screenings = Screenings::new(library, "default").unwrap();
        let driver = BTreeMap::from([("screening".to_owned(), "driver".to_owned())]);
        assert_eq!(screenings.script_for(&driver).unwrap().id, "driver");
        assert_eq!(
            screenings.script_for(&BTreeMap::new()).unwrap().id,
            "default"
        );
        let unknown = BTreeMap::from([("screening".to_owned(), "x".to_owned())]);
        assert!(screenings.dialog(&unknown).is_err());
        assert!(!screenings.dialog(&driver).unwrap().is_ended());
    }
}
