"""pyVmomi against vsphere-sim: tasks waited for with pyVim.task.WaitForTask, First Class Disks.

Usage: tasks.py HOST PORT USER PASSWORD. Exits non-zero (with a traceback) on any mismatch and
prints one "ok: ..." line per check.
"""
import sys

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

host, port, user, pwd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
si = SmartConnect(protocol="http", host=host, port=port, user=user, pwd=pwd)
content = si.RetrieveContent()
index = content.searchIndex
vm0 = index.FindByInventoryPath("DC0/vm/DC0_H0_VM0")
vm1 = index.FindByInventoryPath("DC0/vm/DC0_H0_VM1")
ds = index.FindByInventoryPath("DC0/datastore/LocalDS_0")
assert isinstance(vm0, vim.VirtualMachine) and isinstance(ds, vim.Datastore), (vm0, ds)
assert index.FindByInventoryPath("DC0/vm/no-such-vm") is None
print("ok: SearchIndex.FindByInventoryPath", vm0, vm1, ds)

# Power off and on, waiting with WaitForTask and watching progress.
progress = []
WaitForTask(vm0.PowerOffVM_Task(), onProgressUpdate=lambda t, p: progress.append(p))
assert vm0.runtime.powerState == "poweredOff", vm0.runtime.powerState
task = vm0.PowerOnVM_Task()
WaitForTask(task, onProgressUpdate=lambda t, p: progress.append(p))
assert vm0.runtime.powerState == "poweredOn", vm0.runtime.powerState
assert task.info.state == "success" and task.info.entity == vm0, task.info
assert "created" in progress and 100 in progress, progress
assert task in content.taskManager.recentTask
print("ok: WaitForTask on PowerOffVM_Task and PowerOnVM_Task, progress", progress)
try:
    WaitForTask(vm0.PowerOnVM_Task())
    raise SystemExit("powering on a powered-on VM succeeded")
except vim.fault.InvalidPowerState as e:
    assert e.existingState == "poweredOn", e
    print("ok: a second power-on fails with vim.fault.InvalidPowerState")

# A First Class Disk: create, attach to one VM, refuse a second, move it, delete it.
vsom = content.vStorageObjectManager
free_before = ds.summary.freeSpace
spec = vim.vslm.CreateSpec(
    name="py-vol", capacityInMB=32,
    backingSpec=vim.vslm.CreateSpec.DiskFileBackingSpec(datastore=ds, provisioningType="thin"))
task = vsom.CreateDisk_Task(spec)
WaitForTask(task)
disk = task.info.result
assert isinstance(disk, vim.vslm.VStorageObject), disk
disk_id = disk.config.id
assert disk.config.capacityInMB == 32
assert ds.summary.freeSpace == free_before - 32 * 1024 * 1024
assert disk_id.id in [i.id for i in vsom.ListVStorageObject(ds)]
print("ok: WaitForTask on CreateDisk_Task ->", disk_id.id)

def fcd_devices(vm):
    return [d for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk) and d.vDiskId and d.vDiskId.id == disk_id.id]

WaitForTask(vm0.AttachDisk_Task(diskId=disk_id, datastore=ds))
devs = fcd_devices(vm0)
assert len(devs) == 1 and devs[0].backing.fileName == disk.config.backing.filePath, devs
try:
    WaitForTask(vm1.AttachDisk_Task(diskId=disk_id, datastore=ds))
    raise SystemExit("a disk attached to one VM was attached to another")
except vim.fault.InvalidState as e:
    assert isinstance(e.faultCause, vim.fault.FileLocked), e
    print("ok: a second AttachDisk_Task fails with vim.fault.InvalidState (cause FileLocked)")
try:
    WaitForTask(vsom.DeleteVStorageObject_Task(id=disk_id, datastore=ds))
    raise SystemExit("an attached disk was deleted")
except vim.fault.InvalidState:
    pass
WaitForTask(vm0.DetachDisk_Task(diskId=disk_id))
assert not fcd_devices(vm0)
WaitForTask(vm1.AttachDisk_Task(diskId=disk_id, datastore=ds))
assert len(fcd_devices(vm1)) == 1
WaitForTask(vm1.DetachDisk_Task(diskId=disk_id))
try:
    WaitForTask(vm1.DetachDisk_Task(diskId=disk_id))
    raise SystemExit("detaching a detached disk succeeded")
except vim.fault.NotFound:
    pass
print("ok: AttachDisk_Task/DetachDisk_Task between two VMs")
WaitForTask(vsom.DeleteVStorageObject_Task(id=disk_id, datastore=ds))
assert disk_id.id not in [i.id for i in vsom.ListVStorageObject(ds)]
assert ds.summary.freeSpace == free_before
print("ok: DeleteVStorageObject_Task gives the space back")

Disconnect(si)
print("ok: all")
