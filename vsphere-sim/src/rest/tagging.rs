//! The tagging store: categories, tags and associations, with the rules vCenter applies
//! (unique names, cardinality, associable types, cascading deletes). Pure: no HTTP here.

use std::collections::{BTreeMap, BTreeSet};

use vsphere_client::rest::{
    BatchResult, Cardinality, Category, CategorySpec, LocalizableMessage, ObjectId, RestErrorKind,
    Tag, TagSpec,
};

use super::ApiError;

/// Categories, tags and which objects carry which tags.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TagStore {
    categories: BTreeMap<String, Category>,
    tags: BTreeMap<String, Tag>,
    /// Tag id to the objects it is attached to.
    attached: BTreeMap<String, BTreeSet<ObjectId>>,
}

/// A vCenter-shaped id: `urn:vmomi:InventoryService{kind}:{uuid}:GLOBAL`.
fn new_id(kind: &str) -> String {
    let (a, b) = crate::inventory::random_bits(kind);
    format!(
        "urn:vmomi:InventoryService{kind}:{}:GLOBAL",
        crate::inventory::uuid_shape(a, b)
    )
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        RestErrorKind::NotFound,
        format!("{what} {id} does not exist"),
    )
}

impl TagStore {
    pub(crate) fn create_category(&mut self, spec: CategorySpec) -> Result<String, ApiError> {
        if spec.name.trim().is_empty() {
            return Err(ApiError::new(
                RestErrorKind::InvalidArgument,
                "a category needs a name",
            ));
        }
        if let Cardinality::Other(c) = &spec.cardinality {
            return Err(ApiError::new(
                RestErrorKind::InvalidArgument,
                format!("cardinality {c:?} is neither SINGLE nor MULTIPLE"),
            ));
        }
        if self.categories.values().any(|c| c.name == spec.name) {
            return Err(ApiError::new(
                RestErrorKind::AlreadyExists,
                format!("a category named {:?} exists already", spec.name),
            ));
        }
        let id = new_id("Category");
        self.categories.insert(
            id.clone(),
            Category {
                id: id.clone(),
                name: spec.name,
                description: spec.description,
                cardinality: spec.cardinality,
                associable_types: spec.associable_types,
                used_by: Vec::new(),
            },
        );
        Ok(id)
    }

    pub(crate) fn category_ids(&self) -> Vec<String> {
        self.categories.keys().cloned().collect()
    }

    pub(crate) fn category(&self, id: &str) -> Result<&Category, ApiError> {
        self.categories
            .get(id)
            .ok_or_else(|| not_found("category", id))
    }

    /// Deletes a category with its tags and their associations.
    pub(crate) fn delete_category(&mut self, id: &str) -> Result<(), ApiError> {
        self.categories
            .remove(id)
            .ok_or_else(|| not_found("category", id))?;
        let doomed: Vec<String> = self
            .tags
            .values()
            .filter(|t| t.category_id == id)
            .map(|t| t.id.clone())
            .collect();
        for t in doomed {
            self.tags.remove(&t);
            self.attached.remove(&t);
        }
        Ok(())
    }

    pub(crate) fn create_tag(&mut self, spec: TagSpec) -> Result<String, ApiError> {
        if spec.name.trim().is_empty() {
            return Err(ApiError::new(
                RestErrorKind::InvalidArgument,
                "a tag needs a name",
            ));
        }
        self.category(&spec.category_id)?;
        if self
            .tags
            .values()
            .any(|t| t.category_id == spec.category_id && t.name == spec.name)
        {
            return Err(ApiError::new(
                RestErrorKind::AlreadyExists,
                format!("the category has a tag named {:?} already", spec.name),
            ));
        }
        let id = new_id("Tag");
        self.tags.insert(
            id.clone(),
            Tag {
                id: id.clone(),
                name: spec.name,
                description: spec.description,
                category_id: spec.category_id,
                used_by: Vec::new(),
            },
        );
        self.attached.insert(id.clone(), BTreeSet::new());
        Ok(id)
    }

