//! The validated pipeline model: what [`crate::load`] produces and the engine runs.
//!
//! Every value here has passed validation: task names are unique in their stage, `needs` form
//! an acyclic graph and `tasks` are in a topological order, every binding names something that
//! exists upstream. The types keep those facts: tasks refer to their dependencies by index.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::binding::Template;
use crate::expr::Condition;

/// The JSON type of an input or output field, checked at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ValueType {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A list.
    Array,
    /// A map; any path below it is accepted.
    Object,
    /// Anything.
    Any,
}

impl ValueType {
    /// The type of a JSON value.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::String(_) => Self::String,
            Value::Number(_) => Self::Number,
            Value::Bool(_) => Self::Bool,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
            Value::Null => Self::Any,
        }
    }

    /// Whether a value of type `other` may be used where `self` is expected.
    pub fn accepts(self, other: Self) -> bool {
        self == Self::Any || other == Self::Any || self == other
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Array => "array",
            Self::Object => "object",
            Self::Any => "any",
        };
        f.write_str(s)
    }
}

/// A pipeline input: its default and whether a caller must give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputDef {
    /// The default value (Code Stream's `input:` map holds defaults).
    pub default: String,
    /// Whether the caller must supply a value.
    pub mandatory: bool,
    /// What the input is for.
    pub description: String,
}

/// A variable's kind, after Code Stream's REGULAR / SECRET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum VariableKind {
    /// A plain value.
    Regular,
    /// A value that is redacted from outputs, logs, `Debug` output and errors.
    Secret,
}

/// A pipeline variable. Its `Debug` output never shows a secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Variable {
    /// Regular or secret.
    pub kind: VariableKind,
    value: String,
}

impl Variable {
    /// A variable of `kind` holding `value`.
    pub fn new(kind: VariableKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }

    /// The value (callers must not log secret values).
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.kind {
            VariableKind::Regular => self.value.as_str(),
            VariableKind::Secret => "<redacted>",
        };
        f.debug_struct("Variable")
            .field("kind", &self.kind)
            .field("value", &shown)
            .finish()
    }
}

/// Retries of a task: how many attempts in all and how long to wait between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each further one.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after attempt `attempt` (1-based) failed: exponential, capped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipeline_core::model::RetryPolicy;
    /// let p = RetryPolicy { attempts: 5, backoff: Duration::from_millis(100),
    ///                       max_backoff: Duration::from_millis(300) };
    /// assert_eq!(p.backoff_after(1), Duration::from_millis(100));
    /// assert_eq!(p.backoff_after(2), Duration::from_millis(200));
    /// assert_eq!(p.backoff_after(3), Duration::from_millis(300));
    /// ```
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Time limits of a task; both become absolute deadlines in the journal when the task starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutPolicy {
    /// The limit of one attempt.
    pub attempt: Option<Duration>,
    /// The limit of all attempts and waits together.
    pub total: Option<Duration>,
}

/// One task of a stage.
#[derive(Clone, Debug)]
pub struct Task {
    /// The task's name, unique in its stage.
    pub name: String,
    /// The task type (`Shell`, `Git`, `Condition`, `UserOperation`, ...).
    pub kind: String,
    /// The task's input; every string in it is a template with bindings.
    pub input: serde_json::Map<String, Value>,
    /// Indices (in the stage's `tasks`) of the tasks this one waits for.
    pub needs: Vec<usize>,
    /// When present and false at run time, the task is skipped.
    pub pre_condition: Option<Condition>,
    /// When true, the task's failure does not fail the stage.
    pub ignore_failure: bool,
    /// Retries.
    pub retry: RetryPolicy,
    /// Time limits.
    pub timeout: TimeoutPolicy,
    /// Run when the task fails the run.
    pub rollback: Option<Rollback>,
    /// The YAML line the task is defined on.
    pub line: u64,
}

/// A stage: tasks in topological order, and its gates.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// Tasks, each after the tasks it needs.
    pub tasks: Vec<Task>,
    /// Checked before the first task starts.
    pub entry_gate: Option<Gate>,
    /// Checked after the last task ends.
    pub exit_gate: Option<Gate>,
    /// Run when the stage fails the run.
    pub rollback: Option<Rollback>,
    /// Tasks that run after the stage whatever its outcome, as a stage named `<stage>-finally`.
    pub finally: Option<Box<Stage>>,
}

/// A rollback pipeline, run (as a durable child run) when what it is attached to fails.
#[derive(Clone, Debug)]
pub struct Rollback {
    /// The pipeline file, relative to the engine's pipeline directory.
    pub pipeline: String,
    /// Its inputs; strings are templates resolved against the failed run.
    pub input: serde_json::Map<String, Value>,
}

/// How a gate combines its rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GateMode {
    /// Every rule must pass.
    #[default]
    All,
    /// One passing rule suffices.
    Any,
}

