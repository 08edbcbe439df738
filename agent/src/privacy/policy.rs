//! The organisation's privacy policy: window title or class patterns that
//! are always hidden, from `hide = [...]` in the agent's config file
//! (`$XDG_CONFIG_HOME/assent/agent.toml`) and `--hide PATTERN` on the
//! command line. The user can hide more, never less.

use std::path::Path;

use anyhow::Context as _;

/// Largest config file read.
const MAX_FILE: u64 = 64 * 1024;
/// Most patterns, from the file and the command line together.
pub const MAX_PATTERNS: usize = 256;
/// Longest pattern, in characters.
pub const MAX_PATTERN: usize = 256;

/// The agent's config file, `agent.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentConfig {
    /// Globs (`*`, `?`) matched against each window's title and class.
    #[serde(default)]
    hide: Vec<String>,
}

/// Hide patterns, case-insensitive globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    patterns: Vec<String>,
}

impl Policy {
    /// The file's `hide` (a missing file is an empty policy) plus `extra`.
    pub fn load(file: &Path, extra: &[String]) -> anyhow::Result<Policy> {
        let mut patterns = match std::fs::metadata(file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
            Ok(m) if m.len() > MAX_FILE => {
                anyhow::bail!("{} is larger than {MAX_FILE} bytes", file.display())
            }
            Ok(_) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let config: AgentConfig = toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid agent config", file.display()))?;
                config.hide
            }
        };
        patterns.extend(extra.iter().cloned());
        Policy::new(patterns)
    }

    pub fn new(patterns: Vec<String>) -> anyhow::Result<Policy> {
        if patterns.len() > MAX_PATTERNS {
            anyhow::bail!("more than {MAX_PATTERNS} hide patterns");
        }
        for p in &patterns {
            if p.trim().is_empty() || p.chars().count() > MAX_PATTERN {
                anyhow::bail!(
                    "hide pattern {p:?} is empty or longer than {MAX_PATTERN} characters"
                );
            }
        }
        Ok(Policy {
            patterns: patterns.iter().map(|p| p.to_lowercase()).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a window with this title or class must be hidden.
    pub fn hides(&self, title: &str, class: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let (title, class) = (title.to_lowercase(), class.to_lowercase());
        self.patterns
            .iter()
            .any(|p| glob(p, &title) || (!class.is_empty() && glob(p, &class)))
    }
}

/// `*` any run of characters, `?` one character, the rest literally; the
/// whole text must match. Iterative with one backtrack point: linear-ish,
/// never recursive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_titles() {
        assert!(glob("*bank*", "my bank — firefox"));
        assert!(glob("keepass?c", "keepassxc"));
        assert!(glob("*", ""));
        assert!(!glob("bank", "my bank"));
        assert!(!glob("a*b", "acbd"));
        assert!(glob("a*b*c", "axxbyyc"));
    }

    #[test]
    fn policy_matches_title_or_class_ignoring_case() {
        let p = Policy::new(vec!["*Bank*".into(), "KeePassXC".into()]).unwrap();
        assert!(p.hides("Online BANKING", ""));
        assert!(p.hides("Passwords", "keepassxc"));
        assert!(!p.hides("Terminal", "XTerm"));
        assert!(Policy::new(vec![" ".into()]).is_err());
        assert!(Policy::new(vec!["x".repeat(MAX_PATTERN + 1)]).is_err());
    }

    #[test]
    fn the_config_file_and_flags_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        assert!(Policy::load(&file, &[]).unwrap().is_empty());
        std::fs::write(&file, "hide = [\"*bank*\"]\n").unwrap();
        let p = Policy::load(&file, &["secret*".into()]).unwrap();
        assert!(p.hides("my bank", "") && p.hides("Secret plans", ""));
        std::fs::write(&file, "hdie = []\n").unwrap();
        assert!(
            Policy::load(&file, &[]).is_err(),
            "a misspelt key is an error"
        );
    }
}
