//! The embedded vCenter simulator (`vsphere-sim`), started in-process: `vsdk_sim_*`.

use std::ffi::{CString, c_char};

use tokio::runtime::Runtime;
use vsphere_sim::Simulator;

use crate::boundary::{block_on, c_string, free_box, guard, handle, out, runtime};
use crate::error::Error;
use crate::vsdk_result;

/// A running embedded simulator (vcsim's default inventory: `DC0`, hosts `DC0_H0`...,
/// VMs `DC0_H0_VM0`..., datastore `LocalDS_0`). Stop it with [`vsdk_sim_stop`].
pub struct vsdk_sim {
    /// Declared before the runtime: dropped (stopped) first.
    sim: Option<Simulator>,
    rt: Runtime,
    url: CString,
    url_with_credentials: CString,
    user: CString,
    password: CString,
    thumbprint: Option<CString>,
}

impl std::fmt::Debug for vsdk_sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vsdk_sim")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for vsdk_sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            // Inside the runtime: the simulator's tasks are aborted there.
            let _enter = self.rt.enter();
            drop(sim);
        }
    }
}

/// Starts an embedded simulator on `127.0.0.1` (a free port), with user `user` and password
/// `pass`; with `tls` it serves HTTPS with a fresh self-signed certificate (connect with its
/// thumbprint, [`vsdk_sim_thumbprint`]). On success `*out_sim` is a new handle.
///
/// # Safety
///
/// `out_sim` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_start(tls: bool, out_sim: *mut *mut vsdk_sim) -> vsdk_result {
    guard(|| {
        let out_sim = out(out_sim, "out_sim")?;
        let rt = runtime()?;
        let sim = block_on(&rt, Simulator::builder().tls(tls).start())??;
        let thumbprint = if tls {
            Some(c_string(sim.thumbprint()?)?)
        } else {
            None
        };
        let handle = vsdk_sim {
            url: c_string(sim.url())?,
            url_with_credentials: c_string(sim.url_with_credentials())?,
            user: c_string(sim.user())?,
            password: c_string(sim.password())?,
            thumbprint,
            sim: Some(sim),
            rt,
        };
        out_sim.put(Box::into_raw(Box::new(handle)));
        Ok(())
    })
}

/// Which string of the simulator to read.
fn sim_string(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
    pick: impl FnOnce(&vsdk_sim) -> Result<&CString, Error>,
) -> vsdk_result {
    guard(|| {
        // SAFETY: the entry points' contract: NULL or a live handle.
        let sim = unsafe { handle(sim, "sim")? };
        let out_str = out(out_str, "out")?;
        out_str.put(pick(sim)?.as_ptr());
        Ok(())
    })
}

/// The simulator's SDK URL without credentials (`http://127.0.0.1:PORT/sdk`, `https://` with
/// TLS). Borrowed: valid until [`vsdk_sim_stop`].
///
/// # Safety
///
/// `sim` is NULL or a live handle; `out_str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_url(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
) -> vsdk_result {
    sim_string(sim, out_str, |s| Ok(&s.url))
}

/// The SDK URL with the credentials in it (`http://user:pass@127.0.0.1:PORT/sdk`, as vcsim
/// prints it). Borrowed: valid until [`vsdk_sim_stop`].
///
/// # Safety
///
/// `sim` is NULL or a live handle; `out_str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_url_with_credentials(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
) -> vsdk_result {
    sim_string(sim, out_str, |s| Ok(&s.url_with_credentials))
}

/// The user name the simulator accepts. Borrowed: valid until [`vsdk_sim_stop`].
///
/// # Safety
///
/// `sim` is NULL or a live handle; `out_str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_user(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
) -> vsdk_result {
    sim_string(sim, out_str, |s| Ok(&s.user))
}

/// The password the simulator accepts. Borrowed: valid until [`vsdk_sim_stop`].
///
/// # Safety
///
/// `sim` is NULL or a live handle; `out_str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_password(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
) -> vsdk_result {
    sim_string(sim, out_str, |s| Ok(&s.password))
}

/// The SHA-1 thumbprint of the simulator's certificate (`AB:CD:...`, as vCenter prints it);
/// `VSDK_RESULT_UNSUPPORTED` when it was started without TLS. Borrowed: valid until
/// [`vsdk_sim_stop`].
///
/// # Safety
///
/// `sim` is NULL or a live handle; `out_str` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_thumbprint(
    sim: *const vsdk_sim,
    out_str: *mut *const c_char,
) -> vsdk_result {
    sim_string(sim, out_str, |s| {
        s.thumbprint
            .as_ref()
            .ok_or(Error::Sim(vsphere_sim::Error::NoTls))
    })
}

/// Stops the simulator and frees the handle (its borrowed strings die with it). NULL is a
/// no-op.
///
/// # Safety
///
/// `sim` is NULL or a handle from [`vsdk_sim_start`] that was not stopped yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_sim_stop(sim: *mut vsdk_sim) {
    if sim.is_null() {
        return;
    }
    crate::boundary::guard_free(|| {
        // SAFETY: a live handle, as the caller guarantees.
        let h = unsafe { &mut *sim };
        if let Some(s) = h.sim.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            h.rt.block_on(s.stop());
        }
    });
    free_box(sim);
}
