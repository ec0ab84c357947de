//! Tasks: `Task` managed objects whose `info` moves queued -> running -> success or error, with
//! progress, listed in `TaskManager.recentTask` and in the entity's `recentTask`.
//!
//! The state changes are plain functions on the inventory; the server schedules them (see
//! `server::run_task`), so the transitions are visible to property collectors in between.

use vsphere_client::codec::{Any, ManagedObjectReference, MethodInfo, Obj, Poly};
use vsphere_client::types::{TaskInfo, TaskInfoState, TaskReason, TaskReasonUser};

use crate::fault::Fault;
use crate::inventory::{Inventory, MoObject, refs};

/// The TaskManager's fixed id.
pub(crate) const TASK_MANAGER: &str = "TaskManager";
/// How many tasks `TaskManager.recentTask` lists (older Task objects are dropped).
const RECENT: usize = 200;
/// How many tasks an entity's `recentTask` lists.
const RECENT_PER_ENTITY: usize = 10;

/// What a task does when it runs: its result, or the fault it ends with.
pub(crate) type Job = Box<dyn FnOnce(&mut crate::server::SimState) -> TaskOutcome + Send>;

/// A task's end: a result (`None` for void tasks) or an error.
pub(crate) type TaskOutcome = Result<Option<Any>, Fault>;

fn now() -> vsphere_client::codec::DateTime {
    crate::server::now()
}

/// `PowerOnVM_Task` on `VirtualMachine` -> `VirtualMachine.powerOn`, as vCenter's
/// `descriptionId`s read.
fn description_id(method: &MethodInfo) -> String {
    let base = method.name.strip_suffix("_Task").unwrap_or(method.name);
    let base = base.strip_suffix("VM").unwrap_or(base);
    let mut chars = base.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    format!(
        "{}.{}{}",
        method.managed_type,
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

/// Creates a queued task for `method` on `entity` (a ManagedEntity, or `None`).
pub(crate) fn create(
    inv: &mut Inventory,
    user: &str,
    method: &MethodInfo,
    entity: Option<&ManagedObjectReference>,
) -> ManagedObjectReference {
    let id = inv.new_id("task");
    let r = ManagedObjectReference::new("Task", &id);
    let mut info = TaskInfo::default();
    info.key.clone_from(&id);
    info.task = r.clone();
    info.name = Some(method.name.to_owned());
    info.description_id = description_id(method);
    info.entity = entity.cloned();
    info.entity_name = entity
        .and_then(|e| inv.name_of(&e.value))
        .map(str::to_owned);
    info.state = TaskInfoState::Queued;
    info.cancelable = false;
    info.cancelled = false;
    let mut reason = TaskReasonUser::default();
    reason.user_name = user.to_owned();
    info.reason = Some(Poly::<TaskReason>::new(reason));
    info.queue_time = now();
    info.event_chain_id = i32::try_from(inv.len() % (i32::MAX as usize)).unwrap_or(0);
    let mut o = MoObject::new("Task", &id);
    o.set("info", Any::Data(Box::new(info)));
    inv.insert(o);

    let mut recent = inv.refs_of(TASK_MANAGER, "recentTask");
    recent.push(r.clone());
    if recent.len() > RECENT {
        let dropped: Vec<_> = recent.drain(..recent.len() - RECENT).collect();
        for d in dropped {
            inv.remove(&d.value);
        }
    }
    if let Some(tm) = inv.get_mut(TASK_MANAGER) {
        tm.set("recentTask", refs(&recent));
    }
    if let Some(e) = entity {
        let mut v = inv.refs_of(&e.value, "recentTask");
        v.push(r.clone());
        if v.len() > RECENT_PER_ENTITY {
            v.drain(..v.len() - RECENT_PER_ENTITY);
        }
        if let Some(o) = inv.get_mut(&e.value) {
            o.set("recentTask", refs(&v));
        }
    }
    r
}

/// Moves a queued task to running (progress 0).
pub(crate) fn start(inv: &mut Inventory, id: &str) {
    if let Some(info) = inv.data_mut::<TaskInfo>(id, "info") {
        info.state = TaskInfoState::Running;
        info.progress = Some(0);
        info.start_time = Some(now());
    }
}

/// Records progress of a running task.
pub(crate) fn progress(inv: &mut Inventory, id: &str, percent: i32) {
    if let Some(info) = inv.data_mut::<TaskInfo>(id, "info") {
        info.progress = Some(percent.clamp(0, 100));
    }
}

/// Ends a task with its outcome.
pub(crate) fn finish(inv: &mut Inventory, id: &str, outcome: TaskOutcome) {
    if let Some(info) = inv.data_mut::<TaskInfo>(id, "info") {
        info.complete_time = Some(now());
        if info.start_time.is_none() {
            info.start_time = info.complete_time;
        }
        match outcome {
            Ok(result) => {
                info.state = TaskInfoState::Success;
                info.progress = Some(100);
                info.result = result;
            }
            Err(fault) => {
                info.state = TaskInfoState::Error;
                info.error = Some(Obj::new(fault.localized()));
            }
        }
    }
}

/// The task's state, for tests and the library API.
#[cfg(test)]
pub(crate) fn state(inv: &Inventory, id: &str) -> Option<TaskInfoState> {
    inv.data::<TaskInfo>(id, "info").map(|i| i.state.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vsphere_client::mo::methods::POWER_ON_VM_TASK;
    use vsphere_client::types::InvalidPowerState;

    fn inv() -> Inventory {
        let mut inv = Inventory::build(&crate::InventoryShape::default());
        inv.insert(MoObject::new("TaskManager", TASK_MANAGER));
        inv
    }

    #[test]
    fn description_ids_read_like_vcenter() {
        assert_eq!(description_id(&POWER_ON_VM_TASK), "VirtualMachine.powerOn");
    }

    #[test]
    fn a_task_moves_queued_running_success() {
        let mut inv = inv();
        let vm = inv.of_type("VirtualMachine").next().unwrap().moref.clone();
        let t = create(&mut inv, "user", &POWER_ON_VM_TASK, Some(&vm));
        assert_eq!(state(&inv, &t.value), Some(TaskInfoState::Queued));
        assert_eq!(inv.refs_of(TASK_MANAGER, "recentTask"), vec![t.clone()]);
        assert_eq!(inv.refs_of(&vm.value, "recentTask"), vec![t.clone()]);
        start(&mut inv, &t.value);
        progress(&mut inv, &t.value, 50);
        assert_eq!(state(&inv, &t.value), Some(TaskInfoState::Running));
        finish(&mut inv, &t.value, Ok(Some(Any::MoRef(vm.clone()))));
        let info = inv.data::<TaskInfo>(&t.value, "info").unwrap();
        assert_eq!(info.state, TaskInfoState::Success);
        assert_eq!(info.progress, Some(100));
        assert!(matches!(&info.result, Some(Any::MoRef(r)) if *r == vm));
        assert!(info.entity_name.is_some());
    }

    #[test]
    fn a_failed_task_carries_its_typed_fault() {
        let mut inv = inv();
        let t = create(&mut inv, "user", &POWER_ON_VM_TASK, None);
        finish(
            &mut inv,
            &t.value,
            Err(Fault::new("already on", InvalidPowerState::default())),
        );
        let info = inv.data::<TaskInfo>(&t.value, "info").unwrap();
        assert_eq!(info.state, TaskInfoState::Error);
        let err = info.error.as_ref().unwrap();
        assert_eq!(err.fault.as_ref().unwrap().type_name(), "InvalidPowerState");
    }
}
