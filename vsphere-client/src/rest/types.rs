//! The typed resources of the Automation REST API: vcenter summaries, tagging categories, tags,
//! object ids and filters. Field names follow the API's JSON (`snake_case`), which both the
//! `/api` and the `/rest` styles share.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares an API enum that keeps values it does not know (newer servers add some) in `Other`,
/// serialized as the API's upper-case string.
macro_rules! api_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this release does not know, kept as the server sent it.
            Other(String),
        }

        impl $name {
            /// The value as the API spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($wire => Self::$variant,)*
                    _ => Self::Other(s),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

api_enum! {
    /// A virtual machine's power state (`vcenter.vm.PowerState`).
    VmPowerState {
        /// Running.
        PoweredOn => "POWERED_ON",
        /// Stopped.
        PoweredOff => "POWERED_OFF",
        /// Suspended to disk.
        Suspended => "SUSPENDED",
    }
}

api_enum! {
    /// A host's connection state (`vcenter.host.ConnectionState`).
    HostConnectionState {
        /// Connected to vCenter.
        Connected => "CONNECTED",
        /// Disconnected by the user.
        Disconnected => "DISCONNECTED",
        /// Not responding.
        NotResponding => "NOT_RESPONDING",
    }
}

api_enum! {
    /// A host's power state (`vcenter.host.PowerState`), reported for connected hosts only.
    HostPowerState {
        /// Running.
        PoweredOn => "POWERED_ON",
        /// Stopped.
        PoweredOff => "POWERED_OFF",
        /// In standby.
        Standby => "STANDBY",
    }
}

api_enum! {
    /// A network's kind (`vcenter.network.Type`).
    NetworkType {
        /// A standard (vSwitch) port group.
        StandardPortgroup => "STANDARD_PORTGROUP",
        /// A distributed port group.
        DistributedPortgroup => "DISTRIBUTED_PORTGROUP",
        /// An opaque network (NSX).
        OpaqueNetwork => "OPAQUE_NETWORK",
    }
}

api_enum! {
    /// How many tags of one category an object may carry (`cis.tagging.CategoryModel.Cardinality`).
    Cardinality {
        /// At most one tag of the category per object.
        Single => "SINGLE",
        /// Any number of tags of the category per object.
        Multiple => "MULTIPLE",
    }
}

/// A virtual machine as `GET /api/vcenter/vm` lists it; `vm` is its managed object id (`vm-42`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSummary {
    /// The managed object id.
    pub vm: String,
    /// The display name.
    pub name: String,
    /// The power state.
    pub power_state: VmPowerState,
    /// The number of virtual CPUs, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    /// The memory size in MiB, when known.
    #[serde(
        default,
        rename = "memory_size_MiB",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_size_mib: Option<u64>,
}

/// A host as `GET /api/vcenter/host` lists it; `host` is its managed object id (`host-21`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSummary {
    /// The managed object id.
    pub host: String,
    /// The display name.
    pub name: String,
    /// The connection state.
    pub connection_state: HostConnectionState,
    /// The power state (absent for hosts that are not connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<HostPowerState>,
}

/// A datastore as `GET /api/vcenter/datastore` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreSummary {
    /// The managed object id (`datastore-13`).
    pub datastore: String,
    /// The display name.
    pub name: String,
    /// The file system (`VMFS`, `NFS`, `VSAN`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// Free space in bytes, when the datastore is accessible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_space: Option<i64>,
    /// Capacity in bytes, when the datastore is accessible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i64>,
}

/// A cluster as `GET /api/vcenter/cluster` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The managed object id (`domain-c7`).
    pub cluster: String,
    /// The display name.
    pub name: String,
    /// Whether vSphere HA is on.
    #[serde(default)]
    pub ha_enabled: bool,
    /// Whether DRS is on.
    #[serde(default)]
    pub drs_enabled: bool,
}

/// A network as `GET /api/vcenter/network` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// The managed object id (`network-11`, `dvportgroup-12`).
    pub network: String,
    /// The display name.
    pub name: String,
    /// The kind of network.
    #[serde(rename = "type")]
    pub type_: NetworkType,
}

/// Appends `key=value` for each value, in the query style of the API (`names=a` on `/api`,
/// `filter.names=a` on `/rest`).
fn push_all<'a>(
    out: &mut Vec<(String, String)>,
    key: &str,
    values: impl IntoIterator<Item = &'a str>,
) {
    for v in values {
        out.push((key.to_owned(), v.to_owned()));
    }
}

