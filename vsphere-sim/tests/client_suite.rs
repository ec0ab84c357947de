//! The SDK client's interop suite run against the in-process simulator: the same checks as
//! `test-support/tests/interop_vcsim.rs` runs against govmomi's vcsim, from
//! `test_support::suite` (connect and release negotiation, a bad password as a typed
//! `InvalidLogin`, the finder, container and list views with paging, `WaitForUpdatesEx` on a
//! private collector, tasks with progress and typed faults, First Class Disks with attachment,
//! snapshots and metadata, owned views, disk details, the shared task waiter and FCD
//! progress). Where this simulator does more than vcsim 0.24.2 (paging, FCD attach, snapshots,
//! metadata), its profile says so and the suite checks vCenter's behaviour.

test_support::client_suite!(test_support::sim::Sim);
