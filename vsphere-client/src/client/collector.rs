//! `WaitForUpdatesEx` on a private property collector: [`Collector`].
//!
//! A library call never waits on the session's default collector: another waiter on the same
//! collector (the application's, or a second library call) would steal its updates or cancel
//! its wait (govmomi#2241). Each [`Collector`] is a collector of its own
//! (`CreatePropertyCollector`), with its own filters and version, destroyed when it is closed
//! or dropped.

use std::sync::Arc;
use std::time::Duration;

use super::{Client, Inner};
use crate::Error;
use crate::codec::ManagedObjectReference;
use crate::mo::{PropertyCollector, PropertyFilter};
use crate::types::{PropertyFilterSpec, UpdateSet, WaitOptions};

/// A private property collector: create filters on it, then wait for their updates.
///
/// Dropping it destroys the collector on the server (in the background, when a Tokio runtime
/// is running); [`Collector::close`] does the same and reports the outcome. Dropping a
/// [`Collector::wait`] future cancels the wait on the client side; the server's wait ends
/// when its `maxWaitSeconds` passes or the collector is destroyed.
pub struct Collector {
    inner: Arc<Inner>,
    pc: PropertyCollector,
    version: Option<String>,
    closed: bool,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("collector", &self.pc.reference().value)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The longest a single `WaitForUpdatesEx` may block: a little less than the call timeout, so
/// that the server answers (with no updates) before the client gives up on the HTTP request.
fn clamp_wait(wanted: Duration, call_timeout: Duration) -> i32 {
    let ceiling = call_timeout
        .saturating_sub(Duration::from_secs(5))
        .max(Duration::from_secs(1));
    wanted.min(ceiling).as_secs().try_into().unwrap_or(i32::MAX)
}

impl Client {
    /// Creates a private property collector (`CreatePropertyCollector` on the session's
    /// collector).
    pub async fn new_collector(&self) -> Result<Collector, Error> {
        let session_pc =
            PropertyCollector::from_reference(self.service_content().property_collector.clone());
        let reference = session_pc.create_property_collector(self).await?;
        Ok(Collector {
            inner: Arc::clone(&self.inner),
            pc: PropertyCollector::from_reference(reference),
            version: None,
            closed: false,
        })
    }
}

impl Collector {
    /// The collector's reference.
    pub fn reference(&self) -> &ManagedObjectReference {
        self.pc.reference()
    }

    /// The version of the last update set received (`None` before the first).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Adds a filter (`CreateFilter`); its objects' properties are reported by the next wait.
    pub async fn create_filter(
        &self,
        spec: &PropertyFilterSpec,
        partial_updates: bool,
    ) -> Result<PropertyFilter, Error> {
        if self.closed {
            return Err(Error::SessionClosed);
        }
        let r = self
            .pc
            .create_filter(&*self.inner, spec, partial_updates)
            .await?;
        Ok(PropertyFilter::from_reference(r))
    }

    /// Waits up to `max_wait` for changes since the last update set (`WaitForUpdatesEx` with
    /// the collector's version and `maxWaitSeconds`). The first wait reports the filters'
    /// current values. `None` means nothing changed within `max_wait`.
    ///
    /// `max_wait` is capped a few seconds below the client's call timeout; `Duration::ZERO`
    /// polls without blocking.
    pub async fn wait(&mut self, max_wait: Duration) -> Result<Option<UpdateSet>, Error> {
        if self.closed {
            return Err(Error::SessionClosed);
        }
        let options = WaitOptions {
            max_wait_seconds: Some(clamp_wait(max_wait, self.inner.timeout)),
            ..WaitOptions::default()
        };
        let set = self
            .pc
            .wait_for_updates_ex(&*self.inner, self.version.as_deref(), Some(&options))
            .await?;
        if let Some(set) = &set {
            self.version = Some(set.version.clone());
        }
        Ok(set)
    }

    /// Cancels a wait in progress on this collector (`CancelWaitForUpdates`), e.g. from another
    /// task; that wait then fails with the `RequestCanceled` fault.
    pub async fn cancel_wait(&self) -> Result<(), Error> {
        self.pc.cancel_wait_for_updates(&*self.inner).await
    }

    /// Destroys the collector and its filters on the server.
    pub async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.pc.destroy_property_collector(&*self.inner).await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = Arc::clone(&self.inner);
            let collector = self.pc.clone();
            rt.spawn(async move {
                if let Err(e) = collector.destroy_property_collector(&*inner).await {
                    tracing::debug!(error = %e, "destroying a dropped property collector failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clamp_wait;
    use std::time::Duration;

    #[test]
    fn waits_stay_below_the_call_timeout() {
        let t = Duration::from_secs(60);
        assert_eq!(clamp_wait(Duration::from_secs(10), t), 10);
        assert_eq!(clamp_wait(Duration::from_secs(600), t), 55);
        assert_eq!(clamp_wait(Duration::ZERO, t), 0);
        assert_eq!(
            clamp_wait(Duration::from_secs(30), Duration::from_secs(2)),
            1
        );
    }
}
