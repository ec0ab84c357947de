//! A run's state, folded from its journal. Plain code: no IO, no clock.
//!
//! [`RunState::check`] refuses transitions that would regress a finished task or run, so that
//! the journal can never hold, say, `RUNNING` after `SUCCEEDED`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::binding::Scope;
use crate::journal::{AttemptOutcome, Entry, Record, RunStatus, TaskStatus, Timestamp};
use crate::model::ApprovalPolicy;

/// One task's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskState {
    /// Its status.
    pub status: TaskStatus,
    /// The highest attempt number used so far (attempt numbers never repeat).
    pub last_attempt: u32,
    /// Attempts used before the last resume (they do not count against the retry budget).
    pub budget_base: u32,
    /// The attempt running (started, not finished), if any.
    pub running_attempt: Option<u32>,
    /// The absolute deadline of all attempts.
    pub deadline: Option<Timestamp>,
    /// The earliest start of the next attempt.
    pub not_before: Option<Timestamp>,
    /// Whether `TaskStarted` was journaled (since the last resume).
    pub started: bool,
    /// Outputs (when finished).
    pub outputs: Value,
    /// Why it ended so.
    pub message: String,
    /// How each attempt ended, in order.
    pub attempts: Vec<AttemptOutcome>,
}

impl Default for TaskState {
    fn default() -> Self {
        Self {
            status: TaskStatus::Pending,
            last_attempt: 0,
            budget_base: 0,
            running_attempt: None,
            deadline: None,
            not_before: None,
            started: false,
            outputs: Value::Null,
            message: String::new(),
            attempts: Vec::new(),
        }
    }
}

/// A gate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateState {
    /// When it was first evaluated.
    pub opened_at: Option<Timestamp>,
    /// `Some(None)` passed, `Some(Some(reason))` failed.
    pub outcome: Option<Option<String>>,
}

/// A decision on an approval request (the audit record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Who decided.
    pub actor: String,
    /// Approved or rejected.
    pub approved: bool,
    /// Their comment.
    pub comment: String,
    /// When.
    pub at: Timestamp,
}

/// An approval request's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApprovalState {
    /// Who may approve, how many.
    pub policy: ApprovalPolicy,
    /// When it was requested.
    pub requested_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// Decisions since it was (re)opened.
    pub decisions: Vec<Decision>,
    /// Every decision ever made, resumes included.
    pub audit: Vec<Decision>,
}

/// A run's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunState {
    /// The run's id.
    pub run_id: String,
    /// The journal version this state reflects.
    pub version: u64,
    /// The pipeline's YAML.
    #[serde(skip)]
    pub pipeline: String,
    /// Inputs.
    pub inputs: BTreeMap<String, String>,
    /// Who started it.
    pub initiator: String,
    /// Its working directory.
    pub work_dir: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its journal last changed.
    pub updated_at: Timestamp,
    /// Its status.
    pub status: RunStatus,
    /// Why it ended so.
    pub message: String,
    /// Tasks by `(stage, task)`.
    #[serde(serialize_with = "ser_tasks")]
    pub tasks: BTreeMap<(String, String), TaskState>,
    /// Gates by id.
    pub gates: BTreeMap<String, GateState>,
    /// Approval requests by id.
    pub approvals: BTreeMap<String, ApprovalState>,
    /// `Some(hard)` once a cancel was requested.
    pub cancel_requested: Option<bool>,
    /// Whether a pause was requested and the run has not paused (or resumed) since.
    pub pause_requested: bool,
    /// Rollbacks run since the last resume, by scope: the child run and how it ended.
    pub rollbacks: BTreeMap<String, (String, RunStatus)>,
    /// How many times the run was resumed.
    pub resumes: u32,
}

fn ser_tasks<S: serde::Serializer>(
    tasks: &BTreeMap<(String, String), TaskState>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(tasks.len()))?;
    for ((stage, task), state) in tasks {
        m.serialize_entry(&format!("{stage}.{task}"), state)?;
    }
    m.end()
}

