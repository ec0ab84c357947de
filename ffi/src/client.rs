//! vSphere: connect and disconnect, inventory listing, First Class Disks (`vsdk_client_*`,
//! `vsdk_objects_*`, `vsdk_fcd_*`).

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use tokio::runtime::Runtime;
use vsphere_client::client::{Client, ConnectOptions, Thumbprint, TlsPolicy, fcd_id};
use vsphere_client::codec::{Any, AnyArray, ManagedObjectReference, Poly, VimEnum};
use vsphere_client::types::{VslmCreateSpec, VslmCreateSpecDiskFileBackingSpec};

use crate::boundary::{
    Callback, block_on, c_string, emit, free_box, guard, handle, optional_string, out,
    owned_string, runtime, string, strings, vsdk_event_callback, vsdk_strings,
};
use crate::error::Error;
use crate::vsdk_result;

/// A logged-in vSphere session with its own runtime. Close it with
/// [`vsdk_client_disconnect`].
pub struct vsdk_client {
    /// Declared before the runtime: dropped first.
    pub(crate) client: Arc<Client>,
    pub(crate) rt: Arc<Runtime>,
}

impl std::fmt::Debug for vsdk_client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vsdk_client")
            .field("url", &self.client.url().as_str())
            .finish_non_exhaustive()
    }
}

/// The connect options from the C arguments.
fn options(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
    thumbprint: Option<&str>,
    insecure: bool,
) -> Result<ConnectOptions, Error> {
    let mut o = ConnectOptions::new(url)?;
    match (user, password) {
        (Some(u), Some(p)) => o = o.credentials_from(u, p.to_owned()),
        (None, None) => {}
        _ => {
            return Err(Error::invalid(
                "credentials",
                "give both user and password, or neither (to use the URL's)",
            ));
        }
    }
    if o.credentials().is_none() {
        return Err(Error::invalid(
            "credentials",
            "no user and password (in the arguments or the URL)",
        ));
    }
    if let Some(t) = thumbprint {
        if insecure {
            return Err(Error::invalid(
                "tls",
                "give a thumbprint or insecure, not both",
            ));
        }
        o = o.with_tls(TlsPolicy::Pinned(Thumbprint::parse(t)?));
    } else if insecure {
        o = o.insecure(true);
    }
    Ok(o)
}

/// Connects and logs in to the vCenter (or ESXi, or simulator) at `url`
/// (`https://host/sdk`, `https://user:pass@host/sdk`, or a bare host name).
///
/// `user` and `password` may both be NULL to use the credentials in the URL. TLS: with
/// `thumbprint` (SHA-1 or SHA-256, `AB:CD:...`) exactly that certificate is accepted; with
/// `insecure` any certificate is (only for tests); with neither the platform's trust store
/// verifies it. On success `*out_client` is a new handle.
///
/// Errors: `VSDK_RESULT_INVALID_ARGUMENT` (a malformed URL or thumbprint),
/// `VSDK_RESULT_CONNECT` (unreachable, TLS refused), `VSDK_RESULT_LOGIN_FAILED`,
/// `VSDK_RESULT_TIMEOUT`.
///
/// # Safety
///
/// Strings are NULL or NUL-terminated; `out_client` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_client_connect(
    url: *const c_char,
    user: *const c_char,
    password: *const c_char,
    thumbprint: *const c_char,
    insecure: bool,
    out_client: *mut *mut vsdk_client,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (url, user, password, thumbprint) = unsafe {
            (
                string(url, "url")?,
                optional_string(user, "user")?,
                optional_string(password, "password")?,
                optional_string(thumbprint, "thumbprint")?,
            )
        };
        let out_client = out(out_client, "out_client")?;
        let o = options(url, user, password, thumbprint, insecure)?;
        let rt = Arc::new(runtime()?);
        let client = block_on(&rt, Client::connect(o))??;
        out_client.put(Box::into_raw(Box::new(vsdk_client {
            client: Arc::new(client),
            rt,
        })));
        Ok(())
    })
}

/// Logs out and frees the handle (always, also when the logout fails: the result says how
/// the logout went). NULL is a no-op returning `VSDK_RESULT_OK`. Handles made from this
/// client (volumes on First Class Disks, environments) share its session: free them first.
///
/// # Safety
///
/// `client` is NULL or a handle from [`vsdk_client_connect`] that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_client_disconnect(client: *mut vsdk_client) -> vsdk_result {
    if client.is_null() {
        return vsdk_result::Ok;
    }
    let r = guard(|| {
        // SAFETY: a live handle, as the caller guarantees.
        let c = unsafe { &*client };
        block_on(&c.rt, c.client.logout())??;
        Ok(())
    });
    free_box(client);
    r
}

