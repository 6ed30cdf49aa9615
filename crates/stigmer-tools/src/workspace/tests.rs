//! The workspace rules against real links on disk: every file tool × every way out.

use super::*;
use crate::{OUTPUT_LIMIT, ToolBudget, ToolOutput, execute};
use serde_json::{Value, json};
use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::time::Duration;

const SECRET: &str = "top secret";

/// A temporary directory holding `outside/` (files the tools must never reach) and the
/// workspace `ws/` with every kind of way out.
struct Fixture {
    _dir: tempfile::TempDir,
    outside: PathBuf,
    ws: Workspace,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(outside.join("secret.txt"), SECRET).unwrap();
        fs_err::write(outside.join("hard.txt"), SECRET).unwrap();
        let ws = Workspace::open(&dir.path().join("ws")).unwrap();
        let root = ws.root().to_path_buf();
        fs_err::create_dir_all(root.join("sub")).unwrap();
        fs_err::write(root.join("sub/inside.txt"), "inside text\n").unwrap();
        symlink(outside.join("secret.txt"), root.join("link_file")).unwrap();
        symlink(&outside, root.join("link_dir")).unwrap();
        symlink("../outside", root.join("link_rel_dir")).unwrap();
        symlink(outside.join("new.txt"), root.join("dangling")).unwrap();
        symlink("../outside/new_rel.txt", root.join("dangling_rel")).unwrap();
        symlink("sub/../../outside/secret.txt", root.join("link_climbing")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        std::fs::hard_link(outside.join("hard.txt"), root.join("hard")).unwrap();
        Fixture {
            _dir: dir,
            outside,
            ws,
        }
    }

    /// Nothing outside was written, created or replaced.
    fn assert_outside_untouched(&self, what: &str) {
        for name in ["secret.txt", "hard.txt"] {
            assert_eq!(
                fs_err::read_to_string(self.outside.join(name)).unwrap(),
                SECRET,
                "{what} changed outside/{name}"
            );
        }
        let mut names: Vec<String> = fs_err::read_dir(&self.outside)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["hard.txt", "secret.txt"], "{what} created a file");
    }
}

fn run(ws: &Workspace, tool: &str, arguments: &Value) -> ToolOutput {
    execute(
        ws,
        tool,
        arguments,
        &ToolBudget::new(Duration::from_secs(60)),
    )
}

/// Runs `tool` on another thread and fails (instead of hanging) when it does not answer.
fn run_bounded(ws: &Workspace, tool: &str, arguments: Value) -> ToolOutput {
    let (sender, receiver) = mpsc::channel();
    let (ws, tool_name) = (ws.clone(), tool.to_owned());
    std::thread::spawn(move || {
        let _ = sender.send(run(&ws, &tool_name, &arguments));
    });
    receiver
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{tool} did not return within 20 s"))
}

/// The arguments that make each path-taking tool use `path`.
fn calls_on(path: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("read_file", json!({"path": path})),
        ("write_file", json!({"path": path, "content": "pwned"})),
        (
            "edit_file",
            json!({"path": path, "old_string": "top", "new_string": "pwned"}),
        ),
        ("ls", json!({"path": path})),
        ("grep", json!({"pattern": "secret", "path": path})),
    ]
}

#[test]
fn paths_are_made_relative_lexically() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(&dir.path().join("ws")).unwrap();
    let root = ws.root().to_path_buf();
    assert_eq!(ws.relative("a/b.txt").unwrap(), Path::new("a/b.txt"));
    assert_eq!(ws.relative("./a/../c.txt").unwrap(), Path::new("c.txt"));
    assert_eq!(ws.relative(".").unwrap(), Path::new(""));
    assert_eq!(
        ws.relative(&root.join("x/y").to_string_lossy()).unwrap(),
        Path::new("x/y")
    );
    assert_eq!(ws.relative(&root.to_string_lossy()).unwrap(), Path::new(""));
    for escape in ["..", "../x", "a/../../x", "/etc/passwd", "/"] {
        assert_eq!(
            ws.relative(escape),
            Err(OutsideWorkspace {
                path: escape.into()
            }),
            "{escape} was allowed"
        );
    }
}

