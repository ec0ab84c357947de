//! Approvals: plain decisions over a request's journaled state.
//!
//! A request names approvers and groups and needs a quorum of distinct approvals; one rejection
//! rejects it. The run's initiator may not approve it unless the policy allows self-approval.
//! An [`Authorizer`] hook (RBAC, a ticket system) has the last word on every decision. Expiry is
//! an absolute time in the journal. Every decision is journaled with actor, comment and time,
//! which is the audit record. A waiting request holds no worker: the run is parked in the
//! journal until a decision arrives.

use crate::Refusal;
use crate::journal::Timestamp;
use crate::state::ApprovalState;

/// Someone deciding, with the groups an identity provider puts them in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user's name.
    pub name: String,
    /// Their groups.
    pub groups: Vec<String>,
}

impl Actor {
    /// A user in no group.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            groups: Vec::new(),
        }
    }
}

/// The hook that authorizes each decision (RBAC).
pub trait Authorizer: Send + Sync {
    /// `Err(reason)` refuses the decision.
    fn authorize(&self, run: &str, request: &str, actor: &Actor) -> Result<(), String>;
}

/// An authorizer that relies on the policy alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyOnly;

impl Authorizer for PolicyOnly {
    fn authorize(&self, _run: &str, _request: &str, _actor: &Actor) -> Result<(), String> {
        Ok(())
    }
}

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalStatus {
    /// Waiting for more approvals.
    Pending {
        /// Distinct approvals so far.
        approvals: u32,
        /// Approvals needed.
        needed: u32,
    },
    /// The quorum approved.
    Approved,
    /// Someone rejected it.
    Rejected {
        /// Who.
        by: String,
    },
    /// It expired undecided.
    Expired,
}

/// Where `request` stands at `now`.
pub fn status(request: &ApprovalState, now: Timestamp) -> ApprovalStatus {
    if let Some(d) = request.decisions.iter().find(|d| !d.approved) {
        return ApprovalStatus::Rejected {
            by: d.actor.clone(),
        };
    }
    let mut approvers: Vec<&str> = request
        .decisions
        .iter()
        .filter(|d| d.approved)
        .map(|d| d.actor.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    let approvals = approvers.len() as u32;
    if approvals >= request.policy.quorum {
        return ApprovalStatus::Approved;
    }
    if request.expires_at.is_some_and(|t| now >= t) {
        return ApprovalStatus::Expired;
    }
    ApprovalStatus::Pending {
        approvals,
        needed: request.policy.quorum,
    }
}

/// Checks that `actor` may decide on `request` now.
pub fn check(
    run: &str,
    request_id: &str,
    request: &ApprovalState,
    initiator: &str,
    actor: &Actor,
    now: Timestamp,
    authorizer: &dyn Authorizer,
) -> Result<(), Refusal> {
    match status(request, now) {
        ApprovalStatus::Pending { .. } => {}
        ApprovalStatus::Expired => return Err(Refusal::Expired),
        ApprovalStatus::Approved | ApprovalStatus::Rejected { .. } => {
            return Err(Refusal::AlreadyDecided);
        }
    }
    let p = &request.policy;
    let listed =
        p.approvers.contains(&actor.name) || actor.groups.iter().any(|g| p.groups.contains(g));
    if !listed {
        return Err(Refusal::NotAnApprover);
    }
    if actor.name == initiator && !p.allow_self_approval {
        return Err(Refusal::SelfApproval);
    }
    if request.decisions.iter().any(|d| d.actor == actor.name) {
        return Err(Refusal::Duplicate);
    }
    authorizer
        .authorize(run, request_id, actor)
        .map_err(Refusal::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApprovalPolicy, OnExpiry};
    use crate::state::Decision;

    fn request(quorum: u32) -> ApprovalState {
        ApprovalState {
            policy: ApprovalPolicy {
                name: "go".into(),
                approvers: vec!["ann".into(), "bob".into(), "cy".into()],
                groups: vec!["release".into()],
                quorum,
                allow_self_approval: false,
                expires_after: None,
                on_expiry: OnExpiry::Fail,
                summary: String::new(),
            },
            requested_at: Timestamp(0),
            expires_at: Some(Timestamp(1000)),
            decisions: Vec::new(),
            audit: Vec::new(),
        }
    }

    fn decide(r: &mut ApprovalState, actor: &str, approved: bool) {
        r.decisions.push(Decision {
            actor: actor.into(),
            approved,
            comment: String::new(),
            at: Timestamp(1),
        });
    }

    struct DenyCy;
    impl Authorizer for DenyCy {
        fn authorize(&self, _: &str, _: &str, actor: &Actor) -> Result<(), String> {
            if actor.name == "cy" {
                Err("cy is on leave".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn quorum_counts_distinct_approvers() {
        let mut r = request(2);
        decide(&mut r, "ann", true);
        assert_eq!(
            status(&r, Timestamp(5)),
            ApprovalStatus::Pending {
                approvals: 1,
                needed: 2
            }
        );
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "zed",
                &Actor::user("ann"),
                Timestamp(5),
                &PolicyOnly
            ),
            Err(Refusal::Duplicate)
        );
        decide(&mut r, "bob", true);
        assert_eq!(status(&r, Timestamp(5)), ApprovalStatus::Approved);
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "zed",
                &Actor::user("cy"),
                Timestamp(5),
                &PolicyOnly
            ),
            Err(Refusal::AlreadyDecided)
        );
    }

    #[test]
    fn one_rejection_rejects() {
        let mut r = request(2);
        decide(&mut r, "ann", true);
        decide(&mut r, "bob", false);
        assert_eq!(
            status(&r, Timestamp(5)),
            ApprovalStatus::Rejected { by: "bob".into() }
        );
    }

    #[test]
    fn self_approval_is_refused_unless_allowed() {
        let mut r = request(1);
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "ann",
                &Actor::user("ann"),
                Timestamp(5),
                &PolicyOnly
            ),
            Err(Refusal::SelfApproval)
        );
        r.policy.allow_self_approval = true;
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "ann",
                &Actor::user("ann"),
                Timestamp(5),
                &PolicyOnly
            ),
            Ok(())
        );
    }

    #[test]
    fn groups_strangers_hook_and_expiry() {
        let r = request(1);
        let member = Actor {
            name: "dee".into(),
            groups: vec!["release".into()],
        };
        assert_eq!(
            check("run", "g", &r, "zed", &member, Timestamp(5), &PolicyOnly),
            Ok(())
        );
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "zed",
                &Actor::user("eve"),
                Timestamp(5),
                &PolicyOnly
            ),
            Err(Refusal::NotAnApprover)
        );
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "zed",
                &Actor::user("cy"),
                Timestamp(5),
                &DenyCy
            ),
            Err(Refusal::Unauthorized("cy is on leave".into()))
        );
        assert_eq!(status(&r, Timestamp(1000)), ApprovalStatus::Expired);
        assert_eq!(
            check(
                "run",
                "g",
                &r,
                "zed",
                &Actor::user("ann"),
                Timestamp(1000),
                &PolicyOnly
            ),
            Err(Refusal::Expired)
        );
    }
}
