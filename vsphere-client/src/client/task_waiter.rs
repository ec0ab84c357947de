//! Waiting for many tasks through **one** property filter: [`TaskWaiter`].
//!
//! [`Client::wait_task`] gives each task a private collector, a filter and its own waits: right
//! for one task, wasteful for a program that runs many (every task costs three extra round
//! trips, and many concurrent waits hold many server-side collectors). A [`TaskWaiter`] is
//! created once and shared: one private [`Collector`] with one filter on every task in
//! `TaskManager.recentTask`, reading only what changes when a task ends (`info.completeTime`,
//! `info.result`, `info.error`). A task then costs its own call plus the waits it shares.
//!
//! Concurrent waiters take turns on the collector: one waits at a time and records every
//! finished task it sees (a bounded list), the others pick their outcome from there. A server
//! without private collectors, or a collector that breaks (a session lost and renewed), falls
//! back to [`Client::wait_task`] for the task at hand; the next task starts a new collector.
//! A task that the filter does not report within one wait slice (it may have left
//! `recentTask`) is read directly once per slice, so no wait hangs on a missed update.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;

use super::{Client, Collector, task_error};
use crate::Error;
use crate::codec::{Any, ManagedObjectReference, Poly, Value as _};
use crate::rpc::PendingTask;
use crate::types::{
    LocalizedMethodFault, ObjectSpec, ObjectUpdateKind, PropertyFilterSpec, PropertySpec,
    TaskInfoState, TraversalSpec, UpdateSet,
};

/// How long one `WaitForUpdatesEx` blocks before the waiter looks again.
const WAIT_SLICE: Duration = Duration::from_secs(20);
/// How many finished tasks are remembered for waiters that have not looked yet.
const REMEMBERED: usize = 512;

/// A finished task: its result, or its fault.
type Outcome = Result<Any, Option<Box<LocalizedMethodFault>>>;

enum State {
    /// No collector yet (or the last one broke).
    Fresh,
    /// The collector with its filter, past the initial report.
    Ready(Collector),
    /// The server has no private collectors or no `WaitForUpdatesEx`.
    Unsupported,
}

/// One property filter that waits for many tasks at once; share it (`Arc<TaskWaiter>`, or a
/// field of a long-lived service) between everything that starts tasks on one client.
///
/// ```no_run
/// # async fn demo(client: &vsphere_client::client::Client,
/// #     vms: Vec<vsphere_client::codec::ManagedObjectReference>)
/// #     -> Result<(), vsphere_client::Error> {
/// use vsphere_client::client::TaskWaiter;
/// use vsphere_client::mo::VirtualMachine;
/// let waiter = TaskWaiter::new();
/// let mut pending = Vec::new();
/// for vm in vms {
///     pending.push(VirtualMachine::from_reference(vm).power_on_vm_task(client, None).await?);
/// }
/// for task in pending {
///     waiter.wait(client, task).await?; // one filter for all of them
/// }
/// # Ok(()) }
/// ```
pub struct TaskWaiter {
    state: AsyncMutex<State>,
    finished: Mutex<VecDeque<(String, Outcome)>>,
}

impl std::fmt::Debug for TaskWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remembered = self
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("TaskWaiter")
            .field("remembered", &remembered)
            .finish_non_exhaustive()
    }
}

