//! The normalized schema (`vsphere-client/schema/vsphere.schema.json`), as the generator reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

/// The whole schema.
#[derive(Deserialize)]
pub(crate) struct Schema {
    pub(crate) format: u32,
    pub(crate) source: Source,
    pub(crate) services: BTreeMap<String, Vec<String>>,
    pub(crate) enums: Vec<EnumType>,
    pub(crate) data: Vec<DataType>,
    pub(crate) managed: Vec<ManagedType>,
}

/// Where the schema came from.
#[derive(Deserialize)]
pub(crate) struct Source {
    pub(crate) package: String,
    pub(crate) version: String,
}

/// A property, parameter or result.
#[derive(Clone, Deserialize)]
pub(crate) struct Prop {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    pub(crate) array: bool,
    #[serde(default)]
    pub(crate) optional: bool,
    #[serde(default)]
    pub(crate) secret: bool,
    #[serde(default)]
    pub(crate) link: bool,
    #[serde(default)]
    pub(crate) since: String,
    #[serde(default)]
    pub(crate) moref: Option<String>,
}

/// An enum.
#[derive(Deserialize)]
pub(crate) struct EnumType {
    pub(crate) name: String,
    pub(crate) vmodl: String,
    pub(crate) service: String,
    pub(crate) since: String,
    pub(crate) values: Vec<String>,
}

/// A data type.
#[derive(Deserialize)]
pub(crate) struct DataType {
    pub(crate) name: String,
    pub(crate) vmodl: String,
    pub(crate) base: Option<String>,
    pub(crate) service: String,
    pub(crate) since: String,
    pub(crate) fault: bool,
    pub(crate) props: Vec<Prop>,
}

/// A method.
#[derive(Deserialize)]
pub(crate) struct Method {
    pub(crate) name: String,
    pub(crate) vmodl: String,
    pub(crate) since: String,
    pub(crate) privilege: Option<String>,
    pub(crate) params: Vec<Prop>,
    pub(crate) result: Prop,
    pub(crate) task_result: Option<Prop>,
    pub(crate) faults: Vec<String>,
}

/// A managed object type.
#[derive(Deserialize)]
pub(crate) struct ManagedType {
    pub(crate) name: String,
    pub(crate) vmodl: String,
    pub(crate) base: Option<String>,
    pub(crate) service: String,
    pub(crate) since: String,
    pub(crate) props: Vec<Prop>,
    pub(crate) methods: Vec<Method>,
}

/// Indexes over the schema that the generator consults.
pub(crate) struct Index<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) data: HashMap<&'a str, &'a DataType>,
    pub(crate) enums: HashMap<&'a str, &'a EnumType>,
    pub(crate) has_subtypes: BTreeSet<&'a str>,
}

impl<'a> Index<'a> {
    pub(crate) fn new(schema: &'a Schema) -> Result<Self, String> {
        let data: HashMap<_, _> = schema.data.iter().map(|t| (t.name.as_str(), t)).collect();
        let enums: HashMap<_, _> = schema.enums.iter().map(|t| (t.name.as_str(), t)).collect();
        let has_subtypes = schema
            .data
            .iter()
            .filter_map(|t| t.base.as_deref())
            .collect();
        for t in &schema.data {
            if let Some(b) = &t.base
                && !data.contains_key(b.as_str())
            {
                return Err(format!("{}: unknown base type {b}", t.name));
            }
        }
        Ok(Self {
            schema,
            data,
            enums,
            has_subtypes,
        })
    }

    /// The type's chain from the root down to itself.
    pub(crate) fn chain(&self, name: &str) -> Vec<&'a DataType> {
        let mut out = Vec::new();
        let mut t = self.data.get(name).copied();
        while let Some(x) = t {
            out.push(x);
            t = x.base.as_deref().and_then(|b| self.data.get(b).copied());
        }
        out.reverse();
        out
    }
}
