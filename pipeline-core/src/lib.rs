//! Pipelines in the spirit of vRealize Code Stream.
//!
//! A pipeline is an ordered list of stages, a stage holds tasks, and gating rules act as valves
//! that decide whether the flow may go on; an artifact repository keeps each task's outputs as
//! versions and passes them on.
//!
//! # Layering
//!
//! `pipeline-core` depends on **no other workspace crate**: pipelines drive vSphere, volumes or
//! VMs through task kinds that callers register, never through a compile-time dependency. No
//! workspace crate but the examples and the C API may depend on it.

mod error;

pub use error::Error;

/// A short, human-readable statement of what this crate can do in this build.
///
/// ```
/// assert!(pipeline_core::CAPABILITY.contains("pipeline"));
/// ```
pub const CAPABILITY: &str = "pipelines of stages and tasks with gates, approvals and artifacts";
