//! Landlock: whether this kernel can confine writes ([`landlock_support`]), and the ruleset the
//! wrapper applies to itself before it starts a confined command.
//!
//! The ruleset: `/` read and execute, the workspace and the private tmp full access, `/dev/null`
//! and `/dev/tty` writable (shells fail without them). It is best effort: the `landlock` crate
//! downgrades to the kernel's ABI. `restrict_self` binds only the calling thread and what it
//! starts afterwards, which is why it runs in the single-threaded wrapper, never in the runner.

use crate::spawn::Confinement;
use std::path::PathBuf;

/// What the kernel offers for confining writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandlockSupport {
    /// Landlock works; `abi` is the version used (the lower of the kernel's and the crate's).
    Enforced { abi: u32 },
    /// Writes of confined commands are not confined; `reason` says why.
    Unavailable { reason: String },
}

/// Why the wrapper could not confine itself.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot confine to {}: {source}", path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[cfg(target_os = "linux")]
    #[error("cannot apply the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("Landlock is not supported on this platform")]
    Unsupported,
}

/// Probes the kernel once; the calling process is not restricted (no ruleset is created, no
/// `no_new_privs` is set).
#[cfg(target_os = "linux")]
pub fn landlock_support() -> LandlockSupport {
    use landlock::{LandlockStatus, RestrictSelf};
    // With no flag and no `no_new_privs`, `apply` only reports what the kernel supports.
    let status = match RestrictSelf::default().no_new_privs(false).apply() {
        Ok(status) => status.landlock,
        Err(error) => {
            return LandlockSupport::Unavailable {
                reason: format!("the Landlock probe failed: {error}"),
            };
        }
    };
    match status {
        LandlockStatus::Available { effective_abi, .. } => LandlockSupport::Enforced {
            abi: effective_abi as u32,
        },
        LandlockStatus::NotEnabled => LandlockSupport::Unavailable {
            reason: "Landlock is built into the kernel but not enabled (boot parameter `lsm=`)"
                .to_owned(),
        },
        LandlockStatus::NotImplemented => LandlockSupport::Unavailable {
            reason: "the kernel has no Landlock (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK)"
                .to_owned(),
        },
    }
}

/// Landlock exists only on Linux.
#[cfg(not(target_os = "linux"))]
pub fn landlock_support() -> LandlockSupport {
    LandlockSupport::Unavailable {
        reason: "Landlock is Linux only".to_owned(),
    }
}

/// Restricts the calling thread (and everything it starts from now on) to `confinement`. Returns
/// whether the kernel enforces the ruleset (fully or partly); `false` means it runs unconfined.
#[cfg(target_os = "linux")]
pub(crate) fn confine_self(confinement: &Confinement) -> Result<bool, ConfineError> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    // `path_beneath_rules` skips paths it cannot open; a missing workspace must not silently
    // become a read-only one.
    for path in [&confinement.workspace, &confinement.tmp] {
        std::fs::metadata(path).map_err(|source| ConfineError::Path {
            path: path.clone(),
            source,
        })?;
    }
    let abi = ABI::V7;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(
            [&confinement.workspace, &confinement.tmp],
            AccessFs::from_all(abi),
        ))?
        .add_rules(path_beneath_rules(
            ["/dev/null", "/dev/tty"],
            AccessFs::from_all(abi),
        ))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => true,
        RulesetStatus::NotEnforced => false,
    })
}

/// Landlock exists only on Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn confine_self(_confinement: &Confinement) -> Result<bool, ConfineError> {
    Err(ConfineError::Unsupported)
}
