//! The inventory finder: objects by inventory path, with globs, as govc resolves them.
//!
//! Inventory paths follow the parent chain from the root folder: `/DC0/vm/DC0_H0_VM0`,
//! `/DC0/host/DC0_C0/DC0_C0_H0`, `/DC0/datastore/LocalDS_0`. A [`Finder`] reads the whole tree
//! once (`name` and `parent` of every managed entity, through one container view, page by
//! page) and then answers any number of lookups locally:
//!
//! - [`Finder::find`]: a path or a glob; `*`, `?` and `[...]` match within one path element
//!   (`/DC0/vm/*`, `/*/datastore/*`); a pattern without a leading `/` is relative to the root
//!   (`*/host/*`).
//! - [`Finder::datacenter`], [`Finder::datastore`], [`Finder::virtual_machine`], ...: one object
//!   of that type by path, glob or plain name, or the default when there is exactly one; a
//!   typed [`Error::NotFound`] or [`Error::Ambiguous`] otherwise.

use std::collections::HashMap;

use super::Client;
use crate::Error;
use crate::codec::ManagedObjectReference;

/// One object of the inventory tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryObject {
    /// The inventory path (`/DC0/vm/DC0_H0_VM0`; the root folder is `/`).
    pub path: String,
    /// The object.
    pub reference: ManagedObjectReference,
    /// Its name (as the server stores it: `/` escaped as `%2f`).
    pub name: String,
    /// Its parent (`None` for the root folder).
    pub parent: Option<ManagedObjectReference>,
}

impl InventoryObject {
    /// The managed type (`VirtualMachine`, `Datacenter`, ...).
    pub fn type_name(&self) -> &str {
        &self.reference.type_
    }
}

/// The inventory tree, read once; lookups are local.
#[derive(Clone, Debug)]
pub struct Finder {
    objects: Vec<InventoryObject>,
}

/// Whether `text` matches the glob `pattern` (`*`, `?`, `[abc]`, `[a-z]`, `[!a]`; no `/`).
///
/// ```
/// use vsphere_client::client::glob_match;
/// assert!(glob_match("DC0_*_VM?", "DC0_H0_VM1"));
/// assert!(glob_match("[!x]C[0-9]", "DC0"));
/// assert!(!glob_match("DC0_*", "DC1_H0"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_at(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                return t.first() == Some(&'[') && glob_at(&p[1..], &t[1..]);
            };
            let Some(c) = t.first() else { return false };
            let (negate, set) = match p[1] {
                '!' | '^' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= *c && *c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob_at(&p[close + 1..], &t[1..])
        }
        Some(ch) => t.first() == Some(ch) && glob_at(&p[1..], &t[1..]),
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The elements of an inventory path or pattern (`/DC0/vm/x` -> `["DC0", "vm", "x"]`).
fn elements(path: &str) -> Vec<&str> {
    path.split('/').filter(|e| !e.is_empty()).collect()
}

/// Whether the inventory `path` matches `pattern` element by element.
///
/// ```
/// use vsphere_client::client::path_matches;
/// assert!(path_matches("/DC0/vm/*", "/DC0/vm/DC0_H0_VM0"));
/// assert!(path_matches("*/host/*", "/DC0/host/DC0_C0"));
/// assert!(!path_matches("/DC0/vm/*", "/DC0/vm/folder/VM1"));
/// ```
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let p = elements(pattern);
    let e = elements(path);
    p.len() == e.len() && p.iter().zip(&e).all(|(p, e)| glob_match(p, e))
}

