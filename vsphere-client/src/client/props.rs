//! Properties of one object, read by path: [`Properties`] and [`Client::properties`].

use std::collections::HashMap;

use super::{Client, RetrieveSpec};
use crate::Error;
use crate::codec::{Any, DataObject, DataType, ManagedObjectReference, Value};
use crate::types::ObjectContent;

/// The properties the server returned for one object, by property path.
///
/// ```
/// use vsphere_client::client::Properties;
/// use vsphere_client::codec::{Any, ManagedObjectReference};
/// use vsphere_client::types::{DynamicProperty, ObjectContent};
/// let content = ObjectContent {
///     obj: ManagedObjectReference::new("VirtualMachine", "vm-1"),
///     prop_set: vec![DynamicProperty { name: "name".into(), val: Any::String("web".into()) }],
///     ..ObjectContent::default()
/// };
/// let p = Properties::from(content);
/// assert_eq!(p.get::<String>("name").as_deref(), Some("web"));
/// assert_eq!(p.get::<i32>("config.hardware.numCPU"), None);
/// ```
#[derive(Clone, Debug)]
pub struct Properties {
    obj: ManagedObjectReference,
    values: HashMap<String, Any>,
}

impl From<ObjectContent> for Properties {
    fn from(content: ObjectContent) -> Self {
        Self {
            obj: content.obj,
            values: content
                .prop_set
                .into_iter()
                .map(|p| (p.name, p.val))
                .collect(),
        }
    }
}

impl Properties {
    /// The object these properties belong to.
    pub fn reference(&self) -> &ManagedObjectReference {
        &self.obj
    }

    /// The raw value of `path`, if the server sent it.
    pub fn raw(&self, path: &str) -> Option<&Any> {
        self.values.get(path)
    }

    /// The value of `path` as a `T`, if the server sent it and it is a `T`.
    pub fn get<T: Value>(&self, path: &str) -> Option<T> {
        self.values
            .get(path)
            .and_then(|v| T::from_any(v.clone()).ok())
    }

    /// Takes the value of `path` out as a `T`: no copy (for big values such as device lists).
    pub fn take<T: Value>(&mut self, path: &str) -> Option<T> {
        self.values.remove(path).and_then(|v| T::from_any(v).ok())
    }

    /// The value of `path` as an array of `T` (empty when absent).
    pub fn take_many<T: Value>(&mut self, path: &str) -> Vec<T> {
        match self.values.remove(path) {
            Some(v) => crate::rpc::any_to_vec(v).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// How many properties were returned.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no property was returned.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl Client {
    /// Reads properties `paths` of one object (one `RetrievePropertiesEx`).
    ///
    /// A property the object does not have (yet) is simply absent from the result.
    pub async fn properties(
        &self,
        obj: &ManagedObjectReference,
        paths: &[&str],
    ) -> Result<Properties, Error> {
        let spec = RetrieveSpec::objects(&obj.type_, paths, [obj.clone()]);
        let mut all = self.retrieve_pages(spec).collect_all().await?;
        match all.pop() {
            Some(content) => Ok(Properties::from(content)),
            None => Err(Error::NotFound {
                kind: "managed object",
                path: format!("{}:{}", obj.type_, obj.value),
            }),
        }
    }

    /// Reads properties `paths` of many objects of one type, in pages (see
    /// [`Client::retrieve_pages`]), and returns them all.
    pub async fn properties_of(
        &self,
        type_name: &str,
        objects: impl IntoIterator<Item = ManagedObjectReference>,
        paths: &[&str],
    ) -> Result<Vec<Properties>, Error> {
        let spec = RetrieveSpec::objects(type_name, paths, objects);
        let all = self.retrieve_pages(spec).collect_all().await?;
        Ok(all.into_iter().map(Properties::from).collect())
    }
}

/// `object` viewed as its base type `T` (or as `T` itself), for any borrow of a data object:
/// a `VirtualDiskFlatVer2BackingInfo` viewed as a `VirtualDeviceFileBackingInfo`, say.
pub fn upcast<T: DataType>(object: &dyn DataObject) -> Option<&T> {
    let mut o = object;
    loop {
        if let Some(t) = o.as_any().downcast_ref::<T>() {
            return Some(t);
        }
        o = o.base_object()?;
    }
}
