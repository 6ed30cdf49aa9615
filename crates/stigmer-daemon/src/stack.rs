//! The daemon's long-lived tasks as a stack: started bottom up, stopped top down, and watched
//! for panics while they run. Also the one way the daemon runs blocking work: off the async
//! runtime's worker threads, with a panic there reported like any other.
//!
//! A task that panics is a bug; the daemon must not run on without the part that died (a
//! daemon whose API server task is gone answers nobody, and one whose unit supervisor is gone
//! stops restarting that unit), nor stop with exit code 0 as if nothing happened. So a panic
//! stops the whole stack in the usual order and becomes [`DaemonError::TaskPanicked`], with the
//! panic's message in the daemon's log.

use crate::error::DaemonError;
use std::future::Future;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

/// What a layer's task returns.
pub type LayerResult = Result<(), DaemonError>;

/// The daemon's long-lived tasks, in the order they were started.
#[derive(Default)]
pub struct Stack {
    layers: Vec<Layer>,
}

struct Layer {
    /// Says what it is in log lines and errors ("the API server").
    name: &'static str,
    stop: watch::Sender<bool>,
    /// `None` once the task has ended and its result is in `ended`.
    task: Option<JoinHandle<LayerResult>>,
    ended: Option<LayerResult>,
}

impl Stack {
    /// Starts a layer on top of the stack: `start` gets the flag that becomes true when the
    /// layer is to stop, and returns the layer's work, which runs as a task.
    pub fn push<F>(&mut self, name: &'static str, start: impl FnOnce(watch::Receiver<bool>) -> F)
    where
        F: Future<Output = LayerResult> + Send + 'static,
    {
        let (stop, stop_requested) = watch::channel(false);
        self.layers.push(Layer {
            name,
            stop,
            task: Some(tokio::spawn(start(stop_requested))),
            ended: None,
        });
    }

    /// Runs until `shutdown` completes or a layer's task panics, then stops the layers in
    /// reverse order, each one after the one above it has ended. A layer that ends early
    /// without a panic (the API server after an error) leaves the others running, as before.
    ///
    /// Returns the first panic, else the first error a layer ended with.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> LayerResult {
        let mut panic = None;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                (index, joined) = first_to_end(&mut self.layers) => {
                    let layer = &mut self.layers[index];
                    layer.task = None;
                    match outcome(layer.name, joined) {
                        Err(error @ DaemonError::TaskPanicked { .. }) => {
                            panic = Some(error);
                            break;
                        }
                        ended => layer.ended = Some(ended),
                    }
                }
            }
        }
        for layer in self.layers.iter_mut().rev() {
            tracing::info!("Stopping {}.", layer.name);
            layer.stop.send_replace(true);
            if let Some(task) = layer.task.take() {
                match outcome(layer.name, task.await) {
                    Err(error @ DaemonError::TaskPanicked { .. }) if panic.is_none() => {
                        panic = Some(error);
                    }
                    ended => layer.ended = Some(ended),
                }
            }
        }
        if let Some(panic) = panic {
            return Err(panic);
        }
        self.layers
            .into_iter()
            .filter_map(|layer| layer.ended)
            .find(Result::is_err)
            .unwrap_or(Ok(()))
    }
}

/// Waits for the first of the layers' running tasks to end; never completes when none runs.
async fn first_to_end(layers: &mut [Layer]) -> (usize, Result<LayerResult, JoinError>) {
    let (indices, tasks): (Vec<usize>, Vec<&mut JoinHandle<LayerResult>>) = layers
        .iter_mut()
        .enumerate()
        .filter_map(|(index, layer)| layer.task.as_mut().map(|task| (index, task)))
        .unzip();
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let (joined, position, _) = futures::future::select_all(tasks).await;
    (indices[position], joined)
}

/// A joined layer's result, with a panic turned into [`DaemonError::TaskPanicked`] (and
/// logged). Layers are never aborted, so a cancelled one can only be a runtime shutting down.
fn outcome(task: &str, joined: Result<LayerResult, JoinError>) -> LayerResult {
    match joined {
        Ok(result) => result,
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => Err(panicked(task, error)),
    }
}

