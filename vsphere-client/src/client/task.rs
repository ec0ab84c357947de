//! Waiting for tasks: progress, the typed result, the typed fault.
//!
//! [`TaskWatch`] follows a task through a private [`Collector`] (a filter on the task's `info`
//! and `WaitForUpdatesEx`), so it never disturbs the session's collector. On a server without
//! `CreatePropertyCollector` or `WaitForUpdatesEx` it polls `info` instead (100 ms, growing to
//! 1 s). [`Client::wait_task`] waits for a [`PendingTask`] and converts its result;
//! [`Client::wait_task_with_progress`] also reports each change of state or progress.

use std::time::Duration;

use super::{Client, Collector, RetrieveSpec};
use crate::Error;
use crate::codec::{Any, ManagedObjectReference};
use crate::mo::Task;
use crate::rpc::PendingTask;
use crate::types::{
    LocalizedMethodFault, ObjectSpec, PropertyFilterSpec, PropertySpec, TaskInfo, TaskInfoState,
};

/// How long one `WaitForUpdatesEx` of a task watch blocks before asking again.
const WAIT_SLICE: Duration = Duration::from_secs(20);
/// The first and the longest interval when polling.
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(1);

enum Mode {
    Start,
    Updates(Collector),
    Poll(Duration),
}

/// Follows one task: each [`TaskWatch::next`] returns the task's `info` when its state or
/// progress changed, until it is finished (`success` or `error`).
pub struct TaskWatch<'c> {
    client: &'c Client,
    task: Task,
    mode: Mode,
    last: Option<(TaskInfoState, Option<i32>)>,
    done: bool,
}

impl std::fmt::Debug for TaskWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskWatch")
            .field("task", &self.task.reference().value)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Whether a task in `state` is finished.
pub fn is_finished(state: &TaskInfoState) -> bool {
    matches!(state, TaskInfoState::Success | TaskInfoState::Error)
}

/// The typed error of a task that ended in the `error` state.
///
/// ```
/// use vsphere_client::client::task_error;
/// use vsphere_client::codec::Poly;
/// use vsphere_client::types::{FileNotFound, LocalizedMethodFault};
/// let fault = LocalizedMethodFault {
///     fault: Some(Poly::new(FileNotFound::default())),
///     localized_message: Some("File [ds] a.vmdk was not found".into()),
///     ..LocalizedMethodFault::default()
/// };
/// let e = task_error("task-7", Some(fault));
/// assert!(e.is_fault("FileNotFound"));
/// assert_eq!(e.to_string(), "task task-7 failed with FileNotFound: File [ds] a.vmdk was not found");
/// ```
pub fn task_error(task: &str, fault: Option<LocalizedMethodFault>) -> Error {
    let fault = fault.unwrap_or_default();
    let kind = fault
        .fault
        .as_ref()
        .map_or("MethodFault", |f| f.type_name())
        .to_owned();
    let message = fault
        .localized_message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| fault.fault.as_ref().and_then(|f| f.base().msg.clone()))
        .unwrap_or_else(|| kind.clone());
    Error::TaskFailed {
        task: task.to_owned(),
        kind,
        message,
        fault: Box::new(fault),
    }
}

fn info_filter(task: &ManagedObjectReference) -> PropertyFilterSpec {
    PropertyFilterSpec {
        prop_set: vec![PropertySpec {
            type_: "Task".to_owned(),
            path_set: vec!["info".to_owned()],
            ..PropertySpec::default()
        }],
        object_set: vec![ObjectSpec {
            obj: task.clone(),
            ..ObjectSpec::default()
        }],
        ..PropertyFilterSpec::default()
    }
}

impl Client {
    /// Starts following `task`.
    pub fn watch_task(&self, task: &Task) -> TaskWatch<'_> {
        TaskWatch {
            client: self,
            task: task.clone(),
            mode: Mode::Start,
            last: None,
            done: false,
        }
    }

    /// Waits for `task` to finish and returns its typed result, or [`Error::TaskFailed`]
    /// with the typed fault.
    pub async fn wait_task<R>(&self, task: PendingTask<R>) -> Result<R, Error> {
        self.wait_task_with_progress(task, |_| {}).await
    }

    /// [`Client::wait_task`], calling `on_progress` with the task's `info` whenever its state
    /// or progress changes (the last call sees the finished task).
    pub async fn wait_task_with_progress<R>(
        &self,
        task: PendingTask<R>,
        mut on_progress: impl FnMut(&TaskInfo),
    ) -> Result<R, Error> {
        let mut watch = self.watch_task(task.task());
        loop {
            let Some(info) = watch.next().await? else {
                return Err(Error::MissingResult {
                    method: "Task.info",
                });
            };
            on_progress(&info);
            if is_finished(&info.state) {
                let result = finish(info)?;
                return task.result_from(result);
            }
        }
    }
}

/// The result of a finished task, or its typed error.
fn finish(info: TaskInfo) -> Result<Any, Error> {
    match info.state {
        TaskInfoState::Success => Ok(info.result.unwrap_or(Any::Absent)),
        _ => Err(task_error(
            &info.task.value,
            info.error.map(crate::codec::Obj::into_inner),
        )),
    }
}