/// A gate: a valve that decides whether the flow may go on.
#[derive(Clone, Debug)]
pub struct Gate {
    /// Its id in the run, e.g. `Build.exit` or `pipeline.entry`.
    pub id: String,
    /// How the rules combine.
    pub mode: GateMode,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// What happens when an approval expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnExpiry {
    /// The gate (and so the run) fails.
    #[default]
    Fail,
    /// The run is cancelled.
    Cancel,
}

/// Who may approve, how many must, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// The request's name, unique within its gate.
    pub name: String,
    /// Users who may approve.
    pub approvers: Vec<String>,
    /// Groups whose members may approve.
    pub groups: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Whether the run's initiator may approve it (false by default).
    pub allow_self_approval: bool,
    /// How long the request stays open.
    pub expires_after: Option<Duration>,
    /// What expiry does.
    pub on_expiry: OnExpiry,
    /// What the approver is asked.
    pub summary: String,
}

/// A daily time range on some weekdays, in the window's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// Weekdays the range applies to (all when empty).
    pub days: Vec<chrono::Weekday>,
    /// Start, minutes after midnight (inclusive).
    pub start_minute: u32,
    /// End, minutes after midnight (exclusive); may be before `start_minute` to span midnight.
    pub end_minute: u32,
}

/// One gate rule.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Rule {
    /// A CEL condition over bindings must be true.
    Condition(Condition),
    /// A JUnit XML report's pass rate must reach a threshold.
    TestThreshold {
        /// The report's file path (usually a binding to a task output).
        report: Template,
        /// The lowest pass rate, in percent.
        min_pass_percent: f64,
        /// The fewest tests the report must hold.
        min_tests: u64,
    },
    /// People must approve.
    Approval(ApprovalPolicy),
    /// The flow may go on only inside an allowed window and outside every denied one.
    Window {
        /// The windows' time zone.
        tz: chrono_tz::Tz,
        /// Allowed ranges (any time when empty).
        allow: Vec<TimeRange>,
        /// Denied ranges.
        deny: Vec<TimeRange>,
    },
    /// Waits a fixed time after the gate opens.
    Delay(Duration),
    /// Repeats a shell check until it succeeds or the deadline passes.
    Poll {
        /// The shell command; exit status 0 passes.
        command: Template,
        /// Time between checks.
        interval: Duration,
        /// How long to keep checking after the gate opens.
        timeout: Duration,
    },
    /// An artifact version must have passed a stage (Concourse's `passed:`).
    ArtifactPassed {
        /// Repository.
        repo: String,
        /// Artifact name.
        artifact: String,
        /// The stage it must have passed.
        stage: String,
    },
}

/// A validated pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The pipeline's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The most tasks of one run running at once.
    pub concurrency: usize,
    /// Inputs by name.
    pub inputs: BTreeMap<String, InputDef>,
    /// Variables by name.
    pub variables: BTreeMap<String, Variable>,
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// Tasks that run after the stages whatever their outcome, as a stage named `finally`.
    pub finally: Option<Stage>,
    /// Checked before the first stage.
    pub entry_gate: Option<Gate>,
    /// Checked after the last stage.
    pub exit_gate: Option<Gate>,
    /// Run when the run fails.
    pub rollback: Option<Rollback>,
    /// The YAML the pipeline was loaded from (journaled with each run).
    pub source: String,
}

impl Pipeline {
    /// Looks a stage up by name (`finally` blocks included).
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .chain(self.finally.as_ref())
            .chain(self.stages.iter().filter_map(|s| s.finally.as_deref()))
            .find(|s| s.name == name)
    }

    /// The number of tasks in all stages and `finally` blocks.
    pub fn task_count(&self) -> usize {
        self.stages
            .iter()
            .chain(self.finally.as_ref())
            .map(|s| s.tasks.len() + s.finally.as_ref().map_or(0, |f| f.tasks.len()))
            .sum()
    }

    /// The values of secret variables, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        self.variables
            .values()
            .filter(|v| v.kind == VariableKind::Secret && !v.expose().is_empty())
            .map(|v| v.expose().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_variables_are_redacted_in_debug() {
        let v = Variable::new(VariableKind::Secret, "hunter2");
        let shown = format!("{v:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("redacted"));
        let r = Variable::new(VariableKind::Regular, "eu");
        assert!(format!("{r:?}").contains("eu"));
    }

    #[test]
    fn value_types_accept() {
        assert!(ValueType::Any.accepts(ValueType::Number));
        assert!(ValueType::String.accepts(ValueType::Any));
        assert!(!ValueType::String.accepts(ValueType::Number));
        assert_eq!(ValueType::of(&serde_json::json!(1)), ValueType::Number);
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy {
            attempts: 40,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        };
        assert_eq!(p.backoff_after(35), Duration::from_secs(10));
    }
}
