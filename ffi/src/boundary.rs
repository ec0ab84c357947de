//! The boundary between C and Rust: result codes, the thread-local last error, the panic
//! guard, pointer and string checks, owned strings and string lists, callbacks, runtimes.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::runtime::Runtime;

use crate::error::Error;

/// The result of every fallible `vsdk_` function. `VSDK_RESULT_OK` (0) is success; the other
/// codes are grouped: 1-99 the boundary itself, 1000s vSphere, 2000s volumes, 3000s
/// pipelines, 4000s environments. On failure, [`vsdk_last_error`] describes the error.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vsdk_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// An argument was wrong (an empty name, an index out of range, a malformed URL, ...).
    InvalidArgument = 3,
    /// The SDK panicked; the panic was caught (the process is intact, the handle may not be).
    Panic = 4,
    /// The handle's runtime could not be started.
    Runtime = 5,
    /// A blocking call was made from inside a callback (or a Tokio runtime).
    Reentrant = 6,
    /// The operation is not supported by this build, this backend or this machine.
    Unsupported = 7,
    /// A local file could not be read or written.
    Io = 8,
    /// The embedded simulator failed.
    Simulator = 9,
    /// vSphere could not be reached (connection refused, DNS, TLS, an HTTP error status).
    Connect = 1000,
    /// A deadline passed: a vSphere call, or a VM that got no address in time.
    Timeout = 1001,
    /// vSphere refused the user name or password.
    LoginFailed = 1002,
    /// vSphere answered with a fault.
    Fault = 1003,
    /// A vSphere task failed.
    TaskFailed = 1004,
    /// No object (inventory path, name, disk id) matches.
    NotFound = 1005,
    /// Several inventory objects match a name; give a path.
    Ambiguous = 1006,
    /// A disk is already attached to another VM.
    AttachedElsewhere = 1007,
    /// Another vSphere error.
    Vsphere = 1008,
    /// No volume has this id.
    UnknownVolume = 2000,
    /// The volume is attached to another node.
    VolumeAttachedElsewhere = 2001,
    /// A volume of this name exists with another spec.
    VolumeNameConflict = 2002,
    /// Another node holds a live lease on the volume (move with preempt, or release first).
    LeaseHeld = 2003,
    /// The pool has no room for the volume.
    CapacityExhausted = 2004,
    /// The pool is unknown to the backend.
    UnknownPool = 2005,
    /// The node (a VM, for First Class Disks) is unknown.
    UnknownNode = 2006,
    /// Another volume error.
    Volume = 2007,
    /// Another operation on the volume is in progress (or a failed move's intent is still
    /// journaled).
    VolumeBusy = 2008,
    /// No pipeline run has this id.
    UnknownRun = 3000,
    /// An approval was refused (self-approval, not an approver, unknown request, ...).
    ApprovalRefused = 3001,
    /// The pipeline YAML or its inputs are invalid.
    InvalidPipeline = 3002,
    /// Another pipeline error.
    Pipeline = 3003,
    /// The run is not in a state for this (resuming a run that succeeded, ...).
    InvalidRunState = 3004,
    /// No VM of this name (in the environment, or on the backend).
    UnknownVm = 4000,
    /// A VM of this name exists already.
    VmExists = 4001,
    /// The VM is in the wrong state for this (destroying a running VM, ...).
    VmWrongState = 4002,
    /// The environment is invalid: its YAML, a VM's spec, a template that does not exist,
    /// existing VMs that differ from the file, the backend's folder or resource pool.
    InvalidEnvironment = 4003,
    /// Another hypervisor error (a host tool, QEMU's monitor, a remote API).
    Hypervisor = 4004,
}

