//! The agent-runner image: `stigmer-agent-runner:<version>`, holding the very binary that runs
//! the daemon.
//!
//! It has no base image: the build context is the binary, the shared libraries the running
//! process has mapped (so exactly what it links), the ELF interpreter at the path the binary
//! names, and the host's CA bundle; the Dockerfile is `FROM scratch`, a non-root user and the
//! runner role as entry point. An image is only used when it holds this binary (label
//! [`LABEL_BINARY`]), so a rebuilt binary never runs next to a stale image.

use crate::{Engine, EngineError, LABEL_BINARY, LABEL_COMPONENT, LABEL_VERSION};
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, PushImageOptions, TagImageOptions,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The local repository name of the image.
pub const IMAGE_NAME: &str = "stigmer-agent-runner";
/// The user the image runs as (the conventional "nonroot").
pub const IMAGE_USER: &str = "65532:65532";
/// Where the binary lives in the image.
pub const IMAGE_BINARY: &str = "/usr/local/bin/stigmer";

/// `stigmer-agent-runner:<version>`.
pub fn local_reference(version: &str) -> String {
    format!("{IMAGE_NAME}:{version}")
}

/// `<registry>/stigmer/agent-runner:<version>`.
pub fn registry_reference(registry: &str, version: &str) -> String {
    format!(
        "{}/stigmer/agent-runner:{version}",
        registry.trim_end_matches('/')
    )
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
    #[error("{reference} has no tag")]
    NoTag { reference: String },
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
}

impl ImageStepError {
    fn reported(message: Option<String>) -> ImageStepError {
        ImageStepError::Reported(message.unwrap_or_else(|| "unknown error".into()))
    }
}

impl Engine {
    /// The id of a local image: containers are created from it, so a later re-tag of the
    /// reference (another build of the same version) cannot change what a restart runs.
    pub async fn image_id(&self, reference: &str) -> Option<String> {
        self.docker.inspect_image(reference).await.ok()?.id
    }

    /// The `ai.stigmer.binary` label of a local image, `None` when there is no such image.
    async fn image_binary(&self, reference: &str) -> Option<Option<String>> {
        let inspected = self.docker.inspect_image(reference).await.ok()?;
        Some(
            inspected
                .config
                .and_then(|config| config.labels)
                .and_then(|labels| labels.get(LABEL_BINARY).cloned()),
        )
    }