    /// The tag named `tag` in the category named `category` (how the vim25 FCD tagging
    /// methods name tags).
    pub(crate) fn find_by_names(&self, category: &str, tag: &str) -> Option<&Tag> {
        let cat = self.categories.values().find(|c| c.name == category)?;
        self.tags
            .values()
            .find(|t| t.category_id == cat.id && t.name == tag)
    }

    /// A tag's category name.
    pub(crate) fn category_name(&self, tag_id: &str) -> Option<&str> {
        let t = self.tags.get(tag_id)?;
        self.categories.get(&t.category_id).map(|c| c.name.as_str())
    }

    /// Drops every association of an object (it was deleted).
    pub(crate) fn forget(&mut self, object: &ObjectId) {
        for objs in self.attached.values_mut() {
            objs.remove(object);
        }
    }

    pub(crate) fn tag_ids(&self) -> Vec<String> {
        self.tags.keys().cloned().collect()
    }

    pub(crate) fn tags_for_category(&self, category_id: &str) -> Result<Vec<String>, ApiError> {
        self.category(category_id)?;
        Ok(self
            .tags
            .values()
            .filter(|t| t.category_id == category_id)
            .map(|t| t.id.clone())
            .collect())
    }

    pub(crate) fn tag(&self, id: &str) -> Result<&Tag, ApiError> {
        self.tags.get(id).ok_or_else(|| not_found("tag", id))
    }

    pub(crate) fn delete_tag(&mut self, id: &str) -> Result<(), ApiError> {
        self.tags.remove(id).ok_or_else(|| not_found("tag", id))?;
        self.attached.remove(id);
        Ok(())
    }

    /// Attaches a tag to an object that `exists` says is in the inventory.
    pub(crate) fn attach(
        &mut self,
        tag_id: &str,
        object: &ObjectId,
        exists: bool,
    ) -> Result<(), ApiError> {
        let tag = self.tag(tag_id)?;
        if !exists {
            // vCenter checks permissions on the target first: an object that does not exist
            // is one the session has no permission on.
            return Err(ApiError::new(
                RestErrorKind::Unauthorized,
                format!("no object {object} (or no permission on it)"),
            ));
        }
        let category = self.category(&tag.category_id)?;
        if !category.associable_types.is_empty()
            && !category.associable_types.contains(&object.type_)
        {
            return Err(ApiError::new(
                RestErrorKind::InvalidArgument,
                format!(
                    "category {:?} does not take objects of type {}",
                    category.name, object.type_
                ),
            ));
        }
        if category.cardinality == Cardinality::Single {
            let other = self.tags.values().find(|t| {
                t.category_id == category.id
                    && t.id != tag_id
                    && self.attached.get(&t.id).is_some_and(|s| s.contains(object))
            });
            if let Some(other) = other {
                return Err(ApiError::new(
                    RestErrorKind::InvalidArgument,
                    format!(
                        "{object} carries tag {:?} of single-cardinality category {:?} already",
                        other.name, category.name
                    ),
                ));
            }
        }
        self.attached
            .entry(tag_id.to_owned())
            .or_default()
            .insert(object.clone());
        Ok(())
    }

    pub(crate) fn detach(&mut self, tag_id: &str, object: &ObjectId) -> Result<(), ApiError> {
        self.tag(tag_id)?;
        if let Some(s) = self.attached.get_mut(tag_id) {
            s.remove(object);
        }
        Ok(())
    }

