//! When to restart a child that exited, and when to give up.
//!
//! Pure logic over explicit instants, so the supervisor's restart behaviour is tested
//! deterministically without processes or clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use stigmer_config::SupervisorSettings;

/// Exit code with which a runner refuses its launch environment (`EX_CONFIG` from sysexits).
/// Restarting cannot fix that, so such a child is failed at once.
pub const EXIT_CONFIG: i32 = 78;

/// What to do after a child exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Stop trying; the component is `failed` for this reason.
    GiveUp(String),
}

/// Exponential backoff with a reset after a healthy run and a failure budget per window.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    initial: Duration,
    max: Duration,
    healthy_reset: Duration,
    window: Duration,
    max_restarts: u32,
    consecutive_failures: u32,
    failures: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(settings: &SupervisorSettings) -> Self {
        RestartPolicy {
            initial: Duration::from_millis(settings.backoff_initial_ms),
            max: Duration::from_millis(settings.backoff_max_ms),
            healthy_reset: Duration::from_secs(settings.healthy_reset_secs),
            window: Duration::from_secs(settings.restart_window_secs),
            max_restarts: settings.max_restarts,
            consecutive_failures: 0,
            failures: VecDeque::new(),
        }
    }

    /// Records an exit at `now` after the child ran for `ran_for`, and decides.
    pub fn on_exit(
        &mut self,
        now: Instant,
        ran_for: Duration,
        exit_code: Option<i32>,
    ) -> RestartDecision {
        if exit_code == Some(EXIT_CONFIG) {
            return RestartDecision::GiveUp(
                "it refused its launch configuration (exit code 78); restarting cannot fix that"
                    .into(),
            );
        }
        if ran_for >= self.healthy_reset {
            self.consecutive_failures = 0;
        }
        self.failures.push_back(now);
        while let Some(first) = self.failures.front() {
            if now.duration_since(*first) > self.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        if self.failures.len() > self.max_restarts as usize {
            return RestartDecision::GiveUp(format!(
                "it failed {} times within {}s",
                self.failures.len(),
                self.window.as_secs()
            ));
        }
        let exponent = self.consecutive_failures.min(16);
        self.consecutive_failures += 1;
        let delay = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        RestartDecision::Restart(delay)
    }
}

/// How long a child may not answer before status calls it `unresponsive`: long enough that a
/// process briefly stopped (job control, a debugger's single step) is not reported.
pub const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

/// What the liveness watch of a running child concludes from one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It answers (again).
    Answering,
    /// It has not answered for a moment; not worth reporting yet.
    Silent,
    /// It has not answered for this long: report it.
    Unresponsive(Duration),
    /// It has not answered for this long, past the restart bound: kill and restart it.
    Restart(Duration),
}

/// The liveness watch of one launch: a child that stops answering (its process is stopped, so it
/// cannot poll Temporal or heartbeat) is reported after [`UNRESPONSIVE_AFTER`] and restarted
/// after `restart_after`, both counted from the first sample that found it silent.
#[derive(Debug, Clone)]
pub struct LivenessWatch {
    restart_after: Duration,
    silent_since: Option<Instant>,
}

impl LivenessWatch {
    pub fn new(settings: &SupervisorSettings) -> Self {
        LivenessWatch {
            restart_after: Duration::from_secs(settings.unresponsive_restart_secs),
            silent_since: None,
        }
    }

