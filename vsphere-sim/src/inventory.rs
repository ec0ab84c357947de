//! The simulator's inventory: managed objects whose properties are the SDK's generated data
//! types, and a builder that shapes it like govmomi vcsim's VPX model.

use vsphere_client::codec::{Any, AnyArray, DataType, DateTime, ManagedObjectReference, Obj, Poly};
use vsphere_client::types::{
    AboutInfo, DatastoreSummary, Description, HostConfigSummary, HostHardwareSummary,
    HostListSummary, HostRuntimeInfo, HostSystemConnectionState, HostSystemPowerState,
    ManagedEntityStatus, ParaVirtualSCSIController, VirtualDevice, VirtualDeviceBackingInfo,
    VirtualDeviceFileBackingInfo, VirtualDisk, VirtualDiskFlatVer2BackingInfo, VirtualE1000,
    VirtualEthernetCard, VirtualEthernetCardNetworkBackingInfo, VirtualHardware,
    VirtualMachineConfigInfo, VirtualMachineConnectionState, VirtualMachineFileInfo,
    VirtualMachinePowerState, VirtualMachineRecordReplayState, VirtualMachineRuntimeInfo,
    VirtualPCIController, VirtualSCSISharing,
};

/// The size of the generated inventory; the defaults match vcsim's VPX model.
///
/// ```
/// let shape = vsphere_sim::InventoryShape::default();
/// assert_eq!((shape.datacenters, shape.clusters, shape.hosts_per_cluster), (1, 1, 3));
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InventoryShape {
    /// Datacenters (`DC0`, `DC1`, ...).
    pub datacenters: u32,
    /// Clusters per datacenter (`DC0_C0`, ...).
    pub clusters: u32,
    /// Hosts in each cluster (`DC0_C0_H0`, ...).
    pub hosts_per_cluster: u32,
    /// Standalone hosts per datacenter (`DC0_H0`, ...).
    pub standalone_hosts: u32,
    /// Virtual machines per host (`DC0_H0_VM0`, `DC0_C0_RP0_VM0`, ...).
    pub vms_per_host: u32,
    /// Local datastores per datacenter (`LocalDS_0`, ...), mounted on every host of the
    /// datacenter; a `SharedDS_0` is added besides.
    pub datastores: u32,
}

impl Default for InventoryShape {
    fn default() -> Self {
        Self {
            datacenters: 1,
            clusters: 1,
            hosts_per_cluster: 3,
            standalone_hosts: 1,
            vms_per_host: 2,
            datastores: 1,
        }
    }
}

impl InventoryShape {
    /// The number of virtual machines this shape creates.
    ///
    /// ```
    /// assert_eq!(vsphere_sim::InventoryShape::default().vm_count(), 8);
    /// ```
    pub fn vm_count(&self) -> u64 {
        let hosts = u64::from(self.clusters) * u64::from(self.hosts_per_cluster)
            + u64::from(self.standalone_hosts);
        u64::from(self.datacenters) * hosts * u64::from(self.vms_per_host)
    }
}

/// One managed object: its reference and its properties by wire name.
#[derive(Clone, Debug)]
pub(crate) struct MoObject {
    pub(crate) moref: ManagedObjectReference,
    pub(crate) props: Vec<(&'static str, Any)>,
}

impl MoObject {
    pub(crate) fn new(type_: &str, id: &str) -> Self {
        Self {
            moref: ManagedObjectReference::new(type_, id),
            props: Vec::new(),
        }
    }

    /// A property's value (`None` when the object does not have it).
    pub(crate) fn prop(&self, name: &str) -> Option<&Any> {
        self.props.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Sets (or replaces) a property. A derived property ([`Inventory::derived`]) is not
    /// stored: it is computed on read.
    pub(crate) fn set(&mut self, name: &'static str, value: Any) {
        if Inventory::derived(&self.moref.type_).contains(&name) {
            return;
        }
        match self.props.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.props.push((name, value)),
        }
    }

    fn with(mut self, name: &'static str, value: Any) -> Self {
        self.set(name, value);
        self
    }
}

/// Managed objects by id, each stored once: the table hashes the object's own `moref.value`,
/// so no id is kept twice (a `HashMap<String, MoObject>` would copy every id into its key).
#[derive(Default)]
pub(crate) struct ObjectTable {
    table: hashbrown::HashTable<MoObject>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for ObjectTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.table.iter()).finish()
    }
}

