//! Gate rules as plain decisions: combining verdicts, JUnit pass rates, time windows.
//!
//! The engine gathers what a rule needs (a report file, a poll's exit status, an approval's
//! decisions, an artifact query) and these functions decide; they do no IO and read no clock.

use chrono::{Datelike, TimeZone, Timelike};
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::journal::Timestamp;
use crate::model::{GateMode, TimeRange};

/// A rule's (or a gate's) verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The flow may go on.
    Pass,
    /// The flow stops, for this reason.
    Fail(String),
    /// Not yet: look again at `until`, or when an approval in `approvals` is decided.
    Wait {
        /// When to look again (none: only a decision can change it).
        until: Option<Timestamp>,
        /// Open approval requests.
        approvals: Vec<String>,
    },
}

/// Combines rule verdicts: `all` fails on any failure and waits on any wait; `any` passes on
/// any pass and fails only when every rule failed.
///
/// ```
/// use pipeline_core::gate::{combine, Verdict};
/// use pipeline_core::model::GateMode;
/// let v = vec![Verdict::Pass, Verdict::Fail("no".into())];
/// assert_eq!(combine(GateMode::Any, v.clone()), Verdict::Pass);
/// assert_eq!(combine(GateMode::All, v), Verdict::Fail("no".into()));
/// ```
pub fn combine(mode: GateMode, verdicts: Vec<Verdict>) -> Verdict {
    let mut fails = Vec::new();
    let mut until: Option<Timestamp> = None;
    let mut approvals = Vec::new();
    let mut waiting = false;
    let mut passed = 0;
    for v in verdicts {
        match v {
            Verdict::Pass => passed += 1,
            Verdict::Fail(r) => fails.push(r),
            Verdict::Wait {
                until: u,
                approvals: a,
            } => {
                waiting = true;
                if let Some(u) = u {
                    until = Some(until.map_or(u, |x| x.min(u)));
                }
                approvals.extend(a);
            }
        }
    }
    match mode {
        GateMode::All if !fails.is_empty() => Verdict::Fail(fails.join("; ")),
        GateMode::All if waiting => Verdict::Wait { until, approvals },
        GateMode::All => Verdict::Pass,
        GateMode::Any if passed > 0 => Verdict::Pass,
        GateMode::Any if waiting => Verdict::Wait { until, approvals },
        GateMode::Any => Verdict::Fail(fails.join("; ")),
    }
}

/// The counts of a JUnit XML report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestSummary {
    /// Test cases.
    pub tests: u64,
    /// Failed (`<failure>`) or errored (`<error>`) cases.
    pub failed: u64,
    /// Skipped cases (left out of the pass rate).
    pub skipped: u64,
}

impl TestSummary {
    /// Passed cases over run (not skipped) cases, in percent; 0 when none ran.
    pub fn pass_percent(&self) -> f64 {
        let run = self.tests.saturating_sub(self.skipped);
        if run == 0 {
            return 0.0;
        }
        (run - self.failed.min(run)) as f64 * 100.0 / run as f64
    }
}

