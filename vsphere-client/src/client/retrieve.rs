//! Paged property retrieval: `RetrievePropertiesEx`, then `ContinueRetrievePropertiesEx` until
//! the server has no more, delivered page by page.

use std::collections::HashSet;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::Client;
use crate::Error;
use crate::codec::ManagedObjectReference;
use crate::mo::PropertyCollector;
use crate::rpc::BoxFuture;
use crate::types::{ObjectContent, ObjectSpec, PropertyFilterSpec, PropertySpec, RetrieveOptions};

/// What to retrieve: filter specs and the page size.
#[derive(Clone, Debug, Default)]
pub struct RetrieveSpec {
    /// The filter specs (`specSet`).
    pub specs: Vec<PropertyFilterSpec>,
    /// The most objects per page (`maxObjects`); the server may send fewer.
    pub max_objects: Option<u32>,
}

impl RetrieveSpec {
    /// Properties `paths` of the objects `objects`, all of managed type `type_name`.
    ///
    /// ```
    /// use vsphere_client::client::RetrieveSpec;
    /// use vsphere_client::codec::ManagedObjectReference;
    /// let vms = vec![ManagedObjectReference::new("VirtualMachine", "vm-1")];
    /// let spec = RetrieveSpec::objects("VirtualMachine", &["name", "runtime.powerState"], vms)
    ///     .max_objects(500);
    /// assert_eq!(spec.specs[0].prop_set[0].path_set.len(), 2);
    /// ```
    pub fn objects(
        type_name: &str,
        paths: &[&str],
        objects: impl IntoIterator<Item = ManagedObjectReference>,
    ) -> Self {
        let prop = PropertySpec {
            type_: type_name.to_owned(),
            path_set: paths.iter().map(|p| (*p).to_owned()).collect(),
            ..PropertySpec::default()
        };
        let filter = PropertyFilterSpec {
            prop_set: vec![prop],
            object_set: objects
                .into_iter()
                .map(|obj| ObjectSpec {
                    obj,
                    ..ObjectSpec::default()
                })
                .collect(),
            ..PropertyFilterSpec::default()
        };
        Self {
            specs: vec![filter],
            max_objects: None,
        }
    }

    /// Sets the page size.
    pub fn max_objects(mut self, n: u32) -> Self {
        self.max_objects = Some(n);
        self
    }
}

/// The client a retrieval or a view works through: borrowed, or shared through an [`Arc`]
/// (then the retrieval or view is `'static` and can move into a spawned task).
#[derive(Clone, Debug)]
pub(crate) enum ClientRef<'c> {
    /// A borrowed client.
    Borrowed(&'c Client),
    /// A shared client.
    Shared(Arc<Client>),
}

impl Deref for ClientRef<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            ClientRef::Borrowed(c) => c,
            ClientRef::Shared(c) => c,
        }
    }
}

enum State {
    Start,
    More(String),
    Done,
}

/// A paged retrieval in progress: call [`PropertyPages::next_page`] until it returns `None`,
/// or turn it into a [`Stream`] of pages with [`PropertyPages::into_stream`].
///
/// Pages arrive as the server sends them; nothing waits for the whole inventory.
///
/// If the session expires between pages (the continuation token dies with it), the client
/// logs in again and the retrieval restarts from the first page, skipping objects already
/// delivered: nothing is duplicated and nothing lost. It restarts at most once without
/// progress; a second `NotAuthenticated` in a row is returned as the error it is.
pub struct PropertyPages<'c> {
    client: ClientRef<'c>,
    collector: PropertyCollector,
    spec: RetrieveSpec,
    state: State,
    delivered: HashSet<(String, String)>,
    restarted_without_progress: bool,
}

impl std::fmt::Debug for PropertyPages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropertyPages")
            .field("delivered", &self.delivered.len())
            .field("done", &matches!(self.state, State::Done))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a paged retrieval on the session's property collector.
    pub fn retrieve_pages(&self, spec: RetrieveSpec) -> PropertyPages<'_> {
        PropertyPages::new(ClientRef::Borrowed(self), spec)
    }

    /// [`Client::retrieve_pages`] on a shared client: the retrieval owns a clone of the
    /// [`Arc`], so it is `'static` (it can move into a spawned task and outlive the caller's
    /// borrow).
    pub fn retrieve_pages_shared(self: &Arc<Self>, spec: RetrieveSpec) -> PropertyPages<'static> {
        PropertyPages::new(ClientRef::Shared(Arc::clone(self)), spec)
    }
}