#[test]
fn every_tool_refuses_every_way_out_of_the_workspace() {
    let fixture = Fixture::new();
    let outside = fixture.outside.to_string_lossy().into_owned();
    let escapes = [
        ("parent", "../outside/secret.txt".to_owned()),
        (
            "parent in the middle",
            "sub/../../outside/secret.txt".into(),
        ),
        ("absolute", format!("{outside}/secret.txt")),
        ("absolute directory", outside.clone()),
        ("root of the file system", "/".into()),
        ("link to a file outside", "link_file".into()),
        ("link to a directory outside", "link_dir".into()),
        (
            "through a link to a directory",
            "link_dir/secret.txt".into(),
        ),
        ("new file through a link", "link_dir/new.txt".into()),
        (
            "relative link to a directory",
            "link_rel_dir/secret.txt".into(),
        ),
        ("relative link climbing out", "link_climbing".into()),
        ("dangling link outside", "dangling".into()),
        ("relative dangling link outside", "dangling_rel".into()),
        ("link to /dev/zero", "zero".into()),
    ];
    for (kind, path) in &escapes {
        for (tool, arguments) in calls_on(path) {
            let output = run_bounded(&fixture.ws, tool, arguments);
            assert!(output.is_error, "{tool} on {kind} ({path}): {output:?}");
            assert!(
                output.content.contains("outside the workspace"),
                "{tool} on {kind} ({path}): {}",
                output.content
            );
            assert!(
                !output.content.contains(SECRET),
                "{tool} leaked: {output:?}"
            );
            fixture.assert_outside_untouched(&format!("{tool} on {kind}"));
        }
    }
    // glob takes a pattern, not a path.
    for pattern in [
        "../outside/*",
        "../*",
        "sub/../../*",
        "link_dir/*",
        "link_rel_dir/**/*",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("{outside}/*")])
    {
        let output = run_bounded(&fixture.ws, "glob", json!({"pattern": pattern}));
        assert!(output.is_error, "glob {pattern}: {output:?}");
        assert!(
            output.content.contains("outside the workspace")
                || output.content.contains("inside the workspace"),
            "glob {pattern}: {}",
            output.content
        );
    }
    // A walk of the whole workspace names the links but never enters them.
    let everything = run_bounded(&fixture.ws, "glob", json!({"pattern": "**/*"}));
    assert!(!everything.is_error, "{everything:?}");
    assert!(everything.content.contains("link_dir\n"), "{everything:?}");
    assert!(!everything.content.contains("secret.txt"), "{everything:?}");
    let searched = run_bounded(&fixture.ws, "grep", json!({"pattern": "secret|text"}));
    assert_eq!(
        searched.content,
        "sub/inside.txt:1: inside text\n… skipped 1 files that cannot be read safely (hard-linked, special or unreadable)",
        "grep must skip links and hard-linked files"
    );
    let listed = run_bounded(&fixture.ws, "ls", json!({}));
    assert!(
        listed.content.contains("link_dir (symbolic link)") && !listed.content.contains(SECRET),
        "{listed:?}"
    );
    fixture.assert_outside_untouched("the walks");
}

#[test]
fn a_dangling_link_out_is_never_written_through() {
    // The reported attack: `ln -s /tmp/outside/x.txt $WS/dangling`, then write_file "dangling".
    let fixture = Fixture::new();
    for path in ["dangling", "dangling_rel"] {
        let output = run(
            &fixture.ws,
            "write_file",
            &json!({"path": path, "content": "pwned"}),
        );
        assert!(
            output.is_error && output.content.contains("outside the workspace"),
            "{output:?}"
        );
        assert!(
            fixture
                .ws
                .root()
                .join(path)
                .symlink_metadata()
                .unwrap()
                .is_symlink(),
            "the link itself stays"
        );
    }
    fixture.assert_outside_untouched("write_file on a dangling link");
}