/// Renders a property value as text: primitives and enums as their wire text, references as
/// `Type:value`, arrays of those comma-separated, data objects in a one-line debug notation
/// (`VirtualMachineConfigSummary { ... }`; not a stable format: ask for leaf properties such
/// as `summary.config.numCpu` instead).
pub(crate) fn render(value: &Any) -> String {
    fn moref(r: &ManagedObjectReference) -> String {
        format!("{}:{}", r.type_, r.value)
    }
    fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
        items.iter().map(f).collect::<Vec<_>>().join(",")
    }
    match value {
        Any::Absent => String::new(),
        Any::Bool(b) => b.to_string(),
        Any::Byte(n) => n.to_string(),
        Any::Short(n) => n.to_string(),
        Any::Int(n) => n.to_string(),
        Any::Long(n) => n.to_string(),
        Any::Float(n) => n.to_string(),
        Any::Double(n) => n.to_string(),
        Any::String(s) => s.clone(),
        Any::DateTime(d) => d.to_string(),
        Any::MoRef(r) => moref(r),
        Any::Enum(e) => e.as_str().to_owned(),
        Any::Array(a) => match a {
            AnyArray::Bool(v) => join(v, ToString::to_string),
            AnyArray::Byte(v) => join(v, ToString::to_string),
            AnyArray::Short(v) => join(v, ToString::to_string),
            AnyArray::Int(v) => join(v, ToString::to_string),
            AnyArray::Long(v) => join(v, ToString::to_string),
            AnyArray::Float(v) => join(v, ToString::to_string),
            AnyArray::Double(v) => join(v, ToString::to_string),
            AnyArray::String(v) => v.join(","),
            AnyArray::DateTime(v) => join(v, ToString::to_string),
            AnyArray::MoRef(v) => join(v, moref),
            AnyArray::Enum { values, .. } => values.join(","),
            AnyArray::Any(v) => join(v, render),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// One object of a listing.
#[derive(Debug)]
struct Object {
    type_name: CString,
    moref: CString,
    properties: Vec<(CString, CString)>,
}

/// An owned list of inventory objects, each with its type, its managed object id (moref,
/// `vm-42`) and the properties asked for as name/value strings (see [`vsdk_client_list`]).
/// Free it with [`vsdk_objects_free`]; every string it hands out is borrowed from it.
#[derive(Debug, Default)]
pub struct vsdk_objects {
    items: Vec<Object>,
}

impl vsdk_objects {
    fn get(&self, index: usize) -> Result<&Object, Error> {
        self.items.get(index).ok_or_else(|| {
            Error::invalid(
                "index",
                format!(
                    "{index} is out of range (the list has {})",
                    self.items.len()
                ),
            )
        })
    }
}

/// Lists every object of managed type `type_name` (`VirtualMachine`, `HostSystem`,
/// `Datastore`, ...) in the inventory, with the properties `properties[0..n_properties]`
/// (`name`, `runtime.powerState`, `summary.config.numCpu`, ...) in one paged retrieval
/// through a container view. Properties the server does not set are absent from an object.
/// On success `*out_objects` is a new list.
///
/// A list with accessors was chosen over a JSON string: C has no JSON parser, and the list
/// hands out ready NUL-terminated strings. Values are rendered as text (see the README).
///
/// # Safety
///
/// `client` is NULL or a live handle; `type_name` NULL or NUL-terminated; `properties` NULL
/// (with `n_properties` 0) or `n_properties` NUL-terminated strings; `out_objects` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_client_list(
    client: *const vsdk_client,
    type_name: *const c_char,
    properties: *const *const c_char,
    n_properties: usize,
    out_objects: *mut *mut vsdk_objects,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, type_name, props) = unsafe {
            (
                handle(client, "client")?,
                string(type_name, "type_name")?,
                strings(properties, n_properties, "properties")?,
            )
        };
        let out_objects = out(out_objects, "out_objects")?;
        if type_name.is_empty() {
            return Err(Error::invalid("type_name", "empty"));
        }
        let client = &c.client;
        let contents = block_on(&c.rt, async {
            let root = client.service_content().root_folder.clone();
            let view = client.container_view(&root, &[type_name], true).await?;
            let all = view
                .retrieve(&[(type_name, &props)], None)
                .collect_all()
                .await;
            let closed = view.close().await;
            let all = all?;
            closed?;
            Ok::<_, vsphere_client::Error>(all)
        })??;
        let mut items = Vec::with_capacity(contents.len());
        for oc in contents {
            let mut properties = Vec::with_capacity(oc.prop_set.len());
            for p in &oc.prop_set {
                properties.push((c_string(p.name.as_str())?, c_string(render(&p.val))?));
            }
            items.push(Object {
                type_name: c_string(oc.obj.type_)?,
                moref: c_string(oc.obj.value)?,
                properties,
            });
        }
        out_objects.put(Box::into_raw(Box::new(vsdk_objects { items })));
        Ok(())
    })
}

