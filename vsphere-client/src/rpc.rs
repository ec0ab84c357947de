//! How generated methods reach a server: the [`Caller`] trait, the [`Call`] future and the
//! typed [`PendingTask`].
//!
//! Every generated method encodes its request synchronously, hands the envelope to a
//! [`Caller`] (the session-aware client, or a test double) and returns a [`Call`]: a future
//! that decodes the typed result when the response arrives. Dropping the future cancels the
//! call.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Error;
use crate::codec::{
    Any, AnyArray, FieldMut, ManagedObjectReference, MethodInfo, Param, ResponseError, Service,
    Value, decode_response, encode_request,
};
use crate::mo::Task;

/// A boxed, sendable future: what a [`Caller`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends SOAP requests: implemented by the SDK's client and by test doubles.
///
/// The trait is dyn-compatible so that generated methods take `&dyn Caller`.
pub trait Caller: Send + Sync {
    /// Sends the request envelope `body` for `method` and resolves to the response envelope
    /// (a result or a SOAP fault; HTTP-level failures are errors).
    fn send<'a>(
        &'a self,
        method: &'static MethodInfo,
        body: String,
    ) -> BoxFuture<'a, Result<String, Error>>;

    /// The server's release for `service` (`"8.0.2.0"`), once negotiated: requests then omit
    /// properties and parameters newer than it.
    fn release(&self, service: Service) -> Option<&str> {
        let _ = service;
        None
    }
}

/// Decodes a response body into a method's typed result.
pub type Decode<R> = fn(&str, &'static MethodInfo) -> Result<R, Error>;

/// A call in flight: resolves to the method's typed result. Dropping it cancels the call.
#[must_use = "a Call does nothing until awaited"]
pub struct Call<'a, R> {
    send: BoxFuture<'a, Result<String, Error>>,
    method: &'static MethodInfo,
    decode: Decode<R>,
}

impl<R> fmt::Debug for Call<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method.name)
            .finish_non_exhaustive()
    }
}

impl<'a, R> Call<'a, R> {
    /// Encodes the request for `method` on `this` and starts sending it through `client`.
    pub fn new(
        client: &'a dyn Caller,
        method: &'static MethodInfo,
        this: &ManagedObjectReference,
        params: &[&dyn Param],
        decode: Decode<R>,
    ) -> Self {
        let body = encode_request(method, this, client.release(method.service), params);
        Self {
            send: client.send(method, body),
            method,
            decode,
        }
    }

    /// The method being called.
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }
}

impl<R> Future for Call<'_, R> {
    type Output = Result<R, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.send.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(body)) => Poll::Ready((self.decode)(&body, self.method)),
        }
    }
}

fn response_error(e: ResponseError, method: &'static MethodInfo) -> Error {
    match e {
        ResponseError::Decode(source) => Error::Decode {
            method: method.name,
            source,
        },
        ResponseError::Fault(fault) => Error::Fault {
            method: method.name,
            fault,
        },
    }
}

fn decode_into(
    body: &str,
    method: &'static MethodInfo,
    slot: Option<FieldMut<'_>>,
) -> Result<(), Error> {
    let result = match (&method.result, slot) {
        (Some(f), Some(slot)) => Some((f, slot)),
        _ => None,
    };
    decode_response(body, result).map_err(|e| response_error(e, method))
}

fn missing(method: &'static MethodInfo) -> Error {
    Error::MissingResult {
        method: method.name,
    }
}

/// Decodes a void result (the response must still be a well-formed, fault-free envelope).
pub fn void(body: &str, method: &'static MethodInfo) -> Result<(), Error> {
    decode_into(body, method, None)
}

/// Decodes a required result.
pub fn one<T: Value>(body: &str, method: &'static MethodInfo) -> Result<T, Error> {
    let mut v: Option<T> = None;
    decode_into(body, method, Some(FieldMut::Opt(&mut v)))?;
    v.ok_or_else(|| missing(method))
}

/// Decodes an optional result.
pub fn opt<T: Value>(body: &str, method: &'static MethodInfo) -> Result<Option<T>, Error> {
    let mut v: Option<T> = None;
    decode_into(body, method, Some(FieldMut::Opt(&mut v)))?;
    Ok(v)
}

/// Decodes an array result.
pub fn many<T: Value>(body: &str, method: &'static MethodInfo) -> Result<Vec<T>, Error> {
    let mut v: Vec<T> = Vec::new();
    decode_into(body, method, Some(FieldMut::Many(&mut v)))?;
    Ok(v)
}