impl Default for TaskWaiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The waiter's filter: every task listed in `TaskManager.recentTask`, only the properties
/// that change when a task ends (a state or progress change would wake every waiter).
///
/// ```
/// use vsphere_client::client::task_end_filter;
/// use vsphere_client::codec::ManagedObjectReference;
/// let f = task_end_filter(&ManagedObjectReference::new("TaskManager", "TaskManager"));
/// assert_eq!(f.prop_set[0].type_, "Task");
/// assert!(f.prop_set[0].path_set.iter().all(|p| p.starts_with("info.")));
/// ```
pub fn task_end_filter(task_manager: &ManagedObjectReference) -> PropertyFilterSpec {
    let traverse = TraversalSpec {
        type_: "TaskManager".to_owned(),
        path: "recentTask".to_owned(),
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
fn finished_in(set: UpdateSet) -> Vec<(String, Outcome)> {
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
    /// A waiter with no collector yet (the first wait, or [`TaskWaiter::prepare`], makes it).
    pub fn new() -> Self {
        Self {
            state: AsyncMutex::new(State::Fresh),
            finished: Mutex::new(VecDeque::new()),
        }
    }

    /// Creates the collector and its filter now and reads the initial report (three round
    /// trips), so that the first task does not pay for them. A server without private
    /// collectors is remembered; any other error is left for the first wait to meet again.
    pub async fn prepare(&self, client: &Client) {
        let mut state = self.state.lock().await;
        if matches!(*state, State::Fresh) {
            *state = match start(client).await {
                Ok((c, initial)) => {
                    self.remember(initial);
                    State::Ready(c)
                }
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

    /// Waits for the task and returns its typed result, or [`Error::TaskFailed`] with the
    /// typed fault. Many calls may wait at once (`join!`, tasks): they share the filter.
    pub async fn wait<R>(&self, client: &Client, pending: PendingTask<R>) -> Result<R, Error> {
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
            if self.finished_has(&id) {
                continue;
            }
            match &mut *state {
                State::Fresh => match start(client).await {
                    // The initial report lists the tasks that had already ended, perhaps
                    // this one: remembered, so it is not waited for a whole slice.
                    Ok((c, initial)) => {
                        self.remember(initial);
                        *state = State::Ready(c);
                    }
                    Err(e) if e.is_not_implemented() => *state = State::Unsupported,
                    Err(_) => {
                        drop(state);
                        return client.wait_task(pending).await;
                    }
                },
                State::Ready(collector) => match collector.wait(WAIT_SLICE).await {
                    Ok(Some(set)) => self.remember(finished_in(set)),
                    Ok(None) => {
                        // A whole slice without news of this task: read it directly, in
                        // case it ended outside the filter's sight.
                        drop(state);
                        if let Some(outcome) =
                            read_outcome(client, pending.task().reference()).await?
                        {
                            self.remember(vec![(id.clone(), outcome)]);
                        }
                    }
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

    fn finished_has(&self, task: &str) -> bool {
        self.finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|(t, _)| t == task)
    }
}

/// The outcome of `task` if it has finished, read directly (`info`).
async fn read_outcome(
    client: &Client,
    task: &ManagedObjectReference,
) -> Result<Option<Outcome>, Error> {
    let p = client.properties(task, &["info"]).await?;
    let Some(info) = p.get::<crate::types::TaskInfo>("info") else {
        return Ok(None);
    };
    Ok(match info.state {
        TaskInfoState::Success => Some(Ok(info.result.unwrap_or(Any::Absent))),
        TaskInfoState::Error => Some(Err(info.error.map(|f| Box::new(f.into_inner())))),
        _ => None,
    })
}

/// A collector with the end filter, past its initial report (which lists every recent task),
/// and the tasks that report shows as finished.
async fn start(client: &Client) -> Result<(Collector, Vec<(String, Outcome)>), Error> {
    let task_manager = client
        .service_content()
        .task_manager
        .clone()
        .ok_or(Error::Unsupported {
            feature: "task waiting on a server without a TaskManager",
        })?;
    let mut collector = client.new_collector().await?;
    collector
        .create_filter(&task_end_filter(&task_manager), false)
        .await?;
    let initial = collector.wait(Duration::ZERO).await?;
    Ok((collector, initial.map(finished_in).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InvalidState, ObjectUpdate, PropertyChange, PropertyFilterUpdate};

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
                        ObjectUpdateKind::Enter,
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
        assert_eq!(
            task, "task-3",
            "a task already finished when it enters counts"
        );
        let e = task_error("task-3", outcome.unwrap_err().map(|f| *f));
        assert!(e.is_fault("InvalidState"));
        assert!(done.next().is_none());
    }

    #[test]
    fn the_filter_reads_only_the_end_of_recent_tasks() {
        let spec = task_end_filter(&ManagedObjectReference::new("TaskManager", "TaskManager"));
        let paths = &spec.prop_set[0].path_set;
        assert!(!paths.iter().any(|p| p == "info"));
        assert!(
            !paths
                .iter()
                .any(|p| p.contains("state") || p.contains("progress")),
            "a state or progress change would wake the waiter before the end"
        );
        assert_eq!(spec.object_set[0].obj.type_, "TaskManager");
        assert_eq!(spec.object_set[0].skip, Some(true));
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
        let newest = format!("task-{}", REMEMBERED + 2);
        assert!(w.finished_has(&newest));
        assert!(w.take(&newest).is_some());
        assert!(w.take(&newest).is_none());
        assert!(format!("{w:?}").contains(&format!("remembered: {}", REMEMBERED - 1)));
    }
}
