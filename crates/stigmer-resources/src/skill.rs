//! Skills from folders: a folder with `SKILL.md` (name and description in its front matter)
//! and any other files, stored content-hashed.

use crate::kind::Kind;
use crate::model::{API_VERSION, Metadata, Resource, SkillSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why a folder is not a skill. `folder` is the folder as the user named it.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("{folder}: a skill folder must contain SKILL.md")]
    MissingSkillMd { folder: String },
    #[error(
        "{folder}/SKILL.md:1: missing front matter: start the file with `---`, then `name:` and \
         `description:`, then `---`"
    )]
    MissingFrontMatter { folder: String },
    #[error("{folder}/SKILL.md: invalid front matter: {error}")]
    InvalidFrontMatter {
        folder: String,
        #[source]
        error: serde_yaml_ng::Error,
    },
    #[error("{folder}/SKILL.md: the front matter has no `name`")]
    MissingName { folder: String },
    #[error("{folder}/SKILL.md: the front matter has no `description`")]
    MissingDescription { folder: String },
    /// The spec could not be turned into JSON (not expected: it holds only strings).
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
}

/// Builds a Skill resource from a folder's files (relative path → text). `folder` names the
/// folder in errors.
pub fn skill_from_files(
    folder: &str,
    files: BTreeMap<String, String>,
) -> Result<Resource, SkillError> {
    let skill_md = files
        .get("SKILL.md")
        .ok_or_else(|| SkillError::MissingSkillMd {
            folder: folder.to_owned(),
        })?;
    let front_matter = front_matter(skill_md).ok_or_else(|| SkillError::MissingFrontMatter {
        folder: folder.to_owned(),
    })?;
    let fields: BTreeMap<String, serde_yaml_ng::Value> = serde_yaml_ng::from_str(front_matter)
        .map_err(|error| SkillError::InvalidFrontMatter {
            folder: folder.to_owned(),
            error,
        })?;
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let name = text("name").ok_or_else(|| SkillError::MissingName {
        folder: folder.to_owned(),
    })?;
    let description = text("description").ok_or_else(|| SkillError::MissingDescription {
        folder: folder.to_owned(),
    })?;
    let spec = SkillSpec {
        description,
        files,
        content_hash: None,
    };
    let mut resource = Resource {
        api_version: API_VERSION.to_owned(),
        kind: Kind::Skill,
        metadata: Metadata {
            name,
            ..Metadata::default()
        },
        spec: serde_json::to_value(spec)?,
        status: None,
    };
    seal(&mut resource);
    Ok(resource)
}

/// Sets `spec.contentHash` from the files (never trusted from input).
pub(crate) fn seal(resource: &mut Resource) {
    let mut hasher = Sha256::new();
    if let Some(files) = resource.spec.get("files").and_then(|f| f.as_object()) {
        // serde_json's map is ordered by key, so the hash does not depend on input order.
        for (path, content) in files {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(content.as_str().unwrap_or_default().as_bytes());
            hasher.update([0]);
        }
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    resource.spec["contentHash"] = serde_json::Value::from(format!("sha256:{hex}"));
}

fn front_matter(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---")?;
    let rest = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\r\n"))?;
    let end = rest.find("\n---")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_becomes_a_hashed_skill() {
        let mut files = BTreeMap::new();
        files.insert(
            "SKILL.md".to_owned(),
            "---\nname: pdf-tools\ndescription: Work with PDFs\n---\n# Use\n".to_owned(),
        );
        files.insert("scripts/run.sh".to_owned(), "echo hi\n".to_owned());
        let skill = skill_from_files("pdf-tools", files.clone()).unwrap();
        assert_eq!(skill.metadata.name, "pdf-tools");
        assert_eq!(skill.spec["description"], "Work with PDFs");
        let hash = skill.spec["contentHash"].as_str().unwrap().to_owned();
        assert!(hash.starts_with("sha256:"));
        files.insert("scripts/run.sh".to_owned(), "echo bye\n".to_owned());
        let changed = skill_from_files("pdf-tools", files).unwrap();
        assert_ne!(changed.spec["contentHash"].as_str().unwrap(), hash);
    }

    #[test]
    fn missing_pieces_are_named() {
        let error = skill_from_files("x", BTreeMap::new()).unwrap_err();
        assert!(
            matches!(error, SkillError::MissingSkillMd { .. }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "x: a skill folder must contain SKILL.md");
        let with_skill_md = |text: &str| {
            let mut files = BTreeMap::new();
            files.insert("SKILL.md".to_owned(), text.to_owned());
            skill_from_files("x", files).unwrap_err()
        };
        let error = with_skill_md("# no front matter\n");
        assert!(
            matches!(error, SkillError::MissingFrontMatter { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "x/SKILL.md:1: missing front matter: start the file with `---`, then `name:` and \
             `description:`, then `---`"
        );
        let error = with_skill_md("---\nname: [\n---\n");
        assert!(
            error
                .to_string()
                .starts_with("x/SKILL.md: invalid front matter: "),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some(), "{error:?}");
        let error = with_skill_md("---\ndescription: d\n---\n");
        assert_eq!(
            error.to_string(),
            "x/SKILL.md: the front matter has no `name`"
        );
        let error = with_skill_md("---\nname: n\n---\n");
        assert_eq!(
            error.to_string(),
            "x/SKILL.md: the front matter has no `description`"
        );
    }
}
