//! `libvsdk`: the SDK's C API, generated into `include/vsdk.h` by cbindgen
//! (`cargo xtask ffi-header`).
//!
//! The main flows of the SDK, callable from C: start and stop an embedded vCenter simulator
//! (`vsdk_sim_*`), connect to vSphere and disconnect (`vsdk_client_*`), list inventory objects
//! with chosen properties (`vsdk_client_list`, `vsdk_objects_*`), First Class Disks
//! (`vsdk_fcd_*`), volumes that move between nodes on a chosen backend (`vsdk_volumes_*`,
//! `vsdk_volume_*`), environments of VMs on the vSphere or QEMU backend (`vsdk_hypervisor_*`,
//! `vsdk_env_*`, `vsdk_vm_list_*`) and pipelines with approvals, pause and cancel
//! (`vsdk_pipelines_*`, `vsdk_pipeline_*`).
//!
//! # API conventions
//!
//! - **Results.** Every function that can fail returns a [`vsdk_result`]: `VSDK_RESULT_OK`
//!   (0) or a numbered, grouped code. Out-parameters are written only on success. The
//!   exceptions return no result: the `_free` functions (and [`vsdk_sim_stop`]),
//!   [`vsdk_last_error`] and [`vsdk_result_name`].
//! - **Errors.** After a failed call, [`vsdk_last_error`] on the same thread gives the
//!   message (with its causes; never a password). It is a thread-local: every `vsdk_` call
//!   clears or replaces it, so the returned pointer is borrowed and valid until the next
//!   `vsdk_` call on that thread.
//! - **Ownership.** Handles (`vsdk_sim`, `vsdk_client`, `vsdk_objects`, `vsdk_strings`,
//!   `vsdk_volumes`, `vsdk_hypervisor`, `vsdk_env`, `vsdk_vm_list`, `vsdk_pipelines`,
//!   `vsdk_pipeline`) are opaque; each has one function that frees it, to be called exactly
//!   once, and every free function accepts NULL.
//!   `char *` results (ids, JSON) are owned by the caller and freed with
//!   [`vsdk_string_free`]; `const char *` results are borrowed from the handle that returned
//!   them and live until that handle is freed.
//! - **Arguments.** Every pointer argument is checked: NULL is `VSDK_RESULT_NULL_PARAMETER`
//!   (optional ones are documented), a string that is not UTF-8 is
//!   `VSDK_RESULT_INVALID_UTF8`.
//! - **Threading.** The API blocks: each handle owns a small Tokio runtime (one worker
//!   thread) and runs each call to completion on the calling thread; the caller never sees
//!   async. There is no global state: two handles can be used from two threads at once. A
//!   handle may move between threads; calls on one handle from several threads are
//!   serialized, except [`vsdk_pipeline_pause`] and [`vsdk_pipeline_cancel`], which reach a
//!   run while another thread's call drives it. Calling back into the library from a
//!   callback is refused with `VSDK_RESULT_REENTRANT`.
//! - **Callbacks.** Functions with an event stream (task progress, volume moves, pipeline
//!   events) take a [`vsdk_event_callback`] (may be NULL) and a `void *user_data`, passed
//!   back first; the callback runs on the calling thread, during the call, with one borrowed
//!   line of text.
//! - **Panics.** Every entry point catches panics: a panic becomes `VSDK_RESULT_PANIC` and a
//!   last-error message, never an abort of the host process.

// The C API is the one place where the workspace's `unsafe_code = "deny"` cannot hold: every
// entry point takes raw pointers. Each `unsafe` block states its invariant.
#![allow(unsafe_code)]
// C names: `vsdk_client`, `vsdk_result`, ... are what C code sees.
#![allow(non_camel_case_types)]

mod boundary;
mod client;
mod env;
mod error;
mod pipeline;
mod sim;
mod volume;

pub use boundary::{
    vsdk_event_callback, vsdk_last_error, vsdk_result, vsdk_result_name, vsdk_string_free,
    vsdk_strings, vsdk_strings_free, vsdk_strings_get, vsdk_strings_len,
};
pub use client::{
    vsdk_client, vsdk_client_connect, vsdk_client_disconnect, vsdk_client_list, vsdk_fcd_create,
    vsdk_fcd_delete, vsdk_fcd_list, vsdk_objects, vsdk_objects_find, vsdk_objects_free,
    vsdk_objects_len, vsdk_objects_property, vsdk_objects_property_count, vsdk_objects_ref,
};
pub use env::{
    vsdk_env, vsdk_env_down, vsdk_env_free, vsdk_env_load, vsdk_env_parse, vsdk_env_status,
    vsdk_env_up, vsdk_hypervisor, vsdk_hypervisor_free, vsdk_hypervisor_kind,
    vsdk_hypervisor_open_qemu, vsdk_hypervisor_open_vsphere, vsdk_vm_list, vsdk_vm_list_find,
    vsdk_vm_list_free, vsdk_vm_list_get, vsdk_vm_list_len, vsdk_vm_record, vsdk_vm_state,
};
pub use error::Error;
pub use pipeline::{
    vsdk_pipeline, vsdk_pipeline_approve, vsdk_pipeline_cancel, vsdk_pipeline_drive,
    vsdk_pipeline_free, vsdk_pipeline_load, vsdk_pipeline_name, vsdk_pipeline_parse,
    vsdk_pipeline_pause, vsdk_pipeline_resume, vsdk_pipeline_run, vsdk_pipeline_start,
    vsdk_pipeline_status, vsdk_pipelines, vsdk_pipelines_free, vsdk_pipelines_open,
    vsdk_run_outcome, vsdk_run_status,
};
pub use sim::{
    vsdk_sim, vsdk_sim_password, vsdk_sim_start, vsdk_sim_stop, vsdk_sim_thumbprint, vsdk_sim_url,
    vsdk_sim_url_with_credentials, vsdk_sim_user,
};
pub use volume::{
    vsdk_volume_attach, vsdk_volume_create, vsdk_volume_destroy, vsdk_volume_detach,
    vsdk_volume_move, vsdk_volume_node, vsdk_volume_release, vsdk_volumes, vsdk_volumes_free,
    vsdk_volumes_open_fcd, vsdk_volumes_open_local, vsdk_volumes_open_memory,
};