thread_local! {
    /// The message of the last failed call on this thread (empty after a successful one).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot be represented; they become spaces.
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn clear_last_error() {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

/// The message describing the last failed `vsdk_` call on the calling thread, or `""` when
/// the last call succeeded. Never NULL.
///
/// The pointer is borrowed: it stays valid until the next `vsdk_` call on the same thread
/// (which replaces or clears the message). Copy it to keep it. Messages never contain
/// passwords.
#[unsafe(no_mangle)]
pub extern "C" fn vsdk_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a result code (`"VSDK_RESULT_NOT_FOUND"`), a static string; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn vsdk_result_name(result: vsdk_result) -> *const c_char {
    let name: &'static CStr = match result {
        vsdk_result::Ok => c"VSDK_RESULT_OK",
        vsdk_result::NullParameter => c"VSDK_RESULT_NULL_PARAMETER",
        vsdk_result::InvalidUtf8 => c"VSDK_RESULT_INVALID_UTF8",
        vsdk_result::InvalidArgument => c"VSDK_RESULT_INVALID_ARGUMENT",
        vsdk_result::Panic => c"VSDK_RESULT_PANIC",
        vsdk_result::Runtime => c"VSDK_RESULT_RUNTIME",
        vsdk_result::Reentrant => c"VSDK_RESULT_REENTRANT",
        vsdk_result::Unsupported => c"VSDK_RESULT_UNSUPPORTED",
        vsdk_result::Io => c"VSDK_RESULT_IO",
        vsdk_result::Simulator => c"VSDK_RESULT_SIMULATOR",
        vsdk_result::Connect => c"VSDK_RESULT_CONNECT",
        vsdk_result::Timeout => c"VSDK_RESULT_TIMEOUT",
        vsdk_result::LoginFailed => c"VSDK_RESULT_LOGIN_FAILED",
        vsdk_result::Fault => c"VSDK_RESULT_FAULT",
        vsdk_result::TaskFailed => c"VSDK_RESULT_TASK_FAILED",
        vsdk_result::NotFound => c"VSDK_RESULT_NOT_FOUND",
        vsdk_result::Ambiguous => c"VSDK_RESULT_AMBIGUOUS",
        vsdk_result::AttachedElsewhere => c"VSDK_RESULT_ATTACHED_ELSEWHERE",
        vsdk_result::Vsphere => c"VSDK_RESULT_VSPHERE",
        vsdk_result::UnknownVolume => c"VSDK_RESULT_UNKNOWN_VOLUME",
        vsdk_result::VolumeAttachedElsewhere => c"VSDK_RESULT_VOLUME_ATTACHED_ELSEWHERE",
        vsdk_result::VolumeNameConflict => c"VSDK_RESULT_VOLUME_NAME_CONFLICT",
        vsdk_result::LeaseHeld => c"VSDK_RESULT_LEASE_HELD",
        vsdk_result::CapacityExhausted => c"VSDK_RESULT_CAPACITY_EXHAUSTED",
        vsdk_result::UnknownPool => c"VSDK_RESULT_UNKNOWN_POOL",
        vsdk_result::UnknownNode => c"VSDK_RESULT_UNKNOWN_NODE",
        vsdk_result::Volume => c"VSDK_RESULT_VOLUME",
        vsdk_result::VolumeBusy => c"VSDK_RESULT_VOLUME_BUSY",
        vsdk_result::UnknownRun => c"VSDK_RESULT_UNKNOWN_RUN",
        vsdk_result::ApprovalRefused => c"VSDK_RESULT_APPROVAL_REFUSED",
        vsdk_result::InvalidPipeline => c"VSDK_RESULT_INVALID_PIPELINE",
        vsdk_result::Pipeline => c"VSDK_RESULT_PIPELINE",
        vsdk_result::InvalidRunState => c"VSDK_RESULT_INVALID_RUN_STATE",
        vsdk_result::UnknownVm => c"VSDK_RESULT_UNKNOWN_VM",
        vsdk_result::VmExists => c"VSDK_RESULT_VM_EXISTS",
        vsdk_result::VmWrongState => c"VSDK_RESULT_VM_WRONG_STATE",
        vsdk_result::InvalidEnvironment => c"VSDK_RESULT_INVALID_ENVIRONMENT",
        vsdk_result::Hypervisor => c"VSDK_RESULT_HYPERVISOR",
    };
    name.as_ptr()
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs the body of an entry point: clears the thread's last error, catches a panic (which
/// must never cross `extern "C"`: it would abort the host), and turns an error into its code
/// and the thread's last error message.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Error>) -> vsdk_result {
    clear_last_error();
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return vsdk_result::Ok,
        Ok(Err(e)) => e,
        Err(payload) => Error::Panic {
            message: panic_message(payload.as_ref()),
        },
    };
    set_last_error(&err.chain());
    err.code()
}

/// Runs a `_free` body: no result, a caught panic is dropped (the memory may leak, the
/// process lives).
pub(crate) fn guard_free(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// A shared reference to the handle behind `ptr`, or [`Error::NullParameter`].
///
/// # Safety
///
/// `ptr` is NULL or points to a live `T` made by this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, name: &'static str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees a live `T` or NULL.
    unsafe { ptr.as_ref() }.ok_or(Error::NullParameter { name })
}