#[test]
fn a_link_swapped_in_after_the_path_was_judged_is_not_followed() {
    let fixture = Fixture::new();
    let root = fixture.ws.root().to_path_buf();
    // Judged while `later` is an ordinary directory …
    fs_err::create_dir_all(root.join("later")).unwrap();
    let file = fixture.ws.relative("later/secret.txt").unwrap();
    let directory = fixture.ws.relative("later").unwrap();
    // … and used after it became a link out.
    fs_err::remove_dir(root.join("later")).unwrap();
    symlink(&fixture.outside, root.join("later")).unwrap();
    assert!(matches!(
        fixture.ws.write_file(&file, b"pwned"),
        Err(FileError::Outside(_))
    ));
    assert!(matches!(
        fixture.ws.open_file(&file),
        Err(FileError::Outside(_))
    ));
    assert!(matches!(
        fixture.ws.read_for_edit(&file, 1024),
        Err(FileError::Outside(_))
    ));
    let budget = ToolBudget::new(Duration::from_secs(60));
    assert!(matches!(
        fixture.ws.list(&directory, 10, &budget),
        Err(crate::ToolError::File(FileError::Outside(_)))
    ));
    assert!(matches!(
        fixture
            .ws
            .walk(&directory, &budget, &mut |_| true, &mut |_, _| Ok(())),
        Err(crate::ToolError::File(FileError::Outside(_)))
    ));
    fixture.assert_outside_untouched("the swapped link");
}

#[test]
fn a_link_swapped_back_and_forth_during_the_calls_never_lets_a_tool_out() {
    let fixture = Fixture::new();
    let root = fixture.ws.root().to_path_buf();
    fs_err::create_dir_all(root.join("flip")).unwrap();
    fs_err::write(root.join("flip/secret.txt"), "harmless").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (root, outside, stop) = (root.clone(), fixture.outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // Atomically replace `flip` by a link out, then by a directory again.
                let _ = symlink(&outside, root.join("flip.link"));
                let _ = std::fs::rename(root.join("flip"), root.join("flip.dir"));
                let _ = std::fs::rename(root.join("flip.link"), root.join("flip"));
                let _ = std::fs::rename(root.join("flip"), root.join("flip.link"));
                let _ = std::fs::rename(root.join("flip.dir"), root.join("flip"));
                let _ = std::fs::remove_file(root.join("flip.link"));
                flips += 1;
            }
            flips
        })
    };
    for round in 0..400 {
        for (tool, arguments) in calls_on(if round % 2 == 0 {
            "flip/secret.txt"
        } else {
            "flip"
        }) {
            let output = run(&fixture.ws, tool, &arguments);
            assert!(
                !output.content.contains(SECRET),
                "{tool} leaked: {output:?}"
            );
        }
        let found = run(&fixture.ws, "glob", &json!({"pattern": "flip/*"}));
        assert!(!found.content.contains("hard.txt"), "{found:?}");
    }
    stop.store(true, Ordering::SeqCst);
    assert!(swapper.join().unwrap() > 0);
    fixture.assert_outside_untouched("the racing swaps");
}

#[test]
fn a_hard_link_to_a_file_outside_is_neither_read_nor_written_through() {
    let fixture = Fixture::new();
    for (tool, arguments) in [
        ("read_file", json!({"path": "hard"})),
        (
            "edit_file",
            json!({"path": "hard", "old_string": "top", "new_string": "pwned"}),
        ),
        ("grep", json!({"pattern": "secret", "path": "hard"})),
    ] {
        let output = run(&fixture.ws, tool, &arguments);
        assert!(
            output.is_error && output.content.contains("2 hard links"),
            "{tool}: {output:?}"
        );
        assert!(
            !output.content.contains(SECRET),
            "{tool} leaked: {output:?}"
        );
    }
    // write_file replaces the name in the workspace with a new file; the other name keeps its
    // content.
    let written = run(
        &fixture.ws,
        "write_file",
        &json!({"path": "hard", "content": "mine"}),
    );
    assert!(!written.is_error, "{written:?}");
    assert_eq!(
        fs_err::read_to_string(fixture.ws.root().join("hard")).unwrap(),
        "mine"
    );
    fixture.assert_outside_untouched("write_file on a hard link");
    // Now a file of its own, it can be read and edited.
    let edited = run(
        &fixture.ws,
        "edit_file",
        &json!({"path": "hard", "old_string": "mine", "new_string": "ours"}),
    );
    assert!(!edited.is_error, "{edited:?}");
}