impl RunState {
    /// Folds a journal into a state.
    pub fn fold(run_id: &str, entries: &[Entry]) -> Result<Self, String> {
        let Some(Entry {
            record:
                Record::RunCreated {
                    pipeline,
                    inputs,
                    initiator,
                    work_dir,
                },
            at,
            ..
        }) = entries.first()
        else {
            return Err("the journal does not start with RunCreated".into());
        };
        let mut s = Self {
            run_id: run_id.to_owned(),
            version: 1,
            pipeline: pipeline.clone(),
            inputs: inputs.clone(),
            initiator: initiator.clone(),
            work_dir: work_dir.clone(),
            created_at: *at,
            updated_at: *at,
            status: RunStatus::Running,
            message: String::new(),
            tasks: BTreeMap::new(),
            gates: BTreeMap::new(),
            approvals: BTreeMap::new(),
            cancel_requested: None,
            pause_requested: false,
            rollbacks: BTreeMap::new(),
            resumes: 0,
        };
        for e in &entries[1..] {
            s.check(&e.record)?;
            s.apply(e);
        }
        Ok(s)
    }

    /// A task's state (pending when never seen).
    pub fn task(&self, stage: &str, task: &str) -> TaskState {
        self.tasks
            .get(&(stage.to_owned(), task.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn task_mut(&mut self, stage: &str, task: &str) -> &mut TaskState {
        self.tasks
            .entry((stage.to_owned(), task.to_owned()))
            .or_default()
    }

    fn task_status(&self, stage: &str, task: &str) -> TaskStatus {
        self.tasks
            .get(&(stage.to_owned(), task.to_owned()))
            .map_or(TaskStatus::Pending, |t| t.status)
    }

    /// Refuses a record that would regress the run.
    pub fn check(&self, record: &Record) -> Result<(), String> {
        let finished = self.status.is_terminal();
        match record {
            Record::RunCreated { .. } => Err("the run already exists".into()),
            Record::Resumed => {
                if matches!(self.status, RunStatus::Succeeded) {
                    Err("a succeeded run cannot be resumed".into())
                } else {
                    Ok(())
                }
            }
            Record::ApprovalDecided { .. } if finished => {
                Err(format!("the run is {:?}", self.status))
            }
            _ if finished => Err(format!("the run is already {:?}", self.status)),
            Record::TaskStarted { stage, task, .. }
            | Record::AttemptStarted { stage, task, .. }
            | Record::TaskFinished { stage, task, .. }
            | Record::RetryScheduled { stage, task, .. } => {
                let st = self.task_status(stage, task);
                if st.is_terminal() {
                    Err(format!(
                        "task {stage}.{task} is already {} and cannot change",
                        st.as_str()
                    ))
                } else {
                    Ok(())
                }
            }
            Record::AttemptFinished {
                stage,
                task,
                attempt,
                ..
            } => {
                let t = self.task(stage, task);
                if t.running_attempt == Some(*attempt) {
                    Ok(())
                } else {
                    Err(format!(
                        "attempt {attempt} of {stage}.{task} is not running"
                    ))
                }
            }
            Record::GatePassed { gate } | Record::GateFailed { gate, .. } => {
                if self.gates.get(gate).is_some_and(|g| g.outcome.is_some()) {
                    Err(format!("gate {gate} is already decided"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Applies a checked entry.
    pub fn apply(&mut self, entry: &Entry) {
        self.version = entry.version;
        let at = entry.at;
        self.updated_at = at;
        if self.status == RunStatus::Waiting
            && matches!(
                entry.record,
                Record::TaskStarted { .. }
                    | Record::AttemptStarted { .. }
                    | Record::TaskFinished { .. }
                    | Record::GatePassed { .. }
                    | Record::GateFailed { .. }
            )
        {
            self.status = RunStatus::Running;
        }
        match &entry.record {
            Record::RunCreated { .. } => {}
            Record::GateOpened { gate } => {
                let g = self.gates.entry(gate.clone()).or_default();
                g.opened_at.get_or_insert(at);
            }
            Record::GatePassed { gate } => {
                let g = self.gates.entry(gate.clone()).or_default();
                g.outcome = Some(None);
            }
            Record::GateFailed { gate, reason } => {
                let g = self.gates.entry(gate.clone()).or_default();
                g.outcome = Some(Some(reason.clone()));
            }
            Record::ApprovalRequested {
                request,
                policy,
                expires_at,
            } => {
                let audit = self
                    .approvals
                    .get(request)
                    .map(|a| a.audit.clone())
                    .unwrap_or_default();
                self.approvals.insert(
                    request.clone(),
                    ApprovalState {
                        policy: policy.clone(),
                        requested_at: at,
                        expires_at: *expires_at,
                        decisions: Vec::new(),
                        audit,
                    },
                );
            }
            Record::ApprovalDecided {
                request,
                actor,
                approved,
                comment,
            } => {
                if let Some(a) = self.approvals.get_mut(request) {
                    let d = Decision {
                        actor: actor.clone(),
                        approved: *approved,
                        comment: comment.clone(),
                        at,
                    };
                    a.decisions.push(d.clone());
                    a.audit.push(d);
                }
            }
            Record::TaskStarted {
                stage,
                task,
                deadline,
            } => {
                self.status = RunStatus::Running;
                let t = self.task_mut(stage, task);
                t.started = true;
                t.deadline = *deadline;
                t.status = TaskStatus::Running;
            }
            Record::AttemptStarted {
                stage,
                task,
                attempt,
                ..
            } => {
                let t = self.task_mut(stage, task);
                t.running_attempt = Some(*attempt);
                t.last_attempt = t.last_attempt.max(*attempt);
                t.not_before = None;
                t.status = TaskStatus::Running;
            }
            Record::AttemptFinished {
                stage,
                task,
                outcome,
                ..
            } => {
                let t = self.task_mut(stage, task);
                t.running_attempt = None;
                t.attempts.push(outcome.clone());
            }
            Record::RetryScheduled {
                stage,
                task,
                not_before,
            } => {
                self.task_mut(stage, task).not_before = Some(*not_before);
            }
            Record::TaskFinished {
                stage,
                task,
                status,
                outputs,
                message,
            } => {
                let t = self.task_mut(stage, task);
                t.status = *status;
                t.outputs.clone_from(outputs);
                t.message.clone_from(message);
                t.running_attempt = None;
            }
            Record::Paused => {
                self.status = RunStatus::Paused;
                self.pause_requested = false;
            }
            Record::PauseRequested { .. } => self.pause_requested = true,
            Record::Parked { .. } => self.status = RunStatus::Waiting,
            Record::Resumed => {
                self.status = RunStatus::Running;
                self.resumes += 1;
                self.rollbacks.clear();
                self.message.clear();
                self.cancel_requested = None;
                self.pause_requested = false;
                for t in self.tasks.values_mut() {
                    if t.status != TaskStatus::Succeeded && t.status.is_terminal() {
                        t.status = TaskStatus::Pending;
                        t.budget_base = t.last_attempt;
                        t.deadline = None;
                        t.not_before = None;
                        t.started = false;
                        t.outputs = Value::Null;
                        t.message.clear();
                    }
                }
                self.gates
                    .retain(|_, g| !matches!(g.outcome, Some(Some(_))));
                for a in self.approvals.values_mut() {
                    if a.decisions.iter().any(|d| !d.approved) {
                        a.decisions.clear();
                    }
                }
            }
            Record::CancelRequested { hard, .. } => {
                self.cancel_requested = Some(self.cancel_requested.unwrap_or(false) || *hard);
            }
            Record::RolledBack { scope, run, status } => {
                self.rollbacks.insert(scope.clone(), (run.clone(), *status));
            }
            Record::RunFinished { status, message } => {
                self.status = *status;
                self.message.clone_from(message);
            }
        }
    }

    /// A [`Scope`] over this state, the pipeline's variables and its input defaults.
    pub fn scope<'a>(&'a self, vars: &'a BTreeMap<String, String>) -> RunScope<'a> {
        RunScope { state: self, vars }
    }
}

/// Bindings resolved against a run's state.
#[derive(Debug)]
pub struct RunScope<'a> {
    state: &'a RunState,
    vars: &'a BTreeMap<String, String>,
}

impl Scope for RunScope<'_> {
    fn input(&self, name: &str) -> Option<&str> {
        self.state.inputs.get(name).map(String::as_str)
    }
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
    fn task_outputs(&self, stage: &str, task: &str) -> Option<&Value> {
        self.state
            .tasks
            .get(&(stage.to_owned(), task.to_owned()))
            .filter(|t| t.status.is_terminal())
            .map(|t| &t.outputs)
    }
    fn task_status(&self, stage: &str, task: &str) -> Option<&str> {
        Some(self.state.task_status(stage, task).as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(version: u64, record: Record) -> Entry {
        Entry {
            version,
            at: Timestamp(1000 * version as i64),
            record,
        }
    }

    fn created() -> Entry {
        e(
            1,
            Record::RunCreated {
                pipeline: String::new(),
                inputs: BTreeMap::new(),
                initiator: "ann".into(),
                work_dir: "/tmp".into(),
            },
        )
    }

    fn finished(v: u64, status: TaskStatus) -> Entry {
        e(
            v,
            Record::TaskFinished {
                stage: "S".into(),
                task: "t".into(),
                status,
                outputs: json!({"x": 1}),
                message: String::new(),
            },
        )
    }

    #[test]
    fn a_succeeded_task_cannot_regress() {
        let s = RunState::fold("r", &[created(), finished(2, TaskStatus::Succeeded)]).unwrap();
        assert_eq!(s.task("S", "t").status, TaskStatus::Succeeded);
        let again = Record::TaskStarted {
            stage: "S".into(),
            task: "t".into(),
            deadline: None,
        };
        assert!(s.check(&again).unwrap_err().contains("already SUCCEEDED"));
        assert!(
            RunState::fold(
                "r",
                &[created(), finished(2, TaskStatus::Succeeded), e(3, again)]
            )
            .is_err()
        );
    }

    #[test]
    fn resume_resets_failed_tasks_only() {
        let mut s = RunState::fold(
            "r",
            &[
                created(),
                finished(2, TaskStatus::Failed),
                e(
                    3,
                    Record::RunFinished {
                        status: RunStatus::Failed,
                        message: "t failed".into(),
                    },
                ),
            ],
        )
        .unwrap();
        assert_eq!(s.status, RunStatus::Failed);
        assert!(s.check(&Record::Paused).is_err());
        s.apply(&e(4, Record::Resumed));
        assert_eq!(s.status, RunStatus::Running);
        assert_eq!(s.task("S", "t").status, TaskStatus::Pending);
    }

    #[test]
    fn a_pause_request_holds_until_the_run_pauses_or_resumes() {
        let pause = || Record::PauseRequested {
            reason: "lunch".into(),
        };
        let mut s = RunState::fold("r", &[created(), e(2, pause())]).unwrap();
        assert!(s.pause_requested);
        assert_eq!(s.status, RunStatus::Running);
        s.apply(&e(3, Record::Paused));
        assert!(!s.pause_requested);
        assert_eq!(s.status, RunStatus::Paused);
        s.apply(&e(4, pause()));
        s.apply(&e(5, Record::Resumed));
        assert!(!s.pause_requested, "resuming clears a pending pause");
        s.apply(&e(
            6,
            Record::RunFinished {
                status: RunStatus::Succeeded,
                message: String::new(),
            },
        ));
        assert!(s.check(&pause()).is_err(), "a finished run cannot pause");
    }

    #[test]
    fn attempts_and_deadlines_are_tracked() {
        let s = RunState::fold(
            "r",
            &[
                created(),
                e(
                    2,
                    Record::TaskStarted {
                        stage: "S".into(),
                        task: "t".into(),
                        deadline: Some(Timestamp(99)),
                    },
                ),
                e(
                    3,
                    Record::AttemptStarted {
                        stage: "S".into(),
                        task: "t".into(),
                        attempt: 1,
                        key: "k".into(),
                        deadline: None,
                    },
                ),
            ],
        )
        .unwrap();
        let t = s.task("S", "t");
        assert_eq!(t.running_attempt, Some(1));
        assert_eq!(t.deadline, Some(Timestamp(99)));
        let wrong = Record::AttemptFinished {
            stage: "S".into(),
            task: "t".into(),
            attempt: 2,
            outcome: AttemptOutcome::Succeeded,
        };
        assert!(s.check(&wrong).is_err());
    }
}
