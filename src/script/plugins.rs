//! The scripts directory, read the way ntopng 4.x reads its plugins.
//!
//! In: `scripts.dir`. Out: a [`Tree`]: the plain `*.lua` scripts at its top,
//! and, from plugin directories at any depth (ntopng 4.0 puts them at
//! `plugins/<plugin>/`, 4.2 at `plugins/<area>/<category>/<plugin>/`), their
//! flow user scripts (`user_scripts/flow/*.lua`), status and alert
//! definitions (`status_definitions/`, `alert_definitions/`), locales
//! (`locales/*.lua`) and module directories (`modules/`). User scripts for
//! other subjects (host, interface, network, system, SNMP, syslog) are listed
//! as skipped; GUI files (`web_gui/`, `templates/`, `ts_schemas/`, …) are
//! not read. Two flow scripts of one name are a clash, reported with both
//! paths. The walk is bounded (depth, files) so a hostile tree cannot stall it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ScriptError;
use super::host::ScriptSource;

/// Deepest directory level searched for plugins.
const MAX_DEPTH: usize = 10;
/// Most files read from one tree.
const MAX_FILES: usize = 10_000;

/// A status or alert definition file.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The file's stem (`status_udp_unidirectional`, `alert_web_mining`).
    pub key: String,
    pub path: PathBuf,
    pub source: Vec<u8>,
    /// The plugin directory it belongs to.
    pub plugin: PathBuf,
}

/// What a scripts directory holds.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Plain scripts, then plugin flow scripts, each name once.
    pub scripts: Vec<ScriptSource>,
    pub statuses: Vec<Definition>,
    pub alerts: Vec<Definition>,
    /// Locale files (`locales/<lang>.lua`).
    pub locales: Vec<Definition>,
    /// Plugins' `modules/` directories, searched by `require`.
    pub module_dirs: Vec<PathBuf>,
    /// Plugin directories found (those with a `manifest.lua` or `user_scripts/`).
    pub plugins: Vec<PathBuf>,
    /// User scripts of other subjects: (subject, path).
    pub skipped: Vec<(String, PathBuf)>,
    /// Plugins their manifest disables (`disabled = true`): not loaded at all.
    pub disabled: Vec<PathBuf>,
    /// Flow scripts whose name an earlier one already has.
    pub clashes: Vec<ScriptError>,
}

fn read(path: &Path, name: &str) -> Result<Vec<u8>, ScriptError> {
    std::fs::read(path).map_err(|e| ScriptError::Load {
        script: name.to_string(),
        detail: format!("{}: {e}", path.display()),
    })
}

/// `*.lua` files of `dir`, sorted.
fn lua_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lua") && p.is_file())
        .collect();
    v.sort();
    v
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> Option<String> {
    p.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
}

struct Walk {
    tree: Tree,
    /// Script name → where it came from.
    seen: BTreeMap<String, PathBuf>,
    files: usize,
}

impl Walk {
    fn budget(&mut self, dir: &Path) -> Result<(), ScriptError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(ScriptError::Dir {
                path: dir.display().to_string(),
                detail: format!("more than {MAX_FILES} files under the scripts directory"),
            });
        }
        Ok(())
    }

    fn script(&mut self, path: PathBuf, plugin: Option<&Path>) -> Result<(), ScriptError> {
        let Some(name) = stem(&path) else {
            return Ok(());
        };
        self.budget(&path)?;
        if let Some(first) = self.seen.get(&name) {
            self.tree.clashes.push(ScriptError::Load {
                script: name,
                detail: format!(
                    "two scripts have this name: {} and {} (the first one runs)",
                    first.display(),
                    path.display()
                ),
            });
            return Ok(());
        }
        let source = read(&path, &name)?;
        self.seen.insert(name.clone(), path.clone());
        self.tree.scripts.push(ScriptSource {
            name,
            path,
            source,
            plugin: plugin.map(Path::to_path_buf),
        });
        Ok(())
    }

    fn definitions(&mut self, dir: &Path, plugin: &Path) -> Result<Vec<Definition>, ScriptError> {
        let mut out = Vec::new();
        for path in lua_files(dir) {
            let Some(key) = stem(&path) else { continue };
            self.budget(&path)?;
            let source = read(&path, &key)?;
            out.push(Definition {
                key,
                path,
                source,
                plugin: plugin.to_path_buf(),
            });
        }
        Ok(out)
    }

    /// A directory below the top: a plugin, or a folder holding plugins.
    fn dir(&mut self, dir: &Path, depth: usize) -> Result<(), ScriptError> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let subs = subdirs(dir);
        let is_plugin = dir.join("manifest.lua").is_file()
            || subs.iter().any(|s| {
                s.file_name()
                    .is_some_and(|n| n == "user_scripts" || n == "status_definitions")
            });
        if is_plugin && manifest_disables(&dir.join("manifest.lua")) {
            self.tree.disabled.push(dir.to_path_buf());
            return Ok(());
        }
        if is_plugin {
            self.tree.plugins.push(dir.to_path_buf());
        }
        for sub in subs {
            let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match (is_plugin, name) {
                (true, "user_scripts") => {
                    for subject in subdirs(&sub) {
                        let s = subject
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("")
                            .to_string();
                        for f in lua_files(&subject) {
                            if s == "flow" {
                                self.script(f, Some(dir))?;
                            } else {
                                self.tree.skipped.push((s.clone(), f));
                            }
                        }
                    }
                }
                (true, "status_definitions") => {
                    let d = self.definitions(&sub, dir)?;
                    self.tree.statuses.extend(d);
                }
                (true, "alert_definitions") => {
                    let d = self.definitions(&sub, dir)?;
                    self.tree.alerts.extend(d);
                }
                (true, "locales") => {
                    let d = self.definitions(&sub, dir)?;
                    self.tree.locales.extend(d);
                }
                (true, "modules") => self.tree.module_dirs.push(sub.clone()),
                // GUI, time series, endpoints and the rest: not flow scripting
                (true, _) => {}
                (false, _) => self.dir(&sub, depth + 1)?,
            }
        }
        Ok(())
    }
}

/// Whether a plugin's `manifest.lua` (a plain table, as ntopng requires)
/// sets `disabled = true`, outside comments.
fn manifest_disables(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .any(|l| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            l.contains("disabled=true")
        })
}

/// Reads `dir`: plain scripts at the top, plugins below. A missing directory is empty.
pub fn scan(dir: &Path) -> Result<Tree, ScriptError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tree::default()),
        Err(e) => {
            return Err(ScriptError::Dir {
                path: dir.display().to_string(),
                detail: e.to_string(),
            });
        }
        Ok(m) if !m.is_dir() => {
            return Err(ScriptError::Dir {
                path: dir.display().to_string(),
                detail: "not a directory".into(),
            });
        }
        Ok(_) => {}
    }
    let mut w = Walk {
        tree: Tree::default(),
        seen: BTreeMap::new(),
        files: 0,
    };
    // the directory itself may be one plugin
    let top_is_plugin = dir.join("user_scripts").is_dir();
    if !top_is_plugin {
        for f in lua_files(dir) {
            if f.file_name().is_some_and(|n| n == "manifest.lua") {
                continue;
            }
            w.script(f, None)?;
        }
        for sub in subdirs(dir) {
            w.dir(&sub, 1)?;
        }
    } else {
        w.dir(dir, 0)?;
    }
    Ok(w.tree)
}
