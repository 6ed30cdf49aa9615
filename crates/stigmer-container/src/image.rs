//! The agent-runner image: `stigmer-agent-runner:<tag>`, holding the very binary that runs
//! the daemon.
//!
//! By default it has no base image: the build context is the binary, the shared libraries the
//! running process has mapped (so exactly what it links), the ELF interpreter at the path the
//! binary names, the host's CA bundle, and Debian's static busybox as `/bin/busybox` with a link
//! per applet, because the shell tool and stdio MCP servers run inside the container and need
//! `sh` and core utilities; the Dockerfile is `FROM scratch`, a non-root user with a home, a
//! writable `/tmp`, and the runner role as entry point.
//!
//! With `agent_runner.image_base` (say, an image with Node or Python) the image is that base,
//! pulled when absent, plus the binary in [`BASE_DIR`] beside its own libraries and ELF
//! interpreter: the copy names `/opt/stigmer/ld.so` as its interpreter and `$ORIGIN` as its
//! library path, so it never loads the base's C library, needs no variable that the base's
//! programs would inherit, and `/proc/self/exe` is still the stigmer binary (the runner
//! re-executes itself). The host's CA bundle goes to its usual path there too (the base may
//! have none), and the base brings the shell: no busybox is added.
//!
//! An image is only used when it holds this binary (label [`LABEL_BINARY`]) laid out the way
//! this build lays it out (label [`LABEL_IMAGE`]: [`IMAGE_LAYOUT`] and the base), so neither a
//! rebuilt binary, nor an image of an older layout, nor one of another base is ever run.

use crate::{Engine, EngineError, LABEL_BINARY, LABEL_COMPONENT, LABEL_IMAGE, LABEL_VERSION};
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, PushImageOptions, TagImageOptions,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The local repository name of the image.
pub const IMAGE_NAME: &str = "stigmer-agent-runner";
/// The user the image runs as (the conventional "nonroot").
pub const IMAGE_USER: &str = "65532:65532";
/// Where the binary lives in the image (with a base, a link to [`BASE_BINARY`]).
pub const IMAGE_BINARY: &str = "/usr/local/bin/stigmer";
/// The home of [`IMAGE_USER`] in an image without a base.
pub const IMAGE_HOME: &str = "/home/nonroot";
/// What a build puts in the image, as a number in [`LABEL_IMAGE`]: raised whenever that
/// changes, so that an image an older build made from the same binary is not used.
/// 1: the binary and its libraries; 2: also busybox, `/etc/passwd` and a home, or a base.
pub const IMAGE_LAYOUT: u32 = 2;
/// Debian's static busybox (package `busybox-static`) on the build host.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
/// With a base image: the directory holding the binary, its libraries and its interpreter.
pub const BASE_DIR: &str = "/opt/stigmer";
/// With a base image: the binary.
pub const BASE_BINARY: &str = "/opt/stigmer/stigmer";
/// With a base image: the ELF interpreter the binary names.
const BASE_INTERPRETER: &str = "/opt/stigmer/ld.so";
/// Where the host's CA bundle goes, with a base too (which may have none): one of the paths
/// `rustls-native-certs` reads.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `stigmer-agent-runner:<version>`: the image without a base.
pub fn local_reference(version: &str) -> String {
    format!("{IMAGE_NAME}:{version}")
}

/// `<registry>/stigmer/agent-runner:<tag>` (the tag is [`image_tag`]).
pub fn registry_reference(registry: &str, tag: &str) -> String {
    format!(
        "{}/stigmer/agent-runner:{tag}",
        registry.trim_end_matches('/')
    )
}

/// The tag of an image: the version, and with a base a hash of it (`0.1.0-base-1a2b3c4d5e6f`),
/// so that an image built for one base is never taken for another's.
pub fn image_tag(version: &str, base: Option<&str>) -> String {
    match base {
        None => version.to_owned(),
        Some(base) => {
            let digest = Sha256::digest(base.as_bytes());
            let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("{version}-base-{short}")
        }
    }
}

/// The digest that identifies a binary (first 16 bytes of its SHA-256, hex).
pub fn binary_digest(binary: &Path) -> std::io::Result<String> {
    let mut file = fs_err::File::open(binary)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What to ensure.
#[derive(Clone, Debug)]
pub struct ImagePlan {
    pub version: String,
    /// The binary to put in the image (the running one).
    pub binary: PathBuf,
    /// Where to pull from, e.g. `ghcr.io` or `127.0.0.1:5000`; no pull when `None`.
    pub registry: Option<String>,
    /// The image to build from (`agent_runner.image_base`); no base when `None`.
    pub base: Option<String>,
    /// The static busybox to copy into an image without a base ([`HOST_BUSYBOX`]).
    pub busybox: PathBuf,
}

impl ImagePlan {
    /// The image of `binary` without a base, no registry, the host's busybox: what
    /// `stigmer image build` makes.
    pub fn new(version: impl Into<String>, binary: impl Into<PathBuf>) -> ImagePlan {
        ImagePlan {
            version: version.into(),
            binary: binary.into(),
            registry: None,
            base: None,
            busybox: HOST_BUSYBOX.into(),
        }
    }

    /// [`image_tag`] of this plan.
    pub fn tag(&self) -> String {
        image_tag(&self.version, self.base.as_deref())
    }

    /// `stigmer-agent-runner:<tag>`.
    pub fn reference(&self) -> String {
        format!("{IMAGE_NAME}:{}", self.tag())
    }

    /// The value of [`LABEL_IMAGE`]: the layout and the base.
    pub fn recipe(&self) -> String {
        match &self.base {
            None => format!("layout {IMAGE_LAYOUT}, no base"),
            Some(base) => format!("layout {IMAGE_LAYOUT}, from {base}"),
        }
    }
}

/// How the image was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Local,
    Pulled,
    Built,
}