    /// Records whether the child answered at `now`, and concludes.
    pub fn observe(&mut self, now: Instant, answering: bool) -> Liveness {
        if answering {
            self.silent_since = None;
            return Liveness::Answering;
        }
        let silent_for = now.saturating_duration_since(*self.silent_since.get_or_insert(now));
        if silent_for >= self.restart_after.max(UNRESPONSIVE_AFTER) {
            Liveness::Restart(silent_for)
        } else if silent_for >= UNRESPONSIVE_AFTER {
            Liveness::Unresponsive(silent_for)
        } else {
            Liveness::Silent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_stops_answering_is_reported_then_restarted_and_forgiven_when_it_answers() {
        let mut watch = LivenessWatch::new(&SupervisorSettings {
            unresponsive_restart_secs: 30,
            ..SupervisorSettings::default()
        });
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(watch.observe(at(0), true), Liveness::Answering);
        assert_eq!(watch.observe(at(1), false), Liveness::Silent);
        assert_eq!(watch.observe(at(2), false), Liveness::Silent);
        assert_eq!(
            watch.observe(at(3), false),
            Liveness::Unresponsive(Duration::from_secs(2))
        );
        // It answers again (SIGCONT): the count starts over.
        assert_eq!(watch.observe(at(10), true), Liveness::Answering);
        assert_eq!(watch.observe(at(11), false), Liveness::Silent);
        assert_eq!(
            watch.observe(at(40), false),
            Liveness::Unresponsive(Duration::from_secs(29))
        );
        assert_eq!(
            watch.observe(at(41), false),
            Liveness::Restart(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_restart_bound_below_the_report_bound_waits_for_the_report_bound() {
        let mut watch = LivenessWatch::new(&SupervisorSettings {
            unresponsive_restart_secs: 0,
            ..SupervisorSettings::default()
        });
        let start = Instant::now();
        assert_eq!(watch.observe(start, false), Liveness::Silent);
        assert_eq!(
            watch.observe(start + UNRESPONSIVE_AFTER, false),
            Liveness::Restart(UNRESPONSIVE_AFTER)
        );
    }

    fn policy() -> RestartPolicy {
        RestartPolicy::new(&SupervisorSettings {
            max_restarts: 10,
            ..SupervisorSettings::default()
        })
    }

    fn delays(policy: &mut RestartPolicy, start: Instant, count: u64) -> Vec<u64> {
        (0..count)
            .map(|index| {
                match policy.on_exit(
                    start + Duration::from_secs(index),
                    Duration::from_millis(100),
                    Some(1),
                ) {
                    RestartDecision::Restart(delay) => delay.as_secs(),
                    RestartDecision::GiveUp(reason) => panic!("gave up: {reason}"),
                }
            })
            .collect()
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let mut policy = policy();
        let start = Instant::now();
        assert_eq!(delays(&mut policy, start, 7), [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_healthy_minute_resets_the_backoff() {
        let mut policy = policy();
        let start = Instant::now();
        assert_eq!(delays(&mut policy, start, 3), [1, 2, 4]);
        let decision = policy.on_exit(
            start + Duration::from_secs(100),
            Duration::from_secs(60),
            Some(1),
        );
        assert_eq!(decision, RestartDecision::Restart(Duration::from_secs(1)));
    }

    #[test]
    fn too_many_failures_in_the_window_give_up() {
        let mut policy = RestartPolicy::new(&SupervisorSettings {
            max_restarts: 3,
            restart_window_secs: 60,
            ..SupervisorSettings::default()
        });
        let start = Instant::now();
        assert_eq!(delays(&mut policy, start, 3).len(), 3);
        let decision = policy.on_exit(start + Duration::from_secs(4), Duration::ZERO, Some(1));
        assert_eq!(
            decision,
            RestartDecision::GiveUp("it failed 4 times within 60s".into())
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut policy = RestartPolicy::new(&SupervisorSettings {
            max_restarts: 2,
            restart_window_secs: 10,
            ..SupervisorSettings::default()
        });
        let start = Instant::now();
        for minute in 0..5 {
            let decision = policy.on_exit(
                start + Duration::from_secs(60 * minute),
                Duration::ZERO,
                Some(1),
            );
            assert!(
                matches!(decision, RestartDecision::Restart(_)),
                "{decision:?}"
            );
        }
    }

    #[test]
    fn a_refused_configuration_is_not_restarted() {
        let mut policy = policy();
        let decision = policy.on_exit(Instant::now(), Duration::ZERO, Some(EXIT_CONFIG));
        assert!(matches!(decision, RestartDecision::GiveUp(reason) if reason.contains("78")));
    }
}