/// The error for a task that did not finish: its panic, with the panic's message in the log.
pub fn panicked(task: &str, error: JoinError) -> DaemonError {
    let message = if error.is_panic() {
        panic_message(error.into_panic())
    } else {
        "it was cancelled".to_owned()
    };
    tracing::error!(task, panic = %message, "A daemon task panicked; the daemon stops.");
    DaemonError::TaskPanicked {
        task: task.to_owned(),
        message,
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

/// Runs blocking work (file system, `/proc`, sleeping waits) on the runtime's blocking pool,
/// so it never holds up the async worker threads that serve the API and supervise the units.
pub async fn blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| panicked(task, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    type Stopped = Arc<Mutex<Vec<&'static str>>>;

    /// A layer that runs until asked to stop, and notes that it stopped.
    fn stops_on_request(
        name: &'static str,
        stopped: &Stopped,
    ) -> impl FnOnce(watch::Receiver<bool>) -> std::pin::Pin<Box<dyn Future<Output = LayerResult> + Send>>
    {
        let stopped = stopped.clone();
        move |mut stop| {
            Box::pin(async move {
                let _ = stop.wait_for(|stop| *stop).await;
                stopped.lock().unwrap().push(name);
                Ok(())
            })
        }
    }

    /// Held by the tests that log, so that none runs while the logged panic is checked.
    static LOGGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn panics(message: &'static str) -> LayerResult {
        panic!("{message}");
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_stack_in_reverse_with_its_message_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("daemon.log");
        let log = stigmer_logs::SharedLogFile::open(&log_path, Default::default()).unwrap();
        // The other tests of this module hit the same log call sites on their own threads with
        // no subscriber: they wait, and tracing's cache of who listens is rebuilt for ours.
        let _alone = LOGGING.lock().await;
        let _logging = tracing::subscriber::set_default(tracing_subscriber::registry().with(
            stigmer_logs::JsonLayer::new("daemon", stigmer_logs::LogSink::File(log)),
        ));
        tracing::callsite::rebuild_interest_cache();
        let stopped = Stopped::default();
        let mut stack = Stack::default();
        stack.push("the bottom", stops_on_request("the bottom", &stopped));
        stack.push("the API server", |_stop| panics("boom: the board is gone"));
        stack.push("the top", stops_on_request("the top", &stopped));

        // No shutdown ever comes: only the panic can end the stack.
        let ended =
            tokio::time::timeout(Duration::from_secs(10), stack.run(std::future::pending()))
                .await
                .expect("a panic ends the stack");

        match &ended {
            Err(DaemonError::TaskPanicked { task, message }) => {
                assert_eq!(task, "the API server");
                assert_eq!(message, "boom: the board is gone");
            }
            other => panic!("expected the panic, got {other:?}"),
        }
        assert_eq!(
            ended.unwrap_err().to_string(),
            "the API server panicked: boom: the board is gone"
        );
        assert_eq!(*stopped.lock().unwrap(), ["the top", "the bottom"]);
        let log = fs_err::read_to_string(&log_path).unwrap();
        let line = log
            .lines()
            .find(|line| line.contains("boom: the board is gone"))
            .unwrap_or_else(|| panic!("no line with the panic's message in {log}"));
        assert!(line.contains(r#""level":"error""#), "{line}");
    }

    #[tokio::test]
    async fn a_panic_while_stopping_is_returned_too() {
        let _alone = LOGGING.lock().await;
        let stopped = Stopped::default();
        let mut stack = Stack::default();
        stack.push("the bottom", stops_on_request("the bottom", &stopped));
        stack.push("the runners", |mut stop| async move {
            let _ = stop.wait_for(|stop| *stop).await;
            panics("boom: while stopping").await
        });
        let ended = stack.run(async {}).await;
        assert!(
            matches!(&ended, Err(DaemonError::TaskPanicked { message, .. }) if message == "boom: while stopping"),
            "{ended:?}"
        );
        assert_eq!(*stopped.lock().unwrap(), ["the bottom"]);
    }

    #[tokio::test]
    async fn an_error_leaves_the_others_running_and_is_returned_at_shutdown() {
        let _alone = LOGGING.lock().await;
        let stopped = Stopped::default();
        let mut stack = Stack::default();
        let (failed, failed_seen) = tokio::sync::oneshot::channel();
        stack.push("the bottom", stops_on_request("the bottom", &stopped));
        stack.push("the API server", |_stop| async move {
            let _ = failed.send(());
            Err(DaemonError::Container("the server failed".into()))
        });
        stack.push("the top", stops_on_request("the top", &stopped));
        let ended = stack
            .run(async {
                let _ = failed_seen.await;
            })
            .await;
        assert!(
            matches!(&ended, Err(DaemonError::Container(message)) if message == "the server failed"),
            "{ended:?}"
        );
        assert_eq!(*stopped.lock().unwrap(), ["the top", "the bottom"]);
    }

    #[tokio::test]
    async fn a_shutdown_stops_every_layer_in_reverse_order() {
        let _alone = LOGGING.lock().await;
        let stopped = Stopped::default();
        let mut stack = Stack::default();
        for name in ["Temporal", "the API server", "runners"] {
            stack.push(name, stops_on_request(name, &stopped));
        }
        let ended = stack.run(async {}).await;
        assert!(ended.is_ok(), "{ended:?}");
        assert_eq!(
            *stopped.lock().unwrap(),
            ["runners", "the API server", "Temporal"]
        );
    }

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_an_error() {
        let _alone = LOGGING.lock().await;
        let ended = blocking("reaping", || panic!("boom: in a blocking thread")).await;
        match ended {
            Err(DaemonError::TaskPanicked { task, message }) => {
                assert_eq!(task, "reaping");
                assert_eq!(message, "boom: in a blocking thread");
            }
            Ok(()) => panic!("the panic was lost"),
            Err(other) => panic!("expected the panic, got {other:?}"),
        }
    }
}
