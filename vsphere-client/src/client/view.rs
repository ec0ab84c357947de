//! Views: [`View`], a `ContainerView` or `ListView` that is destroyed when dropped or closed.

use std::sync::Arc;

use super::{Client, Inner, PropertyPages, RetrieveSpec};
use crate::Error;
use crate::codec::{ManagedObjectReference, Poly};
use crate::mo::{ManagedObjectView, ViewManager};
use crate::types::{ObjectSpec, PropertyFilterSpec, PropertySpec, SelectionSpec, TraversalSpec};

/// A server-side view of objects (a `ContainerView` or a `ListView`), for retrieving their
/// properties in one paged retrieval.
///
/// Dropping it destroys the view on the server (in the background, inside a Tokio runtime);
/// [`View::close`] does the same and reports the outcome.
pub struct View<'c> {
    client: &'c Client,
    inner: Arc<Inner>,
    mo: ManagedObjectView,
    closed: bool,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("View").field(self.mo.reference()).finish()
    }
}

fn view_manager(client: &Client) -> Result<ViewManager, Error> {
    client
        .service_content()
        .view_manager
        .clone()
        .map(ViewManager::from_reference)
        .ok_or(Error::Unsupported {
            feature: "views on a server without a ViewManager",
        })
}

/// A filter spec for properties `paths` of the objects of type `type_name` in `view` (the
/// view itself skipped).
///
/// ```
/// use vsphere_client::client::view_filter;
/// use vsphere_client::codec::ManagedObjectReference;
/// let view = ManagedObjectReference::new("ContainerView", "session[1]view-1");
/// let f = view_filter(&view, &[("VirtualMachine", &["name"])]);
/// assert_eq!(f.object_set[0].skip, Some(true));
/// assert_eq!(f.prop_set[0].type_, "VirtualMachine");
/// ```
pub fn view_filter(view: &ManagedObjectReference, props: &[(&str, &[&str])]) -> PropertyFilterSpec {
    let traverse = TraversalSpec {
        selection_spec: SelectionSpec {
            name: Some("traverseView".to_owned()),
            ..SelectionSpec::default()
        },
        type_: view.type_.clone(),
        path: "view".to_owned(),
        skip: Some(false),
        ..TraversalSpec::default()
    };
    PropertyFilterSpec {
        prop_set: props
            .iter()
            .map(|(t, paths)| PropertySpec {
                type_: (*t).to_owned(),
                path_set: paths.iter().map(|p| (*p).to_owned()).collect(),
                ..PropertySpec::default()
            })
            .collect(),
        object_set: vec![ObjectSpec {
            obj: view.clone(),
            skip: Some(true),
            select_set: vec![Poly::new(traverse)],
            ..ObjectSpec::default()
        }],
        ..PropertyFilterSpec::default()
    }
}

impl Client {
    /// Creates a `ContainerView` of the objects of `types` (all types when empty) in
    /// `container`, recursively or only its direct children.
    pub async fn container_view(
        &self,
        container: &ManagedObjectReference,
        types: &[&str],
        recursive: bool,
    ) -> Result<View<'_>, Error> {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        let r = view_manager(self)?
            .create_container_view(self, container, &types, recursive)
            .await?;
        Ok(self.wrap_view(r))
    }

    /// Creates a `ListView` of `objects`.
    pub async fn list_view(&self, objects: &[ManagedObjectReference]) -> Result<View<'_>, Error> {
        let r = view_manager(self)?.create_list_view(self, objects).await?;
        Ok(self.wrap_view(r))
    }

    fn wrap_view(&self, reference: ManagedObjectReference) -> View<'_> {
        View {
            client: self,
            inner: Arc::clone(&self.inner),
            mo: ManagedObjectView::from_reference(reference),
            closed: false,
        }
    }
}

impl<'c> View<'c> {
    /// The view's reference.
    pub fn reference(&self) -> &ManagedObjectReference {
        self.mo.reference()
    }

    /// The retrieval of properties `paths` of the view's objects of type `type_name`.
    pub fn retrieve_spec(&self, props: &[(&str, &[&str])]) -> RetrieveSpec {
        RetrieveSpec {
            specs: vec![view_filter(self.reference(), props)],
            max_objects: None,
        }
    }

    /// Retrieves, page by page, properties of the view's objects: `props` lists, per managed
    /// type, the paths to read (`[("VirtualMachine", &["name", "runtime.powerState"])]`).
    pub fn retrieve(
        &self,
        props: &[(&str, &[&str])],
        max_objects: Option<u32>,
    ) -> PropertyPages<'c> {
        let mut spec = self.retrieve_spec(props);
        spec.max_objects = max_objects;
        self.client.retrieve_pages(spec)
    }

    /// The objects in the view (its `view` property).
    pub async fn objects(&self) -> Result<Vec<ManagedObjectReference>, Error> {
        let mut p = self.client.properties(self.reference(), &["view"]).await?;
        Ok(p.take_many("view"))
    }

    /// Destroys the view on the server.
    pub async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.mo.destroy_view(self.client).await
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = Arc::clone(&self.inner);
            let view = self.mo.clone();
            rt.spawn(async move {
                if let Err(e) = view.destroy_view(&*inner).await {
                    tracing::debug!(error = %e, "destroying a dropped view failed");
                }
            });
        }
    }
}
