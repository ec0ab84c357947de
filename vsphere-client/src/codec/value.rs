//! Values the codec reads and writes: the [`Value`] trait, its implementations for primitives,
//! and the slot traits through which the codec fills required, optional and repeated fields.

use std::fmt;

use base64::Engine as _;

use super::de::{DecodeError, Decoder, Start};
use super::ser::Encoder;
use super::{Any, EnumInfo, FieldInfo, Visitor};

/// A single wire value: a primitive, an enum, a managed object reference or a data object.
///
/// Implemented for the primitive types, [`ManagedObjectReference`], [`Any`], [`Poly`](super::Poly),
/// [`Obj`](super::Obj), every generated data type (through [`DataType`](super::DataType)) and,
/// by the generated code, every enum.
pub trait Value: Clone + fmt::Debug + Sized + Send + Sync + 'static {
    /// Decodes one element (`start` has been read; this reads up to its end tag).
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError>;
    /// Encodes the value as one element named `name`.
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo);
    /// Walks the data objects inside the value.
    fn walk_value(&self, _visitor: &mut dyn Visitor) {}
    /// Converts an `anyType` value (a task result, a property value) into this type.
    fn from_any(any: Any) -> Result<Self, Any>;
}

/// A required field, as the codec sees it.
pub trait ValueSlot: Send + Sync {
    /// Decodes one occurrence of the field into the slot.
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError>;
    /// Encodes the slot as one element.
    fn encode(&self, e: &mut Encoder, field: &FieldInfo);
    /// Walks nested data objects.
    fn walk(&self, visitor: &mut dyn Visitor);
    /// Formats the value for `Debug`.
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Copies the value of `src`, a slot of the same type.
    fn assign(&mut self, src: &dyn ValueSlot);
    /// The slot as `Any`, for [`ValueSlot::assign`].
    fn as_any(&self) -> &dyn std::any::Any;
}