/// Converts a task's `info.result` into its typed value.
pub type FromAny<R> = fn(Any) -> Result<R, Any>;

/// A task a `*_Task` method started, typed by the result it will produce.
///
/// Wait for it with the client's task waiter; [`PendingTask::result_from`] turns the finished
/// task's `info.result` into `R`.
pub struct PendingTask<R> {
    task: Task,
    convert: FromAny<R>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for PendingTask<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PendingTask")
            .field(self.task.reference())
            .finish()
    }
}

impl<R> PendingTask<R> {
    /// A pending task for the task object `task`, converting its result with `convert`.
    pub fn new(task: Task, convert: FromAny<R>) -> Self {
        Self {
            task,
            convert,
            _result: PhantomData,
        }
    }

    /// The task object.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The typed result from a finished task's `info.result`.
    pub fn result_from(&self, result: Any) -> Result<R, Error> {
        (self.convert)(result).map_err(|other| Error::UnexpectedResult {
            found: other.type_name().to_owned(),
        })
    }
}

fn task_ref(body: &str, method: &'static MethodInfo) -> Result<Task, Error> {
    one::<ManagedObjectReference>(body, method).map(Task::from_reference)
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "it is a FromAny<()> function pointer"
)]
fn any_void(_: Any) -> Result<(), Any> {
    Ok(())
}

fn any_one<T: Value>(a: Any) -> Result<T, Any> {
    T::from_any(a)
}

fn any_opt<T: Value>(a: Any) -> Result<Option<T>, Any> {
    match a {
        Any::Absent => Ok(None),
        other => T::from_any(other).map(Some),
    }
}

/// An `anyType` array (or nothing) as a `Vec<T>`.
pub(crate) fn any_to_vec<T: Value>(a: Any) -> Result<Vec<T>, Any> {
    any_many(a)
}

fn any_many<T: Value>(a: Any) -> Result<Vec<T>, Any> {
    let items: Vec<Any> = match a {
        Any::Absent => return Ok(Vec::new()),
        Any::Array(arr) => match arr {
            AnyArray::Bool(v) => v.into_iter().map(Any::Bool).collect(),
            AnyArray::Byte(v) => v.into_iter().map(Any::Byte).collect(),
            AnyArray::Short(v) => v.into_iter().map(Any::Short).collect(),
            AnyArray::Int(v) => v.into_iter().map(Any::Int).collect(),
            AnyArray::Long(v) => v.into_iter().map(Any::Long).collect(),
            AnyArray::Float(v) => v.into_iter().map(Any::Float).collect(),
            AnyArray::Double(v) => v.into_iter().map(Any::Double).collect(),
            AnyArray::String(v) => v.into_iter().map(Any::String).collect(),
            AnyArray::DateTime(v) => v.into_iter().map(Any::DateTime).collect(),
            AnyArray::Binary(v) => v.into_iter().map(Any::Binary).collect(),
            AnyArray::MoRef(v) => v.into_iter().map(Any::MoRef).collect(),
            AnyArray::Enum { info, values } => values
                .into_iter()
                .map(|s| Any::Enum(crate::codec::EnumValue::new(info, s)))
                .collect(),
            AnyArray::Data { items, .. } => items.into_iter().map(Any::Data).collect(),
            AnyArray::Any(v) => v,
        },
        other => return Err(other),
    };
    items.into_iter().map(T::from_any).collect()
}

/// Decodes the task reference of a `*_Task` method whose task produces nothing.
pub fn task_void(body: &str, method: &'static MethodInfo) -> Result<PendingTask<()>, Error> {
    task_ref(body, method).map(|t| PendingTask::new(t, any_void))
}

/// Decodes the task reference of a `*_Task` method whose task produces a `T`.
pub fn task_one<T: Value>(
    body: &str,
    method: &'static MethodInfo,
) -> Result<PendingTask<T>, Error> {
    task_ref(body, method).map(|t| PendingTask::new(t, any_one::<T>))
}

/// Decodes the task reference of a `*_Task` method whose task may produce a `T`.
pub fn task_opt<T: Value>(
    body: &str,
    method: &'static MethodInfo,
) -> Result<PendingTask<Option<T>>, Error> {
    task_ref(body, method).map(|t| PendingTask::new(t, any_opt::<T>))
}

/// Decodes the task reference of a `*_Task` method whose task produces an array of `T`.
pub fn task_many<T: Value>(
    body: &str,
    method: &'static MethodInfo,
) -> Result<PendingTask<Vec<T>>, Error> {
    task_ref(body, method).map(|t| PendingTask::new(t, any_many::<T>))
}
