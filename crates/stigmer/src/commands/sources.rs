//! What `stigmer apply -f` reads: manifest files, folders of them (recursively), skill folders
//! and standard input or a pipe (`-f -`, `-f <(…)`).
//!
//! Every read is bounded, so no input — `/dev/zero` on stdin, a skill file linked to it — can
//! grow the CLI without limit; only regular files, folders and pipes are read, so a device or a
//! FIFO inside a folder never blocks or streams forever; a skill folder holds only what is
//! inside it: a symbolic link that leads out of it is refused and named, and a link that leads
//! back into a folder already read (a loop) ends the walk with an error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use stigmer_resources::{Resource, Source, skill_from_files};

/// The most one manifest file, or standard input, may hold.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// The most all the files of one skill folder may hold together.
pub const MAX_SKILL_BYTES: u64 = 8 * 1024 * 1024;
/// The most files one skill folder may hold.
pub const MAX_SKILL_FILES: usize = 1_000;

/// What the `-f` arguments named: manifest texts, and skills built from folders (with the
/// name of their `SKILL.md` for errors).
#[derive(Debug, Default)]
pub struct Inputs {
    pub sources: Vec<Source>,
    pub skills: Vec<(String, Resource)>,
}

/// Reads every `-f` argument; `-` reads `stdin`. Returns what was read, or every problem found
/// (each naming its path).
pub fn read_inputs(paths: &[PathBuf], stdin: &mut dyn Read) -> Result<Inputs, Vec<String>> {
    let mut inputs = Inputs::default();
    let mut problems = Vec::new();
    let mut visited = BTreeSet::new();
    for path in paths {
        if path == Path::new("-") {
            match read_bounded(stdin, "<stdin>", MAX_MANIFEST_BYTES) {
                Ok(text) => inputs.sources.push(Source {
                    name: "<stdin>".into(),
                    text,
                }),
                Err(problem) => problems.push(problem),
            }
        } else {
            collect(path, true, &mut visited, &mut inputs, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

/// Reads at most `limit` bytes of UTF-8 text from `reader`; more is an error naming `shown`.
fn read_bounded(reader: &mut dyn Read, shown: &str, limit: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{shown}: cannot read: {error}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{shown}: larger than {}, the most one input may hold; split it into several files",
            show_bytes(limit)
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8 text"))
}

fn show_bytes(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

/// Reads one path: a file or pipe (any name when `explicit`, `*.yaml`/`*.yml` in folders), a
/// skill folder, or a folder to walk. `visited` holds the folders already walked (by real
/// path), so a link loop ends with a problem instead of running forever.
fn collect(
    path: &Path,
    explicit: bool,
    visited: &mut BTreeSet<PathBuf>,
    inputs: &mut Inputs,
    problems: &mut Vec<String>,
) {
    let shown = path.display().to_string();
    let metadata = match fs_err::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(format!("{shown}: {}", error.kind()));
            return;
        }
    };
    let file_type = metadata.file_type();
    if file_type.is_file() || file_type.is_fifo() {
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if !explicit && !is_yaml {
            return;
        }
        if !explicit && file_type.is_fifo() {
            problems.push(format!(
                "{shown}: a pipe inside a folder is not read; name it with -f to read it"
            ));
            return;
        }
        let read = fs_err::File::open(path)
            .map_err(|error| format!("{shown}: cannot read: {}", error.kind()))
            .and_then(|mut file| read_bounded(&mut file, &shown, MAX_MANIFEST_BYTES));
        match read {
            Ok(text) => inputs.sources.push(Source { name: shown, text }),
            Err(problem) => problems.push(problem),
        }
        return;
    }
    if !file_type.is_dir() {
        if explicit {
            problems.push(format!(
                "{shown}: not a file, a folder or a pipe; apply reads manifests from those (or - for stdin)"
            ));
        }
        return;
    }
    let real = match fs_err::canonicalize(path) {
        Ok(real) => real,
        Err(error) => {
            problems.push(format!("{shown}: {}", error.kind()));
            return;
        }
    };
    if !visited.insert(real) {
        problems.push(format!(
            "{shown}: leads back to a folder already read (a symbolic link loop?); remove the link"
        ));
        return;
    }
    if path.join("SKILL.md").exists() {
        let skill = read_skill_folder(path)
            .and_then(|files| skill_from_files(&shown, files).map_err(|error| error.to_string()));
        match skill {
            Ok(skill) => inputs.skills.push((format!("{shown}/SKILL.md"), skill)),
            Err(problem) => problems.push(problem),
        }
        return;
    }
    let mut entries: Vec<PathBuf> = match fs_err::read_dir(path) {
        Ok(entries) => entries.flatten().map(|entry| entry.path()).collect(),
        Err(error) => {
            problems.push(format!("{shown}: cannot read: {}", error.kind()));
            return;
        }
    };
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if !hidden {
            collect(&entry, false, visited, inputs, problems);
        }
    }
}

/// Every file below a skill folder, by relative path with `/` separators. Links are followed
/// only to what is inside the folder; hidden entries are left out.
pub fn read_skill_folder(root: &Path) -> Result<BTreeMap<String, String>, String> {
    let shown_root = root.display().to_string();
    let real_root = fs_err::canonicalize(root).map_err(|error| format!("{shown_root}: {error}"))?;
    let mut files = BTreeMap::new();
    let mut budget = MAX_SKILL_BYTES;
    let mut visited = BTreeSet::from([real_root.clone()]);
    // (path as walked, its path relative to the root)
    let mut pending = vec![(root.to_path_buf(), PathBuf::new())];
    while let Some((dir, relative_dir)) = pending.pop() {
        let mut entries: Vec<_> = fs_err::read_dir(&dir)
            .map_err(|error| error.to_string())?
            .flatten()
            .collect();
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let relative = relative_dir.join(&name);
            let shown = path.display();
            let link = fs_err::symlink_metadata(&path)
                .map_err(|error| error.to_string())?
                .file_type()
                .is_symlink();
            // The real path: for a link, where it leads (which must be inside the folder).
            let real = fs_err::canonicalize(&path).map_err(|_| {
                format!("{shown}: a symbolic link that leads nowhere; remove it or fix its target")
            })?;
            if link && !real.starts_with(&real_root) {
                return Err(format!(
                    "{shown}: a symbolic link to {}, outside the skill folder {shown_root}; a skill \
                     holds only the files inside its folder: copy the file in instead",
                    real.display()
                ));
            }
            let metadata = fs_err::metadata(&real).map_err(|error| error.to_string())?;
            if metadata.is_dir() {
                if !visited.insert(real) {
                    return Err(format!(
                        "{shown}: a symbolic link that leads back to a folder already read (a \
                         loop); remove it"
                    ));
                }
                pending.push((path, relative));
                continue;
            }
            if !metadata.is_file() {
                return Err(format!(
                    "{shown}: not a regular file (a device, pipe or socket); skills hold text \
                     files only"
                ));
            }
            if files.len() == MAX_SKILL_FILES {
                return Err(format!(
                    "{shown_root}: more than {MAX_SKILL_FILES} files, the most a skill may hold"
                ));
            }
            let mut file = fs_err::File::open(&real).map_err(|error| error.to_string())?;
            let mut bytes = Vec::new();
            (&mut file)
                .take(budget + 1)
                .read_to_end(&mut bytes)
                .map_err(|error| format!("{shown}: cannot read: {error}"))?;
            if bytes.len() as u64 > budget {
                return Err(format!(
                    "{shown_root}: its files hold more than {}, the most a skill may hold",
                    show_bytes(MAX_SKILL_BYTES)
                ));
            }
            budget -= bytes.len() as u64;
            let text = String::from_utf8(bytes).map_err(|_| {
                format!("{shown}: skills hold text files only; this file is not UTF-8")
            })?;
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.insert(key, text);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn skill_dir(root: &Path) -> PathBuf {
        let skill = root.join("skill");
        fs_err::create_dir_all(skill.join("scripts")).unwrap();
        fs_err::write(
            skill.join("SKILL.md"),
            "---\nname: tools\ndescription: Tools\n---\n",
        )
        .unwrap();
        fs_err::write(skill.join("scripts/run.sh"), "echo hi\n").unwrap();
        skill
    }

    fn read(paths: &[&Path]) -> Result<Inputs, Vec<String>> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        read_inputs(&paths, &mut std::io::empty())
    }

    #[test]
    fn an_endless_stdin_is_refused_at_the_bound() {
        let paths = [PathBuf::from("-")];
        let problems = read_inputs(&paths, &mut std::io::repeat(b'a')).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("<stdin>: larger than 16 MiB"),
            "{problems:?}"
        );
        let inputs = read_inputs(&paths, &mut "kind: Agent\n".as_bytes()).unwrap();
        assert_eq!(inputs.sources[0].text, "kind: Agent\n");
    }

    #[test]
    fn a_device_is_refused_and_a_pipe_is_read_like_stdin() {
        let problems = read(&[Path::new("/dev/zero")]).unwrap_err();
        assert!(
            problems[0].contains("/dev/zero: not a file, a folder or a pipe"),
            "{problems:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs_err::write(&fifo, "kind: Agent\n").unwrap())
        };
        let inputs = read(&[&fifo]).unwrap();
        writer.join().unwrap();
        assert_eq!(inputs.sources[0].text, "kind: Agent\n");
        assert_eq!(inputs.sources[0].name, fifo.display().to_string());
    }

    #[test]
    fn special_files_in_folders_never_block() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("stuck.yaml"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let problems = read(&[dir.path()]).unwrap_err();
        assert!(
            problems[0].contains("stuck.yaml: a pipe inside a folder is not read"),
            "{problems:?}"
        );
        let skill = skill_dir(dir.path());
        symlink("/dev/zero", skill.join("zero.txt")).unwrap();
        let error = read_skill_folder(&skill).unwrap_err();
        assert!(
            error.contains("zero.txt: a symbolic link to /dev/zero, outside the skill folder"),
            "{error}"
        );
    }

    #[test]
    fn a_skill_folder_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_dir(dir.path());
        // A link to a file inside the folder is fine.
        symlink("scripts/run.sh", skill.join("run-link.sh")).unwrap();
        let files = read_skill_folder(&skill).unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(names, ["SKILL.md", "run-link.sh", "scripts/run.sh"]);
        let inputs = read(&[&skill]).unwrap();
        assert_eq!(inputs.skills.len(), 1);
    }

    #[test]
    fn links_out_of_a_skill_folder_are_refused_and_named() {
        for target in ["/etc/passwd", "/etc"] {
            let dir = tempfile::tempdir().unwrap();
            let skill = skill_dir(dir.path());
            symlink(target, skill.join("scripts/out")).unwrap();
            let error = read_skill_folder(&skill).unwrap_err();
            assert!(
                error.contains(&format!(
                    "scripts/out: a symbolic link to {target}, outside the skill folder"
                )),
                "{error}"
            );
            // Through apply's reader too: the problem is reported, nothing is read.
            let problems = read(&[&skill]).unwrap_err();
            assert!(
                problems[0].contains("outside the skill folder"),
                "{problems:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_dir(dir.path());
        symlink(dir.path().join("nowhere"), skill.join("dangling")).unwrap();
        let error = read_skill_folder(&skill).unwrap_err();
        assert!(
            error.contains("dangling: a symbolic link that leads nowhere"),
            "{error}"
        );
    }

    #[test]
    fn link_loops_end_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_dir(dir.path());
        symlink(".", skill.join("s1")).unwrap();
        symlink(".", skill.join("s2")).unwrap();
        let error = read_skill_folder(&skill).unwrap_err();
        assert!(
            error.contains("s1: a symbolic link that leads back to a folder already read"),
            "{error}"
        );
        // A folder of manifests with a loop ends too.
        let manifests = dir.path().join("manifests");
        fs_err::create_dir_all(&manifests).unwrap();
        fs_err::write(manifests.join("a.yaml"), "kind: Agent\n").unwrap();
        symlink(".", manifests.join("again")).unwrap();
        let problems = read(&[&manifests]).unwrap_err();
        assert!(
            problems[0].contains("again: leads back to a folder already read"),
            "{problems:?}"
        );
    }

    #[test]
    fn skills_are_bounded_in_size_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_dir(dir.path());
        let big = vec![b'a'; (MAX_SKILL_BYTES / 2) as usize];
        fs_err::write(skill.join("one.txt"), &big).unwrap();
        fs_err::write(skill.join("two.txt"), &big).unwrap();
        let error = read_skill_folder(&skill).unwrap_err();
        assert!(error.contains("more than 8 MiB"), "{error}");

        let skill = skill_dir(&dir.path().join("many"));
        for index in 0..MAX_SKILL_FILES {
            fs_err::write(skill.join(format!("f{index}.txt")), "x").unwrap();
        }
        let error = read_skill_folder(&skill).unwrap_err();
        assert!(error.contains("more than 1000 files"), "{error}");
    }
}