impl TaskWatch<'_> {
    /// The task's `info` after its next change of state or progress; `None` once the finished
    /// state has been returned.
    pub async fn next(&mut self) -> Result<Option<TaskInfo>, Error> {
        if self.done {
            return Ok(None);
        }
        loop {
            let info = match &mut self.mode {
                Mode::Start => {
                    self.mode = match self.start_collector().await {
                        Ok(c) => Mode::Updates(c),
                        Err(e) if e.is_not_implemented() => {
                            tracing::debug!(error = %e, "no private collectors: polling the task");
                            Mode::Poll(Duration::ZERO)
                        }
                        Err(e) => return Err(e),
                    };
                    continue;
                }
                Mode::Updates(collector) => match collector.wait(WAIT_SLICE).await {
                    Ok(set) => set.and_then(latest_info),
                    Err(e) if e.is_not_implemented() => {
                        tracing::debug!(error = %e, "no WaitForUpdatesEx: polling the task");
                        self.mode = Mode::Poll(Duration::ZERO);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Mode::Poll(interval) => {
                    if !interval.is_zero() {
                        tokio::time::sleep(*interval).await;
                    }
                    *interval = if interval.is_zero() {
                        POLL_FIRST
                    } else {
                        (*interval * 2).min(POLL_MAX)
                    };
                    Some(self.poll_info().await?)
                }
            };
            let Some(info) = info else { continue };
            let seen = (info.state.clone(), info.progress);
            if self.last.as_ref() == Some(&seen) {
                continue;
            }
            self.last = Some(seen);
            if is_finished(&info.state) {
                self.done = true;
                if let Mode::Updates(c) = std::mem::replace(&mut self.mode, Mode::Start) {
                    let _ = c.close().await;
                }
            }
            return Ok(Some(info));
        }
    }

    async fn start_collector(&self) -> Result<Collector, Error> {
        let collector = self.client.new_collector().await?;
        collector
            .create_filter(&info_filter(self.task.reference()), false)
            .await?;
        Ok(collector)
    }

    async fn poll_info(&self) -> Result<TaskInfo, Error> {
        let spec = RetrieveSpec::objects("Task", &["info"], [self.task.reference().clone()]);
        let all = self.client.retrieve_pages(spec).collect_all().await?;
        all.into_iter()
            .flat_map(|o| o.prop_set)
            .find(|p| p.name == "info")
            .and_then(|p| TaskInfo::from_any(p.val).ok())
            .ok_or(Error::MissingResult {
                method: "Task.info",
            })
    }
}

use crate::codec::Value as _;

/// The newest `info` value in an update set.
fn latest_info(set: crate::types::UpdateSet) -> Option<TaskInfo> {
    set.filter_set
        .into_iter()
        .flat_map(|f| f.object_set)
        .flat_map(|o| o.change_set)
        .filter(|c| c.name == "info")
        .filter_map(|c| c.val.and_then(|v| TaskInfo::from_any(v).ok()))
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Poly;
    use crate::types::{
        InvalidPowerState, ObjectUpdate, PropertyChange, PropertyFilterUpdate, UpdateSet,
    };

    #[test]
    fn a_failed_task_is_a_typed_error() {
        let fault = LocalizedMethodFault {
            fault: Some(Poly::new(InvalidPowerState::default())),
            ..LocalizedMethodFault::default()
        };
        let info = TaskInfo {
            task: ManagedObjectReference::new("Task", "task-3"),
            state: TaskInfoState::Error,
            error: Some(fault.into()),
            ..TaskInfo::default()
        };
        let e = finish(info).unwrap_err();
        assert!(e.is_fault("InvalidPowerState"));
        match e {
            Error::TaskFailed {
                task,
                kind,
                message,
                fault,
            } => {
                assert_eq!(task, "task-3");
                assert_eq!(kind, "InvalidPowerState");
                assert_eq!(message, "InvalidPowerState");
                assert!(
                    fault
                        .fault
                        .as_ref()
                        .unwrap()
                        .downcast_ref::<InvalidPowerState>()
                        .is_some()
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_successful_task_gives_its_result() {
        let info = TaskInfo {
            state: TaskInfoState::Success,
            result: Some(Any::String("vm-9".into())),
            ..TaskInfo::default()
        };
        assert_eq!(finish(info).unwrap().as_str(), Some("vm-9"));
    }

    #[test]
    fn the_latest_info_of_an_update_set_wins() {
        let change = |p: i32| PropertyChange {
            name: "info".into(),
            val: Some(Any::Data(Box::new(TaskInfo {
                progress: Some(p),
                ..TaskInfo::default()
            }))),
            ..PropertyChange::default()
        };
        let set = UpdateSet {
            filter_set: vec![PropertyFilterUpdate {
                object_set: vec![ObjectUpdate {
                    change_set: vec![change(10), change(40)],
                    ..ObjectUpdate::default()
                }],
                ..PropertyFilterUpdate::default()
            }],
            ..UpdateSet::default()
        };
        assert_eq!(latest_info(set).unwrap().progress, Some(40));
    }
}