impl<'c> PropertyPages<'c> {
    pub(crate) fn new(client: ClientRef<'c>, spec: RetrieveSpec) -> Self {
        let collector =
            PropertyCollector::from_reference(client.service_content().property_collector.clone());
        PropertyPages {
            client,
            collector,
            spec,
            state: State::Start,
            delivered: HashSet::new(),
            restarted_without_progress: false,
        }
    }
}

fn key(r: &ManagedObjectReference) -> (String, String) {
    (r.type_.clone(), r.value.clone())
}

impl PropertyPages<'_> {
    /// The next page of objects, or `None` when the retrieval is complete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ObjectContent>>, Error> {
        loop {
            let generation = self.client.generation();
            let result = match &self.state {
                State::Done => return Ok(None),
                State::Start => {
                    let options = RetrieveOptions {
                        max_objects: self
                            .spec
                            .max_objects
                            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                        ..RetrieveOptions::default()
                    };
                    self.collector
                        .retrieve_properties_ex(&*self.client, &self.spec.specs, &options)
                        .await
                }
                State::More(token) => self
                    .collector
                    .continue_retrieve_properties_ex(&*self.client, token)
                    .await
                    .map(Some),
            };
            match result {
                Ok(None) => {
                    self.state = State::Done;
                    return Ok(None);
                }
                Ok(Some(page)) => {
                    self.state = page.token.map_or(State::Done, State::More);
                    let fresh: Vec<ObjectContent> = page
                        .objects
                        .into_iter()
                        .filter(|o| self.delivered.insert(key(&o.obj)))
                        .collect();
                    if !fresh.is_empty() {
                        self.restarted_without_progress = false;
                        return Ok(Some(fresh));
                    }
                }
                Err(e)
                    if e.is_fault("NotAuthenticated")
                        && matches!(self.state, State::More(_))
                        && self.client.has_credentials()
                        && !self.restarted_without_progress =>
                {
                    tracing::info!(
                        delivered = self.delivered.len(),
                        "session lost during a paged retrieval: logging in again and restarting"
                    );
                    self.client.renew_since(generation).await?;
                    self.state = State::Start;
                    self.restarted_without_progress = true;
                }
                Err(e) => {
                    self.state = State::Done;
                    return Err(e);
                }
            }
        }
    }

    /// Every remaining object (convenience: waits for all pages).
    pub async fn collect_all(mut self) -> Result<Vec<ObjectContent>, Error> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Stops early and tells the server to drop the rest (`CancelRetrievePropertiesEx`).
    pub async fn cancel(mut self) -> Result<(), Error> {
        if let State::More(token) = std::mem::replace(&mut self.state, State::Done) {
            self.collector
                .cancel_retrieve_properties_ex(&*self.client, &token)
                .await?;
        }
        Ok(())
    }
}

type PageResult = Result<Option<Vec<ObjectContent>>, Error>;

enum StreamState<'c> {
    Idle(PropertyPages<'c>),
    Busy(BoxFuture<'c, (PropertyPages<'c>, PageResult)>),
    Done,
}

/// A paged retrieval as a [`Stream`] of pages; it ends after the last page or the first error.
pub struct PageStream<'c> {
    state: StreamState<'c>,
}

impl std::fmt::Debug for PageStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageStream")
            .field("done", &matches!(self.state, StreamState::Done))
            .finish_non_exhaustive()
    }
}

impl<'c> PropertyPages<'c> {
    /// The retrieval as a [`Stream`] of pages (each a `Result`).
    pub fn into_stream(self) -> PageStream<'c> {
        PageStream {
            state: StreamState::Idle(self),
        }
    }
}

impl Stream for PageStream<'_> {
    type Item = Result<Vec<ObjectContent>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, StreamState::Done) {
                StreamState::Done => return Poll::Ready(None),
                StreamState::Idle(mut pages) => {
                    this.state = StreamState::Busy(Box::pin(async move {
                        let result = pages.next_page().await;
                        (pages, result)
                    }));
                }
                StreamState::Busy(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = StreamState::Busy(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready((pages, Ok(Some(page)))) => {
                        this.state = StreamState::Idle(pages);
                        return Poll::Ready(Some(Ok(page)));
                    }
                    Poll::Ready((_, Ok(None))) => return Poll::Ready(None),
                    Poll::Ready((_, Err(e))) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }
}