/// The number of objects in `objects`.
///
/// # Safety
///
/// `objects` is NULL or a live list; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_len(
    objects: *const vsdk_objects,
    out_len: *mut usize,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(objects, "objects")? };
        out(out_len, "out_len")?.put(list.items.len());
        Ok(())
    })
}

/// The managed type (`VirtualMachine`) and moref (`vm-42`) of object `index`; either
/// out-parameter may be NULL. Borrowed: valid until the list is freed.
///
/// # Safety
///
/// `objects` is NULL or a live list; out-parameters NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_ref(
    objects: *const vsdk_objects,
    index: usize,
    out_type: *mut *const c_char,
    out_moref: *mut *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(objects, "objects")? };
        let o = list.get(index)?;
        if let Ok(t) = out(out_type, "out_type") {
            t.put(o.type_name.as_ptr());
        }
        if let Ok(m) = out(out_moref, "out_moref") {
            m.put(o.moref.as_ptr());
        }
        Ok(())
    })
}

/// The number of properties object `index` has.
///
/// # Safety
///
/// `objects` is NULL or a live list; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_property_count(
    objects: *const vsdk_objects,
    index: usize,
    out_len: *mut usize,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(objects, "objects")? };
        let n = list.get(index)?.properties.len();
        out(out_len, "out_len")?.put(n);
        Ok(())
    })
}

/// Property `property` (0-based) of object `index`: its name (`runtime.powerState`) and its
/// value as text (`poweredOn`). Borrowed: valid until the list is freed.
///
/// # Safety
///
/// `objects` is NULL or a live list; out-parameters NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_property(
    objects: *const vsdk_objects,
    index: usize,
    property: usize,
    out_name: *mut *const c_char,
    out_value: *mut *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(objects, "objects")? };
        let (out_name, out_value) = (out(out_name, "out_name")?, out(out_value, "out_value")?);
        let o = list.get(index)?;
        let (name, value) = o.properties.get(property).ok_or_else(|| {
            Error::invalid(
                "property",
                format!(
                    "{property} is out of range (the object has {})",
                    o.properties.len()
                ),
            )
        })?;
        out_name.put(name.as_ptr());
        out_value.put(value.as_ptr());
        Ok(())
    })
}

/// The value of the property named `name` of object `index`, as text;
/// `VSDK_RESULT_NOT_FOUND` when the object has no such property. Borrowed: valid until the
/// list is freed.
///
/// # Safety
///
/// `objects` is NULL or a live list; `name` NULL or NUL-terminated; `out_value` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_find(
    objects: *const vsdk_objects,
    index: usize,
    name: *const c_char,
    out_value: *mut *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (list, name) = unsafe { (handle(objects, "objects")?, string(name, "name")?) };
        let out_value = out(out_value, "out_value")?;
        let o = list.get(index)?;
        let (_, value) = o
            .properties
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .ok_or_else(|| {
                Error::from(vsphere_client::Error::NotFound {
                    kind: "property",
                    path: name.to_owned(),
                })
            })?;
        out_value.put(value.as_ptr());
        Ok(())
    })
}

/// Frees an object list. NULL is a no-op.
///
/// # Safety
///
/// `objects` is NULL or a list from [`vsdk_client_list`] that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_objects_free(objects: *mut vsdk_objects) {
    free_box(objects);
}

