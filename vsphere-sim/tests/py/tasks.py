"""pyVmomi against vsphere-sim: tasks waited for with pyVim.task.WaitForTask, First Class Disks.

Usage: tasks.py HOST PORT USER PASSWORD. Exits non-zero (with a traceback) on any mismatch and
prints one "ok: ..." line per check.
"""
import sys

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

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

# config.annotation through ReconfigVM_Task.
WaitForTask(vm0.ReconfigVM_Task(spec=vim.vm.ConfigSpec(annotation="owner: py <team>")))
assert vm0.config.annotation == "owner: py <team>", vm0.config.annotation
assert vm0.summary.config.annotation == "owner: py <team>", vm0.summary.config
print("ok: ReconfigVM_Task sets config.annotation (and summary.config.annotation)")

# VirtualDiskManager over the datastore's files.
vdm = content.virtualDiskManager
dc = index.FindByInventoryPath("DC0")
name = "[LocalDS_0] py/loose.vmdk"
free_before = ds.summary.freeSpace
task = vdm.CreateVirtualDisk_Task(
    name=name, datacenter=dc,
    spec=vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
        diskType="thin", adapterType="lsiLogic", capacityKb=1024))
WaitForTask(task)
assert task.info.result == name, task.info.result
assert ds.summary.freeSpace == free_before - 1024 * 1024
uuid = vdm.QueryVirtualDiskUuid(name=name, datacenter=dc)
assert len(uuid) == 47 and uuid[23] == "-", uuid
WaitForTask(vdm.ExtendVirtualDisk_Task(name=name, datacenter=dc, newCapacityKb=2048))
assert ds.summary.freeSpace == free_before - 2048 * 1024
try:
    WaitForTask(vdm.CreateVirtualDisk_Task(
        name=name, datacenter=dc,
        spec=vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            diskType="thin", adapterType="lsiLogic", capacityKb=1)))
    raise SystemExit("a disk was created over an existing one")
except vim.fault.FileAlreadyExists:
    pass
vm_disk = next(d for d in vm1.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
try:
    WaitForTask(vdm.DeleteVirtualDisk_Task(name=vm_disk.backing.fileName, datacenter=dc))
    raise SystemExit("a VM's disk was deleted")
except vim.fault.FileLocked:
    pass
# Copy, move (the space moves with the disk), inflate; a VM's disk cannot be moved.
copy = "[SharedDS_0] py/copy.vmdk"
task = vdm.CopyVirtualDisk_Task(sourceName=name, sourceDatacenter=dc, destName=copy,
                                destDatacenter=dc)
WaitForTask(task)
assert task.info.result == copy, task.info.result
moved = "[LocalDS_0] py/moved.vmdk"
WaitForTask(vdm.MoveVirtualDisk_Task(sourceName=copy, sourceDatacenter=dc, destName=moved,
                                     destDatacenter=dc))
assert ds.summary.freeSpace == free_before - 2 * 2048 * 1024
WaitForTask(vdm.InflateVirtualDisk_Task(name=moved, datacenter=dc))
try:
    WaitForTask(vdm.MoveVirtualDisk_Task(sourceName=vm_disk.backing.fileName,
                                         sourceDatacenter=dc, destName="[LocalDS_0] py/x.vmdk",
                                         destDatacenter=dc))
    raise SystemExit("a VM's disk was moved")
except vim.fault.FileLocked:
    pass
WaitForTask(vdm.DeleteVirtualDisk_Task(name=moved, datacenter=dc))
print("ok: VirtualDiskManager copy, move, inflate; FileLocked for a VM's disk")
WaitForTask(vdm.DeleteVirtualDisk_Task(name=name, datacenter=dc))
assert ds.summary.freeSpace == free_before
try:
    vdm.QueryVirtualDiskUuid(name=name, datacenter=dc)
    raise SystemExit("a deleted disk has a uuid")
except vim.fault.FileNotFound:
    pass
try:
    vdm.QueryVirtualDiskUuid(name="[NoSuchDS] x.vmdk", datacenter=dc)
    raise SystemExit("an unknown datastore answered")
except vim.fault.InvalidDatastore:
    pass
print("ok: VirtualDiskManager create, uuid", uuid, "extend, delete; FileAlreadyExists, FileLocked,"
      " FileNotFound, InvalidDatastore")

# Destroy_Task on entities other than VMs.
folder = dc.vmFolder.CreateFolder("py-team")
WaitForTask(folder.Destroy_Task())
assert all(c.name != "py-team" for c in dc.vmFolder.childEntity)
try:
    WaitForTask(dc.vmFolder.Destroy_Task())
    raise SystemExit("a datacenter's vm folder was destroyed")
except vmodl.fault.NotSupported:
    pass
try:
    WaitForTask(dc.Destroy_Task())
    raise SystemExit("a datacenter with VMs was destroyed")
except vim.fault.ResourceInUse:
    pass
print("ok: Destroy_Task on a folder; NotSupported, ResourceInUse")

Disconnect(si)
print("ok: all")