impl ObjectTable {
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher as _;
        self.hasher.hash_one(id)
    }

    fn get(&self, id: &str) -> Option<&MoObject> {
        self.table.find(self.hash(id), |o| o.moref.value == id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut MoObject> {
        let h = self.hash(id);
        self.table.find_mut(h, |o| o.moref.value == id)
    }

    /// Adds `o`, replacing an object with the same id.
    fn insert(&mut self, o: MoObject) {
        let h = self.hash(&o.moref.value);
        let hasher = &self.hasher;
        match self.table.entry(
            h,
            |x| x.moref.value == o.moref.value,
            |x| {
                use std::hash::BuildHasher as _;
                hasher.hash_one(x.moref.value.as_str())
            },
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = o,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(o);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<MoObject> {
        let h = self.hash(id);
        self.table
            .find_entry(h, |o| o.moref.value == id)
            .ok()
            .map(|e| e.remove().0)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn values(&self) -> impl Iterator<Item = &MoObject> {
        self.table.iter()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut MoObject> {
        self.table.iter_mut()
    }

    fn shrink_to_fit(&mut self) {
        let hasher = &self.hasher;
        self.table.shrink_to_fit(|x| {
            use std::hash::BuildHasher as _;
            hasher.hash_one(x.moref.value.as_str())
        });
    }
}

impl FromIterator<MoObject> for ObjectTable {
    fn from_iter<I: IntoIterator<Item = MoObject>>(iter: I) -> Self {
        let mut t = Self::default();
        for o in iter {
            t.insert(o);
        }
        t
    }
}

/// The managed objects of the simulated vCenter, by id.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    objects: ObjectTable,
    next_id: u64,
    /// First Class Disks, by id (their attachments live in the VMs' devices).
    pub(crate) fcds: std::collections::BTreeMap<String, crate::fcd::Fcd>,
    /// Loose virtual disk files (`VirtualDiskManager`), by datastore path.
    pub(crate) disk_files: std::collections::BTreeMap<String, crate::vdisk::DiskFile>,
    /// The last storage policy compliance check of each entity (`objectType:key`).
    pub(crate) compliance:
        std::collections::BTreeMap<String, vsphere_client::types::PbmComplianceResult>,
}

/// The references the service content hands out.
pub(crate) const ROOT_FOLDER: &str = "group-d1";

fn moref(type_: &str, id: &str) -> ManagedObjectReference {
    ManagedObjectReference::new(type_, id)
}

pub(crate) fn refs(v: &[ManagedObjectReference]) -> Any {
    Any::Array(AnyArray::MoRef(v.to_vec()))
}

fn strings(v: &[&str]) -> Any {
    Any::Array(AnyArray::String(
        v.iter().map(|s| (*s).to_owned()).collect(),
    ))
}

impl Inventory {
    /// The object with id `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&MoObject> {
        self.objects.get(id)
    }

    /// The object `r` refers to, if it exists and has that type.
    pub(crate) fn resolve(&self, r: &ManagedObjectReference) -> Option<&MoObject> {
        self.objects
            .get(&r.value)
            .filter(|o| o.moref.type_ == r.type_)
    }

    /// Adds an object (replacing one with the same id).
    pub(crate) fn insert(&mut self, o: MoObject) {
        self.objects.insert(o);
    }

    /// Removes an object.
    pub(crate) fn remove(&mut self, id: &str) -> Option<MoObject> {
        self.objects.remove(id)
    }

    /// A fresh id with `prefix` (`vm-42`, `session[...]`).
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// The number of objects.
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Every object, in no particular order.
    pub(crate) fn objects(&self) -> impl Iterator<Item = &MoObject> {
        self.objects.values()
    }

    /// The id counter (saved with the state, so new ids never repeat old ones).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// An inventory from saved parts.
    pub(crate) fn from_parts(
        objects: Vec<MoObject>,
        next_id: u64,
        fcds: std::collections::BTreeMap<String, crate::fcd::Fcd>,
    ) -> Self {
        Self {
            objects: objects
                .into_iter()
                .map(|mut o| {
                    // Older state files stored derived properties: they are computed now.
                    let derived = Self::derived(&o.moref.type_);
                    o.props.retain(|(n, _)| !derived.contains(n));
                    o
                })
                .collect(),
            next_id,
            fcds,
            disk_files: std::collections::BTreeMap::new(),
            compliance: std::collections::BTreeMap::new(),
        }
    }

    /// A property's value: a VM's derived `summary` and `guest` are computed from its stored
    /// properties (nothing to keep in step, less memory per VM), any other is the stored one.
    pub(crate) fn value<'a>(
        &'a self,
        obj: &'a MoObject,
        name: &str,
    ) -> Option<std::borrow::Cow<'a, Any>> {
        use std::borrow::Cow;
        if obj.moref.type_ == "VirtualMachine" {
            match name {
                "summary" => {
                    return crate::vm::summary(self, &obj.moref.value)
                        .map(|s| Cow::Owned(Any::Data(Box::new(s))));
                }
                "guest" => {
                    return crate::guest::info(self, &obj.moref.value)
                        .map(|g| Cow::Owned(Any::Data(Box::new(g))));
                }
                _ => {}
            }
        }
        if let Some(v) = self.derived_refs(obj, name) {
            return Some(Cow::Owned(Any::Array(AnyArray::MoRef(v))));
        }
        if name == "overallStatus" && is_entity(&obj.moref.type_) {
            return Some(Cow::Owned(green()));
        }
        if obj.moref.type_ == "HostSystem" && name == "summary" {
            return self
                .host_summary(obj)
                .map(|s| Cow::Owned(Any::Data(Box::new(s))));
        }
        obj.prop(name).map(Cow::Borrowed)
    }

    /// A host's stored summary with its `quickStats` from the VMs it runs: memory usage is the
    /// configured memory of its powered-on VMs (MB), CPU usage 0 (the simulated guests idle).
    fn host_summary(&self, obj: &MoObject) -> Option<HostListSummary> {
        let Some(Any::Data(d)) = obj.prop("summary") else {
            return None;
        };
        let mut s = d.downcast_ref::<HostListSummary>()?.clone();
        let memory: i64 = self
            .refs_of(&obj.moref.value, "vm")
            .iter()
            .filter(|vm| {
                self.data::<VirtualMachineRuntimeInfo>(&vm.value, "runtime")
                    .is_some_and(|r| r.power_state == VirtualMachinePowerState::PoweredOn)
            })
            .filter_map(|vm| self.data::<VirtualMachineConfigInfo>(&vm.value, "config"))
            .filter_map(|c| c.hardware.as_ref().map(|h| i64::from(h.memory_mb)))
            .sum();
        let mut q = vsphere_client::types::HostListSummaryQuickStats::default();
        q.overall_memory_usage = Some(i32::try_from(memory).unwrap_or(i32::MAX));
        q.overall_cpu_usage = Some(0);
        s.quick_stats = Some(Obj::new(q));
        Some(s)
    }

    /// The derived properties of a managed type (see [`Inventory::value`]): a VM's `summary`
    /// and `guest`, and its `datastore` and `network` (from its devices); the `vm` back-references of hosts, pools, datastores and networks (from
    /// each VM's `runtime.host`, `resourcePool`, `datastore` and `network`: one place to keep
    /// right, and no second copy of every VM's reference); every entity's `overallStatus`
    /// (the simulated inventory is always green).
    pub(crate) fn derived(type_: &str) -> &'static [&'static str] {
        match type_ {
            "VirtualMachine" => &["summary", "guest", "datastore", "network", "overallStatus"],
            "HostSystem" | "ResourcePool" | "Datastore" | "Network" => &["vm", "overallStatus"],
            t if is_entity(t) => &["overallStatus"],
            _ => &[],
        }
    }

    /// Whether `prop` of a `type_` object is a derived reference property (not stored).
    fn is_derived_ref(type_: &str, prop: &str) -> bool {
        match prop {
            "vm" => matches!(
                type_,
                "HostSystem" | "ResourcePool" | "Datastore" | "Network"
            ),
            "datastore" | "network" => type_ == "VirtualMachine",
            _ => false,
        }
    }

    /// A VM's datastores (those of its disks, else the one its `.vmx` is on) or networks (those
    /// of its NICs), as vCenter derives them: in device order, each once.
    fn vm_storage_or_networks(&self, vm: &MoObject, prop: &str) -> Vec<ManagedObjectReference> {
        let Some(config) = self.data::<VirtualMachineConfigInfo>(&vm.moref.value, "config") else {
            return Vec::new();
        };
        let mut out: Vec<ManagedObjectReference> = Vec::new();
        for d in config.hardware.iter().flat_map(|h| h.device.iter()) {
            let Some(b) = &d.backing else { continue };
            let r = if prop == "datastore" {
                crate::devices::get_opt::<ManagedObjectReference>(b.as_object(), "datastore")
                    .filter(|_| crate::devices::class(d) == crate::devices::Class::Disk)
            } else {
                b.downcast_ref::<VirtualEthernetCardNetworkBackingInfo>()
                    .and_then(|n| n.network.clone())
            };
            if let Some(r) = r
                && !out.contains(&r)
            {
                out.push(r);
            }
        }
        if out.is_empty() && prop == "datastore" {
            // A diskless VM: the datastore of its configuration file.
            let home = config
                .files
                .as_ref()
                .and_then(|f| f.vm_path_name.as_deref())
                .and_then(crate::vm::datastore_of_path);
            if let Some(ds) = home.and_then(|n| crate::vm::datastore_by_name(self, n)) {
                out.push(ds);
            }
        }
        out
    }

    /// The VMs a host runs, a pool holds, a datastore or a network serves, in id order.
    fn derived_refs(&self, obj: &MoObject, prop: &str) -> Option<Vec<ManagedObjectReference>> {
        if !Self::is_derived_ref(&obj.moref.type_, prop) {
            return None;
        }
        if obj.moref.type_ == "VirtualMachine" {
            return Some(self.vm_storage_or_networks(obj, prop));
        }
        let me = &obj.moref;
        let holds = |vm: &MoObject| -> bool {
            match me.type_.as_str() {
                "HostSystem" => self
                    .data::<VirtualMachineRuntimeInfo>(&vm.moref.value, "runtime")
                    .is_some_and(|r| r.host.as_ref() == Some(me)),
                "ResourcePool" => matches!(vm.prop("resourcePool"), Some(Any::MoRef(p)) if p == me),
                "Datastore" => self.vm_storage_or_networks(vm, "datastore").contains(me),
                _ => self.vm_storage_or_networks(vm, "network").contains(me),
            }
        };
        let mut v: Vec<ManagedObjectReference> = self
            .of_type("VirtualMachine")
            .filter(|vm| holds(vm))
            .map(|vm| vm.moref.clone())
            .collect();
        v.sort_by(|a, b| (a.value.len(), &a.value).cmp(&(b.value.len(), &b.value)));
        Some(v)
    }

    /// The references an object's property holds (one reference or an array of them).
    pub(crate) fn refs_of(&self, id: &str, prop: &str) -> Vec<ManagedObjectReference> {
        let Some(o) = self.objects.get(id) else {
            return Vec::new();
        };
        if let Some(v) = self.derived_refs(o, prop) {
            return v;
        }
        match o.prop(prop) {
            Some(Any::MoRef(r)) => vec![r.clone()],
            Some(Any::Array(AnyArray::MoRef(v))) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// Appends a reference to an object's reference-array property (in place: building a
    /// large inventory stays linear). Nothing for a derived back-reference (it follows the VM).
    pub(crate) fn push_ref(&mut self, id: &str, prop: &'static str, r: ManagedObjectReference) {
        let Some(o) = self.objects.get_mut(id) else {
            return;
        };
        if Self::is_derived_ref(&o.moref.type_, prop) {
            return;
        }
        match o.props.iter_mut().find(|(n, _)| *n == prop) {
            Some((_, Any::Array(AnyArray::MoRef(v)))) => v.push(r),
            Some((_, Any::MoRef(one))) => {
                let first = one.clone();
                o.set(prop, Any::Array(AnyArray::MoRef(vec![first, r])));
            }
            _ => o.set(prop, Any::Array(AnyArray::MoRef(vec![r]))),
        }
    }

    /// Removes a reference (by id) from an object's reference-array property.
    pub(crate) fn remove_ref(&mut self, id: &str, prop: &'static str, target: &str) {
        let Some(o) = self.objects.get_mut(id) else {
            return;
        };
        if Self::is_derived_ref(&o.moref.type_, prop) {
            return;
        }
        let kept = match o.props.iter_mut().find(|(n, _)| *n == prop) {
            Some((_, Any::Array(AnyArray::MoRef(v)))) => {
                v.retain(|r| r.value != target);
                return;
            }
            Some((_, Any::MoRef(one))) if one.value != target => vec![one.clone()],
            _ => Vec::new(),
        };
        o.set(prop, Any::Array(AnyArray::MoRef(kept)));
    }

    /// The object with id `id`, for writing.
    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut MoObject> {
        self.objects.get_mut(id)
    }

    /// A data-object property, typed.
    pub(crate) fn data<T: DataType>(&self, id: &str, prop: &str) -> Option<&T> {
        match self.objects.get(id)?.prop(prop)? {
            Any::Data(d) => d.downcast_ref::<T>(),
            _ => None,
        }
    }

    /// A data-object property, typed, for writing.
    pub(crate) fn data_mut<T: DataType>(&mut self, id: &str, prop: &str) -> Option<&mut T> {
        let o = self.objects.get_mut(id)?;
        match o
            .props
            .iter_mut()
            .find(|(n, _)| *n == prop)
            .map(|(_, v)| v)?
        {
            Any::Data(d) => d.as_any_mut().downcast_mut::<T>(),
            _ => None,
        }
    }

    /// Every object of a managed type (exactly that type), in no particular order.
    pub(crate) fn of_type<'a>(&'a self, type_: &'a str) -> impl Iterator<Item = &'a MoObject> {
        self.objects
            .values()
            .filter(move |o| o.moref.type_ == type_)
    }

    /// The id of some object of a managed type (for tests).
    #[cfg(test)]
    pub(crate) fn first_id(&self, type_: &str) -> String {
        let Some(o) = self.of_type(type_).next() else {
            panic!("no {type_}")
        };
        o.moref.value.clone()
    }

    /// An object's `name` property.
    pub(crate) fn name_of(&self, id: &str) -> Option<&str> {
        self.objects.get(id)?.prop("name")?.as_str()
    }

    /// Changes a datastore's free space by `delta` bytes (negative: consumed).
    pub(crate) fn adjust_free_space(&mut self, ds: &str, delta: i64) {
        if let Some(s) = self.data_mut::<DatastoreSummary>(ds, "summary") {
            s.free_space = (s.free_space + delta).clamp(0, s.capacity);
        }
    }

    /// A datastore's free space in bytes.
    pub(crate) fn free_space(&self, ds: &str) -> Option<i64> {
        self.data::<DatastoreSummary>(ds, "summary")
            .map(|s| s.free_space)
    }

    fn entity(
        &mut self,
        type_: &str,
        prefix: &str,
        name: &str,
        parent: Option<&ManagedObjectReference>,
    ) -> ManagedObjectReference {
        let id = self.new_id(prefix);
        let mut o = MoObject::new(type_, &id).with("name", Any::String(name.to_owned()));
        if let Some(p) = parent {
            o.set("parent", Any::MoRef(p.clone()));
        }
        let r = o.moref.clone();
        self.insert(o);
        r
    }

    fn folder(
        &mut self,
        name: &str,
        parent: Option<&ManagedObjectReference>,
        child_types: &[&str],
    ) -> ManagedObjectReference {
        let r = self.entity("Folder", "group", name, parent);
        let o = self.objects.get_mut(&r.value).expect("just inserted");
        o.set("childType", strings(child_types));
        o.set("childEntity", refs(&[]));
        r
    }

    /// Builds the inventory for `shape`.
    pub(crate) fn build(shape: &InventoryShape) -> Self {
        let mut inv = Self::default();
        let root = inv.folder("Datacenters", None, &["Folder", "Datacenter"]);
        // The root folder has the fixed id vCenter gives it.
        let mut root_obj = inv.remove(&root.value).expect("root folder");
        root_obj.moref = moref("Folder", ROOT_FOLDER);
        inv.insert(root_obj);
        let root = moref("Folder", ROOT_FOLDER);
        for d in 0..shape.datacenters {
            inv.build_datacenter(shape, &root, d);
        }
        // Property lists and reference arrays grew by doubling while the inventory was built:
        // give back the spare room (a few hundred bytes per VM).
        inv.objects.shrink_to_fit();
        for o in inv.objects.values_mut() {
            o.props.shrink_to_fit();
            for (_, v) in &mut o.props {
                if let Any::Array(AnyArray::MoRef(refs)) = v {
                    refs.shrink_to_fit();
                }
            }
        }
        inv
    }

    fn build_datacenter(&mut self, shape: &InventoryShape, root: &ManagedObjectReference, d: u32) {
        let dc_name = format!("DC{d}");
        let dc = self.entity("Datacenter", "datacenter", &dc_name, Some(root));
        self.push_ref(&root.value, "childEntity", dc.clone());
        let vm_folder = self.folder("vm", Some(&dc), &["Folder", "VirtualMachine", "VirtualApp"]);
        let host_folder = self.folder("host", Some(&dc), &["Folder", "ComputeResource"]);
        let ds_folder = self.folder(
            "datastore",
            Some(&dc),
            &["Folder", "Datastore", "StoragePod"],
        );
        let net_folder = self.folder(
            "network",
            Some(&dc),
            &["Folder", "Network", "DistributedVirtualSwitch"],
        );
        let o = self.objects.get_mut(&dc.value).expect("datacenter");
        o.set("vmFolder", Any::MoRef(vm_folder.clone()));
        o.set("hostFolder", Any::MoRef(host_folder.clone()));
        o.set("datastoreFolder", Any::MoRef(ds_folder.clone()));
        o.set("networkFolder", Any::MoRef(net_folder.clone()));

        let network = self.entity("Network", "network", "VM Network", Some(&net_folder));
        self.push_ref(&net_folder.value, "childEntity", network.clone());

        let mut datastores = Vec::new();
        let ds_names: Vec<String> = (0..shape.datastores)
            .map(|i| format!("LocalDS_{i}"))
            .chain(std::iter::once("SharedDS_0".to_owned()))
            .collect();
        for name in &ds_names {
            let ds = self.entity("Datastore", "datastore", name, Some(&ds_folder));
            self.push_ref(&ds_folder.value, "childEntity", ds.clone());
            let mut s = DatastoreSummary::default();
            s.datastore = Some(ds.clone());
            s.name.clone_from(name);
            s.url = format!("ds:///vmfs/volumes/{}/", ds.value);
            s.capacity = 1 << 40;
            s.free_space = 1 << 40;
            s.accessible = true;
            s.multiple_host_access = Some(true);
            s.type_ = "VMFS".to_owned();
            let o = self.objects.get_mut(&ds.value).expect("datastore");
            o.set("summary", Any::Data(Box::new(s)));
            o.set("host", refs(&[]));
            datastores.push(ds);
        }
        let o = self.objects.get_mut(&dc.value).expect("datacenter");
        o.set("datastore", refs(&datastores));
        o.set("network", refs(std::slice::from_ref(&network)));

        let ctx = DcContext {
            dc_name,
            vm_folder,
            host_folder,
            network,
            datastores,
        };
        for c in 0..shape.clusters {
            let name = format!("{}_C{c}", ctx.dc_name);
            self.build_compute(shape, &ctx, &name, true);
        }
        for h in 0..shape.standalone_hosts {
            let name = format!("{}_H{h}", ctx.dc_name);
            self.build_compute(shape, &ctx, &name, false);
        }
    }

    fn build_compute(
        &mut self,
        shape: &InventoryShape,
        ctx: &DcContext,
        name: &str,
        cluster: bool,
    ) {
        let (type_, prefix) = if cluster {
            ("ClusterComputeResource", "domain-c")
        } else {
            ("ComputeResource", "domain-s")
        };
        let cr = self.entity(type_, prefix, name, Some(&ctx.host_folder));
        self.push_ref(&ctx.host_folder.value, "childEntity", cr.clone());
        let pool = self.entity("ResourcePool", "resgroup", "Resources", Some(&cr));
        let p = self.objects.get_mut(&pool.value).expect("pool");
        p.set("owner", Any::MoRef(cr.clone()));
        p.set("resourcePool", refs(&[]));
        let o = self.objects.get_mut(&cr.value).expect("compute resource");
        o.set("resourcePool", Any::MoRef(pool.clone()));
        o.set("datastore", refs(&ctx.datastores));
        o.set("network", refs(std::slice::from_ref(&ctx.network)));
        o.set("host", refs(&[]));

        let host_names: Vec<String> = if cluster {
            (0..shape.hosts_per_cluster)
                .map(|h| format!("{name}_H{h}"))
                .collect()
        } else {
            vec![name.to_owned()]
        };
        let mut vm_index = 0;
        for host_name in &host_names {
            let host = self.build_host(host_name, &cr, ctx);
            self.push_ref(&cr.value, "host", host.clone());
            for _ in 0..shape.vms_per_host {
                let vm_name = if cluster {
                    format!("{name}_RP0_VM{vm_index}")
                } else {
                    format!("{name}_VM{vm_index}")
                };
                vm_index += 1;
                self.build_vm(&vm_name, &host, &pool, ctx);
            }
        }
    }

    fn build_host(
        &mut self,
        name: &str,
        parent: &ManagedObjectReference,
        ctx: &DcContext,
    ) -> ManagedObjectReference {
        let host = self.entity("HostSystem", "host", name, Some(parent));
        let mut runtime = HostRuntimeInfo::default();
        runtime.connection_state = HostSystemConnectionState::Connected;
        runtime.power_state = HostSystemPowerState::PoweredOn;
        let mut hw = HostHardwareSummary::default();
        hw.vendor = "VMware, Inc. (vsphere-sim)".to_owned();
        hw.model = "VMware Virtual Platform".to_owned();
        hw.uuid = format!("{}-uuid", host.value);
        hw.memory_size = 4 << 30;
        hw.cpu_model = "Intel(R) Xeon(R) CPU".to_owned();
        hw.cpu_mhz = 2294;
        hw.num_cpu_pkgs = 2;
        hw.num_cpu_cores = 2;
        hw.num_cpu_threads = 2;
        hw.num_nics = 1;
        hw.num_hb_as = 1;
        let mut config = HostConfigSummary::default();
        config.name = name.to_owned();
        config.port = 443;
        config.product = Some(Obj::new(about()));
        let mut s = HostListSummary::default();
        s.host = Some(host.clone());
        s.hardware = Some(Obj::new(hw));
        s.runtime = Some(Obj::new(runtime.clone()));
        s.config = Some(Obj::new(config));
        s.overall_status = ManagedEntityStatus::Green;
        let o = self.objects.get_mut(&host.value).expect("host");
        o.set("summary", Any::Data(Box::new(s)));
        o.set("runtime", Any::Data(Box::new(runtime)));
        o.set("datastore", refs(&ctx.datastores));
        o.set("network", refs(std::slice::from_ref(&ctx.network)));
        for ds in &ctx.datastores {
            self.push_ref(&ds.value, "host", host.clone());
        }
        self.push_ref(&ctx.network.value, "host", host.clone());
        host
    }

    fn build_vm(
        &mut self,
        name: &str,
        host: &ManagedObjectReference,
        pool: &ManagedObjectReference,
        ctx: &DcContext,
    ) {
        let ds = ctx.datastores[0].clone();
        self.add_vm(name, &ctx.vm_folder, host, pool, &ds, &ctx.network);
    }

    /// Adds a powered-on VM (vcsim's shape: a PCI and a paravirtual SCSI controller, a 1 GiB
    /// thin disk on `ds`, an E1000 on `network`), linked into its folder, pool, host, datastore
    /// and network; the disk is taken from the datastore's free space.
    pub(crate) fn add_vm(
        &mut self,
        name: &str,
        folder: &ManagedObjectReference,
        host: &ManagedObjectReference,
        pool: &ManagedObjectReference,
        ds: &ManagedObjectReference,
        network: &ManagedObjectReference,
    ) -> ManagedObjectReference {
        let vm = self.entity("VirtualMachine", "vm", name, Some(folder));
        self.push_ref(&folder.value, "childEntity", vm.clone());
        self.push_ref(&pool.value, "vm", vm.clone());
        self.push_ref(&host.value, "vm", vm.clone());
        let ds_name = self.name_of(&ds.value).unwrap_or("LocalDS_0").to_owned();
        self.push_ref(&ds.value, "vm", vm.clone());
        self.push_ref(&network.value, "vm", vm.clone());
        let uuid = uuid_for(&vm.value);
        let disk_kb: i64 = 1 << 20;
        let (config, runtime) = vm_parts(name, &vm, host, ds, &ds_name, network, &uuid, disk_kb);
        let o = self.objects.get_mut(&vm.value).expect("vm");
        o.set("resourcePool", Any::MoRef(pool.clone()));
        o.set("runtime", Any::Data(Box::new(runtime)));
        o.set("config", Any::Data(Box::new(config)));
        // Capacity accounting: the VM's disk is taken from its datastore's free space.
        self.adjust_free_space(&ds.value, -disk_kb * 1024);
        vm
    }
}

struct DcContext {
    dc_name: String,
    vm_folder: ManagedObjectReference,
    host_folder: ManagedObjectReference,
    network: ManagedObjectReference,
    datastores: Vec<ManagedObjectReference>,
}

/// Whether a managed type is a `ManagedEntity` of the simulated inventory.
pub(crate) fn is_entity(type_: &str) -> bool {
    matches!(
        type_,
        "Folder"
            | "Datacenter"
            | "ComputeResource"
            | "ClusterComputeResource"
            | "ResourcePool"
            | "HostSystem"
            | "VirtualMachine"
            | "Datastore"
            | "Network"
    )
}

/// `overallStatus` green.
fn green() -> Any {
    Any::Enum(vsphere_client::codec::EnumValue::new(
        &vsphere_client::types::ManagedEntityStatus_INFO,
        "green",
    ))
}

/// A stable, UUID-shaped id derived from a managed object id.
pub(crate) fn uuid_for(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    uuid_shape(h, h.rotate_left(29) ^ 0x5349_4d00)
}

/// 128 bits written as a UUID is (`8-4-4-4-12` hex digits).
pub(crate) fn uuid_shape(a: u64, b: u64) -> String {
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// 128 random bits (from the standard library's randomly keyed hasher), for session keys and
/// ids that must not repeat across runs.
pub(crate) fn random_bits(seed: impl std::hash::Hash) -> (u64, u64) {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(seed);
    (a, RandomState::new().hash_one(a))
}

/// What `ServiceContent.about` and each host's product say.
pub(crate) fn about() -> AboutInfo {
    let mut a = AboutInfo::default();
    a.name = "VMware vCenter Server".to_owned();
    a.full_name = "VMware vCenter Server 8.0.3 build-0 (vsphere-sim)".to_owned();
    a.vendor = "VMware, Inc.".to_owned();
    a.version = "8.0.3".to_owned();
    a.build = "0".to_owned();
    a.os_type = "linux-x64".to_owned();
    a.product_line_id = "vpx".to_owned();
    a.api_type = "VirtualCenter".to_owned();
    a.api_version = "8.0.3.0".to_owned();
    a.instance_uuid = Some(uuid_for("vsphere-sim"));
    a.license_product_name = Some("VMware VirtualCenter Server".to_owned());
    a.license_product_version = Some("8.0".to_owned());
    a
}

#[expect(
    clippy::too_many_arguments,
    reason = "one VM's parts, built in one place"
)]
fn vm_parts(
    name: &str,
    vm: &ManagedObjectReference,
    host: &ManagedObjectReference,
    ds: &ManagedObjectReference,
    ds_name: &str,
    network: &ManagedObjectReference,
    uuid: &str,
    disk_kb: i64,
) -> (VirtualMachineConfigInfo, VirtualMachineRuntimeInfo) {
    let vmx = format!("[{ds_name}] {name}/{name}.vmx");
    let mut file = VirtualDeviceFileBackingInfo::default();
    file.file_name = format!("[{ds_name}] {name}/{name}.vmdk");
    file.datastore = Some(ds.clone());
    let mut backing = VirtualDiskFlatVer2BackingInfo::default();
    backing.virtual_device_file_backing_info = file;
    backing.disk_mode = "persistent".to_owned();
    backing.thin_provisioned = Some(true);
    backing.uuid = Some(uuid_for(&format!("{}-disk", vm.value)));
    let mut disk = VirtualDisk::default();
    disk.key = 2000;
    disk.device_info = Some(Poly::new(label("Hard disk 1", &format!("{disk_kb} KB"))));
    disk.backing = Some(Poly::<VirtualDeviceBackingInfo>::new(backing));
    disk.controller_key = Some(1000);
    disk.unit_number = Some(0);
    disk.capacity_in_kb = disk_kb;
    disk.capacity_in_bytes = Some(disk_kb * 1024);
    let mut nic_backing = VirtualEthernetCardNetworkBackingInfo::default();
    nic_backing.device_name = "VM Network".to_owned();
    nic_backing.network = Some(network.clone());
    let mut nic = VirtualEthernetCard::default();
    nic.key = 4000;
    nic.device_info = Some(Poly::new(label("Network adapter 1", "VM Network")));
    nic.backing = Some(Poly::<VirtualDeviceBackingInfo>::new(nic_backing));
    nic.controller_key = Some(100);
    nic.unit_number = Some(7);
    nic.address_type = Some("generated".to_owned());
    nic.mac_address = Some(format!(
        "00:50:56:{}:{}:{}",
        &uuid[0..2],
        &uuid[2..4],
        &uuid[4..6]
    ));
    let mut e1000 = VirtualE1000::default();
    e1000.virtual_ethernet_card = nic;
    let mut hw = VirtualHardware::default();
    hw.num_cpu = 1;
    hw.num_cores_per_socket = Some(1);
    hw.memory_mb = 32;
    let mut pci = VirtualPCIController::default();
    pci.key = 100;
    pci.device_info = Some(Poly::new(label("PCI controller 0", "PCI controller 0")));
    pci.bus_number = 0;
    pci.device = vec![1000, 4000];
    let mut scsi = ParaVirtualSCSIController::default();
    scsi.key = 1000;
    scsi.device_info = Some(Poly::new(label(
        "SCSI controller 0",
        "VMware paravirtual SCSI",
    )));
    scsi.controller_key = Some(100);
    scsi.unit_number = Some(3);
    scsi.bus_number = 0;
    scsi.device = vec![2000];
    scsi.shared_bus = VirtualSCSISharing::NoSharing;
    scsi.scsi_ctlr_unit_number = Some(7);
    hw.device = vec![
        Poly::<VirtualDevice>::new(pci),
        Poly::<VirtualDevice>::new(scsi),
        Poly::<VirtualDevice>::new(disk),
        Poly::<VirtualDevice>::new(e1000),
    ];
    let mut config = VirtualMachineConfigInfo::default();
    config.change_version = "1".to_owned();
    config.modified = DateTime::from_unix(0, 0);
    config.name = name.to_owned();
    config.guest_full_name = "Other Linux (64-bit)".to_owned();
    config.version = "vmx-20".to_owned();
    config.uuid = uuid.to_owned();
    config.instance_uuid = Some(uuid_for(&format!("{}-instance", vm.value)));
    config.guest_id = "otherLinux64Guest".to_owned();
    config.hardware = Some(Obj::new(hw));
    let mut files = VirtualMachineFileInfo::default();
    files.vm_path_name = Some(vmx);
    config.files = Some(Obj::new(files));
    let mut runtime = VirtualMachineRuntimeInfo::default();
    runtime.host = Some(host.clone());
    runtime.connection_state = VirtualMachineConnectionState::Connected;
    runtime.power_state = VirtualMachinePowerState::PoweredOn;
    runtime.record_replay_state = VirtualMachineRecordReplayState::Inactive;
    (config, runtime)
}

pub(crate) fn label(l: &str, s: &str) -> Description {
    let mut d = Description::default();
    d.label = l.to_owned();
    d.summary = s.to_owned();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(inv: &Inventory, type_: &str) -> Vec<String> {
        let mut v: Vec<String> = inv
            .objects
            .values()
            .filter(|o| o.moref.type_ == type_)
            .filter_map(|o| o.prop("name").and_then(Any::as_str).map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_shape_is_vcsim_vpx() {
        let inv = Inventory::build(&InventoryShape::default());
        assert_eq!(names_of(&inv, "Datacenter"), ["DC0"]);
        assert_eq!(names_of(&inv, "ClusterComputeResource"), ["DC0_C0"]);
        assert_eq!(
            names_of(&inv, "HostSystem"),
            ["DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2", "DC0_H0"]
        );
        let vms = names_of(&inv, "VirtualMachine");
        assert_eq!(vms.len(), 8);
        assert!(vms.contains(&"DC0_H0_VM0".to_owned()));
        assert!(vms.contains(&"DC0_C0_RP0_VM5".to_owned()));
        assert_eq!(names_of(&inv, "Datastore"), ["LocalDS_0", "SharedDS_0"]);
        assert_eq!(names_of(&inv, "Network"), ["VM Network"]);
        assert_eq!(inv.refs_of(ROOT_FOLDER, "childEntity").len(), 1);
    }

    #[test]
    fn datastore_free_space_accounts_for_vm_disks() {
        let inv = Inventory::build(&InventoryShape::default());
        let ds = inv
            .objects
            .values()
            .find(|o| o.prop("name").and_then(Any::as_str) == Some("LocalDS_0"))
            .unwrap();
        let Some(Any::Data(summary)) = ds.prop("summary") else {
            panic!("no summary")
        };
        let used = summary
            .downcast_ref::<DatastoreSummary>()
            .map(|s| s.capacity - s.free_space);
        assert_eq!(used, Some(8 * (1 << 30)));
    }

    #[test]
    fn host_memory_usage_follows_powered_on_vms() {
        let mut inv = Inventory::build(&InventoryShape::default());
        let host = inv
            .of_type("HostSystem")
            .find(|o| o.prop("name").and_then(Any::as_str) == Some("DC0_H0"))
            .unwrap()
            .moref
            .value
            .clone();
        let usage = |inv: &Inventory| {
            let obj = inv.get(&host).unwrap();
            let Some(v) = inv.value(obj, "summary") else {
                panic!("no summary")
            };
            let Any::Data(d) = &*v else {
                panic!("not data")
            };
            d.downcast_ref::<HostListSummary>()
                .unwrap()
                .quick_stats
                .as_ref()
                .unwrap()
                .overall_memory_usage
        };
        assert_eq!(usage(&inv), Some(64), "two powered-on 32 MB VMs");
        let vm = inv.refs_of(&host, "vm")[0].value.clone();
        crate::vm::power(&mut inv, &vm, crate::vm::PowerOp::Off).unwrap();
        assert_eq!(usage(&inv), Some(32));
    }

    #[test]
    fn derived_properties_are_never_stored() {
        let mut inv = Inventory::build(&InventoryShape::default());
        for o in inv.objects() {
            let derived = Inventory::derived(&o.moref.type_);
            assert!(
                o.props.iter().all(|(n, _)| !derived.contains(n)),
                "{} stores a derived property",
                o.moref.value
            );
        }
        let vm = inv.first_id("VirtualMachine");
        let ds = inv.refs_of(&vm, "datastore");
        assert_eq!(ds.len(), 1, "the disk's datastore");
        assert_eq!(inv.refs_of(&vm, "network").len(), 1, "the NIC's network");
        assert!(
            inv.refs_of(&ds[0].value, "vm")
                .iter()
                .any(|r| r.value == vm)
        );
        let o = inv.get_mut(&vm).unwrap();
        o.set("datastore", refs(&[]));
        assert!(o.prop("datastore").is_none());
        assert_eq!(inv.refs_of(&vm, "datastore"), ds);
    }

    #[test]
    fn shape_counts() {
        let shape = InventoryShape {
            datacenters: 2,
            clusters: 2,
            hosts_per_cluster: 2,
            standalone_hosts: 0,
            vms_per_host: 3,
            datastores: 2,
        };
        let inv = Inventory::build(&shape);
        assert_eq!(
            names_of(&inv, "VirtualMachine").len() as u64,
            shape.vm_count()
        );
        assert_eq!(names_of(&inv, "VirtualMachine").len(), 24);
        assert_eq!(names_of(&inv, "Datastore").len(), 6);
    }
}