/// Declares a listing filter: every field is a set of accepted values; an empty set does not
/// filter.
macro_rules! filter {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Vec<$ty>,)*
        }

        impl $name {
            /// A filter that accepts everything.
            pub fn new() -> Self {
                Self::default()
            }

            $(
                /// Accepts also this value of the field of the same name.
                pub fn $field(mut self, value: impl Into<$ty>) -> Self {
                    self.$field.push(value.into());
                    self
                }
            )*

            /// The query pairs, with keys prefixed by `prefix` (`""` or `"filter."`).
            pub(crate) fn query(&self, prefix: &str) -> Vec<(String, String)> {
                let mut out = Vec::new();
                $(
                    push_all(
                        &mut out,
                        &format!("{prefix}{}", stringify!($field)),
                        self.$field.iter().map(AsRef::<str>::as_ref),
                    );
                )*
                out
            }
        }
    };
}

impl AsRef<str> for VmPowerState {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for HostConnectionState {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for NetworkType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

filter! {
    /// Which VMs [`RestClient::list_vms`](super::RestClient::list_vms) returns.
    ///
    /// ```
    /// use vsphere_client::rest::{VmFilter, VmPowerState};
    /// let f = VmFilter::new().names("web-1").power_states(VmPowerState::PoweredOn);
    /// assert_eq!(f.names, ["web-1"]);
    /// ```
    VmFilter {
        /// VM managed object ids.
        vms: String,
        /// Display names.
        names: String,
        /// Folder ids.
        folders: String,
        /// Datacenter ids.
        datacenters: String,
        /// Host ids.
        hosts: String,
        /// Cluster ids.
        clusters: String,
        /// Resource pool ids.
        resource_pools: String,
        /// Power states.
        power_states: VmPowerState,
    }
}

filter! {
    /// Which hosts [`RestClient::list_hosts`](super::RestClient::list_hosts) returns.
    HostFilter {
        /// Host managed object ids.
        hosts: String,
        /// Display names.
        names: String,
        /// Folder ids.
        folders: String,
        /// Datacenter ids.
        datacenters: String,
        /// Cluster ids.
        clusters: String,
        /// Connection states.
        connection_states: HostConnectionState,
    }
}

filter! {
    /// Which datastores [`RestClient::list_datastores`](super::RestClient::list_datastores) returns.
    DatastoreFilter {
        /// Datastore managed object ids.
        datastores: String,
        /// Display names.
        names: String,
        /// File system types (`VMFS`, `NFS`, ...).
        types: String,
        /// Folder ids.
        folders: String,
        /// Datacenter ids.
        datacenters: String,
    }
}

filter! {
    /// Which clusters [`RestClient::list_clusters`](super::RestClient::list_clusters) returns.
    ClusterFilter {
        /// Cluster managed object ids.
        clusters: String,
        /// Display names.
        names: String,
        /// Folder ids.
        folders: String,
        /// Datacenter ids.
        datacenters: String,
    }
}

filter! {
    /// Which networks [`RestClient::list_networks`](super::RestClient::list_networks) returns.
    NetworkFilter {
        /// Network managed object ids.
        networks: String,
        /// Display names.
        names: String,
        /// Network kinds.
        types: NetworkType,
        /// Folder ids.
        folders: String,
        /// Datacenter ids.
        datacenters: String,
    }
}

/// A vSphere object a tag can be attached to: its managed object type and id
/// (`{"type": "VirtualMachine", "id": "vm-42"}` on the wire).
///
/// ```
/// use vsphere_client::rest::ObjectId;
/// let o = ObjectId::new("VirtualMachine", "vm-42");
/// assert_eq!(o.to_string(), "VirtualMachine:vm-42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    /// The managed object type (`VirtualMachine`, `HostSystem`, `Datastore`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// The managed object id (`vm-42`).
    pub id: String,
}

impl ObjectId {
    /// The object of `type_` with id `id`.
    pub fn new(type_: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            id: id.into(),
        }
    }

    /// A virtual machine by managed object id.
    pub fn vm(id: impl Into<String>) -> Self {
        Self::new("VirtualMachine", id)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.type_, self.id)
    }
}

/// What to create a category from.
///
/// ```
/// use vsphere_client::rest::{Cardinality, CategorySpec};
/// let spec = CategorySpec::new("env", Cardinality::Single).associable_type("VirtualMachine");
/// assert_eq!(spec.associable_types, ["VirtualMachine"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CategorySpec {
    /// The category's name, unique on the server.
    pub name: String,
    /// A description (may be empty).
    #[serde(default)]
    pub description: String,
    /// How many of its tags an object may carry.
    pub cardinality: Cardinality,
    /// The object types its tags may be attached to; empty means any type.
    #[serde(default)]
    pub associable_types: Vec<String>,
}

