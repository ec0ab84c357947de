//! Conditions: CEL expressions with Code Stream's `${...}` bindings inside.
//!
//! `${Build.test.output.exitCode} == 0 && "${input.env}" != "prod"` is written as in Code
//! Stream; each `${...}` becomes a CEL variable holding the bound JSON value (a binding inside
//! quotes is replaced by its string value first). The expression is compiled at load time, so
//! syntax errors and bindings that name nothing are reported before anything runs.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::binding::{Binding, Scope, Template};

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    bindings: Vec<Binding>,
    program: Arc<cel::Program>,
}

impl Condition {
    /// Compiles a condition.
    ///
    /// ```
    /// use pipeline_core::binding::MapScope;
    /// use pipeline_core::expr::Condition;
    /// let c = Condition::compile("${input.n} == '3' && 2 > 1").unwrap();
    /// let mut scope = MapScope::default();
    /// scope.inputs.insert("n".into(), "3".into());
    /// assert!(c.evaluate(&scope).unwrap());
    /// assert!(Condition::compile("1 +").is_err());
    /// ```
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut bindings = Vec::new();
        let mut cel_source = String::new();
        let mut rest = source;
        while let Some(i) = rest.find("${") {
            let close = rest[i..]
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{source}`"))?;
            let binding = Binding::parse(&rest[i + 2..i + close])?;
            // A binding already inside quotes ("${input.x}") stays a string: drop the quotes.
            let before = &rest[..i];
            let after = &rest[i + close + 1..];
            let quote = before.chars().last().filter(|c| *c == '"' || *c == '\'');
            let name = format!("__b{}", bindings.len());
            match quote {
                Some(q) if after.starts_with(q) => {
                    cel_source.push_str(&before[..before.len() - 1]);
                    let _ = write!(cel_source, "string({name})");
                    rest = &after[1..];
                }
                _ => {
                    cel_source.push_str(before);
                    cel_source.push_str(&name);
                    rest = after;
                }
            }
            bindings.push(binding);
        }
        cel_source.push_str(rest);
        let program = cel::Program::compile(&cel_source).map_err(|e| {
            let first = e.errors.first().map_or_else(String::new, |e| e.msg.clone());
            format!("`{source}` is not a valid CEL expression: {first}")
        })?;
        Ok(Self {
            source: source.to_owned(),
            bindings,
            program: Arc::new(program),
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bindings the condition uses.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Evaluates the condition; it must yield a bool.
    pub fn evaluate(&self, scope: &dyn Scope) -> Result<bool, String> {
        let mut ctx = cel::Context::default();
        for (i, b) in self.bindings.iter().enumerate() {
            let value = b
                .resolve(scope)
                .ok_or_else(|| format!("{b} has no value"))?;
            let value = cel::to_value(&value).map_err(|e| format!("{b}: {e}"))?;
            ctx.add_variable_from_value(format!("__b{i}"), value);
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`{}` yielded {other:?}, not a bool", self.source)),
            Err(e) => Err(format!("`{}` failed: {e}", self.source)),
        }
    }

    /// Renders the condition's bindings as text (for messages).
    pub fn describe(&self, scope: &dyn Scope) -> String {
        Template::parse(&self.source)
            .ok()
            .and_then(|t| t.resolve(scope).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| self.source.clone())
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::MapScope;
    use serde_json::json;

    fn scope() -> MapScope {
        let mut s = MapScope::default();
        s.inputs.insert("env".into(), "dev".into());
        s.outputs.insert(
            ("B".into(), "t".into()),
            json!({"exitCode": 0, "rate": 97.5, "tags": ["a"]}),
        );
        s.statuses
            .insert(("B".into(), "t".into()), "SUCCEEDED".into());
        s
    }

    #[test]
    fn evaluates_over_bindings() {
        let s = scope();
        let c = Condition::compile(
            "${B.t.output.exitCode} == 0 && \"${input.env}\" != \"prod\" && ${B.t.output.rate} > 90.0",
        )
        .unwrap();
        assert!(c.evaluate(&s).unwrap());
        let c = Condition::compile("${B.t.status} == 'FAILED'").unwrap();
        assert!(!c.evaluate(&s).unwrap());
        let c = Condition::compile("size(${B.t.output.tags}) == 1").unwrap();
        assert!(c.evaluate(&s).unwrap());
    }

    #[test]
    fn non_bool_and_missing_values_are_errors() {
        let s = scope();
        let c = Condition::compile("${B.t.output.tags}").unwrap();
        assert!(c.evaluate(&s).unwrap_err().contains("not a bool"));
        let c = Condition::compile("${B.x.output.y} == 1").unwrap();
        assert!(c.evaluate(&s).unwrap_err().contains("has no value"));
    }

    #[test]
    fn syntax_errors_are_reported() {
        let e = Condition::compile("1 == (").unwrap_err();
        assert!(e.contains("not a valid CEL expression"), "{e}");
    }
}
