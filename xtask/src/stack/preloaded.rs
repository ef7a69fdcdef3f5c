//! Preloaded clusters, kept for later stacks: a table of millions of people, and its search
//! index, take minutes to build and seconds to copy.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::workspace::repo_root;

/// What a preloaded cluster is made from, with the replay that generates the people: a change
/// to any of these makes a new one. A change to what `rinha index-search` derives (the short
/// grams, the filter of pieces) with none to these needs the kept clusters removed
/// (`.stack/preloaded`).
const INPUTS: [&str; 3] = ["sql/schema.sql", "sql/search-index.sql", "docker/postgresql.conf"];

/// Where the cluster holding `count` people (with the search index, if `indexed`) is kept,
/// made by `replay` from today's inputs, for a stack whose clients come from `clients`.
pub fn cache_dir(
    sh: &Shell,
    count: u64,
    indexed: bool,
    replay: &Path,
    clients: Option<&str>,
) -> Result<PathBuf> {
    let root = repo_root();
    let mut files: Vec<PathBuf> = INPUTS.iter().map(|input| root.join(input)).collect();
    files.push(replay.to_owned());
    let sums = cmd!(sh, "sha256sum {files...}").quiet().read()?;
    let digest = cmd!(sh, "sha256sum").stdin(format!("{sums}\n{clients:?}")).quiet().read()?;
    let index = if indexed { "-indexed" } else { "" };
    Ok(super::state_dir().join(format!("preloaded/{count}{index}-{}", &digest[..12])))
}

/// Copies the cluster in `from` to `to`, owners and modes kept.
pub fn copy(sh: &Shell, from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    cmd!(sh, "cp -a --reflink=auto {from} {to}")
        .quiet()
        .run()
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

/// Keeps the stopped cluster in `data_dir` as `cache`, replacing any older copy whole.
pub fn keep(sh: &Shell, data_dir: &Path, cache: &Path) -> Result<()> {
    let partial = cache.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    copy(sh, data_dir, &partial)?;
    std::fs::rename(&partial, cache)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), cache.display()))
}