impl CategorySpec {
    /// A category named `name` with `cardinality`, no description, any object type.
    pub fn new(name: impl Into<String>, cardinality: Cardinality) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            cardinality,
            associable_types: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Restricts the category to one more object type (`VirtualMachine`).
    pub fn associable_type(mut self, type_: impl Into<String>) -> Self {
        self.associable_types.push(type_.into());
        self
    }
}

/// A tagging category as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The category's id (`urn:vmomi:InventoryServiceCategory:...:GLOBAL`).
    pub id: String,
    /// The name.
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// How many of its tags an object may carry.
    pub cardinality: Cardinality,
    /// The object types its tags may be attached to; empty means any type.
    #[serde(default)]
    pub associable_types: Vec<String>,
    /// The entities that use the category.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// What to create a tag from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TagSpec {
    /// The tag's name, unique within its category.
    pub name: String,
    /// A description (may be empty).
    #[serde(default)]
    pub description: String,
    /// The category's id.
    pub category_id: String,
}

impl TagSpec {
    /// A tag named `name` in the category with id `category_id`.
    pub fn new(name: impl Into<String>, category_id: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            category_id: category_id.into(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// A tag as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The tag's id (`urn:vmomi:InventoryServiceTag:...:GLOBAL`).
    pub id: String,
    /// The name.
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// The id of its category.
    pub category_id: String,
    /// The entities that use the tag.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// A message of the API (an error's reason, a batch failure).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizableMessage {
    /// The message's id (`com.vmware.vapi.std.errors.not_found`).
    #[serde(default)]
    pub id: String,
    /// The English text.
    #[serde(default)]
    pub default_message: String,
    /// The arguments filled into the text.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The result of a batch tagging operation (`attach-tag-to-multiple-objects`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Whether every object was tagged.
    pub success: bool,
    /// What went wrong, one message per failure.
    #[serde(default)]
    pub error_messages: Vec<LocalizableMessage>,
}

/// The tags attached to one object (`list-attached-tags-on-objects`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectTags {
    /// The object.
    pub object_id: ObjectId,
    /// The ids of the tags on it.
    #[serde(default)]
    pub tag_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_keep_unknown_values() {
        let s: VmPowerState = serde_json::from_str("\"POWERED_ON\"").unwrap();
        assert_eq!(s, VmPowerState::PoweredOn);
        let o: VmPowerState = serde_json::from_str("\"HIBERNATING\"").unwrap();
        assert_eq!(o, VmPowerState::Other("HIBERNATING".into()));
        assert_eq!(serde_json::to_string(&o).unwrap(), "\"HIBERNATING\"");
        assert_eq!(Cardinality::Single.to_string(), "SINGLE");
    }

    #[test]
    fn summaries_decode_the_documented_shapes() {
        let vm: VmSummary = serde_json::from_str(
            r#"{"vm":"vm-42","name":"web","power_state":"POWERED_OFF","cpu_count":2,"memory_size_MiB":4096}"#,
        )
        .unwrap();
        assert_eq!(vm.memory_size_mib, Some(4096));
        assert_eq!(vm.power_state, VmPowerState::PoweredOff);
        let ds: DatastoreSummary = serde_json::from_str(
            r#"{"datastore":"datastore-1","name":"ds","type":"VMFS","free_space":1,"capacity":2}"#,
        )
        .unwrap();
        assert_eq!(ds.type_, "VMFS");
        let o: ObjectId = serde_json::from_str(r#"{"type":"VirtualMachine","id":"vm-1"}"#).unwrap();
        assert_eq!(o, ObjectId::vm("vm-1"));
    }

    #[test]
    fn filters_become_query_pairs_in_either_style() {
        let f = VmFilter::new()
            .names("a")
            .names("b")
            .power_states(VmPowerState::PoweredOn);
        assert_eq!(
            f.query(""),
            [
                ("names".to_owned(), "a".to_owned()),
                ("names".to_owned(), "b".to_owned()),
                ("power_states".to_owned(), "POWERED_ON".to_owned()),
            ]
        );
        assert_eq!(f.query("filter.")[0].0, "filter.names");
        assert!(HostFilter::new().query("").is_empty());
    }
}