/// The datastore named by `what` (a name, path or glob).
async fn datastore(client: &Client, what: &str) -> Result<ManagedObjectReference, Error> {
    let finder = client.finder().await?;
    Ok(finder.datastore(Some(what))?.reference.clone())
}

/// Creates a thin First Class Disk `name` of `size_mb` MiB on datastore `datastore` (a name
/// such as `LocalDS_0`, or an inventory path) and waits for the task, reporting its progress
/// to `progress` (may be NULL) as lines `task-12 running 40%`. On success `*out_id` is the
/// new disk's id (free it with [`vsdk_string_free`](crate::vsdk_string_free)).
///
/// # Safety
///
/// `client` is NULL or a live handle; strings NULL or NUL-terminated; `out_id` NULL or
/// writable; `progress` is NULL or a function valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_fcd_create(
    client: *const vsdk_client,
    name: *const c_char,
    size_mb: i64,
    datastore_name: *const c_char,
    progress: vsdk_event_callback,
    user_data: *mut c_void,
    out_id: *mut *mut c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, name, ds) = unsafe {
            (
                handle(client, "client")?,
                string(name, "name")?,
                string(datastore_name, "datastore")?,
            )
        };
        let out_id = out(out_id, "out_id")?;
        if name.is_empty() || size_mb <= 0 {
            return Err(Error::invalid(
                "disk",
                "a disk needs a name and a size above 0 MB",
            ));
        }
        let cb = Callback::new(progress, user_data);
        let client = &c.client;
        let disk = block_on(&c.rt, async {
            let ds = datastore(client, ds).await?;
            let disks = client.disks()?;
            let mut backing = VslmCreateSpecDiskFileBackingSpec {
                provisioning_type: Some("thin".to_owned()),
                ..VslmCreateSpecDiskFileBackingSpec::default()
            };
            backing.vslm_create_spec_backing_spec.datastore = ds;
            let spec = VslmCreateSpec {
                name: name.to_owned(),
                capacity_in_mb: size_mb,
                backing_spec: Some(Poly::new(backing)),
                ..VslmCreateSpec::default()
            };
            let task = disks.mo().create_disk_task(&**client, &spec).await?;
            let disk = client
                .wait_task_with_progress(task, |info| {
                    let pct = info.progress.map_or(String::new(), |p| format!(" {p}%"));
                    emit(
                        cb.as_ref(),
                        &format!("{} {}{pct}", info.key, info.state.as_wire()),
                    );
                })
                .await?;
            Ok::<_, Error>(disk)
        })??;
        let id = fcd_id(&disk).ok_or(vsphere_client::Error::MissingResult {
            method: "CreateDisk_Task",
        })?;
        out_id.put(owned_string(id)?);
        Ok(())
    })
}

/// The ids of the First Class Disks on datastore `datastore`. On success `*out_ids` is a new
/// list (free it with [`vsdk_strings_free`](crate::vsdk_strings_free)).
///
/// # Safety
///
/// `client` is NULL or a live handle; `datastore` NULL or NUL-terminated; `out_ids` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_fcd_list(
    client: *const vsdk_client,
    datastore_name: *const c_char,
    out_ids: *mut *mut vsdk_strings,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, ds) = unsafe {
            (
                handle(client, "client")?,
                string(datastore_name, "datastore")?,
            )
        };
        let out_ids = out(out_ids, "out_ids")?;
        let client = &c.client;
        let ids = block_on(&c.rt, async {
            let ds = datastore(client, ds).await?;
            Ok::<_, Error>(client.disks()?.list(&ds).await?)
        })??;
        out_ids.put(vsdk_strings::from_strings(ids)?.into_raw());
        Ok(())
    })
}

/// Deletes First Class Disk `id` (and its file) on datastore `datastore` and waits.
/// An unknown id is `VSDK_RESULT_NOT_FOUND`; a disk attached to a VM cannot be deleted.
///
/// # Safety
///
/// `client` is NULL or a live handle; strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_fcd_delete(
    client: *const vsdk_client,
    id: *const c_char,
    datastore_name: *const c_char,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let (c, id, ds) = unsafe {
            (
                handle(client, "client")?,
                string(id, "id")?,
                string(datastore_name, "datastore")?,
            )
        };
        let client = &c.client;
        block_on(&c.rt, async {
            let ds = datastore(client, ds).await?;
            client.disks()?.delete(id, &ds).await?;
            Ok::<_, Error>(())
        })??;
        Ok(())
    })
}