    /// A local image with this binary, else a pull of it, else a local build.
    pub async fn ensure_image(&self, plan: &ImagePlan) -> Result<EnsuredImage, ImageError> {
        let started = Instant::now();
        let local = local_reference(&plan.version);
        let digest = binary_digest(&plan.binary).map_err(|error| ImageError::Io {
            path: plan.binary.display().to_string(),
            error,
        })?;
        let mut attempts = Vec::new();
        match self.image_binary(&local).await {
            Some(Some(found)) if found == digest => {
                return Ok(EnsuredImage {
                    reference: local,
                    source: ImageSource::Local,
                    took: started.elapsed(),
                });
            }
            Some(_) => attempts.push(format!(
                "local image {local} holds another build of the binary"
            )),
            None => attempts.push(format!("no local image {local}")),
        }
        if let Some(registry) = &plan.registry {
            let remote = registry_reference(registry, &plan.version);
            match self.pull(&remote).await {
                Ok(()) => match self.image_binary(&remote).await {
                    Some(Some(found)) if found == digest => match self.tag(&remote, &local).await {
                        Ok(()) => {
                            return Ok(EnsuredImage {
                                reference: local,
                                source: ImageSource::Pulled,
                                took: started.elapsed(),
                            });
                        }
                        Err(error) => attempts.push(format!("pulled {remote}, but: {error}")),
                    },
                    _ => attempts.push(format!(
                        "pulled {remote}, but it holds another build of the binary"
                    )),
                },
                Err(reason) => attempts.push(format!("pull of {remote} failed: {reason}")),
            }
        } else {
            attempts
                .push("no registry configured to pull from (agent_runner.image_registry)".into());
        }
        match self.build_image(&plan.binary, &plan.version, &digest).await {
            Ok(()) => Ok(EnsuredImage {
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
        let (image, tag) = reference
            .rsplit_once(':')
            .ok_or_else(|| ImageStepError::NoTag {
                reference: reference.to_owned(),
            })?;
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
        let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
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

    /// Builds `stigmer-agent-runner:<version>` from `binary`.
    pub async fn build_image(
        &self,
        binary: &Path,
        version: &str,
        digest: &str,
    ) -> Result<(), ImageStepError> {
        let context = build_context(binary, version, digest)?;
        let mut progress = self.docker.build_image(
            BuildImageOptions {
                dockerfile: "Dockerfile".into(),
                t: Some(local_reference(version)),
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
        tracing::info!(image = %local_reference(version), last = %last, "Image built.");
        Ok(())
    }

    /// Tags the local image for `registry` and pushes it.
    pub async fn push_image(
        &self,
        registry: &str,
        version: &str,
    ) -> Result<String, ImageStepError> {
        let remote = registry_reference(registry, version);
        self.tag(&local_reference(version), &remote).await?;
        let (image, tag) = remote
            .rsplit_once(':')
            .unwrap_or((remote.as_str(), "latest"));
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

/// The files of the image: (path in the image, path on the host).
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
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.exists() {
        files.push((bundle.display().to_string(), bundle.to_path_buf()));
    }
    Ok(files)
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

/// The `PT_INTERP` path of a 64-bit little-endian ELF file, if it has one.
fn elf_interpreter(binary: &Path) -> std::io::Result<Option<String>> {
    let data = fs_err::read(binary)?;
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    if data.get(..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) {
        return Ok(None);
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Ok(None);
    };
    for index in 0..phnum as usize {
        let header = phoff as usize + index * phentsize as usize;
        if u32_at(header) == Some(3) {
            let (Some(offset), Some(size)) = (u64_at(header + 0x08), u64_at(header + 0x20)) else {
                return Ok(None);
            };
            let bytes = data
                .get(offset as usize..(offset + size) as usize)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(bytes)
                .trim_end_matches('\0')
                .to_owned();
            return Ok((!text.is_empty()).then_some(text));
        }
    }
    Ok(None)
}

/// The build context: a tar with the Dockerfile and the image's files under `rootfs/`.
pub fn build_context(binary: &Path, version: &str, digest: &str) -> std::io::Result<Vec<u8>> {
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         LABEL {LABEL_VERSION}=\"{version}\" {LABEL_BINARY}=\"{digest}\" {LABEL_COMPONENT}=\"agent-runner\"\n\
         USER {IMAGE_USER}\n\
         ENTRYPOINT [\"{IMAGE_BINARY}\", \"internal\", \"agent-runner\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    // A writable /tmp.
    let mut tmp = tar::Header::new_gnu();
    tmp.set_entry_type(tar::EntryType::Directory);
    tmp.set_mode(0o1777);
    tmp.set_size(0);
    tmp.set_cksum();
    tar.append_data(&mut tmp, "rootfs/tmp/", std::io::empty())?;
    for (inside, host) in image_files(binary)? {
        let mut file = fs_err::File::open(&host)?;
        let metadata = file.metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_size(metadata.len());
        header.set_mode(if inside == IMAGE_BINARY {
            0o755
        } else {
            0o644 | (std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111)
        });
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("rootfs{inside}"), &mut file)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_naming() {
        assert_eq!(local_reference("0.1.0"), "stigmer-agent-runner:0.1.0");
        assert_eq!(
            registry_reference("127.0.0.1:5000/", "0.1.0"),
            "127.0.0.1:5000/stigmer/agent-runner:0.1.0"
        );
    }

    #[test]
    fn the_image_holds_the_binary_its_libraries_and_its_interpreter() {
        let binary = std::env::current_exe().unwrap();
        let files = image_files(&binary).unwrap();
        let inside: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(inside[0], IMAGE_BINARY);
        assert!(inside.iter().any(|p| p.contains("libc.so")), "{inside:?}");
        let interpreter = elf_interpreter(&binary).unwrap().expect("a dynamic binary");
        assert!(inside.contains(&interpreter.as_str()), "{inside:?}");
        let context = build_context(&binary, "0.1.0", "abc").unwrap();
        let mut archive = tar::Archive::new(context.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names[0], "Dockerfile");
        assert!(names.contains(&"rootfs/usr/local/bin/stigmer".to_owned()));
    }
}
