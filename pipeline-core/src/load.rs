//! Loading: YAML close to Code Stream's export, validated before anything runs.
//!
//! The format is Code Stream's (`kind: PIPELINE`, `stageOrder`, `stages`, `taskOrder`, `tasks`
//! with `type`, `input`, `preCondition`, `ignoreFailure`), extended with `needs` (a DAG inside a
//! stage), `retry`, `timeout`, `variables` (REGULAR or SECRET), `finally` and gates
//! (`entryGate`/`exitGate` on stages and on the pipeline). In `taskOrder`, an entry `a,b` runs
//! `a` and `b` in parallel after the previous entry, as in Code Stream; an explicit `needs`
//! replaces that implicit ordering.
//!
//! Everything that can be checked statically is checked, and every problem is reported with its
//! YAML line: unknown or unsupported task types, unknown input fields, literal values of the wrong
//! type, `needs` naming nothing or forming a cycle, bindings that name nothing or a task that is
//! not upstream, output paths that a task type does not produce, bound values whose type does not
//! fit the field, invalid CEL conditions, invalid gate rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::Error;
use crate::binding::{Binding, PathSegment, Template};
use crate::expr::Condition;
use crate::model::{
    ApprovalPolicy, Gate, GateMode, InputDef, OnExpiry, Pipeline, RetryPolicy, Rule, Stage, Task,
    TimeRange, TimeoutPolicy, ValueType, Variable, VariableKind,
};
use crate::task::{FieldSpec, TaskRegistry};

/// A problem found while loading, with its place in the YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)
    }
}

/// Loads and validates a pipeline from YAML text.
///
/// ```
/// use pipeline_core::{load::load_pipeline, task::TaskRegistry};
/// let yaml = "kind: PIPELINE\nname: p\nstageOrder: [S]\nstages:\n  S:\n    taskOrder: [a]\n    tasks:\n      a:\n        type: Shell\n        input:\n          script: echo ${input.who}\n";
/// let err = load_pipeline(yaml, &TaskRegistry::builtin()).unwrap_err();
/// assert!(err.to_string().contains("line 11"), "{err}");
/// assert!(err.to_string().contains("${input.who}"));
/// ```
pub fn load_pipeline(yaml: &str, registry: &TaskRegistry) -> Result<Pipeline, Error> {
    let raw: RawPipeline = serde_saphyr::from_str(yaml).map_err(|e| {
        let loc = e.location();
        Error::Yaml {
            line: loc.map_or(0, |l| l.line()),
            column: loc.map_or(0, |l| l.column()),
            message: e.to_string(),
        }
    })?;
    let mut v = Validator {
        registry,
        diags: Vec::new(),
    };
    let pipeline = v.pipeline(raw, yaml);
    if v.diags.is_empty() {
        Ok(pipeline)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.column));
        Err(Error::Invalid {
            diagnostics: v.diags,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    kind: Spanned<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    project: Option<Value>,
    #[serde(default)]
    icon: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    notifications: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    input: BTreeMap<String, Spanned<Value>>,
    #[serde(default, rename = "_inputMeta")]
    input_meta: BTreeMap<String, RawInputMeta>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<RawVariable>>,
    #[serde(rename = "stageOrder")]
    stage_order: Vec<Spanned<String>>,
    stages: BTreeMap<String, Spanned<RawStage>>,
    #[serde(default)]
    finally: Option<Spanned<RawStage>>,
    #[serde(default, rename = "entryGate")]
    entry_gate: Option<Spanned<RawGate>>,
    #[serde(default, rename = "exitGate")]
    exit_gate: Option<Spanned<RawGate>>,
    #[serde(default)]
    rollback: Option<RawRollback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    pipeline: String,
    #[serde(default)]
    input: BTreeMap<String, Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputMeta {
    #[serde(default)]
    description: String,
    #[serde(default)]
    mandatory: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(rename = "type", default = "regular")]
    kind: VariableKind,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "fromEnv")]
    from_env: Option<String>,
}

