//! Bindings: `${input.x}`, `${var.x}`, `${Stage.Task.output.path}` and `${Stage.Task.status}`.
//!
//! Strings in a pipeline may embed bindings. They are parsed into typed [`Binding`]s when the
//! pipeline is loaded, so that a binding naming nothing is an error before anything runs, and
//! resolved against a [`Scope`] when a task or gate needs the value.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// One step of an output path: a key of an object or an index into an array.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathSegment {
    /// An object key: `.name`.
    Key(String),
    /// An array index: `[3]`.
    Index(usize),
}

/// A parsed binding expression (the text between `${` and `}`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// `${input.NAME}`: a pipeline input.
    Input(String),
    /// `${var.NAME}`: a pipeline variable (regular or secret).
    Var(String),
    /// `${Stage.Task.output.a.b[0]}`: a field of a task's outputs.
    Output {
        /// The stage's name.
        stage: String,
        /// The task's name.
        task: String,
        /// The path inside the task's outputs; never empty.
        path: Vec<PathSegment>,
    },
    /// `${Stage.Task.status}`: a task's status (`SUCCEEDED`, `FAILED`, ...).
    Status {
        /// The stage's name.
        stage: String,
        /// The task's name.
        task: String,
    },
}

impl Binding {
    /// Parses the inside of `${...}`.
    ///
    /// ```
    /// use pipeline_core::binding::{Binding, PathSegment};
    /// let b = Binding::parse("Build.test.output.report[0]").unwrap();
    /// assert_eq!(
    ///     b,
    ///     Binding::Output {
    ///         stage: "Build".into(),
    ///         task: "test".into(),
    ///         path: vec![PathSegment::Key("report".into()), PathSegment::Index(0)],
    ///     }
    /// );
    /// assert!(Binding::parse("input").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let segments = split_path(text.trim())?;
        let key = |i: usize| match segments.get(i) {
            Some(PathSegment::Key(k)) => Some(k.clone()),
            _ => None,
        };
        let first = key(0).ok_or_else(|| format!("`${{{text}}}` must start with a name"))?;
        match first.as_str() {
            "input" | "var" => {
                let name = key(1).ok_or_else(|| format!("`${{{text}}}` names no {first}"))?;
                if segments.len() > 2 {
                    return Err(format!(
                        "`${{{text}}}`: {first} values are strings and have no fields"
                    ));
                }
                Ok(if first == "input" {
                    Self::Input(name)
                } else {
                    Self::Var(name)
                })
            }
            _ => {
                let task = key(1)
                    .ok_or_else(|| format!("`${{{text}}}` must be Stage.Task.output.path"))?;
                match key(2).as_deref() {
                    Some("status") if segments.len() == 3 => {
                        Ok(Self::Status { stage: first, task })
                    }
                    Some("output") if segments.len() > 3 => Ok(Self::Output {
                        stage: first,
                        task,
                        path: segments[3..].to_vec(),
                    }),
                    _ => Err(format!(
                        "`${{{text}}}` must be input.NAME, var.NAME, Stage.Task.status or \
                         Stage.Task.output.PATH"
                    )),
                }
            }
        }
    }

    /// Resolves the binding against `scope`; `None` when the value does not exist (yet).
    pub fn resolve(&self, scope: &dyn Scope) -> Option<Value> {
        match self {
            Self::Input(name) => scope.input(name).map(|s| Value::String(s.to_owned())),
            Self::Var(name) => scope.var(name).map(|s| Value::String(s.to_owned())),
            Self::Status { stage, task } => scope
                .task_status(stage, task)
                .map(|s| Value::String(s.to_owned())),
            Self::Output { stage, task, path } => {
                let mut value = scope.task_outputs(stage, task)?;
                for seg in path {
                    value = match seg {
                        PathSegment::Key(k) => value.get(k)?,
                        PathSegment::Index(i) => value.get(*i)?,
                    };
                }
                Some(value.clone())
            }
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(n) => write!(f, "${{input.{n}}}"),
            Self::Var(n) => write!(f, "${{var.{n}}}"),
            Self::Status { stage, task } => write!(f, "${{{stage}.{task}.status}}"),
            Self::Output { stage, task, path } => {
                write!(f, "${{{stage}.{task}.output")?;
                for seg in path {
                    match seg {
                        PathSegment::Key(k) => write!(f, ".{k}")?,
                        PathSegment::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                write!(f, "}}")
            }
        }
    }
}

fn split_path(text: &str) -> Result<Vec<PathSegment>, String> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && (out.is_empty() || rest.is_empty()) {
            return Err(format!("`${{{text}}}` has an empty name"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("`${{{text}}}`: `{name}` is not a valid name"));
        }
        if !name.is_empty() {
            out.push(PathSegment::Key(name.to_owned()));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("`${{{text}}}` has an unclosed `[`"))?;
            let index: usize = rest[1..close]
                .parse()
                .map_err(|_| format!("`${{{text}}}`: `{}` is not an index", &rest[1..close]))?;
            out.push(PathSegment::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("`${{{text}}}` has text after `]`"));
            }
        }
    }
    Ok(out)
}

/// Where bindings find their values at run time.
pub trait Scope {
    /// A pipeline input's value.
    fn input(&self, name: &str) -> Option<&str>;
    /// A variable's value (secret values included: callers redact what they log).
    fn var(&self, name: &str) -> Option<&str>;
    /// A finished task's outputs.
    fn task_outputs(&self, stage: &str, task: &str) -> Option<&Value>;
    /// A task's status as the upper-case word used in conditions.
    fn task_status(&self, stage: &str, task: &str) -> Option<&str>;
}

