//! Waiting for the backend's tasks through **one** property filter created once per backend
//! instance: a private [`Collector`] of `vsphere-client` with a filter on every task of
//! `TaskManager.recentTask`, reading only the properties that change when a task ends
//! (`info.completeTime`, `info.result`, `info.error`). A task then costs its call plus two
//! `WaitForUpdatesEx` (the task entering the filter, then its end) instead of a collector, a
//! filter and several waits per task ([`Client::wait_task`]), or a poll loop.
//!
//! Concurrent waiters share the collector: one waits at a time and records every finished task
//! it sees (a bounded list), the others pick their outcome from there. A server without private
//! collectors, or a collector that breaks (a session lost and renewed), falls back to
//! [`Client::wait_task`] for the task at hand; the next task starts a new collector.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use vsphere_client::Error as ClientError;
use vsphere_client::client::{Client, Collector, task_error};
use vsphere_client::codec::{Any, ManagedObjectReference, Poly, Value as _};
use vsphere_client::rpc::PendingTask;
use vsphere_client::types::{
    LocalizedMethodFault, ObjectSpec, ObjectUpdateKind, PropertyFilterSpec, PropertySpec,
    SelectionSpec, TraversalSpec, UpdateSet,
};

/// How long one `WaitForUpdatesEx` blocks before asking again.
const WAIT_SLICE: Duration = Duration::from_secs(20);
/// How many finished tasks are remembered for waiters that have not looked yet.
const REMEMBERED: usize = 512;

/// A finished task: its result, or its fault.
type Outcome = Result<Any, Option<Box<LocalizedMethodFault>>>;

enum State {
    /// No collector yet (or the last one broke).
    Fresh,
    /// The collector with its filter, already past the initial report.
    Ready(Collector),
    /// The server has no private collectors or no `WaitForUpdatesEx`.
    Unsupported,
}

/// The shared task waiter of one backend instance.
pub(super) struct TaskWaiter {
    state: AsyncMutex<State>,
    finished: Mutex<VecDeque<(String, Outcome)>>,
}

impl std::fmt::Debug for TaskWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskWaiter").finish_non_exhaustive()
    }
}

/// The filter: every task listed in `TaskManager.recentTask`, only its end properties.
pub(super) fn end_filter(task_manager: &ManagedObjectReference) -> PropertyFilterSpec {
    let traverse = TraversalSpec {
        selection_spec: SelectionSpec {
            name: Some("recentTask".to_owned()),
            ..SelectionSpec::default()
        },
        type_: "TaskManager".to_owned(),
        path: "recentTask".to_owned(),
        skip: Some(false),
        ..TraversalSpec::default()
    };
    PropertyFilterSpec {
        prop_set: vec![PropertySpec {
            type_: "Task".to_owned(),
            path_set: vec![
                "info.completeTime".to_owned(),
                "info.result".to_owned(),
                "info.error".to_owned(),
            ],
            ..PropertySpec::default()
        }],
        object_set: vec![ObjectSpec {
            obj: task_manager.clone(),
            skip: Some(true),
            select_set: vec![Poly::new(traverse)],
            ..ObjectSpec::default()
        }],
        ..PropertyFilterSpec::default()
    }
}

/// The finished tasks in an update set: a task is finished once `info.completeTime` is set.
pub(super) fn finished_in(set: UpdateSet) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for object in set.filter_set.into_iter().flat_map(|f| f.object_set) {
        if matches!(object.kind, ObjectUpdateKind::Leave) {
            continue;
        }
        let mut complete = false;
        let mut result = Any::Absent;
        let mut error = None;
        for change in object.change_set {
            match (change.name.as_str(), change.val) {
                ("info.completeTime", Some(v)) => complete = !matches!(v, Any::Absent),
                ("info.result", Some(v)) => result = v,
                ("info.error", Some(v)) => error = LocalizedMethodFault::from_any(v).ok(),
                _ => {}
            }
        }
        if complete {
            let outcome = match error {
                Some(fault) => Err(Some(Box::new(fault))),
                None => Ok(result),
            };
            out.push((object.obj.value, outcome));
        }
    }
    out
}

impl TaskWaiter {
    /// A waiter with no collector yet.
    pub(super) fn new() -> Self {
        Self {
            state: AsyncMutex::new(State::Fresh),
            finished: Mutex::new(VecDeque::new()),
        }
    }

    /// Creates the collector and its filter now and reads the initial report (three round
    /// trips), so that the first task does not pay for them. A server without private
    /// collectors is remembered; any other error is left for the first task to meet again.
    pub(super) async fn prepare(&self, client: &Client) {
        let mut state = self.state.lock().await;
        if matches!(*state, State::Fresh) {
            *state = match start(client).await {
                Ok(c) => State::Ready(c),
                Err(e) if e.is_not_implemented() => State::Unsupported,
                Err(_) => State::Fresh,
            };
        }
    }

    fn take(&self, task: &str) -> Option<Outcome> {
        let mut done = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        let i = done.iter().position(|(t, _)| t == task)?;
        done.remove(i).map(|(_, o)| o)
    }

    fn remember(&self, finished: Vec<(String, Outcome)>) {
        let mut done = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        for f in finished {
            if done.len() == REMEMBERED {
                done.pop_front();
            }
            done.push_back(f);
        }
    }

