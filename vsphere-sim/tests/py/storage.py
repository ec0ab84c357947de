"""pyVmomi against vsphere-sim's /pbm/sdk and /vslm/sdk endpoints.

The pbm and vslm stubs are SoapStubAdapters on their own paths and versions that carry the
vCenter session, as pyVmomi's users connect (the session cookie on the stub, and the
`vcSessionCookie` SOAP header through the request context).

Usage: storage.py HOST PORT USER PASSWORD. Exits non-zero (with a traceback) on any mismatch and
prints one "ok: ..." line per check.
"""
import sys
import time

from pyVim.connect import SmartConnect
from pyVmomi import SoapStubAdapter, VmomiSupport, pbm, vim, vslm

host, port, user, pwd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
si = SmartConnect(protocol="http", host=host, port=port, user=user, pwd=pwd)
content = si.RetrieveContent()
cookie = si._stub.cookie  # 'vmware_soap_session="..."; Path=/; ...'
session = cookie.split('"')[1]
ds = content.searchIndex.FindByInventoryPath("DC0/datastore/LocalDS_0")
vm0 = content.searchIndex.FindByInventoryPath("DC0/vm/DC0_H0_VM0")


def stub(path, version):
    s = SoapStubAdapter(host=host, port=-port, path=path, version=version,
                        requestContext={"vcSessionCookie": session})
    return s


# --- pbm --------------------------------------------------------------------------------------
pbm_stub = stub("/pbm/sdk", "pbm.version.version2")
pbm_si = pbm.ServiceInstance("ServiceInstance", pbm_stub)
pc = pbm_si.RetrieveContent()
assert pc.aboutInfo.name == "PBM", pc.aboutInfo
print("ok: PbmRetrieveServiceContent", pc.profileManager, pc.placementSolver)

pm = pc.profileManager
ids = pm.PbmQueryProfile(resourceType=pbm.profile.ResourceType(resourceType="STORAGE"),
                         profileCategory="REQUIREMENT")
assert len(ids) == 4, ids
profiles = pm.PbmRetrieveContent(profileIds=ids)
names = sorted(p.name for p in profiles)
assert "VM Encryption Policy" in names and "vSAN Default Storage Policy" in names, names
enc = next(p for p in profiles if p.name == "VM Encryption Policy")
assert isinstance(enc, pbm.profile.CapabilityBasedProfile), type(enc)
print("ok: PbmQueryProfile and PbmRetrieveContent,", len(profiles), "profiles:", names)

hubs = pc.placementSolver.PbmQueryMatchingHub(hubsToSearch=[], profile=enc.profileId)
hub_ids = sorted(h.hubId for h in hubs)
all_ds = sorted(content.searchIndex.FindByInventoryPath("DC0/datastore/" + n)._moId
                for n in ("LocalDS_0", "SharedDS_0"))
assert hub_ids == all_ds, (hub_ids, all_ds)
vsan = next(p for p in profiles if p.name == "vSAN Default Storage Policy")
results = pc.placementSolver.PbmCheckCompatibility(hubsToSearch=[], profile=vsan.profileId)
assert len(results) == len(all_ds) and all(r.error for r in results), results
print("ok: PbmQueryMatchingHub returns the datastores; PbmCheckCompatibility flags vSAN")

cm = pc.complianceManager
vm_ref = pbm.ServerObjectRef(objectType="virtualMachine", key=vm0._moId)
checked = cm.PbmCheckCompliance(entities=[vm_ref], profile=enc.profileId)
assert [r.complianceStatus for r in checked] == ["compliant"], checked
bad = cm.PbmCheckCompliance(entities=[vm_ref], profile=vsan.profileId)
assert bad[0].complianceStatus == "nonCompliant" and bad[0].violatedPolicies, bad
fetched = cm.PbmFetchComplianceResult(entities=[vm_ref])
assert [r.complianceStatus for r in fetched] == ["nonCompliant"], fetched
assert fetched[0].profile.uniqueId == vsan.profileId.uniqueId, fetched
print("ok: PbmCheckCompliance (compliant with VM Encryption, not with vSAN) and"
      " PbmFetchComplianceResult")

# --- vslm -------------------------------------------------------------------------------------
vslm_stub = stub("/vslm/sdk", "vslm.version.version14")
vslm_stub.cookie = cookie
vslm_si = vslm.ServiceInstance("ServiceInstance", vslm_stub)
vc = vslm_si.RetrieveContent()
mgr = vc.vStorageObjectManager
print("ok: vslm RetrieveContent", vc.aboutInfo.name)


def wait(task):
    for _ in range(500):
        info = task.QueryInfo()
        if info.state in ("success", "error"):
            return info
        time.sleep(0.01)
    raise SystemExit("vslm task did not finish")


spec = vim.vslm.CreateSpec(
    name="py-vslm", capacityInMB=16,
    backingSpec=vim.vslm.CreateSpec.DiskFileBackingSpec(datastore=ds, provisioningType="thin"))
task = mgr.VslmCreateDisk_Task(spec=spec)
info = wait(task)
assert info.state == "success", info
disk = task.QueryResult()
disk_id = disk.config.id
assert disk.config.name == "py-vslm", disk.config
print("ok: VslmCreateDisk_Task ->", disk_id.id)

q = vslm.vso.VStorageObjectQuerySpec(queryField="name", queryOperator="equals",
                                     queryValue=["py-vslm"])
res = mgr.VslmListVStorageObjectForSpec(query=[q], maxResult=10)
assert [i.id for i in res.id] == [disk_id.id] and res.allRecordsReturned, res
got = mgr.VslmRetrieveVStorageObject(id=disk_id)
assert got.config.capacityInMB == 16, got
# The vim25 side sees the same disk.
vmgr = content.vStorageObjectManager
assert disk_id.id in [i.id for i in vmgr.ListVStorageObject(datastore=ds)]
print("ok: VslmListVStorageObjectForSpec and VslmRetrieveVStorageObject; vim25 lists it")

assert wait(mgr.VslmAttachDisk_Task(id=disk_id, vm=vm0)).state == "success"
assoc = mgr.VslmRetrieveVStorageObjectAssociations(ids=[disk_id])
assert assoc[0].vmDiskAssociation[0].vmId == vm0._moId, assoc
failed = mgr.VslmDeleteVStorageObject_Task(id=disk_id)
assert wait(failed).state == "error"
try:
    failed.QueryResult()
    raise SystemExit("deleting an attached disk succeeded")
except vim.fault.InvalidState:
    pass
print("ok: VslmAttachDisk_Task, associations, delete refused while attached")

WaitTask = vm0.DetachDisk_Task(diskId=disk_id)
from pyVim.task import WaitForTask  # noqa: E402
WaitForTask(WaitTask)
assert wait(mgr.VslmDeleteVStorageObject_Task(id=disk_id)).state == "success"
try:
    mgr.VslmRetrieveVStorageObject(id=disk_id)
    raise SystemExit("a deleted disk was found")
except vim.fault.NotFound:
    pass
print("ok: vslm delete after detach; a missing disk is vim.fault.NotFound")

# Without a session the vslm endpoint refuses.
anon = SoapStubAdapter(host=host, port=-port, path="/vslm/sdk", version="vslm.version.version14")
try:
    vslm.vso.VStorageObjectManager(mgr._moId, anon).VslmRetrieveVStorageObject(id=disk_id)
    raise SystemExit("no session, yet an answer")
except vim.fault.NotAuthenticated:
    print("ok: no session -> vim.fault.NotAuthenticated")

print("ok: all")