/// An image ready to run.
#[derive(Clone, Debug)]
pub struct EnsuredImage {
    pub reference: String,
    pub source: ImageSource,
    pub took: Duration,
}

/// Why no image could be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "no agent-runner image: {}",
        attempts.join("; ")
    )]
    Exhausted { attempts: Vec<String> },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// Why one pull, build or push of an image failed. Its text is the engine's (or the file
/// system's) own message: [`ImageError::Exhausted`] and `stigmer image` quote it after their
/// context.
#[derive(Debug, thiserror::Error)]
pub enum ImageStepError {
    /// The engine's API call failed.
    #[error(transparent)]
    Engine(#[from] bollard::errors::Error),
    /// The engine reported an error in its progress stream.
    #[error("{0}")]
    Reported(String),
    /// The build context (the image's files) could not be read.
    #[error(transparent)]
    Context(#[from] std::io::Error),
    #[error(transparent)]
    Tag(#[from] EngineError),
    #[error(
        "no busybox at {}: the agent-runner image needs a shell and core utilities; install \
         Debian's busybox-static (`apt-get install busybox-static`), or set \
         agent_runner.image_base to an image that has a shell",
        path.display()
    )]
    NoBusybox { path: PathBuf },
    #[error(
        "{} is not a static busybox ({reason}); install Debian's busybox-static \
         (`apt-get install busybox-static`)",
        path.display()
    )]
    BadBusybox { path: PathBuf, reason: String },
    #[error("agent_runner.image_base {base:?} is not an image reference")]
    InvalidBase { base: String },
    #[error("cannot pull the base image {base} (agent_runner.image_base): {reason}")]
    Base { base: String, reason: String },
    #[error("cannot place {} in {BASE_DIR} for a base image: {reason}", binary.display())]
    Relocation { binary: PathBuf, reason: String },
}

impl ImageStepError {
    fn reported(message: Option<String>) -> ImageStepError {
        ImageStepError::Reported(message.unwrap_or_else(|| "unknown error".into()))
    }
}

/// Why an image's labels are not those of this binary laid out as `recipe` says, `None` when
/// they are.
fn mismatch(labels: &HashMap<String, String>, digest: &str, recipe: &str) -> Option<String> {
    if labels.get(LABEL_BINARY).map(String::as_str) != Some(digest) {
        return Some("holds another build of the binary".into());
    }
    match labels.get(LABEL_IMAGE) {
        Some(found) if found == recipe => None,
        Some(found) => Some(format!("was made as {found}, not {recipe}")),
        None => Some(format!("was made by an older build, not as {recipe}")),
    }
}

/// The name and the tag (or digest) of an image reference; `latest` when it has neither. A
/// colon before the last slash is a registry's port, not a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// Whether `base` can go into a Dockerfile's `FROM` and a label as it is.
fn is_image_reference(base: &str) -> bool {
    !base.is_empty()
        && !base.starts_with(['-', '/', ':', '@'])
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
}

impl Engine {
    /// The id of a local image: containers are created from it, so a later re-tag of the
    /// reference (another build of the same version) cannot change what a restart runs.
    pub async fn image_id(&self, reference: &str) -> Option<String> {
        self.docker.inspect_image(reference).await.ok()?.id
    }

    /// The labels of a local image, `None` when there is no such image.
    async fn image_labels(&self, reference: &str) -> Option<HashMap<String, String>> {
        let inspected = self.docker.inspect_image(reference).await.ok()?;
        Some(
            inspected
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default(),
        )
    }

