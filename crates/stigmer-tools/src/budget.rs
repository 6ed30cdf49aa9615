//! How long a tool call may run, and how its caller stops it.
//!
//! Every loop of a tool (a walk, a search, a read) checks its [`ToolBudget`] and ends with
//! [`Stopped`] once the deadline has passed or the caller has cancelled it. The caller keeps a
//! [`CancelOnDrop`] next to the future that waits for the tool, so dropping that future (a
//! cancelled activity) really stops the work running on another thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The deadline and cancellation flag of one tool call.
#[derive(Clone, Debug)]
pub struct ToolBudget {
    started: Instant,
    limit: Duration,
    cancel: Arc<AtomicBool>,
}

/// Why a tool stopped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("took longer than {} s and was stopped", limit.as_secs_f64())]
    Deadline { limit: Duration },
    #[error("was cancelled")]
    Cancelled,
}

impl ToolBudget {
    /// A budget of `limit` from now, with its own cancellation flag.
    pub fn new(limit: Duration) -> ToolBudget {
        ToolBudget {
            started: Instant::now(),
            limit,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A guard that cancels this budget when dropped (unless disarmed).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop {
            cancel: Some(self.cancel.clone()),
        }
    }

    /// Asks the tool to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// `Err` once the tool must stop.
    pub fn check(&self) -> Result<(), Stopped> {
        if self.is_cancelled() {
            return Err(Stopped::Cancelled);
        }
        if self.started.elapsed() >= self.limit {
            return Err(Stopped::Deadline { limit: self.limit });
        }
        Ok(())
    }
}

/// Cancels a [`ToolBudget`] when dropped: held by the future that waits for the tool.
#[derive(Debug)]
pub struct CancelOnDrop {
    cancel: Option<Arc<AtomicBool>>,
}

impl CancelOnDrop {
    /// The tool finished: dropping the guard no longer cancels anything.
    pub fn disarm(mut self) {
        self.cancel = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = &self.cancel {
            cancel.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_stops_at_its_deadline_or_when_its_guard_is_dropped() {
        let budget = ToolBudget::new(Duration::from_secs(3600));
        assert_eq!(budget.check(), Ok(()));
        let guard = budget.cancel_on_drop();
        guard.disarm();
        assert_eq!(budget.check(), Ok(()), "a disarmed guard cancels nothing");
        drop(budget.cancel_on_drop());
        assert_eq!(budget.check(), Err(Stopped::Cancelled));

        let expired = ToolBudget::new(Duration::ZERO);
        assert_eq!(
            expired.check(),
            Err(Stopped::Deadline {
                limit: Duration::ZERO
            })
        );
        assert_eq!(
            Stopped::Deadline {
                limit: Duration::from_secs(30)
            }
            .to_string(),
            "took longer than 30 s and was stopped"
        );
    }
}