/// Builds inventory paths from `(object, name, parent)` triples; the object without a parent
/// (the root folder) is `/`. Objects whose parent chain does not reach the root are dropped.
pub fn build_paths(
    entries: Vec<(
        ManagedObjectReference,
        String,
        Option<ManagedObjectReference>,
    )>,
) -> Vec<InventoryObject> {
    let by_ref: HashMap<(String, String), usize> = entries
        .iter()
        .enumerate()
        .map(|(i, (r, _, _))| ((r.type_.clone(), r.value.clone()), i))
        .collect();
    let mut paths: Vec<Option<String>> = vec![None; entries.len()];
    for start in 0..entries.len() {
        // Walk up until a known path or the root, then fill in on the way down.
        let mut chain = vec![start];
        let mut base: Option<String> = None;
        let mut cur = start;
        loop {
            if let Some(p) = &paths[cur] {
                base = Some(p.clone());
                chain.pop();
                break;
            }
            match &entries[cur].2 {
                None => {
                    base = Some(String::new());
                    chain.pop();
                    paths[cur] = Some("/".to_owned());
                    break;
                }
                Some(parent) => match by_ref.get(&(parent.type_.clone(), parent.value.clone())) {
                    Some(&p) if !chain.contains(&p) => {
                        chain.push(p);
                        cur = p;
                    }
                    _ => break,
                },
            }
        }
        let Some(mut prefix) = base else { continue };
        while let Some(i) = chain.pop() {
            let path = if prefix.is_empty() || prefix == "/" {
                format!("/{}", entries[i].1)
            } else {
                format!("{prefix}/{}", entries[i].1)
            };
            paths[i] = Some(path.clone());
            prefix = path;
        }
    }
    let mut out: Vec<InventoryObject> = entries
        .into_iter()
        .zip(paths)
        .filter_map(|((reference, name, parent), path)| {
            path.map(|path| InventoryObject {
                path,
                reference,
                name,
                parent,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

impl Client {
    /// Reads the inventory tree (every managed entity's `name` and `parent`) for lookups.
    pub async fn finder(&self) -> Result<Finder, Error> {
        let root = self.service_content().root_folder.clone();
        let view = self.container_view(&root, &["ManagedEntity"], true).await?;
        let mut pages = view.retrieve(&[("ManagedEntity", &["name", "parent"])], Some(1000));
        let mut entries = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for content in page {
                let p = super::Properties::from(content);
                let name = p.get::<String>("name").unwrap_or_default();
                let parent = p.get::<ManagedObjectReference>("parent");
                entries.push((p.reference().clone(), name, parent));
            }
        }
        view.close().await?;
        if !entries.iter().any(|(r, _, _)| *r == root) {
            entries.push((root, String::new(), None));
        }
        Ok(Finder::from_objects(build_paths(entries)))
    }
}

impl Finder {
    /// A finder over an already known tree (see [`build_paths`]).
    pub fn from_objects(objects: Vec<InventoryObject>) -> Self {
        Self { objects }
    }

    /// Every object, sorted by path.
    pub fn all(&self) -> &[InventoryObject] {
        &self.objects
    }

    /// The objects whose path matches `pattern` (a path or a glob), sorted by path.
    pub fn find(&self, pattern: &str) -> Vec<&InventoryObject> {
        self.objects
            .iter()
            .filter(|o| path_matches(pattern, &o.path))
            .collect()
    }

    /// The object with exactly this reference.
    pub fn by_reference(&self, r: &ManagedObjectReference) -> Option<&InventoryObject> {
        self.objects.iter().find(|o| o.reference == *r)
    }

    /// One object of managed type `type_name` (or a subtype listed in `types`): by path or glob
    /// when `what` starts with `/` or holds a glob, otherwise by name; with `what` `None`, the
    /// only object of the type under `within` (a path prefix, e.g. the datacenter's).
    pub fn one(
        &self,
        kind: &'static str,
        types: &[&str],
        what: Option<&str>,
        within: Option<&InventoryObject>,
    ) -> Result<&InventoryObject, Error> {
        let of_type = |o: &&InventoryObject| types.contains(&o.type_name());
        let under = |o: &&InventoryObject| {
            within.is_none_or(|w| o.path.starts_with(&format!("{}/", w.path)))
        };
        let (matches, label): (Vec<&InventoryObject>, String) = match what {
            Some(w) if w.starts_with('/') || is_glob(w) || w.contains('/') => (
                self.find(w).into_iter().filter(of_type).collect(),
                w.to_owned(),
            ),
            Some(name) => (
                self.objects
                    .iter()
                    .filter(of_type)
                    .filter(under)
                    .filter(|o| o.name == name)
                    .collect(),
                name.to_owned(),
            ),
            None => (
                self.objects.iter().filter(of_type).filter(under).collect(),
                within.map_or_else(|| "*".to_owned(), |w| format!("{}/*", w.path)),
            ),
        };
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::NotFound { kind, path: label }),
            many => Err(Error::Ambiguous {
                kind,
                path: label,
                matches: many.iter().map(|o| o.path.clone()).collect(),
            }),
        }
    }

    /// The datacenter `what` (path, glob or name), or the only one.
    pub fn datacenter(&self, what: Option<&str>) -> Result<&InventoryObject, Error> {
        self.one("datacenter", &["Datacenter"], what, None)
    }

    /// The datastore `what`, or the only one of the default datacenter.
    pub fn datastore(&self, what: Option<&str>) -> Result<&InventoryObject, Error> {
        let dc = self.default_scope(what)?;
        self.one("datastore", &["Datastore"], what, dc)
    }

    /// The resource pool `what`, or the only one of the default datacenter.
    pub fn resource_pool(&self, what: Option<&str>) -> Result<&InventoryObject, Error> {
        let dc = self.default_scope(what)?;
        self.one("resource pool", &["ResourcePool", "VirtualApp"], what, dc)
    }

    /// The VM `what` (path, glob or name).
    pub fn virtual_machine(&self, what: &str) -> Result<&InventoryObject, Error> {
        self.one("virtual machine", &["VirtualMachine"], Some(what), None)
    }

    /// The host `what` (path, glob or name).
    pub fn host(&self, what: &str) -> Result<&InventoryObject, Error> {
        self.one("host", &["HostSystem"], Some(what), None)
    }

    /// The network `what` (path, glob or name): a standard `Network`, a
    /// `DistributedVirtualPortgroup` or an `OpaqueNetwork`.
    pub fn network(&self, what: &str) -> Result<&InventoryObject, Error> {
        self.one(
            "network",
            &["Network", "DistributedVirtualPortgroup", "OpaqueNetwork"],
            Some(what),
            None,
        )
    }

    /// For a default (no `what`), lookups happen inside the only datacenter.
    fn default_scope(&self, what: Option<&str>) -> Result<Option<&InventoryObject>, Error> {
        match what {
            Some(_) => Ok(None),
            None => self.datacenter(None).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, v: &str) -> ManagedObjectReference {
        ManagedObjectReference::new(t, v)
    }

    fn tree() -> Finder {
        let root = r("Folder", "group-d1");
        let e = |t: &str, v: &str, name: &str, parent: &ManagedObjectReference| {
            (r(t, v), name.to_owned(), Some(parent.clone()))
        };
        let dc = r("Datacenter", "datacenter-2");
        let vmf = r("Folder", "group-v3");
        let hostf = r("Folder", "group-h4");
        let dsf = r("Folder", "group-s5");
        let cluster = r("ClusterComputeResource", "domain-c7");
        let pool = r("ResourcePool", "resgroup-8");
        let entries = vec![
            e("VirtualMachine", "vm-10", "web", &vmf),
            e("VirtualMachine", "vm-11", "db", &vmf),
            (root.clone(), "Datacenters".into(), None),
            e("Datacenter", "datacenter-2", "DC0", &root),
            e("Folder", "group-v3", "vm", &dc),
            e("Folder", "group-h4", "host", &dc),
            e("Folder", "group-s5", "datastore", &dc),
            e("ClusterComputeResource", "domain-c7", "C0", &hostf),
            e("HostSystem", "host-9", "H0", &cluster),
            e("ResourcePool", "resgroup-8", "Resources", &cluster),
            e("Datastore", "datastore-12", "ds1", &dsf),
            e("Datastore", "datastore-13", "ds2", &dsf),
            e("VirtualMachine", "vm-99", "orphan", &r("Folder", "gone")),
        ];
        let _ = pool;
        Finder::from_objects(build_paths(entries))
    }

    #[test]
    fn paths_follow_the_parent_chain() {
        let f = tree();
        let paths: Vec<&str> = f.all().iter().map(|o| o.path.as_str()).collect();
        assert!(paths.contains(&"/"));
        assert!(paths.contains(&"/DC0/vm/web"));
        assert!(paths.contains(&"/DC0/host/C0/H0"));
        assert!(paths.contains(&"/DC0/host/C0/Resources"));
        assert!(!paths.iter().any(|p| p.ends_with("orphan")), "{paths:?}");
    }

    #[test]
    fn globs_match_one_element_each() {
        let f = tree();
        let vms: Vec<&str> = f
            .find("/DC0/vm/*")
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(vms, ["db", "web"]);
        assert_eq!(f.find("*/host/*").len(), 1);
        assert_eq!(f.find("/*/datastore/*").len(), 2);
        assert_eq!(f.find("/DC0/vm/w?b")[0].reference.value, "vm-10");
        assert!(f.find("/DC1/*").is_empty());
    }

    #[test]
    fn defaults_are_unique_or_a_typed_error() {
        let f = tree();
        assert_eq!(f.datacenter(None).unwrap().name, "DC0");
        assert_eq!(f.resource_pool(None).unwrap().name, "Resources");
        match f.datastore(None) {
            Err(Error::Ambiguous { kind, matches, .. }) => {
                assert_eq!(kind, "datastore");
                assert_eq!(matches, ["/DC0/datastore/ds1", "/DC0/datastore/ds2"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.datastore(Some("ds2")).unwrap().reference.value,
            "datastore-13"
        );
        assert!(matches!(
            f.virtual_machine("nope"),
            Err(Error::NotFound {
                kind: "virtual machine",
                ..
            })
        ));
        assert_eq!(f.virtual_machine("/DC0/vm/db").unwrap().name, "db");
        let e = f.datastore(Some("/*/datastore/*")).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
    }

    #[test]
    fn glob_classes_and_escapes() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("[x", "[x"));
    }
}
