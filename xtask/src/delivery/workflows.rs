//! The GitHub workflows: valid against the workflow schema, and every action pinned to a commit.

use std::path::{Path, PathBuf};

use super::{check_jsonschema, display, files_with_extension, problems, read};

fn workflow_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let directory = root.join(".github/workflows");
    let mut files = files_with_extension(&directory, "yml")?;
    files.extend(files_with_extension(&directory, "yaml")?);
    if files.is_empty() {
        return Err("no workflows in .github/workflows".to_owned());
    }
    Ok(files)
}

pub fn match_schema(root: &Path) -> Result<(), String> {
    check_jsonschema("vendor.github-workflows", &workflow_files(root)?)
}

/// Every `uses:` names an action by full commit hash, with its version in a comment
/// (`owner/repo@<40 hex> # v1.2.3`): a tag can be moved, a commit cannot.
pub fn actions_are_pinned(root: &Path) -> Result<(), String> {
    let mut unpinned = Vec::new();
    for file in workflow_files(root)? {
        for (number, line) in read(&file)?.lines().enumerate() {
            if !is_pinned_or_not_a_use(line) {
                unpinned.push(format!(
                    "{}:{}: {}",
                    display(root, &file),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    problems(unpinned)
}

fn is_pinned_or_not_a_use(line: &str) -> bool {
    let Some(reference) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else {
        return true;
    };
    let (action, comment) = reference.split_once('#').unwrap_or((reference, ""));
    let action = action.trim();
    if action.starts_with("./") || action.starts_with("docker://") {
        return true;
    }
    let pinned = action.split_once('@').is_some_and(|(_, commit)| {
        commit.len() == 40 && commit.bytes().all(|byte| byte.is_ascii_hexdigit())
    });
    pinned && comment.trim().starts_with('v')
}

#[cfg(test)]
mod tests {
    use super::is_pinned_or_not_a_use;

    #[test]
    fn accepts_only_commit_pins_with_a_version_comment() {
        let pinned =
            "      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0";
        assert!(is_pinned_or_not_a_use(pinned));
        assert!(is_pinned_or_not_a_use("      - run: cargo test"));
        assert!(is_pinned_or_not_a_use(
            "      - uses: ./.github/actions/local"
        ));
        assert!(!is_pinned_or_not_a_use("      - uses: actions/checkout@v5"));
        assert!(!is_pinned_or_not_a_use(
            "        uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8"
        ));
    }
}
