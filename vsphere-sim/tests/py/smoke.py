"""pyVmomi against vsphere-sim: connect, browse with a container view, read properties, page.

Usage: smoke.py HOST PORT USER PASSWORD. Exits non-zero (with a traceback) on any mismatch and
prints one "ok: ..." line per check.
"""
import sys

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

host, port, user, pwd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

try:
    SmartConnect(protocol="http", host=host, port=port, user=user, pwd=pwd + "-wrong")
    raise SystemExit("a wrong password was accepted")
except vim.fault.InvalidLogin:
    print("ok: wrong password -> vim.fault.InvalidLogin")

si = SmartConnect(protocol="http", host=host, port=port, user=user, pwd=pwd)
content = si.RetrieveContent()
assert content.about.apiType == "VirtualCenter", content.about.apiType
print("ok: RetrieveContent", content.about.fullName)

view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
vms = list(view.view)
assert len(vms) == 8, len(vms)
names = sorted(vm.name for vm in vms)
assert names[0] == "DC0_C0_RP0_VM0" and names[-1] == "DC0_H0_VM1", names
states = {str(vm.runtime.powerState) for vm in vms}
assert states == {"poweredOn"}, states
disks = [d for d in vms[0].config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
assert disks and disks[0].capacityInKB > 0, disks
print("ok: container view over", len(vms), "VMs, names, runtime.powerState, config.hardware.device")

hosts = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
host_names = sorted(h.summary.config.name for h in hosts.view)
assert host_names == ["DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2", "DC0_H0"], host_names
dss = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
for ds in dss.view:
    assert ds.summary.capacity >= ds.summary.freeSpace > 0, ds.summary
print("ok: hosts", host_names, "and", len(dss.view), "datastores")

PC = vmodl.query.PropertyCollector
spec = PC.FilterSpec(
    objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
        PC.TraversalSpec(name="traverseView", type=vim.view.ContainerView, path="view", skip=False)])],
    propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name", "runtime.powerState"])])
pc = content.propertyCollector
res = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=3))
seen, pages = [], 1
while True:
    assert len(res.objects) <= 3
    seen += [o.propSet[0].val for o in res.objects]
    if not res.token:
        break
    res = pc.ContinueRetrievePropertiesEx(res.token)
    pages += 1
assert sorted(seen) == names and pages == 3, (seen, pages)
print("ok: RetrievePropertiesEx paging,", pages, "pages")

view.DestroyView()
Disconnect(si)
print("ok: all")