/// An out-parameter, checked for NULL before any work is done (so a NULL out-parameter never
/// loses the result of work done). Write it with [`Out::put`].
pub(crate) fn out<T>(ptr: *mut T, name: &'static str) -> Result<Out<T>, Error> {
    std::ptr::NonNull::new(ptr)
        .map(Out)
        .ok_or(Error::NullParameter { name })
}

/// A non-NULL out-parameter; its old (possibly uninitialized) value is never read.
#[derive(Debug)]
pub(crate) struct Out<T>(std::ptr::NonNull<T>);

impl<T> Out<T> {
    /// Writes the value (the caller of the `vsdk_` function vouched the place is writable).
    pub(crate) fn put(self, value: T) {
        // SAFETY: non-NULL, and valid for writes of a `T` by the entry point's contract; the
        // old value is not dropped.
        unsafe { self.0.as_ptr().write(value) };
    }
}

/// A borrowed UTF-8 string argument, or [`Error::NullParameter`] / [`Error::InvalidUtf8`].
///
/// # Safety
///
/// `ptr` is NULL or a NUL-terminated string that outlives the call.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Error> {
    // SAFETY: as the caller guarantees.
    unsafe { optional_string(ptr, name) }?.ok_or(Error::NullParameter { name })
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
///
/// `ptr` is NULL or a NUL-terminated string that outlives the call.
pub(crate) unsafe fn optional_string<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map(Some)
        .map_err(|_| Error::InvalidUtf8 { name })
}

/// An array of `len` string arguments (`ptr` may be NULL when `len` is 0).
///
/// # Safety
///
/// `ptr` is NULL (with `len` 0) or points to `len` NUL-terminated strings.
pub(crate) unsafe fn strings<'a>(
    ptr: *const *const c_char,
    len: usize,
    name: &'static str,
) -> Result<Vec<&'a str>, Error> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Error::NullParameter { name });
    }
    // SAFETY: `len` readable pointers, as the caller guarantees.
    let items = unsafe { std::slice::from_raw_parts(ptr, len) };
    items
        .iter()
        // SAFETY: each item is NULL or a NUL-terminated string.
        .map(|p| unsafe { string(*p, name) })
        .collect()
}

/// A C string from Rust text (an interior NUL is an [`Error::InvalidArgument`]).
pub(crate) fn c_string(text: impl Into<Vec<u8>>) -> Result<CString, Error> {
    CString::new(text).map_err(|_| Error::invalid("text", "contains a NUL byte"))
}

/// An owned string for C, released with [`vsdk_string_free`].
pub(crate) fn owned_string(text: impl Into<Vec<u8>>) -> Result<*mut c_char, Error> {
    Ok(c_string(text)?.into_raw())
}

/// Frees a string this library returned as `char *` (an id, a JSON document). NULL is a no-op.
///
/// # Safety
///
/// `s` is NULL or a string returned by this library that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: made by `CString::into_raw` in `owned_string`, freed once.
    guard_free(|| drop(unsafe { CString::from_raw(s) }));
}

/// An owned list handed to C as an opaque handle ([`vsdk_strings`], `vsdk_vm_list`): its
/// `_len` and `_get` functions are [`list_len`] and [`list_get`], its `_free` [`free_box`].
pub(crate) trait OwnedList {
    /// What the list holds.
    type Item;
    /// The name of the list argument in errors (`list`, `vms`).
    const ARG: &'static str;
    /// The items, in order.
    fn items(&self) -> &[Self::Item];
}

/// The body of a list's `_len` function: `*out_len` is the number of items.
///
/// # Safety
///
/// `list` is NULL or a live list; `out_len` is NULL or writable.
pub(crate) unsafe fn list_len<L: OwnedList>(list: *const L, out_len: *mut usize) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(list, L::ARG)? };
        out(out_len, "out_len")?.put(list.items().len());
        Ok(())
    })
}

