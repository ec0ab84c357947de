//! The small, private vSphere glue of the vSphere backend: task waiting and property reads.
//! Everything here speaks only through `vsphere-client`'s generated methods and [`Client`];
//! when the client grows typed handles, a finder and a task waiter, this is what switches.

use std::time::Duration;

use vsphere_client::Error as ClientError;
use vsphere_client::client::{Client, RetrieveSpec};
use vsphere_client::codec::{Any, ManagedObjectReference, Poly};
use vsphere_client::rpc::{Call, PendingTask};
use vsphere_client::types::{
    DynamicProperty, TaskInfo, TaskInfoState, VirtualDeviceBackingInfo,
    VirtualDeviceFileBackingInfo, VirtualDiskFlatVer2BackingInfo,
};

use crate::error::Error;

/// Wraps a client error as [`Error::Remote`].
pub(crate) fn remote(op: &'static str, e: ClientError) -> Error {
    Error::Remote {
        op,
        source: Box::new(e),
    }
}

/// The fault type name of a client error, or `""`.
pub(crate) fn fault_name(e: &ClientError) -> &str {
    e.fault().map_or("", |f| f.fault_type())
}

/// Why a task did not produce its result.
#[derive(Debug)]
pub(crate) enum TaskError {
    /// The call (or a poll of the task) failed.
    Call(ClientError),
    /// The task ran and failed: its fault type and message.
    Failed {
        /// The fault type (`InvalidPowerState`, ...), or `""`.
        fault: String,
        /// The server's message.
        message: String,
    },
}

impl TaskError {
    /// The fault type name of the failure (`""` for transport errors).
    pub(crate) fn fault(&self) -> &str {
        match self {
            Self::Call(e) => fault_name(e),
            Self::Failed { fault, .. } => fault,
        }
    }

    /// Converts into the crate's error.
    pub(crate) fn into_error(self, op: &'static str) -> Error {
        match self {
            Self::Call(e) => remote(op, e),
            Self::Failed { fault, message } => Error::Remote {
                op,
                source: format!("task failed with {fault}: {message}").into(),
            },
        }
    }
}

/// Sends a `*_Task` call and waits for the task (polling its `info` through the
/// PropertyCollector, 2 ms doubling to 100 ms).
pub(crate) async fn run_task<R>(
    client: &Client,
    call: Call<'_, PendingTask<R>>,
) -> Result<R, TaskError> {
    let pending = call.await.map_err(TaskError::Call)?;
    let task = pending.task().reference().clone();
    let mut delay = Duration::from_millis(2);
    loop {
        let info = read(client, &task, &["info"])
            .await
            .map_err(TaskError::Call)?
            .into_iter()
            .find_map(|p| match p.val {
                Any::Data(obj) => obj.into_any().downcast::<TaskInfo>().ok(),
                _ => None,
            })
            .ok_or_else(|| {
                TaskError::Call(ClientError::UnexpectedResult {
                    found: "a Task without info".to_owned(),
                })
            })?;
        match info.state {
            TaskInfoState::Success => {
                return pending
                    .result_from(info.result.unwrap_or(Any::Absent))
                    .map_err(TaskError::Call);
            }
            TaskInfoState::Error => {
                let (fault, message) = info.error.map_or_else(
                    || (String::new(), String::new()),
                    |e| {
                        let e = e.into_inner();
                        let fault = e
                            .fault
                            .as_ref()
                            .map(|f| f.type_name().to_owned())
                            .unwrap_or_default();
                        (fault, e.localized_message.unwrap_or_default())
                    },
                );
                return Err(TaskError::Failed { fault, message });
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// Reads properties `paths` of one object (one round trip).
pub(crate) async fn read(
    client: &Client,
    obj: &ManagedObjectReference,
    paths: &[&str],
) -> Result<Vec<DynamicProperty>, ClientError> {
    let spec = RetrieveSpec::objects(&obj.type_, paths, [obj.clone()]);
    let objects = client.retrieve_pages(spec).collect_all().await?;
    Ok(objects.into_iter().flat_map(|o| o.prop_set).collect())
}

/// A property's value as text: strings and enum values (`poweredOn`).
pub(crate) fn text(p: &DynamicProperty) -> Option<&str> {
    match &p.val {
        Any::String(s) => Some(s),
        Any::Enum(e) => Some(e.as_str()),
        _ => None,
    }
}

/// The file backing of a virtual disk (every file-backed disk backing type of the API).
pub(crate) fn disk_file(
    b: &Poly<VirtualDeviceBackingInfo>,
) -> Option<&VirtualDeviceFileBackingInfo> {
    use vsphere_client::types::{
        VirtualDiskFlatVer1BackingInfo, VirtualDiskLocalPMemBackingInfo,
        VirtualDiskRawDiskMappingVer1BackingInfo, VirtualDiskSeSparseBackingInfo,
        VirtualDiskSparseVer1BackingInfo, VirtualDiskSparseVer2BackingInfo,
    };
    // `Poly::as_object` hands out a non-'static trait object, which `upcast_ref` cannot take,
    // so the concrete types are tried one by one.
    if let Some(x) = b.downcast_ref::<VirtualDiskFlatVer2BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSeSparseBackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSparseVer2BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskSparseVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskFlatVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskRawDiskMappingVer1BackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    if let Some(x) = b.downcast_ref::<VirtualDiskLocalPMemBackingInfo>() {
        return Some(&x.virtual_device_file_backing_info);
    }
    b.downcast_ref::<VirtualDeviceFileBackingInfo>()
}