    /// A local image with this binary laid out as planned, else a pull of it, else a local
    /// build.
    pub async fn ensure_image(&self, plan: &ImagePlan) -> Result<EnsuredImage, ImageError> {
        let started = Instant::now();
        let local = plan.reference();
        let recipe = plan.recipe();
        let digest = binary_digest(&plan.binary).map_err(|error| ImageError::Io {
            path: plan.binary.display().to_string(),
            error,
        })?;
        let mut attempts = Vec::new();
        match self.image_labels(&local).await {
            Some(labels) => match mismatch(&labels, &digest, &recipe) {
                None => {
                    return Ok(EnsuredImage {
                        reference: local,
                        source: ImageSource::Local,
                        took: started.elapsed(),
                    });
                }
                Some(why) => attempts.push(format!("local image {local} {why}")),
            },
            None => attempts.push(format!("no local image {local}")),
        }
        if let Some(registry) = &plan.registry {
            let remote = registry_reference(registry, &plan.tag());
            match self.pull(&remote).await {
                Ok(()) => match self.image_labels(&remote).await {
                    Some(labels) => match mismatch(&labels, &digest, &recipe) {
                        None => match self.tag(&remote, &local).await {
                            Ok(()) => {
                                return Ok(EnsuredImage {
                                    reference: local,
                                    source: ImageSource::Pulled,
                                    took: started.elapsed(),
                                });
                            }
                            Err(error) => attempts.push(format!("pulled {remote}, but: {error}")),
                        },
                        Some(why) => attempts.push(format!("pulled {remote}, but it {why}")),
                    },
                    None => attempts.push(format!("pulled {remote}, but cannot inspect it")),
                },
                Err(reason) => attempts.push(format!("pull of {remote} failed: {reason}")),
            }
        } else {
            attempts
                .push("no registry configured to pull from (agent_runner.image_registry)".into());
        }
        match self.build_planned_image(plan, &digest).await {
            Ok(_) => Ok(EnsuredImage {
                reference: local,
                source: ImageSource::Built,
                took: started.elapsed(),
            }),
            Err(reason) => {
                attempts.push(format!("local build failed: {reason}"));
                Err(ImageError::Exhausted { attempts })
            }
        }
    }

    async fn pull(&self, reference: &str) -> Result<(), ImageStepError> {
        let (image, tag) = split_reference(reference);
        let mut progress = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.to_owned()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(item) = progress.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(ImageStepError::reported(detail.message));
            }
        }
        Ok(())
    }

    async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        let (repo, tag) = split_reference(target);
        self.docker
            .tag_image(
                source,
                Some(TagImageOptions {
                    repo: Some(repo.to_owned()),
                    tag: Some(tag.to_owned()),
                }),
            )
            .await
            .map_err(|error| EngineError::Refused {
                action: format!("tag {source} as {target}"),
                reason: error.to_string(),
            })
    }

    /// Builds `stigmer-agent-runner:<version>` from `binary`, with no base.
    pub async fn build_image(
        &self,
        binary: &Path,
        version: &str,
        digest: &str,
    ) -> Result<(), ImageStepError> {
        self.build_planned_image(&ImagePlan::new(version, binary), digest)
            .await
            .map(|_| ())
    }

    /// Builds the image of `plan` (pulling its base when the engine does not have it) and
    /// returns its reference. `digest` is the binary's, for [`LABEL_BINARY`].
    pub async fn build_planned_image(
        &self,
        plan: &ImagePlan,
        digest: &str,
    ) -> Result<String, ImageStepError> {
        if let Some(base) = &plan.base {
            if !is_image_reference(base) {
                return Err(ImageStepError::InvalidBase { base: base.clone() });
            }
            if self.docker.inspect_image(base).await.is_err() {
                self.pull(base)
                    .await
                    .map_err(|error| ImageStepError::Base {
                        base: base.clone(),
                        reason: error.to_string(),
                    })?;
            }
        }
        // Reading the binary and its libraries (and running busybox) blocks: not on a worker
        // thread of the runtime.
        let (for_context, digest_for_context) = (plan.clone(), digest.to_owned());
        let context =
            tokio::task::spawn_blocking(move || build_context(&for_context, &digest_for_context))
                .await
                .map_err(|error| ImageStepError::Context(std::io::Error::other(error)))??;
        let reference = plan.reference();
        let mut progress = self.docker.build_image(
            BuildImageOptions {
                dockerfile: "Dockerfile".into(),
                t: Some(reference.clone()),
                rm: true,
                forcerm: true,
                ..Default::default()
            },
            None,
            Some(bollard::body_full(context.into())),
        );
        let mut last = String::new();
        while let Some(item) = progress.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(ImageStepError::reported(detail.message));
            }
            if let Some(stream) = info.stream {
                last = stream.trim().to_owned();
            }
        }
        tracing::info!(image = %reference, last = %last, "Image built.");
        Ok(reference)
    }

    /// Tags the local image for `registry` and pushes it.
    pub async fn push_image(
        &self,
        registry: &str,
        version: &str,
    ) -> Result<String, ImageStepError> {
        let remote = registry_reference(registry, version);
        self.tag(&local_reference(version), &remote).await?;
        let (image, tag) = split_reference(&remote);
        let mut progress = self.docker.push_image(
            image,
            Some(PushImageOptions {
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
        );
        while let Some(item) = progress.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(ImageStepError::reported(detail.message));
            }
        }
        Ok(remote)
    }

    /// Size of a local image in bytes.
    pub async fn image_size(&self, reference: &str) -> Option<u64> {
        let inspected = self.docker.inspect_image(reference).await.ok()?;
        inspected.size.map(|size| size as u64)
    }
}