fn regular() -> VariableKind {
    VariableKind::Regular
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(rename = "taskOrder")]
    task_order: Vec<Spanned<String>>,
    tasks: BTreeMap<String, Spanned<RawTask>>,
    #[serde(default, rename = "entryGate")]
    entry_gate: Option<Spanned<RawGate>>,
    #[serde(default, rename = "exitGate")]
    exit_gate: Option<Spanned<RawGate>>,
    #[serde(default)]
    rollback: Option<RawRollback>,
    #[serde(default)]
    finally: Option<Box<Spanned<RawStage>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    input: BTreeMap<String, Spanned<Value>>,
    #[serde(default, rename = "preCondition")]
    pre_condition: Option<Spanned<String>>,
    #[serde(default, rename = "ignoreFailure")]
    ignore_failure: bool,
    #[serde(default)]
    needs: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    timeout: Option<Spanned<RawTimeout>>,
    #[serde(default)]
    endpoints: Option<Value>,
    #[serde(default)]
    rollback: Option<RawRollback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: u32,
    #[serde(default, rename = "backoffSeconds")]
    backoff_seconds: Option<f64>,
    #[serde(default, rename = "maxBackoffSeconds")]
    max_backoff_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeout {
    #[serde(default, rename = "attemptSeconds")]
    attempt_seconds: Option<f64>,
    #[serde(default, rename = "totalSeconds")]
    total_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    #[serde(default)]
    mode: GateMode,
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRule {
    #[serde(rename = "type")]
    kind: String,
    condition: Option<String>,
    report: Option<String>,
    #[serde(rename = "minPassPercent")]
    min_pass_percent: Option<f64>,
    #[serde(rename = "minTests")]
    min_tests: Option<u64>,
    name: Option<String>,
    approvers: Vec<String>,
    groups: Vec<String>,
    quorum: Option<u32>,
    #[serde(rename = "allowSelfApproval")]
    allow_self_approval: bool,
    #[serde(rename = "expiresAfterSeconds")]
    expires_after_seconds: Option<f64>,
    #[serde(rename = "onExpiry")]
    on_expiry: Option<OnExpiry>,
    summary: Option<String>,
    timezone: Option<String>,
    allow: Vec<RawRange>,
    deny: Vec<RawRange>,
    seconds: Option<f64>,
    command: Option<String>,
    #[serde(rename = "intervalSeconds")]
    interval_seconds: Option<f64>,
    #[serde(rename = "timeoutSeconds")]
    timeout_seconds: Option<f64>,
    repo: Option<String>,
    artifact: Option<String>,
    stage: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRange {
    #[serde(default)]
    days: Vec<String>,
    start: String,
    end: String,
}

/// What a binding at some place in the pipeline may see.
struct Visibility<'a> {
    /// Stages whose every task is visible (earlier stages).
    whole_stages: &'a [usize],
    /// The stage being built (name, tasks, current task), whose current task sees its ancestors.
    same_stage: Option<(&'a str, &'a [Task], usize)>,
}

struct StageInfo {
    name: String,
    /// Task name → (index, kind).
    tasks: HashMap<String, (usize, String)>,
}

impl StageInfo {
    fn of(stage: &Stage) -> Self {
        Self::of_tasks(&stage.name, &stage.tasks)
    }

    fn of_tasks(name: &str, tasks: &[Task]) -> Self {
        Self {
            name: name.to_owned(),
            tasks: tasks
                .iter()
                .enumerate()
                .map(|(j, t)| (t.name.clone(), (j, t.kind.clone())))
                .collect(),
        }
    }
}

struct Validator<'r> {
    registry: &'r TaskRegistry,
    diags: Vec<Diagnostic>,
}

fn at<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{what} must be a non-negative number"))
}