    pub(crate) fn attached_objects(&self, tag_id: &str) -> Result<Vec<ObjectId>, ApiError> {
        self.tag(tag_id)?;
        Ok(self
            .attached
            .get(tag_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    pub(crate) fn attached_tags(&self, object: &ObjectId) -> Vec<String> {
        self.attached
            .iter()
            .filter(|(_, objs)| objs.contains(object))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Attaches one tag to many objects; failures are reported per object, the others are
    /// tagged.
    pub(crate) fn attach_to_objects(
        &mut self,
        tag_id: &str,
        objects: &[(ObjectId, bool)],
    ) -> Result<BatchResult, ApiError> {
        self.tag(tag_id)?;
        let mut errors = Vec::new();
        for (o, exists) in objects {
            if let Err(e) = self.attach(tag_id, o, *exists) {
                errors.push(LocalizableMessage {
                    id: e.kind.rest_name(),
                    default_message: e.message,
                    args: vec![o.to_string()],
                });
            }
        }
        Ok(BatchResult {
            success: errors.is_empty(),
            error_messages: errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_tag(cardinality: Cardinality, types: &[&str]) -> (TagStore, String, String) {
        let mut s = TagStore::default();
        let mut spec = CategorySpec::new("env", cardinality);
        for t in types {
            spec = spec.associable_type(*t);
        }
        let c = s.create_category(spec).unwrap();
        let t = s.create_tag(TagSpec::new("prod", &c)).unwrap();
        (s, c, t)
    }

    #[test]
    fn names_are_unique_where_vcenter_says() {
        let (mut s, c, _) = store_with_tag(Cardinality::Multiple, &[]);
        let e = s
            .create_category(CategorySpec::new("env", Cardinality::Single))
            .unwrap_err();
        assert_eq!(e.kind, RestErrorKind::AlreadyExists);
        let e = s.create_tag(TagSpec::new("prod", &c)).unwrap_err();
        assert_eq!(e.kind, RestErrorKind::AlreadyExists);
        let e = s.create_tag(TagSpec::new("x", "urn:nope")).unwrap_err();
        assert_eq!(e.kind, RestErrorKind::NotFound);
        assert!(s.id_shapes_ok());
    }

    impl TagStore {
        fn id_shapes_ok(&self) -> bool {
            self.categories.keys().all(|k| {
                k.starts_with("urn:vmomi:InventoryServiceCategory:") && k.ends_with(":GLOBAL")
            })
        }
    }

    #[test]
    fn single_cardinality_allows_one_tag_per_object() {
        let (mut s, c, t1) = store_with_tag(Cardinality::Single, &[]);
        let t2 = s.create_tag(TagSpec::new("dev", &c)).unwrap();
        let vm = ObjectId::vm("vm-1");
        s.attach(&t1, &vm, true).unwrap();
        s.attach(&t1, &vm, true).unwrap(); // the same tag again is fine
        let e = s.attach(&t2, &vm, true).unwrap_err();
        assert_eq!(e.kind, RestErrorKind::InvalidArgument);
        s.detach(&t1, &vm).unwrap();
        s.attach(&t2, &vm, true).unwrap();
        assert_eq!(s.attached_tags(&vm), [t2]);
    }

    #[test]
    fn associable_types_and_missing_objects_are_refused() {
        let (mut s, _, t) = store_with_tag(Cardinality::Multiple, &["VirtualMachine"]);
        let e = s
            .attach(&t, &ObjectId::new("HostSystem", "host-1"), true)
            .unwrap_err();
        assert_eq!(e.kind, RestErrorKind::InvalidArgument);
        let e = s.attach(&t, &ObjectId::vm("vm-999"), false).unwrap_err();
        assert_eq!(e.kind, RestErrorKind::Unauthorized);
        let r = s
            .attach_to_objects(
                &t,
                &[(ObjectId::vm("vm-1"), true), (ObjectId::vm("vm-9"), false)],
            )
            .unwrap();
        assert!(!r.success);
        assert_eq!(r.error_messages.len(), 1);
        assert_eq!(s.attached_objects(&t).unwrap(), [ObjectId::vm("vm-1")]);
    }

    #[test]
    fn deleting_a_category_deletes_its_tags_and_associations() {
        let (mut s, c, t) = store_with_tag(Cardinality::Multiple, &[]);
        s.attach(&t, &ObjectId::vm("vm-1"), true).unwrap();
        s.delete_category(&c).unwrap();
        assert!(s.tag_ids().is_empty());
        assert!(s.attached_tags(&ObjectId::vm("vm-1")).is_empty());
        assert_eq!(
            s.delete_category(&c).unwrap_err().kind,
            RestErrorKind::NotFound
        );
    }
}