/// An optional field, as the codec sees it.
pub trait OptSlot: Send + Sync {
    /// Decodes one occurrence of the field into the slot.
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError>;
    /// Encodes the slot as zero or one element.
    fn encode(&self, e: &mut Encoder, field: &FieldInfo);
    /// Walks nested data objects.
    fn walk(&self, visitor: &mut dyn Visitor);
    /// Whether a value is present.
    fn is_set(&self) -> bool;
    /// Formats the value (not the `Option`) for `Debug`.
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Copies the value of `src`, a slot of the same type.
    fn assign(&mut self, src: &dyn OptSlot);
    /// The slot as `Any`, for [`OptSlot::assign`].
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A repeated field, as the codec sees it.
pub trait VecSlot: Send + Sync {
    /// Decodes one occurrence (one item) and appends it.
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError>;
    /// Encodes every item as an element of its own.
    fn encode(&self, e: &mut Encoder, field: &FieldInfo);
    /// Walks nested data objects.
    fn walk(&self, visitor: &mut dyn Visitor);
    /// The number of items.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Formats the items for `Debug`.
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Copies the items of `src`, a slot of the same type.
    fn assign(&mut self, src: &dyn VecSlot);
    /// The slot as `Any`, for [`VecSlot::assign`].
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: Value> ValueSlot for T {
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError> {
        *self = T::decode_value(d, start, field)?;
        Ok(())
    }
    fn encode(&self, e: &mut Encoder, field: &FieldInfo) {
        self.encode_value(e, field.name, field);
    }
    fn walk(&self, visitor: &mut dyn Visitor) {
        self.walk_value(visitor);
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
    fn assign(&mut self, src: &dyn ValueSlot) {
        if let Some(v) = src.as_any().downcast_ref::<T>() {
            self.clone_from(v);
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<T: Value> OptSlot for Option<T> {
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError> {
        *self = Some(T::decode_value(d, start, field)?);
        Ok(())
    }
    fn encode(&self, e: &mut Encoder, field: &FieldInfo) {
        if let Some(v) = self {
            v.encode_value(e, field.name, field);
        }
    }
    fn walk(&self, visitor: &mut dyn Visitor) {
        if let Some(v) = self {
            v.walk_value(visitor);
        }
    }
    fn is_set(&self) -> bool {
        self.is_some()
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Some(v) => fmt::Debug::fmt(v, f),
            None => f.write_str("None"),
        }
    }
    fn assign(&mut self, src: &dyn OptSlot) {
        if let Some(v) = src.as_any().downcast_ref::<Self>() {
            self.clone_from(v);
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<T: Value> VecSlot for Vec<T> {
    fn decode(
        &mut self,
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<(), DecodeError> {
        self.push(T::decode_value(d, start, field)?);
        Ok(())
    }
    fn encode(&self, e: &mut Encoder, field: &FieldInfo) {
        for v in self {
            v.encode_value(e, field.name, field);
        }
    }
    fn walk(&self, visitor: &mut dyn Visitor) {
        for v in self {
            v.walk_value(visitor);
        }
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
    fn assign(&mut self, src: &dyn VecSlot) {
        if let Some(v) = src.as_any().downcast_ref::<Self>() {
            self.clone_from(v);
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

macro_rules! text_value {
    ($ty:ty, $variant:ident, $xsd:literal, $parse:expr, $format:expr) => {
        impl Value for $ty {
            fn decode_value(
                d: &mut Decoder<'_>,
                start: &Start<'_>,
                _field: &FieldInfo,
            ) -> Result<Self, DecodeError> {
                let text = d.read_text(start)?;
                #[allow(clippy::redundant_closure_call)]
                ($parse)(text.trim()).ok_or_else(|| d.bad_value($xsd, &text))
            }
            fn encode_value(&self, e: &mut Encoder, name: &str, _field: &FieldInfo) {
                e.open(name, None);
                #[allow(clippy::redundant_closure_call)]
                e.text(&($format)(self));
                e.close(name);
            }
            fn from_any(any: Any) -> Result<Self, Any> {
                match any {
                    Any::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

text_value!(bool, Bool, "boolean", parse_bool, |v: &bool| if *v {
    "true"
} else {
    "false"
}
.to_owned());
text_value!(i8, Byte, "byte", |s: &str| s.parse().ok(), |v: &i8| v
    .to_string());
text_value!(i16, Short, "short", |s: &str| s.parse().ok(), |v: &i16| v
    .to_string());
text_value!(i32, Int, "int", |s: &str| s.parse().ok(), |v: &i32| v
    .to_string());
text_value!(i64, Long, "long", |s: &str| s.parse().ok(), |v: &i64| v
    .to_string());
text_value!(f32, Float, "float", parse_float::<f32>, |v: &f32| {
    format_float(f64::from(*v))
});
text_value!(f64, Double, "double", parse_float::<f64>, |v: &f64| {
    format_float(*v)
});
text_value!(
    DateTime,
    DateTime,
    "dateTime",
    DateTime::parse,
    |v: &DateTime| v.to_string()
);

fn parse_float<T: std::str::FromStr>(s: &str) -> Option<T> {
    match s {
        "INF" => "inf".parse().ok(),
        "-INF" => "-inf".parse().ok(),
        "NaN" => "NaN".parse().ok(),
        _ => s.parse().ok(),
    }
}

/// Formats a float as `xsd:float`/`xsd:double` text (`INF`, `-INF`, `NaN` spelled as XSD does).
pub(crate) fn format_float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "INF" } else { "-INF" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        v.to_string()
    }
}

impl Value for String {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        _field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        d.read_text(start).map(std::borrow::Cow::into_owned)
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, _field: &FieldInfo) {
        e.open(name, None);
        e.text(self);
        e.close(name);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        match any {
            Any::String(v) => Ok(v),
            other => Err(other),
        }
    }
}

/// A string that holds a secret (a password, a ticket, a token).
///
/// Its `Debug` output is `"<redacted>"`; read it with [`SecretString::expose`].
///
/// ```
/// use vsphere_client::codec::SecretString;
/// let s = SecretString::from("hunter2");
/// assert_eq!(format!("{s:?}"), "<redacted>");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, Default, Eq, PartialEq)]
pub struct SecretString(String);

impl SecretString {
    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Value for SecretString {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        String::decode_value(d, start, field).map(Self)
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        self.0.encode_value(e, name, field);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        String::from_any(any).map(Self)
    }
}

/// `xsd:base64Binary`: bytes that travel base64-encoded.
#[derive(Clone, Default, Eq, PartialEq)]
pub struct Binary(pub Vec<u8>);

impl Binary {
    /// The bytes as base64 text, as they travel.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binary({} bytes)", self.0.len())
    }
}

impl Value for Binary {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        _field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let text = d.read_text(start)?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map(Binary)
            .map_err(|_| d.bad_value("base64Binary", &text))
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, _field: &FieldInfo) {
        e.open(name, None);
        e.text(&self.to_base64());
        e.close(name);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        match any {
            Any::Binary(v) => Ok(v),
            other => Err(other),
        }
    }
}

/// A reference to a managed object on the server: its type and its id (`vm-42`).
///
/// ```
/// use vsphere_client::codec::ManagedObjectReference;
/// let vm = ManagedObjectReference::new("VirtualMachine", "vm-42");
/// assert_eq!(vm.to_string(), "VirtualMachine:vm-42");
/// ```
#[derive(Clone, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ManagedObjectReference {
    /// The managed object type (`VirtualMachine`).
    pub type_: String,
    /// The server's id for the object (`vm-42`).
    pub value: String,
}

impl ManagedObjectReference {
    /// A reference to object `value` of type `type_`.
    pub fn new(type_: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for ManagedObjectReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.type_, self.value)
    }
}

impl Value for ManagedObjectReference {
    fn decode_value(
        d: &mut Decoder<'_>,
        start: &Start<'_>,
        _field: &FieldInfo,
    ) -> Result<Self, DecodeError> {
        let type_ = start.type_attr().unwrap_or_default().to_owned();
        let value = d.read_text(start)?.trim().to_owned();
        Ok(Self { type_, value })
    }
    fn encode_value(&self, e: &mut Encoder, name: &str, field: &FieldInfo) {
        let in_any = matches!(field.kind, super::FieldKind::Any);
        e.open_moref(name, &self.type_, in_any);
        e.text(&self.value);
        e.close(name);
    }
    fn from_any(any: Any) -> Result<Self, Any> {
        match any {
            Any::MoRef(v) => Ok(v),
            other => Err(other),
        }
    }
}

/// `xsd:dateTime`, held as UTC with nanosecond precision.
///
/// ```
/// use vsphere_client::codec::DateTime;
/// let t = DateTime::parse("2026-11-28T22:13:57.529793Z").unwrap();
/// assert_eq!(t.to_string(), "2026-11-28T22:13:57.529793Z");
/// let z = DateTime::parse("2026-11-28T23:13:57+01:00").unwrap();
/// assert_eq!(z.unix_seconds(), DateTime::parse("2026-11-28T22:13:57Z").unwrap().unix_seconds());
/// ```
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct DateTime {
    secs: i64,
    nanos: u32,
}

impl DateTime {
    /// The instant `secs` seconds and `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Self {
            secs: secs + i64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// The sub-second part, in nanoseconds.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Parses `xsd:dateTime` (`YYYY-MM-DDThh:mm:ss[.f*][Z|±hh:mm]`; no zone means UTC).
    #[allow(
        clippy::many_single_char_names,
        reason = "the date's parts, as the format names them"
    )]
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (neg, off) = if b.first() == Some(&b'-') {
            (true, 1)
        } else {
            (false, 0)
        };
        let dash = s[off..].find('-')? + off;
        let mut year = num(off..dash)?;
        if neg {
            year = -year;
        }
        if b.get(dash + 3) != Some(&b'-') || b.get(dash + 6) != Some(&b'T') {
            return None;
        }
        let month = num(dash + 1..dash + 3)?;
        let day = num(dash + 4..dash + 6)?;
        let t = dash + 7;
        if b.get(t + 2) != Some(&b':') || b.get(t + 5) != Some(&b':') {
            return None;
        }
        let (hour, min, sec) = (num(t..t + 2)?, num(t + 3..t + 5)?, num(t + 6..t + 8)?);
        let mut i = t + 8;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let frac = &s[start..i];
            if frac.is_empty() {
                return None;
            }
            let mut digits: String = frac.chars().take(9).collect();
            while digits.len() < 9 {
                digits.push('0');
            }
            nanos = digits.parse().ok()?;
        }
        let offset = match &s[i..] {
            "" | "Z" => 0,
            z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
                let h = num(i + 1..i + 3)?;
                let m = num(i + 4..i + 6)?;
                let o = (h * 60 + m) * 60;
                if z.starts_with('-') { -o } else { o }
            }
            _ => return None,
        };
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 24
            || min > 59
            || sec > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
        Some(Self { secs, nanos })
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// A generated vim enum: known values as variants, anything newer as `Other`.
pub trait VimEnum: Sized + Clone + Send + Sync + 'static {
    /// The enum's descriptor.
    const INFO: &'static EnumInfo;
    /// The value for a wire string; unknown strings become the `Other` variant.
    fn from_wire(s: &str) -> Self;
    /// The wire string of the value.
    fn as_wire(&self) -> &str;
}

/// Implements [`VimEnum`] and [`Value`] for a generated enum.
#[doc(hidden)]
#[macro_export]
macro_rules! __vim_enum {
    ($ty:ident, $info:path, [$($variant:ident = $wire:literal),* $(,)?]) => {
        impl $crate::codec::VimEnum for $ty {
            const INFO: &'static $crate::codec::EnumInfo = &$info;
            fn from_wire(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)*
                    other => Self::Other(other.into()),
                }
            }
            fn as_wire(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Other(s) => s,
                }
            }
        }
        impl $crate::codec::Value for $ty {
            fn decode_value(
                d: &mut $crate::codec::Decoder<'_>,
                start: &$crate::codec::Start<'_>,
                _field: &$crate::codec::FieldInfo,
            ) -> Result<Self, $crate::codec::DecodeError> {
                let text = d.read_text(start)?;
                Ok(<Self as $crate::codec::VimEnum>::from_wire(text.trim()))
            }
            fn encode_value(
                &self,
                e: &mut $crate::codec::Encoder,
                name: &str,
                field: &$crate::codec::FieldInfo,
            ) {
                e.enum_value(name, field, &$info, <Self as $crate::codec::VimEnum>::as_wire(self));
            }
            fn from_any(any: $crate::codec::Any) -> Result<Self, $crate::codec::Any> {
                match any {
                    $crate::codec::Any::Enum(v) if ::std::ptr::eq(v.info(), &$info) => {
                        Ok(<Self as $crate::codec::VimEnum>::from_wire(v.as_str()))
                    }
                    $crate::codec::Any::String(s) => Ok(<Self as $crate::codec::VimEnum>::from_wire(&s)),
                    other => Err(other),
                }
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(<Self as $crate::codec::VimEnum>::as_wire(self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::DateTime;

    #[test]
    fn datetime_round_trips_and_normalises_zones() {
        for (input, out) in [
            ("2026-11-28T22:13:57.529793Z", "2026-11-28T22:13:57.529793Z"),
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
            ("2000-02-29T12:00:00.5+02:00", "2000-02-29T10:00:00.5Z"),
            ("1999-12-31T23:59:59-00:30", "2000-01-01T00:29:59Z"),
            ("2026-01-01T00:00:00", "2026-01-01T00:00:00Z"),
        ] {
            let t = DateTime::parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(t.to_string(), out, "{input}");
            assert_eq!(DateTime::parse(out), Some(t));
        }
    }

    #[test]
    fn datetime_rejects_garbage() {
        for bad in [
            "",
            "2026",
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00:00",
            "x-01-01T00:00:00Z",
        ] {
            assert_eq!(DateTime::parse(bad), None, "{bad}");
        }
    }
}