/// The binary and what it needs to run, in an image without a base: (path in the image, path
/// on the host).
pub fn image_files(binary: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = vec![(IMAGE_BINARY.to_owned(), binary.to_path_buf())];
    let mut seen = BTreeSet::new();
    for library in mapped_libraries()? {
        if seen.insert(library.clone()) {
            files.push((library.display().to_string(), library));
        }
    }
    if let Some(interpreter) = elf_interpreter(binary)? {
        let real = fs_err::canonicalize(&interpreter)?;
        files.push((interpreter, real));
    }
    let bundle = Path::new(CA_BUNDLE);
    if bundle.exists() {
        files.push((CA_BUNDLE.to_owned(), bundle.to_path_buf()));
    }
    Ok(files)
}

/// One entry of the image's file system (`rootfs.tar`, added in one layer with its owners).
#[derive(Debug)]
enum Entry {
    File {
        inside: String,
        host: PathBuf,
        mode: u32,
    },
    Bytes {
        inside: String,
        data: Vec<u8>,
        mode: u32,
    },
    Directory {
        inside: String,
        mode: u32,
        owner: u64,
    },
    Link {
        inside: String,
        target: String,
    },
}

impl Entry {
    fn inside(&self) -> &str {
        match self {
            Entry::File { inside, .. }
            | Entry::Bytes { inside, .. }
            | Entry::Directory { inside, .. }
            | Entry::Link { inside, .. } => inside,
        }
    }
}

/// A host file's mode as an image file: readable by all, executable where it is on the host.
fn image_mode(host: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(0o644 | (fs_err::metadata(host)?.permissions().mode() & 0o111))
}

/// The entries of an image without a base: [`image_files`], busybox and a link per applet in
/// `/bin` (never over a file the image already has), `/usr/bin` as a link to `/bin` (for
/// `#!/usr/bin/env`), the users, their home and `/tmp`.
fn scratch_entries(binary: &Path, busybox: &Path) -> Result<Vec<Entry>, ImageStepError> {
    let applets = busybox_applets(busybox)?;
    let mut entries = vec![
        Entry::Directory {
            inside: "/tmp".into(),
            mode: 0o1777,
            owner: 0,
        },
        Entry::Directory {
            inside: IMAGE_HOME.into(),
            mode: 0o755,
            owner: 65532,
        },
        Entry::Bytes {
            inside: "/etc/passwd".into(),
            data: format!(
                "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:{IMAGE_HOME}:/bin/sh\n"
            )
            .into_bytes(),
            mode: 0o644,
        },
        Entry::Bytes {
            inside: "/etc/group".into(),
            data: b"root:x:0:\nnonroot:x:65532:\n".to_vec(),
            mode: 0o644,
        },
    ];
    for (inside, host) in image_files(binary)? {
        let mode = if inside == IMAGE_BINARY {
            0o755
        } else {
            image_mode(&host)?
        };
        entries.push(Entry::File { inside, host, mode });
    }
    entries.push(Entry::File {
        inside: "/bin/busybox".into(),
        host: busybox.to_path_buf(),
        mode: 0o755,
    });
    let taken: BTreeSet<String> = entries.iter().map(|e| e.inside().to_owned()).collect();
    for applet in applets {
        let inside = format!("/bin/{applet}");
        if !taken.contains(&inside) {
            entries.push(Entry::Link {
                inside,
                target: "busybox".into(),
            });
        }
    }
    if !taken.iter().any(|path| path.starts_with("/usr/bin/")) {
        entries.push(Entry::Link {
            inside: "/usr/bin".into(),
            target: "../bin".into(),
        });
    }
    Ok(entries)
}

