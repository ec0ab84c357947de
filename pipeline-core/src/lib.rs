//! Pipelines in the spirit of vRealize Code Stream.
//!
//! A pipeline is an ordered list of stages, a stage holds tasks, and gating rules act as valves
//! that decide whether the flow may go on; an artifact repository keeps each task's outputs as
//! versions and passes them on.
//!
//! - [`load`]: YAML close to Code Stream's export, validated with line numbers before anything runs;
//! - [`binding`] and [`expr`]: `${...}` bindings and CEL conditions;
//! - [`model`]: the validated pipeline;
//! - [`gate`] and [`approval`]: gate rules and durable approvals, as plain decisions;
//! - [`journal`]: the durable, versioned (compare-and-swap) journal behind a trait;
//! - [`state`]: a run's state, folded from its journal;
//! - [`engine`]: the async engine that runs, resumes and reconciles runs;
//! - [`task`]: task kinds (a trait) and the built-in ones; [`git`]: the `Git` kind's libgit2 work;
//! - [`artifact`]: the artifact repository;
//! - [`cli`]: the `pipeline-run` command line (the example binary wraps it).
//!
//! # Layering
//!
//! `pipeline-core` depends on **no other workspace crate**: pipelines drive vSphere, volumes or
//! VMs through task kinds that callers register, never through a compile-time dependency. No
//! workspace crate but the examples and the C API may depend on it.

pub mod approval;
pub mod artifact;
pub mod artifactory;
pub mod binding;
pub mod cli;
pub mod engine;
mod error;
pub mod expr;
pub mod gate;
pub mod git;
pub mod http;
pub mod journal;
pub mod load;
pub mod model;
pub mod state;
pub mod task;

pub use error::{Error, Refusal};

/// Re-exported so that task kinds can implement [`task::TaskKind`] without a direct dependency.
pub use async_trait::async_trait;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(pipeline_core::CAPABILITY.contains("pipeline"));
/// ```
pub const CAPABILITY: &str = "pipelines of stages and tasks with gates, approvals and artifacts";
