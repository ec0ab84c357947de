//! Fault injection: latency per method, a random error rate, forced faults for the next N
//! calls of a method. Decisions only; the server applies them before dispatching a call.

use std::collections::HashMap;
use std::time::Duration;

use crate::fault::{self, Fault};

/// What to inject, as configured through the library API or the `/_sim` admin endpoint.
#[derive(Debug)]
pub(crate) struct Injection {
    /// Added latency by method name (`*`: every method).
    latency: HashMap<String, Duration>,
    /// Probability in [0, 1] that any call fails, and with which fault type.
    error_rate: Option<(f64, String)>,
    /// The next N calls of a method fail with a fault type.
    forced: HashMap<String, (u32, String)>,
    /// xorshift64 state: deterministic, so a run with an error rate is reproducible.
    rng: u64,
}

impl Default for Injection {
    fn default() -> Self {
        Self {
            latency: HashMap::new(),
            error_rate: None,
            forced: HashMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Why an injection setting was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InjectError {
    /// The fault type is not a `MethodFault` of the schema.
    UnknownFault(String),
    /// The rate is not within [0, 1].
    BadRate(f64),
}

impl std::fmt::Display for InjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownFault(n) => write!(f, "{n:?} is not a vim25 fault type (MethodFault)"),
            Self::BadRate(r) => write!(f, "error rate {r} is not between 0 and 1"),
        }
    }
}

fn check_fault(name: &str) -> Result<(), InjectError> {
    fault::by_name(name, "")
        .map(|_| ())
        .ok_or_else(|| InjectError::UnknownFault(name.to_owned()))
}

impl Injection {
    pub(crate) fn set_latency(&mut self, method: &str, latency: Duration) {
        if latency.is_zero() {
            self.latency.remove(method);
        } else {
            self.latency.insert(method.to_owned(), latency);
        }
    }

    pub(crate) fn set_error_rate(&mut self, rate: f64, fault: &str) -> Result<(), InjectError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(InjectError::BadRate(rate));
        }
        check_fault(fault)?;
        self.error_rate = (rate > 0.0).then(|| (rate, fault.to_owned()));
        Ok(())
    }

    pub(crate) fn fail_next(
        &mut self,
        method: &str,
        fault: &str,
        count: u32,
    ) -> Result<(), InjectError> {
        check_fault(fault)?;
        if count == 0 {
            self.forced.remove(method);
        } else {
            self.forced
                .insert(method.to_owned(), (count, fault.to_owned()));
        }
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        let rng = self.rng;
        *self = Self::default();
        self.rng = rng;
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        // 53 random bits as a fraction in [0, 1).
        #[expect(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
        let f = (x >> 11) as f64 / (1_u64 << 53) as f64;
        f
    }

    /// The latency to add and the fault to answer for one call of `method`.
    pub(crate) fn on_call(&mut self, method: &str) -> (Duration, Option<Fault>) {
        let latency = self
            .latency
            .get(method)
            .or_else(|| self.latency.get("*"))
            .copied()
            .unwrap_or_default();
        let message =
            |t: &str| format!("{t} injected into {method} by vsphere-sim's fault injection");
        if let Some((left, name)) = self.forced.get_mut(method) {
            *left -= 1;
            let f = fault::by_name(name, &message(name));
            if *left == 0 {
                self.forced.remove(method);
            }
            return (latency, f);
        }
        if let Some((rate, name)) = self.error_rate.clone()
            && self.next_unit() < rate
        {
            return (latency, fault::by_name(&name, &message(&name)));
        }
        (latency, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_faults_count_down() {
        let mut i = Injection::default();
        i.fail_next("PowerOnVM_Task", "InvalidState", 2).unwrap();
        assert_eq!(
            i.on_call("PowerOnVM_Task").1.unwrap().type_name(),
            "InvalidState"
        );
        assert!(i.on_call("Login").1.is_none());
        assert!(i.on_call("PowerOnVM_Task").1.is_some());
        assert!(i.on_call("PowerOnVM_Task").1.is_none());
    }

    #[test]
    fn latency_per_method_and_wildcard() {
        let mut i = Injection::default();
        i.set_latency("*", Duration::from_millis(5));
        i.set_latency("Login", Duration::from_millis(50));
        assert_eq!(i.on_call("Login").0, Duration::from_millis(50));
        assert_eq!(i.on_call("CurrentTime").0, Duration::from_millis(5));
        i.clear();
        assert!(i.on_call("Login").0.is_zero());
    }

    #[test]
    fn error_rate_is_roughly_kept() {
        let mut i = Injection::default();
        i.set_error_rate(0.25, "SystemError").unwrap();
        let fails = (0..4000).filter(|_| i.on_call("X").1.is_some()).count();
        assert!((800..1200).contains(&fails), "{fails}");
        i.set_error_rate(0.0, "SystemError").unwrap();
        assert!(i.on_call("X").1.is_none());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut i = Injection::default();
        assert_eq!(
            i.set_error_rate(1.5, "SystemError"),
            Err(InjectError::BadRate(1.5))
        );
        assert!(matches!(
            i.fail_next("X", "VirtualDisk", 1),
            Err(InjectError::UnknownFault(_))
        ));
    }
}