#[test]
fn links_that_stay_inside_are_followed_for_reading_but_never_written_through() {
    let fixture = Fixture::new();
    let root = fixture.ws.root().to_path_buf();
    symlink("sub", root.join("alias_dir")).unwrap();
    symlink("sub/inside.txt", root.join("alias_file")).unwrap();
    symlink("sub/missing.txt", root.join("alias_missing")).unwrap();
    let read = run(&fixture.ws, "read_file", &json!({"path": "alias_file"}));
    assert_eq!(read.content, "     1\tinside text");
    let through_dir = run(
        &fixture.ws,
        "write_file",
        &json!({"path": "alias_dir/new.txt", "content": "n"}),
    );
    assert!(!through_dir.is_error, "{through_dir:?}");
    assert_eq!(
        fs_err::read_to_string(root.join("sub/new.txt")).unwrap(),
        "n"
    );
    assert_eq!(
        run(&fixture.ws, "ls", &json!({"path": "alias_dir"})).content,
        "inside.txt\nnew.txt"
    );
    for path in ["alias_file", "alias_missing"] {
        for (tool, arguments) in [
            ("write_file", json!({"path": path, "content": "x"})),
            (
                "edit_file",
                json!({"path": path, "old_string": "inside", "new_string": "x"}),
            ),
        ] {
            let output = run(&fixture.ws, tool, &arguments);
            assert!(
                output.is_error && output.content.contains("is a symbolic link (to sub/"),
                "{tool} {path}: {output:?}"
            );
        }
    }
    assert_eq!(
        fs_err::read_to_string(root.join("sub/inside.txt")).unwrap(),
        "inside text\n"
    );
    assert!(!root.join("sub/missing.txt").exists());
}

#[test]
fn special_files_are_refused_or_skipped_without_blocking() {
    let fixture = Fixture::new();
    let root = fixture.ws.root().to_path_buf();
    nix::unistd::mkfifo(
        &root.join("sub/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for (tool, arguments) in [
        ("read_file", json!({"path": "sub/fifo"})),
        (
            "edit_file",
            json!({"path": "sub/fifo", "old_string": "a", "new_string": "b"}),
        ),
        ("write_file", json!({"path": "sub/fifo", "content": "x"})),
        ("grep", json!({"pattern": "x", "path": "sub/fifo"})),
    ] {
        let output = run_bounded(&fixture.ws, tool, arguments);
        assert!(
            output.is_error && output.content.contains("special file"),
            "{tool}: {output:?}"
        );
    }
    let searched = run_bounded(
        &fixture.ws,
        "grep",
        json!({"pattern": "text", "path": "sub"}),
    );
    assert_eq!(
        searched.content,
        "sub/inside.txt:1: inside text\n… skipped 1 files that cannot be read safely (hard-linked, special or unreadable)"
    );
    assert_eq!(
        run_bounded(&fixture.ws, "ls", json!({"path": "sub"})).content,
        "fifo (special file)\ninside.txt"
    );
    // `/dev/zero` through a link is outside; a directory is not a file either.
    let zero = run_bounded(&fixture.ws, "read_file", json!({"path": "zero"}));
    assert!(zero.content.contains("outside the workspace"), "{zero:?}");
    let directory = run_bounded(&fixture.ws, "read_file", json!({"path": "sub"}));
    assert!(directory.content.contains("a directory"), "{directory:?}");
}

#[test]
fn walks_end_in_a_workspace_with_link_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(&dir.path().join("ws")).unwrap();
    let root = ws.root().to_path_buf();
    symlink(".", root.join("a")).unwrap();
    symlink(".", root.join("b")).unwrap();
    fs_err::create_dir_all(root.join("d")).unwrap();
    symlink("..", root.join("d/up")).unwrap();
    fs_err::write(root.join("d/f.txt"), "needle\n").unwrap();
    let found = run_bounded(&ws, "glob", json!({"pattern": "**/*"}));
    assert_eq!(found.content, "a\nb\nd\nd/f.txt\nd/up");
    let searched = run_bounded(&ws, "grep", json!({"pattern": "needle"}));
    assert_eq!(searched.content, "d/f.txt:1: needle");
    // Through a cycle link named explicitly, the walk still ends.
    let through = run_bounded(&ws, "glob", json!({"pattern": "a/**/*.txt"}));
    assert_eq!(through.content, "a/d/f.txt");
}