/// The applets of a static busybox (`busybox --list`), or why it cannot go into the image.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, ImageStepError> {
    let bad = |reason: String| ImageStepError::BadBusybox {
        path: busybox.to_path_buf(),
        reason,
    };
    if !busybox.is_file() {
        return Err(ImageStepError::NoBusybox {
            path: busybox.to_path_buf(),
        });
    }
    match elf_interpreter(busybox) {
        Ok(None) => {}
        Ok(Some(interpreter)) => {
            return Err(bad(format!(
                "it is linked dynamically, against {interpreter}"
            )));
        }
        Err(error) => return Err(bad(error.to_string())),
    }
    let output = std::process::Command::new(busybox)
        .arg("--list")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| bad(format!("cannot run it: {error}")))?;
    if !output.status.success() {
        return Err(bad(format!(
            "`--list` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('/') && *name != "busybox")
        .map(str::to_owned)
        .collect();
    if applets.is_empty() {
        return Err(bad("`--list` names no applets".into()));
    }
    Ok(applets)
}

/// The entries that go over a base image: everything in [`BASE_DIR`] (the binary made to load
/// its interpreter and libraries from there, see [`relocate`], libraries under their sonames),
/// a link from [`IMAGE_BINARY`] and the host's CA bundle (the base may have none).
fn based_entries(binary: &Path) -> Result<Vec<Entry>, ImageStepError> {
    let relocation = |reason: String| ImageStepError::Relocation {
        binary: binary.to_path_buf(),
        reason,
    };
    let mut data = fs_err::read(binary)?;
    let mut entries = Vec::new();
    let interpreter = interpreter(&data);
    if let Some(interpreter) = &interpreter {
        relocate(&mut data).map_err(relocation)?;
        let real = fs_err::canonicalize(interpreter)?;
        let mut names = BTreeSet::new();
        for library in mapped_libraries()? {
            if fs_err::canonicalize(&library)? == real {
                continue;
            }
            let name = match soname(&fs_err::read(&library)?) {
                Some(name) => name,
                None => match library.file_name() {
                    Some(name) => name.to_string_lossy().into_owned(),
                    None => continue,
                },
            };
            if names.insert(name.clone()) {
                let mode = image_mode(&library)?;
                entries.push(Entry::File {
                    inside: format!("{BASE_DIR}/{name}"),
                    host: library,
                    mode,
                });
            }
        }
        entries.push(Entry::File {
            inside: BASE_INTERPRETER.into(),
            host: real,
            mode: 0o755,
        });
    }
    // A static binary runs as it is.
    entries.push(Entry::Bytes {
        inside: BASE_BINARY.into(),
        data,
        mode: 0o755,
    });
    entries.push(Entry::Link {
        inside: IMAGE_BINARY.into(),
        target: BASE_BINARY.into(),
    });
    let bundle = Path::new(CA_BUNDLE);
    if bundle.exists() {
        entries.push(Entry::File {
            inside: CA_BUNDLE.into(),
            host: bundle.to_path_buf(),
            mode: 0o644,
        });
    }
    Ok(entries)
}

/// Shared objects this process has mapped: exactly what the binary links.
fn mapped_libraries() -> std::io::Result<Vec<PathBuf>> {
    let maps = fs_err::read_to_string("/proc/self/maps")?;
    Ok(maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .map(PathBuf::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_DEBUG: u64 = 21;
const DT_RUNPATH: u64 = 29;

/// One program header of an ELF file.
#[derive(Clone, Copy, Debug)]
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The program headers of a 64-bit little-endian ELF file; `None` for anything else.
fn segments(data: &[u8]) -> Option<Vec<Segment>> {
    if data.get(..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return None;
    }
    let phoff = usize::try_from(u64_at(data, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(data, 0x36)?);
    let phnum = usize::from(u16_at(data, 0x38)?);
    (0..phnum)
        .map(|index| {
            let at = phoff.checked_add(index.checked_mul(phentsize)?)?;
            Some(Segment {
                kind: u32_at(data, at)?,
                offset: u64_at(data, at.checked_add(0x08)?)?,
                vaddr: u64_at(data, at.checked_add(0x10)?)?,
                filesz: u64_at(data, at.checked_add(0x20)?)?,
            })
        })
        .collect()
}

/// The bytes of a segment in the file.
fn segment_range(data: &[u8], segment: &Segment) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(segment.offset).ok()?;
    let end = start.checked_add(usize::try_from(segment.filesz).ok()?)?;
    (end <= data.len()).then_some(start..end)
}

/// Where the byte loaded at `vaddr` is in the file.
fn file_offset(segments: &[Segment], vaddr: u64) -> Option<usize> {
    segments
        .iter()
        .find(|s| s.kind == PT_LOAD && vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
        .and_then(|s| usize::try_from(s.offset + (vaddr - s.vaddr)).ok())
}

/// The dynamic section's entries up to `DT_NULL`: (file offset of the entry, tag, value).
fn dynamic_entries(data: &[u8], segments: &[Segment]) -> Option<Vec<(usize, u64, u64)>> {
    let dynamic = segments.iter().find(|s| s.kind == PT_DYNAMIC)?;
    let range = segment_range(data, dynamic)?;
    let mut entries = Vec::new();
    for at in range.step_by(16) {
        let (Some(tag), Some(value)) = (u64_at(data, at), u64_at(data, at + 8)) else {
            break;
        };
        if tag == DT_NULL {
            break;
        }
        entries.push((at, tag, value));
    }
    Some(entries)
}

/// The value of the first dynamic entry with `tag`.
fn dynamic_value(entries: &[(usize, u64, u64)], tag: u64) -> Option<u64> {
    entries
        .iter()
        .find(|entry| entry.1 == tag)
        .map(|entry| entry.2)
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF file's bytes, if it has one.
fn interpreter(data: &[u8]) -> Option<String> {
    let segment = segments(data)?.into_iter().find(|s| s.kind == PT_INTERP)?;
    let bytes = &data[segment_range(data, &segment)?];
    let path = bytes.split(|b| *b == 0).next()?;
    (!path.is_empty()).then(|| String::from_utf8_lossy(path).into_owned())
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF file, if it has one.
fn elf_interpreter(binary: &Path) -> std::io::Result<Option<String>> {
    Ok(interpreter(&fs_err::read(binary)?))
}

/// The `DT_SONAME` of a shared object's bytes (`libc.so.6`), the name the dynamic loader looks
/// for, which need not be its file's name.
fn soname(data: &[u8]) -> Option<String> {
    let segments = segments(data)?;
    let entries = dynamic_entries(data, &segments)?;
    let strtab = file_offset(&segments, dynamic_value(&entries, DT_STRTAB)?)?;
    let start = strtab.checked_add(usize::try_from(dynamic_value(&entries, DT_SONAME)?).ok()?)?;
    let bytes = data.get(start..)?;
    let name = &bytes[..bytes.iter().position(|b| *b == 0)?];
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

/// Makes a dynamically linked binary load its ELF interpreter and libraries from its own
/// directory, whatever the image around it has in `/lib`: its `PT_INTERP` becomes
/// [`BASE_INTERPRETER`] followed by the string `$ORIGIN`, and its `DT_DEBUG` entry (which only
/// debuggers read) a `DT_RUNPATH` naming that string. Both fit where the old interpreter path
/// was, so nothing moves. The path is looked up before the base's cache and system
/// directories, and nothing goes into the environment, which every program the runner starts
/// would inherit (`LD_LIBRARY_PATH` would load our C library into the base's programs).
/// Because the kernel loads the interpreter named in the file, `/proc/self/exe` stays the
/// binary, unlike running `ld.so BINARY`.
fn relocate(data: &mut [u8]) -> Result<(), String> {
    let segments = segments(data).ok_or("it is not a 64-bit little-endian ELF file")?;
    let interp = *segments
        .iter()
        .find(|s| s.kind == PT_INTERP)
        .ok_or("it names no ELF interpreter")?;
    let room = segment_range(data, &interp).ok_or("its interpreter path is cut off")?;
    if file_offset(&segments, interp.vaddr) != Some(room.start) {
        return Err("its interpreter path is not loaded into memory".into());
    }
    let entries = dynamic_entries(data, &segments).ok_or("it has no dynamic section")?;
    let strtab = dynamic_value(&entries, DT_STRTAB).ok_or("it has no string table")?;
    let slot = entries
        .iter()
        .find(|entry| entry.1 == DT_RUNPATH || entry.1 == DT_RPATH)
        .or_else(|| entries.iter().find(|entry| entry.1 == DT_DEBUG))
        .ok_or("it has no DT_DEBUG entry to turn into a library path")?
        .0;
    let strings = format!("{BASE_INTERPRETER}\0$ORIGIN\0");
    if strings.len() > room.len() {
        return Err(format!(
            "its interpreter path has room for {} bytes, {} are needed",
            room.len(),
            strings.len()
        ));
    }
    let runpath = interp.vaddr + BASE_INTERPRETER.len() as u64 + 1;
    let room = &mut data[room];
    room.fill(0);
    room[..strings.len()].copy_from_slice(strings.as_bytes());
    data[slot..slot + 8].copy_from_slice(&DT_RUNPATH.to_le_bytes());
    // The loader adds this to the string table's address: wrapping arithmetic reaches the
    // interpreter's segment, which comes before it.
    data[slot + 8..slot + 16].copy_from_slice(&runpath.wrapping_sub(strtab).to_le_bytes());
    Ok(())
}

/// The image's file system as a tar, owners and modes as given.
fn rootfs_tar(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let path = entry.inside().trim_start_matches('/');
        match entry {
            Entry::File { host, mode, .. } => {
                let mut file = fs_err::File::open(host)?;
                header.set_size(file.metadata()?.len());
                header.set_mode(*mode);
                tar.append_data(&mut header, path, &mut file)?;
            }
            Entry::Bytes { data, mode, .. } => {
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                tar.append_data(&mut header, path, data.as_slice())?;
            }
            Entry::Directory { mode, owner, .. } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(*mode);
                header.set_uid(*owner);
                header.set_gid(*owner);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Entry::Link { target, .. } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                tar.append_link(&mut header, path, target)?;
            }
        }
    }
    tar.into_inner()
}

/// The build context: a tar with the Dockerfile and `rootfs.tar`, which `ADD` unpacks in one
/// layer keeping owners (`COPY` would make everything root's, the home included).
pub fn build_context(plan: &ImagePlan, digest: &str) -> Result<Vec<u8>, ImageStepError> {
    let version = &plan.version;
    let recipe = plan.recipe();
    let (from, entries, environment, entrypoint) = match &plan.base {
        None => (
            "scratch",
            scratch_entries(&plan.binary, &plan.busybox)?,
            "ENV PATH=/usr/local/bin:/bin\n",
            IMAGE_BINARY,
        ),
        Some(base) => {
            if !is_image_reference(base) {
                return Err(ImageStepError::InvalidBase { base: base.clone() });
            }
            (base.as_str(), based_entries(&plan.binary)?, "", BASE_BINARY)
        }
    };
    // `CMD []`: a base's command would otherwise become the runner's arguments.
    let dockerfile = format!(
        "FROM {from}\n\
         ADD rootfs.tar /\n\
         LABEL {LABEL_VERSION}=\"{version}\" {LABEL_BINARY}=\"{digest}\" {LABEL_IMAGE}=\"{recipe}\" {LABEL_COMPONENT}=\"agent-runner\"\n\
         {environment}\
         USER {IMAGE_USER}\n\
         ENTRYPOINT [\"{entrypoint}\", \"internal\", \"agent-runner\"]\n\
         CMD []\n"
    );
    let rootfs = rootfs_tar(&entries)?;
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", dockerfile.as_bytes()),
        ("rootfs.tar", &rootfs),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, name, data)?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of a tar, as the tests look at it.
    #[derive(Debug)]
    struct TarEntry {
        path: String,
        link: Option<String>,
        mode: u32,
        owner: u64,
    }

    fn tar_entries(data: &[u8]) -> Vec<TarEntry> {
        let mut archive = tar::Archive::new(data);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                TarEntry {
                    path: entry.path().unwrap().display().to_string(),
                    link: entry
                        .link_name()
                        .unwrap()
                        .map(|target| target.display().to_string()),
                    mode: header.mode().unwrap(),
                    owner: header.uid().unwrap(),
                }
            })
            .collect()
    }

    /// The Dockerfile and the entries of `rootfs.tar` of a build context.
    fn unpack(context: &[u8]) -> (String, Vec<TarEntry>) {
        let mut archive = tar::Archive::new(context);
        let mut dockerfile = String::new();
        let mut rootfs = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            match entry.path().unwrap().display().to_string().as_str() {
                "Dockerfile" => {
                    entry.read_to_string(&mut dockerfile).unwrap();
                }
                "rootfs.tar" => {
                    entry.read_to_end(&mut rootfs).unwrap();
                }
                other => panic!("unexpected {other} in the context"),
            }
        }
        (dockerfile, tar_entries(&rootfs))
    }

    #[test]
    fn references_follow_the_naming() {
        assert_eq!(local_reference("0.1.0"), "stigmer-agent-runner:0.1.0");
        assert_eq!(
            registry_reference("127.0.0.1:5000/", "0.1.0"),
            "127.0.0.1:5000/stigmer/agent-runner:0.1.0"
        );
        let mut plan = ImagePlan::new("0.1.0", "/bin/stigmer");
        assert_eq!(plan.reference(), "stigmer-agent-runner:0.1.0");
        assert_eq!(plan.recipe(), format!("layout {IMAGE_LAYOUT}, no base"));
        plan.base = Some("node:22-bookworm-slim".into());
        let node = plan.reference();
        assert!(
            node.starts_with("stigmer-agent-runner:0.1.0-base-"),
            "{node}"
        );
        plan.base = Some("python:3.12-slim".into());
        assert_ne!(plan.reference(), node, "another base, another tag");
        assert_eq!(
            plan.recipe(),
            format!("layout {IMAGE_LAYOUT}, from python:3.12-slim")
        );
    }

    #[test]
    fn references_split_at_the_tag_not_at_the_port() {
        assert_eq!(split_reference("node:22-slim"), ("node", "22-slim"));
        assert_eq!(
            split_reference("127.0.0.1:5000/base"),
            ("127.0.0.1:5000/base", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/base:1"),
            ("127.0.0.1:5000/base", "1")
        );
        assert_eq!(split_reference("base@sha256:abc"), ("base", "sha256:abc"));
        assert!(is_image_reference("ghcr.io/org/node:22@sha256:ab12"));
        assert!(!is_image_reference("node:22\nRUN rm -rf /"));
        assert!(!is_image_reference("node\" x=\"y"));
        assert!(!is_image_reference(""));
    }

    #[test]
    fn an_image_is_used_only_with_this_binary_and_this_layout() {
        let recipe = ImagePlan::new("0.1.0", "/bin/stigmer").recipe();
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        let ours = labels(&[(LABEL_BINARY, "abc"), (LABEL_IMAGE, &recipe)]);
        assert_eq!(mismatch(&ours, "abc", &recipe), None);
        assert!(mismatch(&ours, "def", &recipe).is_some());
        // An image an older build made from the same binary, without a shell.
        let old = labels(&[(LABEL_BINARY, "abc")]);
        let why = mismatch(&old, "abc", &recipe).unwrap();
        assert!(why.contains("older build"), "{why}");
        let other_base = labels(&[(LABEL_BINARY, "abc"), (LABEL_IMAGE, "layout 2, from x:1")]);
        assert!(mismatch(&other_base, "abc", &recipe).is_some());
    }

    #[test]
    fn the_image_holds_the_binary_its_libraries_its_interpreter_and_busybox() {
        let binary = std::env::current_exe().unwrap();
        let files = image_files(&binary).unwrap();
        let inside: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(inside[0], IMAGE_BINARY);
        assert!(inside.iter().any(|p| p.contains("libc.so")), "{inside:?}");
        let interpreter = elf_interpreter(&binary).unwrap().expect("a dynamic binary");
        assert!(inside.contains(&interpreter.as_str()), "{inside:?}");
        let plan = ImagePlan::new("0.1.0", &binary);
        let (dockerfile, entries) = unpack(&build_context(&plan, "abc").unwrap());
        assert!(dockerfile.starts_with("FROM scratch\n"), "{dockerfile}");
        assert!(
            dockerfile.contains(&format!("{LABEL_IMAGE}=\"{}\"", plan.recipe())),
            "{dockerfile}"
        );
        let find = |path: &str| {
            entries
                .iter()
                .find(|entry| entry.path.trim_end_matches('/') == path)
                .unwrap_or_else(|| panic!("no {path} in {entries:?}"))
        };
        assert_eq!(find("usr/local/bin/stigmer").mode, 0o755);
        assert_eq!(find("bin/busybox").mode, 0o755);
        assert_eq!(find("bin/sh").link.as_deref(), Some("busybox"));
        assert_eq!(find("bin/sleep").link.as_deref(), Some("busybox"));
        assert_eq!(find("usr/bin").link.as_deref(), Some("../bin"));
        assert_eq!(find("tmp").mode, 0o1777);
        assert_eq!(find("home/nonroot").owner, 65532);
        assert_eq!(find("etc/passwd").owner, 0);
        // Every path once: no applet over a file of the image.
        let mut paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        let count = paths.len();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), count);
    }

    #[test]
    fn without_busybox_the_build_says_to_install_busybox_static() {
        let binary = std::env::current_exe().unwrap();
        let mut plan = ImagePlan::new("0.1.0", &binary);
        plan.busybox = "/nonexistent/busybox".into();
        let error = build_context(&plan, "abc").unwrap_err();
        assert!(matches!(error, ImageStepError::NoBusybox { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("/nonexistent/busybox"), "{text}");
        assert!(text.contains("busybox-static"), "{text}");
        assert!(text.contains("agent_runner.image_base"), "{text}");
        // A dynamically linked one (this test binary) is refused too.
        plan.busybox = binary.clone();
        let error = build_context(&plan, "abc").unwrap_err();
        assert!(
            matches!(error, ImageStepError::BadBusybox { .. }),
            "{error}"
        );
        // With a base there is no busybox to copy.
        plan.base = Some("127.0.0.1:5000/base:1".into());
        assert!(build_context(&plan, "abc").is_ok());
    }

    #[test]
    fn over_a_base_the_binary_loads_its_interpreter_and_libraries_from_its_directory() {
        let binary = std::env::current_exe().unwrap();
        let original = fs_err::read(&binary).unwrap();
        let mut data = original.clone();
        relocate(&mut data).unwrap();
        assert_eq!(data.len(), original.len());
        assert_eq!(interpreter(&data).as_deref(), Some(BASE_INTERPRETER));
        let segments = segments(&data).unwrap();
        let entries = dynamic_entries(&data, &segments).unwrap();
        let strtab = dynamic_value(&entries, DT_STRTAB).unwrap();
        let runpath = dynamic_value(&entries, DT_RUNPATH).expect("a DT_RUNPATH");
        let at = file_offset(&segments, strtab.wrapping_add(runpath)).unwrap();
        assert_eq!(&data[at..at + 8], b"$ORIGIN\0");
        assert_eq!(dynamic_value(&entries, DT_DEBUG), None);
        // The rest of the binary is untouched.
        let differing = original.iter().zip(&data).filter(|(a, b)| a != b).count();
        assert!(differing < 64, "{differing} bytes changed");

        let mut plan = ImagePlan::new("0.1.0", &binary);
        plan.base = Some("node:22-bookworm-slim".into());
        let (dockerfile, entries) = unpack(&build_context(&plan, "abc").unwrap());
        assert!(
            dockerfile.starts_with("FROM node:22-bookworm-slim\n"),
            "{dockerfile}"
        );
        assert!(dockerfile.contains(BASE_BINARY), "{dockerfile}");
        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        for path in [
            "opt/stigmer/stigmer",
            "opt/stigmer/ld.so",
            "opt/stigmer/libc.so.6",
        ] {
            assert!(paths.contains(&path), "no {path} in {paths:?}");
        }
        assert!(!paths.contains(&"bin/sh"), "the base brings its shell");
        assert!(
            paths
                .iter()
                .all(|path| path.starts_with("opt/stigmer/") || !path.contains(".so")),
            "{paths:?}"
        );
    }

    #[test]
    fn sonames_are_read_from_the_libraries() {
        let libraries = mapped_libraries().unwrap();
        let libc = libraries
            .iter()
            .find(|path| path.to_string_lossy().contains("libc.so"))
            .unwrap();
        assert_eq!(
            soname(&fs_err::read(libc).unwrap()).as_deref(),
            Some("libc.so.6")
        );
    }
}