/// The body of a list's `_get` function: item `index` (an index out of range is
/// [`Error::InvalidArgument`]), written into `*out_item` as `copy` makes it (`out_name` is that
/// out-parameter's name in errors).
///
/// # Safety
///
/// `list` is NULL or a live list; `out_item` is NULL or writable.
pub(crate) unsafe fn list_get<L: OwnedList, T>(
    list: *const L,
    index: usize,
    out_item: *mut T,
    out_name: &'static str,
    copy: impl FnOnce(&L::Item) -> T,
) -> vsdk_result {
    guard(|| {
        // SAFETY: as the caller guarantees.
        let list = unsafe { handle(list, L::ARG)? };
        let out_item = out(out_item, out_name)?;
        let items = list.items();
        let item = items.get(index).ok_or_else(|| {
            Error::invalid(
                "index",
                format!("{index} is out of range (the list has {})", items.len()),
            )
        })?;
        out_item.put(copy(item));
        Ok(())
    })
}

/// An owned list of strings (disk ids, approval request ids). Read it with
/// [`vsdk_strings_len`] and [`vsdk_strings_get`]; free it with [`vsdk_strings_free`].
#[derive(Debug, Default)]
pub struct vsdk_strings {
    items: Vec<CString>,
}

impl vsdk_strings {
    /// A list from Rust strings.
    pub(crate) fn from_strings(items: impl IntoIterator<Item = String>) -> Result<Self, Error> {
        Ok(Self {
            items: items.into_iter().map(c_string).collect::<Result<_, _>>()?,
        })
    }

    /// The list, boxed for C.
    pub(crate) fn into_raw(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }
}

impl OwnedList for vsdk_strings {
    type Item = CString;
    const ARG: &'static str = "list";
    fn items(&self) -> &[CString] {
        &self.items
    }
}

/// The number of strings in `list`.
///
/// # Safety
///
/// `list` is NULL or a live list; `out_len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_strings_len(
    list: *const vsdk_strings,
    out_len: *mut usize,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe { list_len(list, out_len) }
}

/// The string at `index` in `list`: borrowed, valid until the list is freed.
///
/// # Safety
///
/// `list` is NULL or a live list; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_strings_get(
    list: *const vsdk_strings,
    index: usize,
    out_str: *mut *const c_char,
) -> vsdk_result {
    // SAFETY: as the caller guarantees.
    unsafe { list_get(list, index, out_str, "out", |s| s.as_ptr()) }
}

/// Frees a string list. NULL is a no-op.
///
/// # Safety
///
/// `list` is NULL or a list returned by this library that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vsdk_strings_free(list: *mut vsdk_strings) {
    free_box(list);
}

/// Frees a box made by this library; NULL is a no-op.
pub(crate) fn free_box<T>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: made by `Box::into_raw` in this library and freed once (the callers' contract).
    guard_free(|| drop(unsafe { Box::from_raw(ptr) }));
}

/// A progress callback: called on the calling thread, during the call that took it, with
/// `user_data` first and one event line (borrowed, valid during the callback only).
pub type vsdk_event_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const c_char)>;