#[test]
fn a_cancelled_or_expired_budget_stops_every_walking_and_reading_tool() {
    let fixture = Fixture::new();
    let cancelled = ToolBudget::new(Duration::from_secs(60));
    cancelled.cancel();
    let expired = ToolBudget::new(Duration::ZERO);
    for (tool, arguments) in [
        ("glob", json!({"pattern": "**/*"})),
        ("grep", json!({"pattern": "x"})),
        ("ls", json!({"path": "sub"})),
        ("read_file", json!({"path": "sub/inside.txt"})),
    ] {
        let output = execute(&fixture.ws, tool, &arguments, &cancelled);
        assert_eq!(output.content, format!("Error: `{tool}` was cancelled"));
        let output = execute(&fixture.ws, tool, &arguments, &expired);
        assert_eq!(
            output.content,
            format!(
                "Error: `{tool}` took longer than 0 s and was stopped; narrow the path or pattern and try again"
            )
        );
    }
}

#[test]
fn answers_and_reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(&dir.path().join("ws")).unwrap();
    let root = ws.root().to_path_buf();
    let line = "x".repeat(99);
    let text: String = (0..20_000).map(|_| format!("{line}\n")).collect();
    fs_err::write(root.join("long.txt"), &text).unwrap();
    let read = run(&ws, "read_file", &json!({"path": "long.txt"}));
    assert!(read.content.len() <= OUTPUT_LIMIT, "{}", read.content.len());
    let next = read.content.lines().count();
    assert!(
        read.content.ends_with(&format!(
            "… {} more lines; read on with offset {next}",
            20_000 - (next - 1)
        )),
        "{}",
        &read.content[read.content.len() - 80..]
    );
    let window = run(
        &ws,
        "read_file",
        &json!({"path": "long.txt", "offset": 19_999, "limit": 5}),
    );
    assert_eq!(
        window.content,
        format!("{:>6}\t{line}\n{:>6}\t{line}", 19_999, 20_000)
    );
    let past = run(
        &ws,
        "read_file",
        &json!({"path": "long.txt", "offset": 20_001}),
    );
    assert_eq!(
        past.content,
        "long.txt has 20000 lines; offset 20001 is past its end"
    );
    let searched = run(&ws, "grep", &json!({"pattern": "x"}));
    assert!(searched.content.len() <= OUTPUT_LIMIT);
    assert!(
        searched
            .content
            .ends_with("… and 19800 more matches; narrow the pattern or the path"),
        "{}",
        &searched.content[searched.content.len() - 80..]
    );
    // One huge line is cut, and a file over the read limit is read in part and not searched.
    let huge = fs_err::File::create(root.join("huge.bin")).unwrap();
    huge.set_len(crate::READ_BYTE_LIMIT + 1).unwrap();
    drop(huge);
    let read = run(&ws, "read_file", &json!({"path": "huge.bin"}));
    assert!(read.content.len() <= OUTPUT_LIMIT, "{}", read.content.len());
    assert!(
        read.content.contains("(line cut)") && read.content.contains("only its first"),
        "{}",
        &read.content[read.content.len() - 200..]
    );
    let searched = run(&ws, "grep", &json!({"pattern": "zzz"}));
    assert!(
        searched.content.contains("skipped 1 files larger than"),
        "{searched:?}"
    );
    let edited = run(
        &ws,
        "edit_file",
        &json!({"path": "huge.bin", "old_string": "a", "new_string": "b"}),
    );
    assert!(
        edited.is_error
            && edited
                .content
                .contains("larger than the 8388608 bytes edit_file edits"),
        "{edited:?}"
    );
    for index in 0..1100 {
        fs_err::write(root.join(format!("f{index:04}.md")), "").unwrap();
    }
    let found = run(&ws, "glob", &json!({"pattern": "*.md"}));
    assert_eq!(found.content.lines().count(), 201);
    assert!(
        found
            .content
            .ends_with("… and 900 more; use a narrower pattern"),
        "{found:?}"
    );
    let listed = run(&ws, "ls", &json!({}));
    assert_eq!(listed.content.lines().count(), 1001);
    assert!(
        listed
            .content
            .ends_with("… and 102 more entries; use glob with a pattern to find specific ones"),
        "{listed:?}"
    );
}

#[test]
fn a_new_session_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("workspace").join("ses-1");
    // The umask is per process: set it wide open for this creation only, as a careless
    // environment would, and check the mode does not depend on it.
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let opened = Workspace::open(&root);
    nix::sys::stat::umask(previous);
    opened.unwrap();
    for path in [&root, &dir.path().join("workspace")] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
    }
}