/// Counts the test cases of a JUnit XML report (`<testsuites>` or `<testsuite>` at the root).
///
/// ```
/// let xml = r#"<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase>
///              <testcase name="c"><skipped/></testcase></testsuite>"#;
/// let s = pipeline_core::gate::parse_junit(xml).unwrap();
/// assert_eq!((s.tests, s.failed, s.skipped), (3, 1, 1));
/// assert!((s.pass_percent() - 50.0).abs() < 1e-9);
/// ```
pub fn parse_junit(xml: &str) -> Result<TestSummary, String> {
    let mut reader = Reader::from_str(xml);
    let mut s = TestSummary::default();
    let mut in_case = false;
    let mut case_failed = false;
    let mut case_skipped = false;
    let mut saw_root = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("not JUnit XML: {e}"))?;
        let (name, empty) = match &ev {
            Event::Start(e) => (e.name().as_ref().to_owned(), false),
            Event::Empty(e) => (e.name().as_ref().to_owned(), true),
            Event::End(e) => {
                if e.name().as_ref() == "testcase" && in_case {
                    in_case = false;
                    s.failed += u64::from(case_failed);
                    s.skipped += u64::from(case_skipped && !case_failed);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match name.as_str() {
            "testsuites" | "testsuite" => saw_root = true,
            "testcase" => {
                s.tests += 1;
                if empty {
                    continue;
                }
                in_case = true;
                case_failed = false;
                case_skipped = false;
            }
            "failure" | "error" if in_case => case_failed = true,
            "skipped" if in_case => case_skipped = true,
            _ => {}
        }
    }
    if !saw_root {
        return Err("not JUnit XML: no <testsuite> or <testsuites>".into());
    }
    Ok(s)
}

/// The verdict of a test-threshold rule.
pub fn threshold_verdict(s: &TestSummary, min_pass_percent: f64, min_tests: u64) -> Verdict {
    let rate = s.pass_percent();
    if s.tests < min_tests {
        Verdict::Fail(format!(
            "{} tests, fewer than the {min_tests} required",
            s.tests
        ))
    } else if rate + 1e-9 < min_pass_percent {
        Verdict::Fail(format!(
            "pass rate {rate:.1}% ({} of {} failed) is below {min_pass_percent}%",
            s.failed,
            s.tests - s.skipped
        ))
    } else {
        Verdict::Pass
    }
}

fn in_range(
    r: &TimeRange,
    weekday: chrono::Weekday,
    minute: u32,
    prev_day: chrono::Weekday,
) -> bool {
    let day_ok = |d: chrono::Weekday| r.days.is_empty() || r.days.contains(&d);
    if r.start_minute <= r.end_minute {
        day_ok(weekday) && minute >= r.start_minute && minute < r.end_minute
    } else {
        // Spans midnight: the evening belongs to today, the morning to yesterday's range.
        (day_ok(weekday) && minute >= r.start_minute) || (day_ok(prev_day) && minute < r.end_minute)
    }
}

fn open_at(tz: chrono_tz::Tz, allow: &[TimeRange], deny: &[TimeRange], t: Timestamp) -> bool {
    let local = tz.from_utc_datetime(&t.to_chrono().naive_utc());
    let minute = local.hour() * 60 + local.minute();
    let wd = local.weekday();
    let prev = wd.pred();
    let allowed = allow.is_empty() || allow.iter().any(|r| in_range(r, wd, minute, prev));
    allowed && !deny.iter().any(|r| in_range(r, wd, minute, prev))
}

/// The verdict of a time-window rule at `now`: pass inside the window, otherwise wait until it
/// next opens (looked up minute by minute over the next eight days, so DST shifts are exact).
pub fn window_verdict(
    tz: chrono_tz::Tz,
    allow: &[TimeRange],
    deny: &[TimeRange],
    now: Timestamp,
) -> Verdict {
    if open_at(tz, allow, deny, now) {
        return Verdict::Pass;
    }
    let minute_ms = 60_000;
    let start = Timestamp((now.0 / minute_ms + 1) * minute_ms);
    for i in 0..(8 * 24 * 60) {
        let t = Timestamp(start.0 + i * minute_ms);
        if open_at(tz, allow, deny, t) {
            return Verdict::Wait {
                until: Some(t),
                approvals: Vec::new(),
            };
        }
    }
    Verdict::Fail("the time window never opens".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    fn ts(s: &str) -> Timestamp {
        Timestamp(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    }

    fn wait(until: Option<Timestamp>, approvals: &[&str]) -> Verdict {
        Verdict::Wait {
            until,
            approvals: approvals.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn combine_all_and_any() {
        let w1 = wait(Some(Timestamp(5)), &[]);
        let w2 = wait(Some(Timestamp(3)), &["a"]);
        assert_eq!(
            combine(GateMode::All, vec![Verdict::Pass, w1.clone(), w2.clone()]),
            wait(Some(Timestamp(3)), &["a"])
        );
        assert_eq!(
            combine(GateMode::All, vec![w1.clone(), Verdict::Fail("x".into())]),
            Verdict::Fail("x".into())
        );
        assert_eq!(
            combine(GateMode::Any, vec![w1.clone(), Verdict::Pass]),
            Verdict::Pass
        );
        assert_eq!(
            combine(GateMode::Any, vec![w1.clone(), Verdict::Fail("x".into())]),
            w1
        );
        assert_eq!(
            combine(
                GateMode::Any,
                vec![Verdict::Fail("x".into()), Verdict::Fail("y".into())]
            ),
            Verdict::Fail("x; y".into())
        );
        assert_eq!(combine(GateMode::All, vec![]), Verdict::Pass);
    }

    #[test]
    fn junit_pass_rates_and_thresholds() {
        let xml = r#"<?xml version="1.0"?>
<testsuites><testsuite name="s" tests="4">
  <testcase name="a"/><testcase name="b"></testcase>
  <testcase name="c"><error message="boom"/></testcase>
  <testcase name="d"><system-out>x</system-out></testcase>
</testsuite></testsuites>"#;
        let s = parse_junit(xml).unwrap();
        assert_eq!((s.tests, s.failed, s.skipped), (4, 1, 0));
        assert!((s.pass_percent() - 75.0).abs() < 1e-9);
        assert_eq!(threshold_verdict(&s, 75.0, 1), Verdict::Pass);
        assert!(matches!(threshold_verdict(&s, 80.0, 1), Verdict::Fail(r) if r.contains("75.0%")));
        assert!(matches!(threshold_verdict(&s, 50.0, 5), Verdict::Fail(r) if r.contains("fewer")));
        assert!(parse_junit("<html/>").is_err());
        assert!(parse_junit("<testsuite><testcase></testsuite>").is_err());
    }

    #[test]
    fn windows_are_time_zone_aware() {
        let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let office = TimeRange {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            start_minute: 9 * 60,
            end_minute: 17 * 60,
        };
        // 2026-11-27 is a Friday. 08:30 UTC is 09:30 in Paris (UTC+1 in winter): open.
        assert_eq!(
            window_verdict(
                tz,
                std::slice::from_ref(&office),
                &[],
                ts("2026-11-27T08:30:00Z")
            ),
            Verdict::Pass
        );
        // 16:30 UTC is 17:30 in Paris: closed until Monday 09:00 Paris = 08:00 UTC.
        assert_eq!(
            window_verdict(
                tz,
                std::slice::from_ref(&office),
                &[],
                ts("2026-11-27T16:30:00Z")
            ),
            wait(Some(ts("2026-11-30T08:00:00Z")), &[])
        );
        // A deny window (lunch) inside the allowed one.
        let lunch = TimeRange {
            days: vec![],
            start_minute: 12 * 60,
            end_minute: 13 * 60,
        };
        assert_eq!(
            window_verdict(tz, &[office], &[lunch], ts("2026-11-27T11:15:00Z")),
            wait(Some(ts("2026-11-27T12:00:00Z")), &[])
        );
        // A range over midnight: 22:00-02:00 in New York on Saturdays.
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let night = TimeRange {
            days: vec![Weekday::Sat],
            start_minute: 22 * 60,
            end_minute: 2 * 60,
        };
        // Sunday 01:00 New York (06:00 UTC) still belongs to Saturday's range.
        assert_eq!(
            window_verdict(
                ny,
                std::slice::from_ref(&night),
                &[],
                ts("2026-11-29T06:00:00Z")
            ),
            Verdict::Pass
        );
        assert!(matches!(
            window_verdict(ny, &[night], &[], ts("2026-11-29T08:00:00Z")),
            Verdict::Wait { .. }
        ));
    }
}