/// A part of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A binding.
    Bind(Binding),
}

/// A string with embedded bindings, parsed once at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a string with `${...}` bindings; `$${` escapes a literal `${`.
    ///
    /// ```
    /// use pipeline_core::binding::Template;
    /// let t = Template::parse("v=${input.version}!").unwrap();
    /// assert_eq!(t.bindings().count(), 1);
    /// assert!(Template::parse("${input.}").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            if rest[..i].ends_with('$') {
                literal.push_str(&rest[..i - 1]);
                literal.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            literal.push_str(&rest[..i]);
            let close = rest[i..]
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let inner = &rest[i + 2..i + close];
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Bind(Binding::parse(inner)?));
            rest = &rest[i + close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The template's parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The bindings the template uses.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.parts.iter().filter_map(|p| match p {
            Part::Bind(b) => Some(b),
            Part::Text(_) => None,
        })
    }

    /// The binding when the whole template is exactly one binding (its value keeps its type).
    pub fn single_binding(&self) -> Option<&Binding> {
        match self.parts.as_slice() {
            [Part::Bind(b)] => Some(b),
            _ => None,
        }
    }

    /// Resolves the template: a lone binding keeps its JSON type, anything else is a string.
    pub fn resolve(&self, scope: &dyn Scope) -> Result<Value, String> {
        if let Some(b) = self.single_binding() {
            return b.resolve(scope).ok_or_else(|| format!("{b} has no value"));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Bind(b) => match b.resolve(scope) {
                    Some(Value::String(s)) => out.push_str(&s),
                    Some(v) => out.push_str(&v.to_string()),
                    None => return Err(format!("{b} has no value")),
                },
            }
        }
        Ok(Value::String(out))
    }
}

/// Resolves every string inside a JSON value as a template.
pub fn resolve_value(value: &Value, scope: &dyn Scope) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Template::parse(s)?.resolve(scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_value(v, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_value(v, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A simple [`Scope`] over owned maps (used by the engine and by tests).
#[derive(Clone, Debug, Default)]
pub struct MapScope {
    /// Pipeline inputs.
    pub inputs: BTreeMap<String, String>,
    /// Variables (secret values included).
    pub vars: BTreeMap<String, String>,
    /// Task outputs by `(stage, task)`.
    pub outputs: BTreeMap<(String, String), Value>,
    /// Task statuses by `(stage, task)`.
    pub statuses: BTreeMap<(String, String), String>,
}

impl Scope for MapScope {
    fn input(&self, name: &str) -> Option<&str> {
        self.inputs.get(name).map(String::as_str)
    }
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
    fn task_outputs(&self, stage: &str, task: &str) -> Option<&Value> {
        self.outputs.get(&(stage.to_owned(), task.to_owned()))
    }
    fn task_status(&self, stage: &str, task: &str) -> Option<&str> {
        self.statuses
            .get(&(stage.to_owned(), task.to_owned()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_binding_kinds() {
        assert_eq!(
            Binding::parse("input.x").unwrap(),
            Binding::Input("x".into())
        );
        assert_eq!(
            Binding::parse("var.tok").unwrap(),
            Binding::Var("tok".into())
        );
        assert_eq!(
            Binding::parse("S.t.status").unwrap(),
            Binding::Status {
                stage: "S".into(),
                task: "t".into()
            }
        );
        assert!(Binding::parse("S.t.output").is_err());
        assert!(Binding::parse("S.t.bogus.x").is_err());
        assert!(Binding::parse("input.a.b").is_err());
        assert!(Binding::parse("S.t.output.a[x]").is_err());
        assert!(Binding::parse("S.t.output.a b").is_err());
    }

    #[test]
    fn templates_resolve_with_types_and_text() {
        let mut scope = MapScope::default();
        scope.inputs.insert("v".into(), "1.2".into());
        scope.outputs.insert(
            ("B".into(), "t".into()),
            json!({"n": 3, "list": ["a", "b"]}),
        );
        let lone = Template::parse("${B.t.output.n}").unwrap();
        assert_eq!(lone.resolve(&scope).unwrap(), json!(3));
        let mixed = Template::parse("v${input.v}-${B.t.output.list[1]}-${B.t.output.n}").unwrap();
        assert_eq!(mixed.resolve(&scope).unwrap(), json!("v1.2-b-3"));
        let missing = Template::parse("${B.t.output.nope}").unwrap();
        assert!(
            missing
                .resolve(&scope)
                .unwrap_err()
                .contains("has no value")
        );
        let escaped = Template::parse("$${HOME} ${input.v}").unwrap();
        assert_eq!(escaped.resolve(&scope).unwrap(), json!("${HOME} 1.2"));
    }

    #[test]
    fn resolve_value_walks_json() {
        let mut scope = MapScope::default();
        scope.inputs.insert("a".into(), "x".into());
        let v = resolve_value(&json!({"k": ["${input.a}", 1]}), &scope).unwrap();
        assert_eq!(v, json!({"k": ["x", 1]}));
    }

    #[test]
    fn display_round_trips() {
        for text in ["input.a", "var.b", "S.t.status", "S.t.output.a[2].b"] {
            let b = Binding::parse(text).unwrap();
            assert_eq!(b.to_string(), format!("${{{text}}}"));
        }
    }
}
