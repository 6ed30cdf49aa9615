//! The events of one execution, in order and each once, across broken streams and daemon
//! restarts: after a break the feed subscribes again after the last event it yielded, retrying
//! with backoff for up to a window, and drops what a replay repeats.

use std::future::Future;
use std::time::{Duration, Instant};
use stigmer_proto::executions::v1::ExecutionEvent;
use tonic::{Code, Status, Streaming};

/// How long a feed keeps reconnecting after a break before it gives up.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where a feed subscribes: the daemon of a home (which may move between restarts), a fixed
/// server, or a scripted fake in tests.
pub trait EventSource {
    type Stream: EventStream;
    /// Subscribes to the events after `after_seq`.
    fn subscribe(
        &mut self,
        after_seq: u64,
    ) -> impl Future<Output = Result<Self::Stream, Status>> + Send;
}

/// One subscription's events; `Ok(None)` when the server ended it.
pub trait EventStream {
    fn message(&mut self) -> impl Future<Output = Result<Option<ExecutionEvent>, Status>> + Send;
}

impl EventStream for Streaming<ExecutionEvent> {
    fn message(&mut self) -> impl Future<Output = Result<Option<ExecutionEvent>, Status>> + Send {
        Streaming::message(self)
    }
}

/// What a feed yields.
#[derive(Debug)]
pub enum FeedItem {
    Event(ExecutionEvent),
    /// Something people should know (the connection broke, it is back).
    Notice(String),
}

/// Why a feed ended without its execution ending.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Reconnecting did not succeed within the window.
    #[error(
        "lost the connection to the daemon while following execution {execution_id}: {problem}"
    )]
    Lost {
        execution_id: String,
        problem: String,
    },
    /// A definite answer (not found, refused): trying again would not help.
    #[error("{}", .0.message())]
    Refused(Status),
}

/// The events of one execution; see the module doc.
pub struct EventFeed<S: EventSource> {
    source: S,
    execution_id: String,
    stream: Option<S::Stream>,
    last_seq: u64,
    /// When the current outage began, and what went wrong last.
    broken: Option<(Instant, String)>,
    backoff: Duration,
    first_backoff: Duration,
    window: Duration,
}

impl<S: EventSource> EventFeed<S> {
    /// A feed from the first event on.
    pub fn new(source: S, execution_id: &str) -> Self {
        EventFeed {
            source,
            execution_id: execution_id.to_owned(),
            stream: None,
            last_seq: 0,
            broken: None,
            backoff: BACKOFF_FIRST,
            first_backoff: BACKOFF_FIRST,
            window: RECONNECT_WINDOW,
        }
    }

    /// Reconnects within `window`, waiting `first_backoff` (doubling) between tries.
    pub fn with_reconnect(mut self, window: Duration, first_backoff: Duration) -> Self {
        self.window = window;
        self.first_backoff = first_backoff;
        self.backoff = first_backoff;
        self
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// The `seq` of the last event yielded (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next event or notice. Cancel-safe: the state changes only after an await
    /// completes, so dropping the future (Ctrl-C) loses nothing.
    pub async fn next(&mut self) -> Result<FeedItem, FeedError> {
        loop {
            if let Some(stream) = self.stream.as_mut() {
                let problem = match stream.message().await {
                    Ok(Some(event)) => {
                        // A replay may overlap what was yielded before a break.
                        if event.seq <= self.last_seq {
                            continue;
                        }
                        self.last_seq = event.seq;
                        self.backoff = self.first_backoff;
                        return Ok(FeedItem::Event(event));
                    }
                    Ok(None) => "the event stream ended early".to_owned(),
                    Err(status) if is_transient(&status) => status.message().to_owned(),
                    Err(status) => return Err(FeedError::Refused(status)),
                };
                self.stream = None;
                if let Some(notice) = self.broke(problem) {
                    return Ok(FeedItem::Notice(notice));
                }
                continue;
            }
            if let Some((since, problem)) = &self.broken {
                if since.elapsed() >= self.window {
                    return Err(FeedError::Lost {
                        execution_id: self.execution_id.clone(),
                        problem: problem.clone(),
                    });
                }
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
            match self.source.subscribe(self.last_seq).await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    if self.broken.take().is_some() {
                        return Ok(FeedItem::Notice(format!(
                            "reconnected; following from event {}",
                            self.last_seq + 1
                        )));
                    }
                }
                Err(status) if is_transient(&status) => {
                    if let Some(notice) = self.broke(status.message().to_owned()) {
                        return Ok(FeedItem::Notice(notice));
                    }
                }
                Err(status) => return Err(FeedError::Refused(status)),
            }
        }
    }

    /// Records a break; returns a notice when an outage begins.
    fn broke(&mut self, problem: String) -> Option<String> {
        match &mut self.broken {
            Some((_, last)) => {
                *last = problem;
                None
            }
            None => {
                let notice = format!(
                    "lost the connection to the daemon ({problem}); reconnecting for up to {}s",
                    self.window.as_secs()
                );
                self.broken = Some((Instant::now(), problem));
                Some(notice)
            }
        }
    }
}