    /// Waits for the task and returns its typed result, or [`ClientError::TaskFailed`].
    pub(super) async fn wait<R>(
        &self,
        client: &Client,
        pending: PendingTask<R>,
    ) -> Result<R, ClientError> {
        let id = pending.task().reference().value.clone();
        loop {
            if let Some(outcome) = self.take(&id) {
                return match outcome {
                    Ok(result) => pending.result_from(result),
                    Err(fault) => Err(task_error(&id, fault.map(|f| *f))),
                };
            }
            let mut state = self.state.lock().await;
            // Another waiter may have seen this task end while this one queued for the lock.
            if let Some(outcome) = self.take(&id) {
                self.remember(vec![(id.clone(), outcome)]);
                continue;
            }
            match &mut *state {
                State::Fresh => match start(client).await {
                    Ok(c) => *state = State::Ready(c),
                    Err(e) if e.is_not_implemented() => *state = State::Unsupported,
                    Err(_) => {
                        drop(state);
                        return client.wait_task(pending).await;
                    }
                },
                State::Ready(collector) => match collector.wait(WAIT_SLICE).await {
                    Ok(Some(set)) => self.remember(finished_in(set)),
                    Ok(None) => {}
                    Err(e) => {
                        // The collector broke (a lost session takes its collectors along):
                        // this task is waited for alone, the next one starts a new collector.
                        *state = if e.is_not_implemented() {
                            State::Unsupported
                        } else {
                            State::Fresh
                        };
                        drop(state);
                        return client.wait_task(pending).await;
                    }
                },
                State::Unsupported => {
                    drop(state);
                    return client.wait_task(pending).await;
                }
            }
        }
    }
}

/// A collector with the end filter, past its initial report (which lists every recent task).
async fn start(client: &Client) -> Result<Collector, ClientError> {
    let task_manager =
        client
            .service_content()
            .task_manager
            .clone()
            .ok_or(ClientError::Unsupported {
                feature: "task waiting on a server without a TaskManager",
            })?;
    let mut collector = client.new_collector().await?;
    collector
        .create_filter(&end_filter(&task_manager), false)
        .await?;
    collector.wait(Duration::ZERO).await?;
    Ok(collector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::types::{InvalidState, ObjectUpdate, PropertyChange, PropertyFilterUpdate};

    fn change(name: &str, val: Any) -> PropertyChange {
        PropertyChange {
            name: name.to_owned(),
            val: Some(val),
            ..PropertyChange::default()
        }
    }

    fn update(task: &str, kind: ObjectUpdateKind, changes: Vec<PropertyChange>) -> ObjectUpdate {
        ObjectUpdate {
            kind,
            obj: ManagedObjectReference::new("Task", task),
            change_set: changes,
            ..ObjectUpdate::default()
        }
    }

    #[test]
    fn only_tasks_with_a_complete_time_are_finished() {
        let time = Any::String("2026-11-29T05:00:00Z".to_owned());
        let fault = LocalizedMethodFault {
            fault: Some(Poly::new(InvalidState::default())),
            ..LocalizedMethodFault::default()
        };
        let set = UpdateSet {
            filter_set: vec![PropertyFilterUpdate {
                object_set: vec![
                    update("task-1", ObjectUpdateKind::Enter, vec![]),
                    update(
                        "task-2",
                        ObjectUpdateKind::Modify,
                        vec![
                            change("info.completeTime", time.clone()),
                            change("info.result", Any::String("vm-7".to_owned())),
                        ],
                    ),
                    update(
                        "task-3",
                        ObjectUpdateKind::Modify,
                        vec![
                            change("info.completeTime", time.clone()),
                            change("info.error", Any::Data(Box::new(fault))),
                        ],
                    ),
                    update("task-4", ObjectUpdateKind::Leave, vec![]),
                ],
                ..PropertyFilterUpdate::default()
            }],
            ..UpdateSet::default()
        };
        let mut done = finished_in(set).into_iter();
        let (task, outcome) = done.next().unwrap();
        assert_eq!(task, "task-2");
        assert_eq!(outcome.unwrap().as_str(), Some("vm-7"));
        let (task, outcome) = done.next().unwrap();
        assert_eq!(task, "task-3");
        let e = task_error("task-3", outcome.unwrap_err().map(|f| *f));
        assert!(e.is_fault("InvalidState"));
        assert!(done.next().is_none());
    }

    #[test]
    fn the_filter_reads_only_the_end_of_recent_tasks() {
        let spec = end_filter(&ManagedObjectReference::new("TaskManager", "TaskManager"));
        assert_eq!(spec.prop_set[0].type_, "Task");
        assert!(!spec.prop_set[0].path_set.iter().any(|p| p == "info"));
        assert!(
            !spec.prop_set[0]
                .path_set
                .iter()
                .any(|p| p.contains("state") || p.contains("progress")),
            "a state or progress change would wake the waiter before the end"
        );
        assert_eq!(spec.object_set[0].obj.type_, "TaskManager");
    }

    #[test]
    fn remembered_outcomes_are_bounded_and_taken_once() {
        let w = TaskWaiter::new();
        w.remember(
            (0..REMEMBERED + 3)
                .map(|i| (format!("task-{i}"), Ok(Any::Absent)))
                .collect(),
        );
        assert!(w.take("task-0").is_none(), "the oldest are dropped");
        assert!(w.take(&format!("task-{}", REMEMBERED + 2)).is_some());
        assert!(w.take(&format!("task-{}", REMEMBERED + 2)).is_none());
    }
}
