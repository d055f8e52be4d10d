//! What each policy answered and what the chain decided. Decisions are enums with reasons, never `bool`.
//!
//! Chain semantics: policies run in order; a hidden tool or a deny from an enforcing policy ends the chain
//! (nothing later could change the outcome); otherwise any require-approval wins; otherwise allow. A policy
//! that fails (trap, timeout, out of memory or fuel, panic, bad answer) counts as a deny. Monitor-mode
//! policies are evaluated and logged, but their answer never changes the outcome.

use std::sync::Arc;
use std::time::Duration;

use super::sandbox::Failure;
use crate::config::PolicyMode;

/// The name a refusal made by the gateway itself (not by a policy) goes under.
pub const GATEWAY: &str = "mcp-gateway";

/// One policy's answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny(String),
    RequireApproval(String),
    /// What the message names (a tool, resource or prompt) is one this policy hides.
    Hidden,
    Failed(Failure),
}

/// What a policy can hide: named by `tools/call`, `resources/read`, `prompts/get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hideable {
    Tool,
    Resource,
    Prompt,
}

impl Hideable {
    pub fn label(self) -> &'static str {
        match self {
            Hideable::Tool => "tool",
            Hideable::Resource => "resource",
            Hideable::Prompt => "prompt",
        }
    }
}

impl Answer {
    pub fn label(&self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Deny(_) => "deny",
            Answer::RequireApproval(_) => "require_approval",
            Answer::Hidden => "hidden",
            Answer::Failed(_) => "error",
        }
    }
}

/// A policy that ran, and what it said.
#[derive(Debug, Clone)]
pub struct PolicyAnswer {
    pub policy: Arc<str>,
    pub sha256: String,
    pub settings_digest: String,
    pub mode: PolicyMode,
    pub answer: Answer,
    pub elapsed: Duration,
}

/// The chain's decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny {
        policy: Arc<str>,
        reason: String,
    },
    RequireApproval {
        policy: Arc<str>,
        reason: String,
    },
    /// What the message names is hidden on this route: answered as if it did not exist.
    Hidden {
        policy: Arc<str>,
        kind: Hideable,
        /// The tool name, resource URI or prompt name.
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    pub answers: Vec<PolicyAnswer>,
}

impl Verdict {
    pub fn allow_unpoliced() -> Self {
        Verdict {
            outcome: Outcome::Allow,
            answers: Vec::new(),
        }
    }

    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}

/// Folds answers (in chain order) into an outcome.
pub fn combine(answers: &[PolicyAnswer], target: Option<(Hideable, &str)>) -> Outcome {
    let mut approval = None;
    for a in answers.iter().filter(|a| a.mode == PolicyMode::Enforce) {
        let policy = a.policy.clone();
        match &a.answer {
            Answer::Allow => {}
            Answer::Hidden => {
                let (kind, name) = target.unwrap_or((Hideable::Tool, ""));
                return Outcome::Hidden {
                    policy,
                    kind,
                    name: name.to_owned(),
                };
            }
            Answer::Deny(reason) => {
                return Outcome::Deny {
                    policy,
                    reason: reason.clone(),
                };
            }
            Answer::Failed(f) => {
                return Outcome::Deny {
                    policy,
                    reason: format!("the policy failed ({f}); failing closed"),
                };
            }
            Answer::RequireApproval(reason) => {
                approval.get_or_insert(Outcome::RequireApproval {
                    policy,
                    reason: reason.clone(),
                });
            }
        }
    }
    approval.unwrap_or(Outcome::Allow)
}

/// What the chain would have decided had every policy enforced (monitor mode's would-be outcome). The chain
/// stops at an enforcing policy's final answer, so only the answers given count.
pub fn would(answers: &[PolicyAnswer]) -> Outcome {
    let enforcing: Vec<PolicyAnswer> = answers
        .iter()
        .map(|a| PolicyAnswer {
            mode: PolicyMode::Enforce,
            ..a.clone()
        })
        .collect();
    combine(&enforcing, None)
}

/// Whether the chain can stop after this answer.
pub fn is_final(a: &PolicyAnswer) -> bool {
    a.mode == PolicyMode::Enforce
        && matches!(
            a.answer,
            Answer::Deny(_) | Answer::Hidden | Answer::Failed(_)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(policy: &str, mode: PolicyMode, answer: Answer) -> PolicyAnswer {
        PolicyAnswer {
            policy: policy.into(),
            sha256: String::new(),
            settings_digest: String::new(),
            mode,
            answer,
            elapsed: Duration::ZERO,
        }
    }
    use PolicyMode::{Enforce, Monitor};

    #[test]
    fn deny_beats_approval_beats_allow() {
        let appr = a("p1", Enforce, Answer::RequireApproval("big refund".into()));
        let deny = a("p2", Enforce, Answer::Deny("no".into()));
        assert_eq!(
            combine(&[appr.clone(), deny.clone()], None),
            Outcome::Deny {
                policy: "p2".into(),
                reason: "no".into()
            }
        );
        assert_eq!(
            combine(&[appr.clone(), a("p3", Enforce, Answer::Allow)], None),
            Outcome::RequireApproval {
                policy: "p1".into(),
                reason: "big refund".into()
            }
        );
        assert_eq!(
            combine(&[a("p", Enforce, Answer::Allow)], None),
            Outcome::Allow
        );
        assert_eq!(combine(&[], None), Outcome::Allow);
    }

    #[test]
    fn failures_deny_and_monitor_never_decides() {
        let failed = a("p", Enforce, Answer::Failed(Failure::Panic));
        assert!(
            matches!(combine(std::slice::from_ref(&failed), None), Outcome::Deny { reason, .. } if reason.contains("panicked"))
        );
        assert!(is_final(&failed));
        let watching = a("m", Monitor, Answer::Deny("would deny".into()));
        assert_eq!(
            combine(std::slice::from_ref(&watching), None),
            Outcome::Allow
        );
        assert!(!is_final(&watching));
        assert_eq!(
            combine(
                &[a("h", Enforce, Answer::Hidden)],
                Some((Hideable::Resource, "file:///etc/passwd"))
            ),
            Outcome::Hidden {
                policy: "h".into(),
                kind: Hideable::Resource,
                name: "file:///etc/passwd".into()
            }
        );
    }
}