impl Validator<'_> {
    fn err(&mut self, (line, column): (u64, u64), message: impl Into<String>) {
        self.diags.push(Diagnostic {
            line,
            column,
            message: message.into(),
        });
    }

    fn pipeline(&mut self, raw: RawPipeline, yaml: &str) -> Pipeline {
        let _ = (
            &raw.project,
            &raw.icon,
            raw.enabled,
            &raw.notifications,
            &raw.tags,
            &raw.output,
        );
        if raw.kind.value != "PIPELINE" {
            self.err(
                at(&raw.kind),
                format!("kind must be PIPELINE, not `{}`", raw.kind.value),
            );
        }
        let mut inputs = BTreeMap::new();
        for (name, value) in &raw.input {
            let default = match &value.value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                _ => {
                    self.err(
                        at(value),
                        format!("input `{name}` must have a scalar default"),
                    );
                    String::new()
                }
            };
            let meta = raw.input_meta.get(name);
            inputs.insert(
                name.clone(),
                InputDef {
                    default,
                    mandatory: meta.is_some_and(|m| m.mandatory),
                    description: meta.map(|m| m.description.clone()).unwrap_or_default(),
                },
            );
        }
        for name in raw.input_meta.keys() {
            if !raw.input.contains_key(name) {
                self.err(
                    (0, 0),
                    format!("_inputMeta names input `{name}`, which is not in input"),
                );
            }
        }
        let mut variables = BTreeMap::new();
        for (name, var) in &raw.variables {
            let value = match (&var.value.value, &var.value.from_env) {
                (Some(_), None) if var.value.kind == VariableKind::Secret => {
                    self.err(
                        at(var),
                        format!(
                            "secret variable `{name}` must take its value from `fromEnv`, never \
                             inline (pipelines are journaled)"
                        ),
                    );
                    String::new()
                }
                (Some(v), None) => v.clone(),
                (None, Some(env)) => std::env::var(env).unwrap_or_default(),
                _ => {
                    self.err(
                        at(var),
                        format!("variable `{name}` needs exactly one of value or fromEnv"),
                    );
                    String::new()
                }
            };
            variables.insert(name.clone(), Variable::new(var.value.kind, value));
        }

        // Stage order.
        let mut order: Vec<(String, (u64, u64))> = Vec::new();
        let mut seen = BTreeSet::new();
        for s in &raw.stage_order {
            if !seen.insert(s.value.clone()) {
                self.err(
                    at(s),
                    format!("stage `{}` appears twice in stageOrder", s.value),
                );
            } else if !raw.stages.contains_key(&s.value) {
                self.err(
                    at(s),
                    format!(
                        "stageOrder names stage `{}`, which is not in stages",
                        s.value
                    ),
                );
            } else if s.value == "finally" || s.value == "pipeline" {
                self.err(
                    at(s),
                    format!("`{}` is reserved and cannot name a stage", s.value),
                );
            } else {
                order.push((s.value.clone(), at(s)));
            }
        }
        for (name, stage) in &raw.stages {
            if !seen.contains(name) {
                self.err(
                    at(stage),
                    format!("stage `{name}` is not listed in stageOrder"),
                );
            }
        }

        let mut stages_by_name = raw.stages;
        let mut stages = Vec::new();
        let mut env = Env {
            registry: self.registry,
            inputs: inputs.keys().cloned().collect(),
            vars: variables.keys().cloned().collect(),
            infos: Vec::new(),
        };
        let entry_gate = raw
            .entry_gate
            .map(|g| self.gate(g, "pipeline.entry".into(), &env, &[]));
        for (i, (name, _)) in order.iter().enumerate() {
            let Some(raw_stage) = stages_by_name.remove(name) else {
                continue;
            };
            let earlier: Vec<usize> = (0..i).collect();
            let stage = self.stage(name.clone(), raw_stage, &env, &earlier);
            env.infos.push(StageInfo::of(&stage));
            stages.push(stage);
        }
        let all: Vec<usize> = (0..stages.len()).collect();
        let finally = raw.finally.map(|f| {
            let mut st = self.stage("finally".into(), f, &env, &all);
            st.entry_gate = None;
            st
        });
        let exit_gate = raw
            .exit_gate
            .map(|g| self.gate(g, "pipeline.exit".into(), &env, &all));
        let rollback = raw
            .rollback
            .map(|rb| self.rollback(rb, &env, "pipeline", &all));
        Pipeline {
            name: raw.name,
            description: raw.description,
            concurrency: raw.concurrency.map_or(8, |c| c.max(1) as usize),
            inputs,
            variables,
            stages,
            finally,
            entry_gate,
            exit_gate,
            rollback,
            source: yaml.to_owned(),
        }
    }

    fn stage(
        &mut self,
        name: String,
        raw: Spanned<RawStage>,
        env: &Env<'_>,
        earlier: &[usize],
    ) -> Stage {
        let stage_at = at(&raw);
        let raw = raw.value;
        // taskOrder groups.
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut placed: HashMap<String, usize> = HashMap::new();
        for entry in &raw.task_order {
            let mut group = Vec::new();
            for t in entry.value.split(',').map(str::trim) {
                if !raw.tasks.contains_key(t) {
                    self.err(
                        at(entry),
                        format!(
                            "taskOrder of stage `{name}` names task `{t}`, which is not in tasks"
                        ),
                    );
                } else if placed.insert(t.to_owned(), groups.len()).is_some() {
                    self.err(
                        at(entry),
                        format!("task `{t}` appears twice in taskOrder of stage `{name}`"),
                    );
                } else {
                    group.push(t.to_owned());
                }
            }
            groups.push(group);
        }
        for (t, task) in &raw.tasks {
            if !placed.contains_key(t) {
                self.err(
                    at(task),
                    format!("task `{t}` of stage `{name}` is not listed in taskOrder"),
                );
            }
        }
        // Needs (explicit, or the previous taskOrder group).
        let order: Vec<&String> = groups.iter().flatten().collect();
        let index_of: HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); order.len()];
        for (i, tname) in order.iter().enumerate() {
            let task = &raw.tasks[tname.as_str()];
            if let Some(explicit) = &task.value.needs {
                for n in explicit {
                    match index_of.get(n.value.as_str()) {
                        Some(&j) if j == i => {
                            self.err(at(n), format!("task `{tname}` needs itself"));
                        }
                        Some(&j) => needs[i].push(j),
                        None => self.err(
                            at(n),
                            format!(
                                "task `{tname}` needs `{}`, which is not a task of stage `{name}`",
                                n.value
                            ),
                        ),
                    }
                }
            } else {
                let g = placed[tname.as_str()];
                if g > 0 {
                    needs[i].extend(groups[g - 1].iter().map(|n| index_of[n.as_str()]));
                }
            }
        }
        // Topological order (Kahn), keeping taskOrder order among ready tasks.
        let topo = match toposort(&needs) {
            Ok(t) => t,
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&i| order[i].as_str()).collect();
                let first = &raw.tasks[order[cycle[0]].as_str()];
                self.err(
                    at(first),
                    format!(
                        "tasks of stage `{name}` form a cycle through needs: {}",
                        names.join(" -> ")
                    ),
                );
                (0..order.len()).collect()
            }
        };
        let mut new_index = vec![0usize; order.len()];
        for (new, &old) in topo.iter().enumerate() {
            new_index[old] = new;
        }
        let mut tasks: Vec<Task> = Vec::with_capacity(order.len());
        let mut raw_tasks = raw.tasks;
        let mut pending_inputs = Vec::new();
        let mut task_rollbacks = Vec::new();
        for &old in &topo {
            let tname = order[old].clone();
            let Some(rt) = raw_tasks.remove(&tname) else {
                continue;
            };
            let task_at = at(&rt);
            let rt = rt.value;
            let mut needs_new: Vec<usize> = needs[old].iter().map(|&j| new_index[j]).collect();
            needs_new.sort_unstable();
            needs_new.dedup();
            let retry = match &rt.retry {
                None => RetryPolicy::default(),
                Some(r) => {
                    let mut p = RetryPolicy::default();
                    if r.value.attempts == 0 {
                        self.err(at(r), "retry.attempts must be at least 1");
                    }
                    p.attempts = r.value.attempts.max(1);
                    match r
                        .value
                        .backoff_seconds
                        .map(|s| secs(s, "retry.backoffSeconds"))
                    {
                        Some(Ok(d)) => p.backoff = d,
                        Some(Err(e)) => self.err(at(r), e),
                        None => {}
                    }
                    match r
                        .value
                        .max_backoff_seconds
                        .map(|s| secs(s, "retry.maxBackoffSeconds"))
                    {
                        Some(Ok(d)) => p.max_backoff = d,
                        Some(Err(e)) => self.err(at(r), e),
                        None => {}
                    }
                    p
                }
            };
            let mut timeout = TimeoutPolicy::default();
            if let Some(t) = &rt.timeout {
                for (v, slot, what) in [
                    (
                        t.value.attempt_seconds,
                        &mut timeout.attempt,
                        "timeout.attemptSeconds",
                    ),
                    (
                        t.value.total_seconds,
                        &mut timeout.total,
                        "timeout.totalSeconds",
                    ),
                ] {
                    match v.map(|s| secs(s, what)) {
                        Some(Ok(d)) => *slot = Some(d),
                        Some(Err(e)) => self.diags.push(Diagnostic {
                            line: at(t).0,
                            column: at(t).1,
                            message: e,
                        }),
                        None => {}
                    }
                }
            }
            let _ = &rt.endpoints;
            task_rollbacks.push(rt.rollback);
            pending_inputs.push((rt.kind, rt.input, rt.pre_condition, task_at));
            tasks.push(Task {
                name: tname,
                kind: String::new(),
                input: serde_json::Map::new(),
                needs: needs_new,
                pre_condition: None,
                ignore_failure: rt.ignore_failure,
                retry,
                timeout,
                rollback: None,
                line: task_at.0,
            });
        }
        // Inputs and conditions, now that every task of the stage has its place.
        let this_stage = env.infos.len();
        for (i, (kind, input, pre, task_at)) in pending_inputs.into_iter().enumerate() {
            let spec = self.kind(&kind);
            let vis = Visibility {
                whole_stages: earlier,
                same_stage: Some((&name, &tasks, i)),
            };
            let mut resolved = serde_json::Map::new();
            if let Some(spec) = spec {
                for f in spec.0 {
                    if f.required && !input.contains_key(f.name) {
                        self.err(
                            task_at,
                            format!(
                                "task `{}` ({}) needs input `{}`",
                                tasks[i].name, kind.value, f.name
                            ),
                        );
                    }
                }
                for (field, value) in input {
                    match spec.0.iter().find(|f| f.name == field) {
                        None => {
                            let known: Vec<&str> = spec.0.iter().map(|f| f.name).collect();
                            self.err(
                                at(&value),
                                format!(
                                    "task type {} has no input `{field}` (it has: {})",
                                    kind.value,
                                    known.join(", ")
                                ),
                            );
                        }
                        Some(f) => {
                            self.check_value(
                                &value,
                                f.ty,
                                &format!("input `{field}`"),
                                env,
                                &name,
                                &vis,
                            );
                            resolved.insert(field, value.value);
                        }
                    }
                }
            }
            let pre_condition = pre.and_then(|p| self.condition(&p, env, &name, &vis));
            let t = &mut tasks[i];
            t.kind = kind.value;
            t.input = resolved;
            t.pre_condition = pre_condition;
        }
        let info_env = Env {
            registry: self.registry,
            inputs: env.inputs.clone(),
            vars: env.vars.clone(),
            infos: env
                .infos
                .iter()
                .map(|s| StageInfo {
                    name: s.name.clone(),
                    tasks: s.tasks.clone(),
                })
                .chain(std::iter::once(StageInfo::of_tasks(&name, &tasks)))
                .collect(),
        };
        let entry_gate = raw
            .entry_gate
            .map(|g| self.gate(g, format!("{name}.entry"), env, earlier));
        let mut with_self: Vec<usize> = earlier.to_vec();
        with_self.push(this_stage);
        let exit_gate = raw
            .exit_gate
            .map(|g| self.gate(g, format!("{name}.exit"), &info_env, &with_self));
        for (i, rb) in task_rollbacks.into_iter().enumerate() {
            tasks[i].rollback = rb.map(|rb| self.rollback(rb, &info_env, &name, &with_self));
        }
        let rollback = raw
            .rollback
            .map(|rb| self.rollback(rb, &info_env, &name, &with_self));
        let finally = raw.finally.and_then(|f| {
            if name == "finally" || name.ends_with("-finally") {
                self.err(
                    at(&f),
                    format!("`{name}` is a finally block and cannot have its own"),
                );
                return None;
            }
            let mut st = self.stage(format!("{name}-finally"), *f, &info_env, &with_self);
            if st.entry_gate.is_some() || st.exit_gate.is_some() || st.rollback.is_some() {
                self.err(
                    stage_at,
                    format!("the finally block of `{name}` cannot have gates or a rollback"),
                );
            }
            st.entry_gate = None;
            st.exit_gate = None;
            Some(Box::new(st))
        });
        Stage {
            name,
            tasks,
            entry_gate,
            exit_gate,
            rollback,
            finally,
        }
    }

    fn rollback(
        &mut self,
        raw: RawRollback,
        env: &Env<'_>,
        stage: &str,
        visible: &[usize],
    ) -> crate::model::Rollback {
        let vis = Visibility {
            whole_stages: visible,
            same_stage: None,
        };
        let mut input = serde_json::Map::new();
        for (k, v) in raw.input {
            self.check_value(
                &v,
                ValueType::Any,
                &format!("rollback input `{k}`"),
                env,
                stage,
                &vis,
            );
            input.insert(k, v.value);
        }
        crate::model::Rollback {
            pipeline: raw.pipeline,
            input,
        }
    }

    fn kind(
        &mut self,
        kind: &Spanned<String>,
    ) -> Option<(&'static [FieldSpec], &'static [FieldSpec])> {
        if let Some(spec) = self.registry.spec(&kind.value) {
            return Some(spec);
        }
        if self.registry.is_unsupported(&kind.value) {
            self.err(
                at(kind),
                format!(
                    "task type `{}` is not supported by this build of pipeline-core",
                    kind.value
                ),
            );
        } else {
            self.err(
                at(kind),
                format!(
                    "unknown task type `{}` (known: {})",
                    kind.value,
                    self.registry.names().join(", ")
                ),
            );
        }
        None
    }

    fn condition(
        &mut self,
        c: &Spanned<String>,
        env: &Env<'_>,
        stage: &str,
        vis: &Visibility<'_>,
    ) -> Option<Condition> {
        match Condition::compile(&c.value) {
            Ok(cond) => {
                for b in cond.bindings() {
                    if let Err(e) = env.check(b, stage, vis) {
                        self.err(at(c), e);
                    }
                }
                Some(cond)
            }
            Err(e) => {
                self.err(at(c), e);
                None
            }
        }
    }

    fn check_value(
        &mut self,
        value: &Spanned<Value>,
        want: ValueType,
        what: &str,
        env: &Env<'_>,
        stage: &str,
        vis: &Visibility<'_>,
    ) {
        let mut strings = Vec::new();
        collect_strings(&value.value, &mut strings);
        for s in strings {
            match Template::parse(s) {
                Err(e) => self.err(at(value), e),
                Ok(t) => {
                    for b in t.bindings() {
                        match env.check(b, stage, vis) {
                            Err(e) => self.err(at(value), e),
                            Ok(ty) => {
                                if t.single_binding().is_some()
                                    && Value::String(s.to_owned()) == value.value
                                    && !want.accepts(ty)
                                {
                                    self.err(
                                        at(value),
                                        format!("{what} must be {want}, but {b} is {ty}"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        let literal = ValueType::of(&value.value);
        let is_template = matches!(&value.value, Value::String(s) if s.contains("${"));
        if !is_template && !want.accepts(literal) {
            self.err(at(value), format!("{what} must be {want}, not {literal}"));
        }
    }

    fn gate(
        &mut self,
        raw: Spanned<RawGate>,
        id: String,
        env: &Env<'_>,
        visible: &[usize],
    ) -> Gate {
        let vis = Visibility {
            whole_stages: visible,
            same_stage: None,
        };
        let stage_name = id.split('.').next().unwrap_or_default().to_owned();
        let mut rules = Vec::new();
        let mut approval_names = BTreeSet::new();
        if raw.value.rules.is_empty() {
            self.err(at(&raw), format!("gate {id} has no rules"));
        }
        for r in raw.value.rules {
            let pos = at(&r);
            match Self::rule(&r.value, env, &stage_name, &vis) {
                Ok(rule) => {
                    if let Rule::Approval(p) = &rule
                        && !approval_names.insert(p.name.clone())
                    {
                        self.err(
                            pos,
                            format!("gate {id} has two approvals named `{}`", p.name),
                        );
                    }
                    rules.push(rule);
                }
                Err(e) => self.err(pos, format!("gate {id}: {e}")),
            }
        }
        Gate {
            id,
            mode: raw.value.mode,
            rules,
        }
    }

    fn rule(r: &RawRule, env: &Env<'_>, stage: &str, vis: &Visibility<'_>) -> Result<Rule, String> {
        let need = |o: Option<String>, what: &str| {
            o.ok_or_else(|| format!("a {} rule needs `{what}`", r.kind))
        };
        let template = |s: &str| -> Result<Template, String> {
            let t = Template::parse(s)?;
            for b in t.bindings() {
                env.check(b, stage, vis)?;
            }
            Ok(t)
        };
        Ok(match r.kind.as_str() {
            "condition" => {
                let source = need(r.condition.clone(), "condition")?;
                let c = Condition::compile(&source)?;
                for b in c.bindings() {
                    env.check(b, stage, vis)?;
                }
                Rule::Condition(c)
            }
            "testThreshold" => {
                let report = template(&need(r.report.clone(), "report")?)?;
                let pct = r
                    .min_pass_percent
                    .ok_or("a testThreshold rule needs `minPassPercent`")?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("minPassPercent must be within 0..=100, not {pct}"));
                }
                Rule::TestThreshold {
                    report,
                    min_pass_percent: pct,
                    min_tests: r.min_tests.unwrap_or(1),
                }
            }
            "approval" => {
                if r.approvers.is_empty() && r.groups.is_empty() {
                    return Err("an approval rule needs approvers or groups".into());
                }
                let quorum = r.quorum.unwrap_or(1);
                if quorum == 0 {
                    return Err("quorum must be at least 1".into());
                }
                if r.groups.is_empty() && quorum as usize > r.approvers.len() {
                    return Err(format!(
                        "quorum {quorum} exceeds the {} approvers",
                        r.approvers.len()
                    ));
                }
                Rule::Approval(ApprovalPolicy {
                    name: r.name.clone().unwrap_or_else(|| "approval".into()),
                    approvers: r.approvers.clone(),
                    groups: r.groups.clone(),
                    quorum,
                    allow_self_approval: r.allow_self_approval,
                    expires_after: r
                        .expires_after_seconds
                        .map(|s| secs(s, "expiresAfterSeconds"))
                        .transpose()?,
                    on_expiry: r.on_expiry.unwrap_or_default(),
                    summary: r.summary.clone().unwrap_or_default(),
                })
            }
            "window" => {
                let tz_name = r.timezone.clone().unwrap_or_else(|| "UTC".into());
                let tz = chrono_tz::Tz::from_str(&tz_name)
                    .map_err(|_| format!("unknown time zone `{tz_name}`"))?;
                if r.allow.is_empty() && r.deny.is_empty() {
                    return Err("a window rule needs allow or deny ranges".into());
                }
                Rule::Window {
                    tz,
                    allow: r.allow.iter().map(range).collect::<Result<_, _>>()?,
                    deny: r.deny.iter().map(range).collect::<Result<_, _>>()?,
                }
            }
            "delay" => Rule::Delay(secs(
                r.seconds.ok_or("a delay rule needs `seconds`")?,
                "seconds",
            )?),
            "poll" => Rule::Poll {
                command: template(&need(r.command.clone(), "command")?)?,
                interval: secs(r.interval_seconds.unwrap_or(5.0), "intervalSeconds")?,
                timeout: secs(
                    r.timeout_seconds
                        .ok_or("a poll rule needs `timeoutSeconds`")?,
                    "timeoutSeconds",
                )?,
            },
            "artifactPassed" => Rule::ArtifactPassed {
                repo: need(r.repo.clone(), "repo")?,
                artifact: need(r.artifact.clone(), "artifact")?,
                stage: need(r.stage.clone(), "stage")?,
            },
            other => {
                return Err(format!(
                    "unknown rule type `{other}` (known: condition, testThreshold, approval, window, delay, poll, artifactPassed)"
                ));
            }
        })
    }
}

fn range(r: &RawRange) -> Result<TimeRange, String> {
    let minute = |s: &str| -> Result<u32, String> {
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not HH:MM"))?;
        let h: u32 = h.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
        let m: u32 = m.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
        if h > 24 || m > 59 || (h == 24 && m > 0) {
            return Err(format!("`{s}` is not a time of day"));
        }
        Ok(h * 60 + m)
    };
    let days = r
        .days
        .iter()
        .map(|d| chrono::Weekday::from_str(d).map_err(|_| format!("`{d}` is not a weekday")))
        .collect::<Result<_, _>>()?;
    Ok(TimeRange {
        days,
        start_minute: minute(&r.start)?,
        end_minute: minute(&r.end)?,
    })
}

fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Topological order with Kahn's algorithm; ties keep index order. On a cycle, returns the
/// tasks of one cycle.
pub(crate) fn toposort(needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = needs.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ns) in needs.iter().enumerate() {
        for &j in ns {
            indegree[i] += 1;
            dependents[j].push(i);
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        out.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(std::cmp::Reverse(d));
            }
        }
    }
    if out.len() == n {
        return Ok(out);
    }
    // Walk back along unfinished needs until a task repeats: that is a cycle.
    let start = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let Some(&next) = needs[cur].iter().find(|&&j| indegree[j] > 0) else {
            return Err(path);
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(next);
        cur = next;
    }
}

struct Env<'r> {
    registry: &'r TaskRegistry,
    inputs: BTreeSet<String>,
    vars: BTreeSet<String>,
    infos: Vec<StageInfo>,
}

impl Env<'_> {
    /// Checks that a binding names something visible; returns its type.
    fn check(&self, b: &Binding, _stage: &str, vis: &Visibility<'_>) -> Result<ValueType, String> {
        match b {
            Binding::Input(n) => {
                if self.inputs.contains(n) {
                    Ok(ValueType::String)
                } else {
                    Err(format!(
                        "{b} names no input (inputs: {})",
                        join(&self.inputs)
                    ))
                }
            }
            Binding::Var(n) => {
                if self.vars.contains(n) {
                    Ok(ValueType::String)
                } else {
                    Err(format!(
                        "{b} names no variable (variables: {})",
                        join(&self.vars)
                    ))
                }
            }
            Binding::Status { stage, task } | Binding::Output { stage, task, .. } => {
                let kind = self
                    .visible_task(stage, task, vis)
                    .map_err(|e| format!("{b} {e}"))?;
                match b {
                    Binding::Output { path, .. } => {
                        output_type(self.registry, &kind, path).map_err(|e| format!("{b}: {e}"))
                    }
                    _ => Ok(ValueType::String),
                }
            }
        }
    }

    fn visible_task(
        &self,
        stage: &str,
        task: &str,
        vis: &Visibility<'_>,
    ) -> Result<String, String> {
        if let Some((building, tasks, current)) = vis.same_stage
            && building == stage
        {
            let Some(target) = tasks.iter().position(|t| t.name == task) else {
                return Err(format!("names no task of stage `{stage}`"));
            };
            if !is_ancestor(tasks, current, target) {
                return Err(format!(
                    "names task `{task}`, which is not upstream of `{}` (add it to needs)",
                    tasks[current].name
                ));
            }
            return Ok(tasks[target].kind.clone());
        }
        let Some((si, info)) = self.infos.iter().enumerate().find(|(_, s)| s.name == stage) else {
            return Err("names no stage".to_owned());
        };
        let Some((_, kind)) = info.tasks.get(task) else {
            return Err(format!("names no task of stage `{stage}`"));
        };
        if !vis.whole_stages.contains(&si) {
            return Err(format!(
                "names stage `{stage}`, which has not run at this point"
            ));
        }
        Ok(kind.clone())
    }
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn is_ancestor(tasks: &[Task], from: usize, target: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; tasks.len()];
    while let Some(i) = stack.pop() {
        for &n in &tasks[i].needs {
            if n == target {
                return true;
            }
            if !seen[n] {
                seen[n] = true;
                stack.push(n);
            }
        }
    }
    false
}

fn output_type(
    registry: &TaskRegistry,
    kind: &str,
    path: &[PathSegment],
) -> Result<ValueType, String> {
    let Some((_, outputs)) = registry.spec(kind) else {
        // The unknown kind is reported where it is declared.
        return Ok(ValueType::Any);
    };
    let Some(PathSegment::Key(first)) = path.first() else {
        return Err("an output path starts with a field name".into());
    };
    let Some(spec) = outputs.iter().find(|f| f.name == first) else {
        let names: Vec<&str> = outputs.iter().map(|f| f.name).collect();
        return Err(format!(
            "task type {kind} has no output `{first}` (it has: {})",
            names.join(", ")
        ));
    };
    if path.len() == 1 {
        return Ok(spec.ty);
    }
    match spec.ty {
        ValueType::Object | ValueType::Array | ValueType::Any => Ok(ValueType::Any),
        other => Err(format!("output `{first}` is a {other} and has no fields")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"kind: PIPELINE
name: ship
description: build, test, gate, publish
concurrency: 2
input:
  repo: /tmp/repo
  env: dev
_inputMeta:
  repo:
    mandatory: true
    description: the repository
variables:
  token:
    type: SECRET
    fromEnv: PATH
stageOrder: [Build, Release]
stages:
  Build:
    taskOrder: [clone, "compile,lint", test]
    tasks:
      clone:
        type: Git
        input:
          url: ${input.repo}
          directory: src
      compile:
        type: Shell
        input:
          script: make -C ${Build.clone.output.directory}
      lint:
        type: Shell
        input:
          script: "true"
      test:
        type: Shell
        needs: [compile]
        retry: {attempts: 3, backoffSeconds: 0.5}
        timeout: {attemptSeconds: 10, totalSeconds: 60}
        preCondition: ${Build.compile.output.exitCode} == 0
        input:
          script: make test
          env:
            TOKEN: ${var.token}
    exitGate:
      mode: all
      rules:
        - type: testThreshold
          report: ${Build.test.output.exports.junit}
          minPassPercent: 90
        - type: approval
          approvers: [alice, bob]
          quorum: 1
  Release:
    entryGate:
      mode: any
      rules:
        - type: window
          timezone: Europe/Paris
          allow: [{days: [Mon, Tue], start: "09:00", end: "17:00"}]
        - type: condition
          condition: '"${input.env}" == "dev"'
    taskOrder: [publish]
    tasks:
      publish:
        type: Shell
        input:
          script: echo ${Build.clone.output.commit}
finally:
  taskOrder: [cleanup]
  tasks:
    cleanup:
      type: Shell
      input:
        script: echo ${Build.test.status}
"#;

    fn load(yaml: &str) -> Result<Pipeline, Error> {
        load_pipeline(yaml, &TaskRegistry::builtin())
    }

    fn diags(yaml: &str) -> Vec<Diagnostic> {
        match load(yaml) {
            Err(Error::Invalid { diagnostics }) => diagnostics,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn loads_a_full_pipeline() {
        let p = load(GOOD).unwrap();
        assert_eq!(p.name, "ship");
        assert_eq!(p.concurrency, 2);
        assert!(p.inputs["repo"].mandatory);
        assert_eq!(p.stages.len(), 2);
        let build = &p.stages[0];
        let names: Vec<&str> = build.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["clone", "compile", "lint", "test"]);
        // compile and lint need clone (the previous taskOrder group); test needs compile only.
        assert_eq!(build.tasks[1].needs, vec![0]);
        assert_eq!(build.tasks[2].needs, vec![0]);
        assert_eq!(build.tasks[3].needs, vec![1]);
        assert_eq!(build.tasks[3].retry.attempts, 3);
        assert_eq!(build.tasks[3].timeout.total, Some(Duration::from_secs(60)));
        assert_eq!(build.tasks[0].line, 22);
        let exit = build.exit_gate.as_ref().unwrap();
        assert_eq!(exit.id, "Build.exit");
        assert_eq!(exit.rules.len(), 2);
        let entry = p.stages[1].entry_gate.as_ref().unwrap();
        assert_eq!(entry.mode, GateMode::Any);
        assert_eq!(p.finally.as_ref().unwrap().tasks.len(), 1);
        assert_eq!(p.secrets(), vec![std::env::var("PATH").unwrap()]);
        let inline = GOOD.replace("fromEnv: PATH", "value: s3cr3t");
        assert!(diags(&inline)[0].message.contains("never inline"));
    }

    #[test]
    fn unknown_and_unsupported_task_types_point_at_their_line() {
        let y = GOOD.replace("type: Git", "type: Gti");
        let d = diags(&y);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].line, 22);
        assert!(d[0].message.contains("unknown task type `Gti`"));
        let y = GOOD.replace("type: Git", "type: SSH");
        let d = diags(&y);
        assert!(d[0].message.contains("not supported"), "{d:?}");
    }

    #[test]
    fn bindings_that_name_nothing_are_reported_with_lines() {
        let y = GOOD.replace("url: ${input.repo}", "url: ${input.rpo}");
        let d = diags(&y);
        assert_eq!((d[0].line, d[0].column), (24, 16), "{d:?}");
        assert!(d[0].message.contains("${input.rpo} names no input"));

        let y = GOOD.replace("TOKEN: ${var.token}", "TOKEN: ${var.tokn}");
        assert!(diags(&y)[0].message.contains("names no variable"));

        // lint is not upstream of test (test needs compile only).
        let y = GOOD.replace(
            "script: make test",
            "script: make ${Build.lint.output.stdout}",
        );
        let d = diags(&y);
        assert!(d[0].message.contains("not upstream of `test`"), "{d:?}");

        // A later stage has not run yet.
        let y = GOOD.replace(
            "script: \"true\"",
            "script: ${Release.publish.output.stdout}",
        );
        assert!(diags(&y)[0].message.contains("names no stage"));

        // An output the task type does not produce.
        let y = GOOD.replace("${Build.clone.output.commit}", "${Build.clone.output.sha}");
        let d = diags(&y);
        assert!(d[0].message.contains("has no output `sha`"), "{d:?}");
        assert_eq!(d[0].line, 67);
    }

    #[test]
    fn type_mismatches_are_reported() {
        // A number where a string is expected, literally and through a binding.
        let y = GOOD.replace("script: \"true\"", "script: 42");
        assert!(diags(&y)[0].message.contains("must be string, not number"));
        let y = GOOD.replace(
            "script: \"true\"",
            "script: ${Build.clone.output.directory}",
        );
        assert!(
            load(&y).is_ok(),
            "lint needs clone through its taskOrder group"
        );
        let y = GOOD.replace(
            "script: make test",
            "script: ${Build.compile.output.exitCode}",
        );
        let d = diags(&y);
        assert!(d[0].message.contains("must be string, but"), "{d:?}");
        let y = GOOD.replace(
            "${Build.compile.output.exitCode} == 0",
            "${Build.compile.output.exitCode.x} == 0",
        );
        assert!(diags(&y)[0].message.contains("has no fields"));
    }

    #[test]
    fn cycles_and_bad_needs_are_reported() {
        let y = GOOD.replace("needs: [compile]", "needs: [compile, nope]");
        assert!(diags(&y)[0].message.contains("needs `nope`"));
        let y = GOOD.replace("needs: [compile]", "needs: [lint]").replace(
            "      lint:\n        type: Shell\n",
            "      lint:\n        type: Shell\n        needs: [test]\n",
        );
        let d = diags(&y);
        assert!(
            d.iter().any(|d| d.message.contains("form a cycle")),
            "{d:?}"
        );
    }

    #[test]
    fn structure_errors_are_reported() {
        let y = GOOD.replace("kind: PIPELINE", "kind: PIPELIN");
        assert_eq!(diags(&y)[0].line, 1);
        let y = GOOD.replace("stageOrder: [Build, Release]", "stageOrder: [Build]");
        assert!(diags(&y)[0].message.contains("not listed in stageOrder"));
        let y = GOOD.replace("taskOrder: [publish]", "taskOrder: [publish, publish]");
        assert!(diags(&y)[0].message.contains("appears twice"));
        let y = GOOD.replace("        retry:", "        retri:");
        match load(&y) {
            Err(Error::Yaml { line, message, .. }) => {
                assert_eq!(line, 37, "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gate_rules_are_validated() {
        let y = GOOD.replace("timezone: Europe/Paris", "timezone: Mars/Olympus");
        assert!(diags(&y)[0].message.contains("unknown time zone"));
        let y = GOOD.replace("quorum: 1", "quorum: 3");
        assert!(diags(&y)[0].message.contains("exceeds"));
        let y = GOOD.replace("minPassPercent: 90", "minPassPercent: 190");
        assert!(diags(&y)[0].message.contains("0..=100"));
        let y = GOOD.replace("'\"${input.env}\" == \"dev\"'", "'${input.env} =='");
        assert!(diags(&y)[0].message.contains("CEL"));
        let y = GOOD.replace("- type: condition", "- type: magic");
        assert!(diags(&y)[0].message.contains("unknown rule type"));
    }

    #[test]
    fn toposort_orders_and_finds_cycles() {
        assert_eq!(
            toposort(&[vec![1], vec![], vec![0]]).unwrap(),
            vec![1, 0, 2]
        );
        let cycle = toposort(&[vec![2], vec![0], vec![1]]).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }
}