/// A callback and its user data, as one value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Callback {
    f: unsafe extern "C" fn(*mut c_void, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: a callback is only ever called on the thread that made the call which took it,
// during that call (every `vsdk_` call runs its future with `block_on` on the caller's
// thread); it is shared with other threads only as an inert value.
unsafe impl Send for Callback {}
// SAFETY: as above.
unsafe impl Sync for Callback {}

impl Callback {
    /// The callback, if `f` is set.
    pub(crate) fn new(f: vsdk_event_callback, user_data: *mut c_void) -> Option<Self> {
        f.map(|f| Self { f, user_data })
    }

    /// Calls it with one event line.
    pub(crate) fn emit(&self, event: &str) {
        let Ok(c) = CString::new(event.replace('\0', " ")) else {
            return;
        };
        // SAFETY: the caller of the `vsdk_` function gave a function and user data that are
        // valid for this call.
        unsafe { (self.f)(self.user_data, c.as_ptr()) };
    }
}

/// Emits an event on an optional callback.
pub(crate) fn emit(cb: Option<&Callback>, event: &str) {
    if let Some(cb) = cb {
        cb.emit(event);
    }
}

/// A handle's runtime: a small multi-threaded Tokio runtime (one worker), so servers and
/// connections keep running between calls.
pub(crate) fn runtime() -> Result<Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vsdk")
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// Runs `fut` to completion on `rt`, on the calling thread; refused inside a runtime (a
/// callback calling back into the library, or a caller that is itself async).
pub(crate) fn block_on<F: Future>(rt: &Runtime, fut: F) -> Result<F::Output, Error> {
    not_nested()?;
    Ok(rt.block_on(fut))
}

/// [`Error::Reentrant`] inside a runtime (a callback calling back into the library): checked
/// before a handle's call lock is taken, so such a call fails instead of deadlocking.
pub(crate) fn not_nested() -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Reentrant);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::{CStr, c_char, c_void};

    use super::*;

    fn last_error() -> String {
        // SAFETY: never NULL, valid until the next call on this thread.
        unsafe { CStr::from_ptr(vsdk_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_panic_becomes_a_result_code_and_a_message() {
        let r = guard(|| panic!("boom at the boundary"));
        assert_eq!(r, vsdk_result::Panic);
        assert!(
            last_error().contains("boom at the boundary"),
            "{}",
            last_error()
        );
        // The next successful call clears the message.
        assert_eq!(guard(|| Ok(())), vsdk_result::Ok);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn null_and_invalid_utf8_arguments_are_typed_errors() {
        // SAFETY: NULL and a NUL-terminated byte string.
        unsafe {
            let e = string(std::ptr::null(), "url").unwrap_err();
            assert_eq!(e.code(), vsdk_result::NullParameter);
            assert_eq!(e.to_string(), "argument `url` is NULL");
            let bad = b"caf\xe9\0";
            let e = string(bad.as_ptr().cast::<c_char>(), "name").unwrap_err();
            assert_eq!(e.code(), vsdk_result::InvalidUtf8);
            assert_eq!(optional_string(std::ptr::null(), "x").unwrap(), None);
            let good = c"DC0_H0_VM0";
            assert_eq!(string(good.as_ptr(), "vm").unwrap(), "DC0_H0_VM0");
            let e = strings(std::ptr::null(), 2, "props").unwrap_err();
            assert_eq!(e.code(), vsdk_result::NullParameter);
            assert!(strings(std::ptr::null(), 0, "props").unwrap().is_empty());
        }
    }

    #[test]
    fn null_handles_and_out_parameters_are_refused() {
        // SAFETY: NULL pointers only.
        unsafe {
            let mut n = 0usize;
            assert_eq!(
                vsdk_strings_len(std::ptr::null(), &raw mut n),
                vsdk_result::NullParameter
            );
            assert!(last_error().contains("`list`"));
            let list = vsdk_strings::from_strings(["a".to_owned()])
                .unwrap()
                .into_raw();
            assert_eq!(
                vsdk_strings_len(list, std::ptr::null_mut()),
                vsdk_result::NullParameter
            );
            assert_eq!(vsdk_strings_len(list, &raw mut n), vsdk_result::Ok);
            assert_eq!(n, 1);
            let mut s: *const c_char = std::ptr::null();
            assert_eq!(vsdk_strings_get(list, 0, &raw mut s), vsdk_result::Ok);
            assert_eq!(CStr::from_ptr(s).to_str().unwrap(), "a");
            assert_eq!(
                vsdk_strings_get(list, 1, &raw mut s),
                vsdk_result::InvalidArgument
            );
            vsdk_strings_free(list);
            // Frees accept NULL.
            vsdk_strings_free(std::ptr::null_mut());
            vsdk_string_free(std::ptr::null_mut());
        }
    }

    #[test]
    fn the_last_error_is_per_thread() {
        assert_eq!(
            guard(|| Err(Error::invalid("x", "bad"))),
            vsdk_result::InvalidArgument
        );
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
        assert_eq!(last_error(), "invalid x: bad");
    }

    unsafe extern "C" fn record(user_data: *mut c_void, event: *const c_char) {
        // SAFETY: the test passes a `Vec<String>` and a valid event string.
        let (seen, event) = unsafe {
            (
                &mut *user_data.cast::<Vec<String>>(),
                CStr::from_ptr(event).to_str().unwrap().to_owned(),
            )
        };
        seen.push(event);
    }

    #[test]
    fn callbacks_get_their_user_data() {
        let mut seen: Vec<String> = Vec::new();
        let cb = Callback::new(Some(record), (&raw mut seen).cast()).unwrap();
        emit(Some(&cb), "one");
        emit(None, "nobody");
        cb.emit("two");
        assert_eq!(seen, ["one", "two"]);
        assert!(Callback::new(None, std::ptr::null_mut()).is_none());
    }

    #[test]
    fn nested_blocking_calls_are_refused() {
        let rt = runtime().unwrap();
        let inner = runtime().unwrap();
        let r = block_on(&rt, async {
            block_on(&inner, async { 1 }).map_err(|e| e.code())
        });
        assert_eq!(r.unwrap(), Err(vsdk_result::Reentrant));
        drop(inner);
    }
}
