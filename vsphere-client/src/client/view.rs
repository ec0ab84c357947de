//! Views: [`View`], a `ContainerView` or `ListView` that is destroyed when dropped or closed;
//! [`OwnedView`] is the same on a shared client (`Arc<Client>`), for long-lived watchers.

use std::sync::Arc;

use super::retrieve::ClientRef;
use super::{Client, Inner, PropertyPages, RetrieveSpec};
use crate::Error;
use crate::codec::{ManagedObjectReference, Poly};
use crate::mo::{ManagedObjectView, ViewManager};
use crate::types::{ObjectSpec, PropertyFilterSpec, PropertySpec, TraversalSpec};

/// A server-side view of objects (a `ContainerView` or a `ListView`), for retrieving their
/// properties in one paged retrieval.
///
/// Dropping it destroys the view on the server (in the background, inside a Tokio runtime);
/// [`View::close`] does the same and reports the outcome.
///
/// [`Client::container_view`] and [`Client::list_view`] borrow the client;
/// [`Client::container_view_shared`] and [`Client::list_view_shared`] take an `Arc<Client>` and
/// give an [`OwnedView`] (`View<'static>`), which holds its own clone of the `Arc` and can move
/// into a spawned task, as can its retrievals.
pub struct View<'c> {
    client: ClientRef<'c>,
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

/// A view on a shared client: [`View<'static>`](View).
pub type OwnedView = View<'static>;

/// A filter spec for properties `paths` of the objects of type `type_name` in `view` (the
/// view itself skipped).
///
/// It is the request govmomi's `ContainerView.Retrieve` sends, element for element: one
/// object spec on the view (`skip`), one anonymous `TraversalSpec` over its `view` property
/// (no name, no `selectSet`, `skip` left to its default, false), one property spec per type.
///
/// ```
/// use vsphere_client::client::view_filter;
/// use vsphere_client::codec::ManagedObjectReference;
/// let view = ManagedObjectReference::new("ContainerView", "session[1]view-1");
/// let f = view_filter(&view, &[("VirtualMachine", &["name"])]);
/// assert_eq!(f.object_set[0].skip, Some(true));
/// assert_eq!(f.object_set[0].select_set.len(), 1);
/// assert_eq!(f.prop_set[0].type_, "VirtualMachine");
/// ```
pub fn view_filter(view: &ManagedObjectReference, props: &[(&str, &[&str])]) -> PropertyFilterSpec {
    let traverse = TraversalSpec {
        type_: view.type_.clone(),
        path: "view".to_owned(),
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
        let r = self
            .create_container_view(container, types, recursive)
            .await?;
        Ok(View::wrap(ClientRef::Borrowed(self), r))
    }

    /// Creates a `ListView` of `objects`.
    pub async fn list_view(&self, objects: &[ManagedObjectReference]) -> Result<View<'_>, Error> {
        let r = view_manager(self)?.create_list_view(self, objects).await?;
        Ok(View::wrap(ClientRef::Borrowed(self), r))
    }

    /// [`Client::container_view`] on a shared client: the view holds a clone of the `Arc`
    /// instead of a borrow, so it can live in a long-running task (a watcher) and be dropped
    /// anywhere inside a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo(client: std::sync::Arc<vsphere_client::client::Client>)
    /// #     -> Result<(), vsphere_client::Error> {
    /// let root = client.service_content().root_folder.clone();
    /// let view = client.container_view_shared(&root, &["VirtualMachine"], true).await?;
    /// let watcher = tokio::spawn(async move {
    ///     let mut pages = view.retrieve(&[("VirtualMachine", &["name"])], Some(500));
    ///     let mut n = 0;
    ///     while let Some(page) = pages.next_page().await? {
    ///         n += page.len();
    ///     }
    ///     Ok::<_, vsphere_client::Error>(n)
    /// });
    /// let listed = watcher.await.expect("the watcher task")?;
    /// # let _ = listed; Ok(()) }
    /// ```
    pub async fn container_view_shared(
        self: &Arc<Self>,
        container: &ManagedObjectReference,
        types: &[&str],
        recursive: bool,
    ) -> Result<OwnedView, Error> {
        let r = self
            .create_container_view(container, types, recursive)
            .await?;
        Ok(View::wrap(ClientRef::Shared(Arc::clone(self)), r))
    }

    /// [`Client::list_view`] on a shared client (see [`Client::container_view_shared`]).
    pub async fn list_view_shared(
        self: &Arc<Self>,
        objects: &[ManagedObjectReference],
    ) -> Result<OwnedView, Error> {
        let r = view_manager(self)?
            .create_list_view(&**self, objects)
            .await?;
        Ok(View::wrap(ClientRef::Shared(Arc::clone(self)), r))
    }

    async fn create_container_view(
        &self,
        container: &ManagedObjectReference,
        types: &[&str],
        recursive: bool,
    ) -> Result<ManagedObjectReference, Error> {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        view_manager(self)?
            .create_container_view(self, container, &types, recursive)
            .await
    }
}

impl<'c> View<'c> {
    fn wrap(client: ClientRef<'c>, reference: ManagedObjectReference) -> Self {
        View {
            inner: Arc::clone(&client.inner),
            client,
            mo: ManagedObjectView::from_reference(reference),
            closed: false,
        }
    }

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
        PropertyPages::new(self.client.clone(), spec)
    }

    /// The objects in the view (its `view` property).
    pub async fn objects(&self) -> Result<Vec<ManagedObjectReference>, Error> {
        let mut p = self.client.properties(self.reference(), &["view"]).await?;
        Ok(p.take_many("view"))
    }

    /// Destroys the view on the server.
    pub async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.mo.destroy_view(&*self.client).await
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