/// Whether a failed stream or subscription may succeed when tried again (a server restarting,
/// a new token after a daemon restart) rather than being a definite answer.
pub fn is_transient(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::NotFound
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::OutOfRange
            | Code::AlreadyExists
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    type Script = Vec<Result<Vec<Result<ExecutionEvent, Status>>, Status>>;

    /// A scripted source: each subscription gets the next entry; then the daemon is gone.
    struct FakeSource {
        subscriptions: VecDeque<Result<Vec<Result<ExecutionEvent, Status>>, Status>>,
        requested: Vec<u64>,
    }

    struct FakeStream(VecDeque<Result<ExecutionEvent, Status>>);

    impl EventStream for FakeStream {
        async fn message(&mut self) -> Result<Option<ExecutionEvent>, Status> {
            self.0.pop_front().transpose()
        }
    }

    impl EventSource for FakeSource {
        type Stream = FakeStream;

        async fn subscribe(&mut self, after_seq: u64) -> Result<FakeStream, Status> {
            self.requested.push(after_seq);
            match self.subscriptions.pop_front() {
                Some(events) => events.map(|events| FakeStream(events.into())),
                None => Err(Status::unavailable("connection refused")),
            }
        }
    }

    fn feed(subscriptions: Script) -> EventFeed<FakeSource> {
        EventFeed::new(
            FakeSource {
                subscriptions: subscriptions.into(),
                requested: Vec::new(),
            },
            "aex-1",
        )
        .with_reconnect(Duration::from_millis(100), Duration::from_millis(1))
    }

    /// An event; `last` marks the one after which the script's execution ends.
    fn wire(seq: u64, last: bool) -> Result<ExecutionEvent, Status> {
        Ok(ExecutionEvent {
            execution_id: "aex-1".into(),
            seq,
            ts: "2025-01-01T00:00:00.000Z".into(),
            kind: if last { "end" } else { "step" }.into(),
            data_json: "{}".into(),
        })
    }

    /// What a feed yields until the last event or an error: event seqs, and notices.
    async fn drain(feed: &mut EventFeed<FakeSource>) -> (Vec<String>, Option<FeedError>) {
        let mut seen = Vec::new();
        loop {
            match feed.next().await {
                Ok(FeedItem::Event(event)) => {
                    seen.push(event.seq.to_string());
                    if event.kind == "end" {
                        return (seen, None);
                    }
                }
                Ok(FeedItem::Notice(notice)) => seen.push(notice),
                Err(error) => return (seen, Some(error)),
            }
        }
    }

    #[tokio::test]
    async fn a_broken_stream_resumes_after_the_last_event_without_repeats() {
        let mut feed = feed(vec![
            Ok(vec![
                wire(1, false),
                wire(2, false),
                wire(3, false),
                Err(Status::unknown("h2 protocol error: connection reset")),
            ]),
            Err(Status::unavailable("connection refused")),
            // The server replays from what was asked; an overlap is dropped.
            Ok(vec![wire(3, false), wire(4, false), wire(5, true)]),
        ]);
        let (seen, error) = drain(&mut feed).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            seen,
            [
                "1",
                "2",
                "3",
                "lost the connection to the daemon (h2 protocol error: connection reset); \
                 reconnecting for up to 0s",
                "reconnected; following from event 4",
                "4",
                "5",
            ]
        );
        assert_eq!(feed.source().requested, [0, 3, 3]);
        assert_eq!(feed.last_seq(), 5);
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_resumed_too() {
        let mut feed = feed(vec![Ok(vec![wire(1, false)]), Ok(vec![wire(2, true)])]);
        let (seen, error) = drain(&mut feed).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(seen.first().map(String::as_str), Some("1"));
        assert_eq!(seen.last().map(String::as_str), Some("2"));
        assert!(seen[1].contains("the event stream ended early"), "{seen:?}");
        assert_eq!(feed.source().requested, [0, 1]);
    }

    #[tokio::test]
    async fn reconnecting_gives_up_after_the_window() {
        let mut feed = feed(vec![Ok(vec![
            wire(1, false),
            Err(Status::unavailable("shutting down")),
        ])]);
        let (seen, error) = drain(&mut feed).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        let error = error.expect("an error");
        assert_eq!(
            error.to_string(),
            "lost the connection to the daemon while following execution aex-1: connection \
             refused"
        );
        assert!(matches!(error, FeedError::Lost { .. }));
        let requested = &feed.source().requested;
        assert!(requested.len() > 2);
        assert!(requested[1..].iter().all(|&after| after == 1));
    }

    #[tokio::test]
    async fn a_definite_answer_is_not_retried() {
        let mut feed = feed(vec![Err(Status::not_found(
            "execution \"aex-1\" not found",
        ))]);
        let (seen, error) = drain(&mut feed).await;
        assert!(seen.is_empty());
        match error {
            Some(FeedError::Refused(status)) => assert_eq!(status.code(), Code::NotFound),
            other => panic!("{other:?}"),
        }
        assert_eq!(feed.source().requested, [0]);
    }

    #[test]
    fn only_definite_answers_stop_the_reconnection() {
        assert!(is_transient(&Status::unavailable("down")));
        assert!(is_transient(&Status::unknown("reset")));
        assert!(is_transient(&Status::unauthenticated("new token")));
        assert!(!is_transient(&Status::not_found("gone")));
        assert!(!is_transient(&Status::failed_precondition("ended")));
    }
}
