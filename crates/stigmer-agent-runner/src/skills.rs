//! Skills with progressive disclosure: an agent's skills are written into the session
//! workspace (`.stigmer/skills/<name>/`, files read-only, `scripts/*` executable) and the
//! system prompt lists only each skill's name, description and path, within a budget. The
//! model reads a skill's body with `read_file` when it needs it, so a skill costs a line of
//! the prompt until it is used (the original system inlined every SKILL.md whole).

use std::path::{Path, PathBuf};
use stigmer_resources::SkillSpec;
use stigmer_tools::{FileError, Workspace};

/// Where skills go in the session workspace.
pub const SKILLS_DIR: &str = ".stigmer/skills";
/// Bytes the skills' listing may take in the system prompt.
pub const LISTING_BUDGET: usize = 8 * 1024;
/// The file in a written skill's folder that records which content it holds, so an unchanged
/// skill is not written again by every runner that builds the execution's tools.
const CONTENT_MARK: &str = ".content-hash";

/// The skills' part of the system prompt, and whether descriptions had to be shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub text: String,
    pub skills: usize,
    pub shortened: usize,
}

/// Writes each skill into the workspace (skipping one whose content is there already).
pub fn write_skills(
    workspace: &Workspace,
    skills: &[(String, SkillSpec)],
) -> Result<(), FileError> {
    for (name, skill) in skills {
        let folder = skill_folder(name);
        let hash = skill.content_hash.clone().unwrap_or_default();
        let mark = folder.join(CONTENT_MARK);
        let written = workspace
            .read_for_edit(&mark, 1024)
            .is_ok_and(|held| !hash.is_empty() && held == hash.as_bytes());
        if written {
            continue;
        }
        workspace.remove_dir_all(&folder)?;
        for (relative, content) in &skill.files {
            let path = folder.join(relative);
            workspace.write_file(&path, content.as_bytes())?;
            let executable = Path::new(relative).starts_with("scripts");
            workspace.set_mode(&path, if executable { 0o555 } else { 0o444 })?;
        }
        workspace.write_file(&mark, hash.as_bytes())?;
    }
    Ok(())
}

/// Where a skill's folder is, relative to the workspace.
pub fn skill_folder(name: &str) -> PathBuf {
    Path::new(SKILLS_DIR).join(name)
}

/// The listing of `skills` for the system prompt: a heading, how to use skills, then one line
/// per skill, `- name: description (path)`. Beyond [`LISTING_BUDGET`] descriptions are shortened
/// evenly (never a skill dropped: the name and path always stay).
pub fn listing(skills: &[(String, SkillSpec)], budget: usize) -> Listing {
    const HEADING: &str = "## Skills\nSkills are folders of instructions (and sometimes scripts) in your workspace. When a task matches a skill's description, read its SKILL.md with read_file first and follow it.\n";
    let line = |name: &str, description: &str| {
        let path = skill_folder(name).join("SKILL.md");
        if description.is_empty() {
            format!("- {name} ({})\n", path.display())
        } else {
            format!("- {name}: {description} ({})\n", path.display())
        }
    };
    let descriptions: Vec<String> = skills
        .iter()
        .map(|(_, skill)| one_line(&skill.description))
        .collect();
    let full: usize = HEADING.len()
        + skills
            .iter()
            .zip(&descriptions)
            .map(|((name, _), description)| line(name, description).len())
            .sum::<usize>();
    let mut shortened = 0;
    let kept: Vec<String> = if full <= budget {
        descriptions
    } else {
        // What is left for descriptions once the heading, names and paths are in, shared evenly.
        let fixed: usize = HEADING.len()
            + skills
                .iter()
                .map(|(name, _)| line(name, "").len() + 2)
                .sum::<usize>();
        let each = budget.saturating_sub(fixed) / skills.len().max(1);
        descriptions
            .into_iter()
            .map(|description| {
                if description.len() <= each {
                    description
                } else {
                    shortened += 1;
                    shorten(&description, each)
                }
            })
            .collect()
    };
    let mut text = String::from(HEADING);
    for ((name, _), description) in skills.iter().zip(&kept) {
        text.push_str(&line(name, description));
    }
    Listing {
        text,
        skills: skills.len(),
        shortened,
    }
}

/// A description on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `limit` bytes of `text` (on a character boundary), ending with "…" when cut.
fn shorten(text: &str, limit: usize) -> String {
    const MARK: &str = "…";
    if limit <= MARK.len() {
        return String::new();
    }
    let mut end = limit - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", text[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn skill(description: &str, files: &[(&str, &str)]) -> SkillSpec {
        let files: BTreeMap<String, String> = files
            .iter()
            .map(|(path, content)| (path.to_string(), content.to_string()))
            .collect();
        SkillSpec {
            description: description.into(),
            content_hash: Some(format!("sha256:{}", files.len())),
            files,
        }
    }

    #[test]
    fn skills_are_written_read_only_with_executable_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Workspace::open(dir.path()).unwrap();
        let skills = vec![(
            "release-notes".to_owned(),
            skill(
                "Write release notes",
                &[
                    ("SKILL.md", "---\nname: release-notes\n---\nSteps"),
                    ("scripts/collect.sh", "#!/bin/sh\necho hi\n"),
                ],
            ),
        )];
        write_skills(&workspace, &skills).unwrap();
        let root = dir.path().join(".stigmer/skills/release-notes");
        assert_eq!(
            std::fs::read_to_string(root.join("SKILL.md")).unwrap(),
            "---\nname: release-notes\n---\nSteps"
        );
        let mode = |path: &str| {
            std::fs::metadata(root.join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("SKILL.md"), 0o444);
        assert_eq!(mode("scripts/collect.sh"), 0o555);
        // Written again (another runner, a retried step): unchanged content is left alone, new
        // content replaces the folder whole.
        write_skills(&workspace, &skills).unwrap();
        let changed = vec![(
            "release-notes".to_owned(),
            skill("Write release notes", &[("SKILL.md", "v2")]),
        )];
        write_skills(&workspace, &changed).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("SKILL.md")).unwrap(),
            "v2"
        );
        assert!(!root.join("scripts").exists());
    }

    #[test]
    fn the_listing_names_each_skill_and_its_path_without_the_body() {
        let skills = vec![(
            "pdf-tools".to_owned(),
            skill("Work with\n PDFs", &[("SKILL.md", "SECRET BODY")]),
        )];
        let listing = listing(&skills, LISTING_BUDGET);
        assert!(
            listing
                .text
                .contains("- pdf-tools: Work with PDFs (.stigmer/skills/pdf-tools/SKILL.md)\n"),
            "{}",
            listing.text
        );
        assert!(!listing.text.contains("SECRET BODY"));
        assert_eq!(listing.shortened, 0);
    }

    #[test]
    fn beyond_the_budget_descriptions_are_shortened_and_no_skill_is_dropped() {
        let long = "x".repeat(1000);
        let skills: Vec<(String, SkillSpec)> = (0..40)
            .map(|i| (format!("skill-{i}"), skill(&long, &[("SKILL.md", "")])))
            .collect();
        let listing = listing(&skills, LISTING_BUDGET);
        assert!(
            listing.text.len() <= LISTING_BUDGET,
            "{} bytes",
            listing.text.len()
        );
        assert_eq!(listing.shortened, 40);
        for i in 0..40 {
            assert!(listing.text.contains(&format!("- skill-{i}: x")));
            assert!(
                listing
                    .text
                    .contains(&format!(".stigmer/skills/skill-{i}/SKILL.md"))
            );
        }
        assert!(listing.text.contains('…'));
    }
}
