//! The decoder: a namespace-aware pull tokenizer over the in-memory document, driven by the
//! descriptor tables.
//!
//! The input is a `&str`, so it was validated as UTF-8 once, up front; the tokenizer then works
//! on byte offsets (every delimiter is ASCII, so every slice it takes is a `&str` again, with no
//! re-validation), finds markup with `memchr`, computes each element's local name once, scans
//! each start tag's attributes once, and hands out text borrowed from the input unless it holds
//! an entity, a CDATA section or a carriage return.
//!
//! Why not quick-xml's reader: on the 1000-VM all-properties envelope (16.3 MB), quick-xml's
//! plain `Reader` alone (events and text, no typed values) needs about 102 ms of CPU per pass, and
//! its `NsReader` 123 ms; the typed decode of the same file must fit in 136 ms to reach
//! 120 MB/s, and building the typed values costs more than the remaining 34 ms. This tokenizer
//! reads only what a SOAP response contains (elements, attributes, text, CDATA, comments,
//! processing instructions, a DOCTYPE to skip) and is checked against quick-xml's `NsReader`
//! on the test corpus and on mutations of it (see the tests below).

use std::borrow::Cow;
use std::fmt;

use memchr::{memchr, memchr2, memmem};

use super::{DataObject, FieldInfo, FieldMut};

/// The XML Schema namespace (`xsd:`).
pub(crate) const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// The XML Schema instance namespace (`xsi:`).
pub(crate) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The SOAP 1.1 envelope namespace.
pub(crate) const SOAPENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The namespace the `xml:` prefix is bound to by definition.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Why a document could not be decoded, and where.
///
/// Decoding never panics on bad input: malformed XML, a truncated document, a value that does
/// not parse as its declared type and an unexpected document shape are all reported here.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    position: u64,
}

#[derive(Clone, Debug, Eq, PartialEq)]
enum DecodeErrorKind {
    Xml(String),
    Truncated,
    BadValue {
        expected: &'static str,
        found: String,
    },
    Unexpected(String),
}

impl DecodeError {
    /// The byte offset in the document where the problem was found.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the document ended before its root element closed (a dropped connection).
    pub fn is_truncated(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::Truncated)
    }

    pub(crate) fn unexpected(what: impl Into<String>, position: u64) -> Self {
        Self {
            kind: DecodeErrorKind::Unexpected(what.into()),
            position,
        }
    }

    #[cold]
    fn xml(what: impl Into<String>, position: usize) -> Self {
        Self {
            kind: DecodeErrorKind::Xml(what.into()),
            position: position as u64,
        }
    }

    #[cold]
    fn truncated(position: usize) -> Self {
        Self {
            kind: DecodeErrorKind::Truncated,
            position: position as u64,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecodeErrorKind::Xml(e) => write!(f, "malformed XML at byte {}: {e}", self.position),
            DecodeErrorKind::Truncated => {
                write!(
                    f,
                    "document ends early (truncated at byte {})",
                    self.position
                )
            }
            DecodeErrorKind::BadValue { expected, found } => {
                let shown: String = found.chars().take(64).collect();
                write!(
                    f,
                    "expected xsd:{expected} at byte {}, found {shown:?}",
                    self.position
                )
            }
            DecodeErrorKind::Unexpected(what) => {
                write!(f, "unexpected {what} at byte {}", self.position)
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Where an `xsi:type` name lives.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum XsiNs {
    /// `http://www.w3.org/2001/XMLSchema`: a primitive.
    Xsd,
    /// A vSphere namespace (`urn:vim25`, `urn:pbm`, ...), or none: a vSphere type.
    Vim,
}

/// A resolved `xsi:type` attribute.
#[derive(Clone, Debug)]
pub struct XsiType<'i> {
    ns: XsiNs,
    local: Cow<'i, str>,
}

impl XsiType<'_> {
    /// The type's local name (`VirtualDisk`, `string`, `ArrayOfInt`).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Whether the type is an XML Schema primitive (`xsd:string`, ...).
    pub fn is_xsd(&self) -> bool {
        self.ns == XsiNs::Xsd
    }
}

/// An element's start tag, as the decoder hands it to a value.
pub struct Start<'i> {
    /// The qualified name (`soapenv:Body`, `val`).
    name: &'i str,
    /// The local part of `name`, computed once.
    local: &'i str,
    empty: bool,
    nil: bool,
    xsi: Option<XsiType<'i>>,
    type_attr: Option<Cow<'i, str>>,
    position: u64,
}

impl fmt::Debug for Start<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Start")
            .field("name", &self.local())
            .field("xsi", &self.xsi)
            .finish_non_exhaustive()
    }
}

impl<'i> Start<'i> {
    /// The element's local name.
    #[inline]
    pub fn local(&self) -> &'i str {
        self.local
    }

    /// The element's `xsi:type`, resolved by namespace.
    #[inline]
    pub fn xsi_type(&self) -> Option<&XsiType<'i>> {
        self.xsi.as_ref()
    }

    /// The unqualified `type` attribute (the managed object type of a reference).
    #[inline]
    pub fn type_attr(&self) -> Option<&str> {
        self.type_attr.as_deref()
    }

    /// Whether the element is self-closing (`<x/>`): it has no content to read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether the element carries `xsi:nil="true"`.
    #[inline]
    pub fn is_nil(&self) -> bool {
        self.nil
    }

    /// The prefix of the element's name (`""` without one).
    fn prefix(&self) -> &'i str {
        self.name.split_once(':').map_or("", |(p, _)| p)
    }
}

/// A namespace binding in scope: `xmlns:prefix="uri"` (`prefix` empty for `xmlns="uri"`).
struct Binding<'i> {
    prefix: &'i str,
    uri: Cow<'i, str>,
    /// The depth of the element that declared it (the root element is 1).
    depth: usize,
}

/// A prefixed `type` or `nil` attribute of the tag being read, resolved once the whole tag
/// (and so every binding it declares) has been read.
#[derive(Clone, Copy)]
struct PendingAttr<'i> {
    prefix: &'i str,
    nil: bool,
    value: &'i str,
    position: usize,
}

/// What `Decoder::markup` found after `<!` or `<?`.
enum Markup<'i> {
    /// A comment, processing instruction or DOCTYPE: nothing to read.
    Skipped,
    /// A CDATA section's content.
    CData(&'i str),
}

/// A pull decoder over one XML document held in memory.
///
/// Namespace bindings (`xmlns`, `xmlns:p`) are kept on a stack as the elements that declare
/// them open and close; names are resolved against it only where the codec needs a namespace:
/// `xsi:type`, `xsi:nil` and the SOAP envelope's own elements.
pub struct Decoder<'i> {
    input: &'i str,
    /// The byte offset of the next unread byte.
    pos: usize,
    /// The qualified names of the open elements, innermost last (end tags must match).
    open: Vec<&'i str>,
    /// The namespace bindings in scope, innermost last.
    bindings: Vec<Binding<'i>>,
    /// Scratch space for the prefixed attributes of one start tag.
    pending: Vec<PendingAttr<'i>>,
}

/// Elements nest at most this deep: vSphere payloads stay far below it, and the limit keeps a
/// hostile document from exhausting the stack of the recursive decoder.
pub const MAX_DEPTH: u32 = 64;

/// Bytes that end a name inside a tag: XML whitespace, `/`, `>` and `=`.
static NAME_END: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'/' as usize] = true;
    t[b'>' as usize] = true;
    t[b'=' as usize] = true;
    t
};

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The character a reference (`amp`, `#38`, `#x26`) stands for.
fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = name.strip_prefix('#')?;
            let (digits, radix) = match num.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (num, 10),
            };
            if digits.starts_with(['+', '-']) {
                return None;
            }
            match u32::from_str_radix(digits, radix) {
                Ok(0) | Err(_) => None,
                Ok(code) => char::from_u32(code),
            }
        }
    }
}

/// Appends `raw` to `out` with references resolved and line ends normalised (XML 1.0: `\r\n`
/// and `\r` become `\n`; in an attribute value every `\t`, `\n`, `\r` becomes a space).
/// `at` is `raw`'s offset in the document, for errors.
fn unescape_into(out: &mut String, raw: &str, attr: bool, at: usize) -> Result<(), DecodeError> {
    let b = raw.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'&' => {
                out.push_str(&raw[last..i]);
                let Some(len) = memchr(b';', &b[i..]) else {
                    return Err(DecodeError::xml("`&` without a closing `;`", at + i));
                };
                let name = &raw[i + 1..i + len];
                let Some(c) = resolve_entity(name) else {
                    return Err(DecodeError::unexpected(
                        format!("entity &{name};"),
                        (at + i) as u64,
                    ));
                };
                out.push(c);
                i += len + 1;
                last = i;
            }
            b'\r' => {
                out.push_str(&raw[last..i]);
                out.push(if attr { ' ' } else { '\n' });
                i += 1;
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
                last = i;
            }
            b'\n' | b'\t' if attr => {
                out.push_str(&raw[last..i]);
                out.push(' ');
                i += 1;
                last = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&raw[last..]);
    Ok(())
}

/// An attribute value, normalised: borrowed unless it holds a reference or a whitespace
/// character other than a space.
#[inline]
fn attr_value(raw: &str, at: usize) -> Result<Cow<'_, str>, DecodeError> {
    if raw
        .bytes()
        .any(|c| matches!(c, b'&' | b'\t' | b'\n' | b'\r'))
    {
        let mut out = String::with_capacity(raw.len());
        unescape_into(&mut out, raw, true, at)?;
        Ok(Cow::Owned(out))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl<'i> Decoder<'i> {
    /// A decoder over `input`.
    pub fn new(input: &'i str) -> Self {
        Self {
            input,
            pos: 0,
            open: Vec::with_capacity(16),
            bindings: Vec::with_capacity(8),
            pending: Vec::with_capacity(4),
        }
    }

    /// The current byte offset.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// An error for a value that does not parse as `xsd:expected`.
    #[cold]
    pub fn bad_value(&self, expected: &'static str, found: &str) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::BadValue {
                expected,
                found: found.to_owned(),
            },
            position: self.position(),
        }
    }

    /// The namespace `prefix` is bound to (`""`: the default namespace), if any.
    #[inline]
    fn resolve(&self, prefix: &str) -> Option<&str> {
        match prefix {
            "xml" => return Some(XML_NS),
            "xmlns" => return None,
            _ => {}
        }
        self.bindings
            .iter()
            .rev()
            .find(|b| b.prefix == prefix)
            .map(|b| &*b.uri)
            .filter(|u| !u.is_empty())
    }

    /// The namespace of `start`'s element name.
    pub(crate) fn element_ns(&self, start: &Start<'_>) -> Option<&str> {
        self.resolve(start.prefix())
    }

    /// Drops the bindings of elements deeper than `depth` (closed, or empty elements).
    #[inline]
    fn pop_bindings(&mut self, depth: usize) {
        while self.bindings.last().is_some_and(|b| b.depth > depth) {
            self.bindings.pop();
        }
    }

    /// The offset of the next `<` at or after the current position.
    #[inline]
    fn next_lt(&mut self) -> Result<usize, DecodeError> {
        if let Some(off) = memchr(b'<', &self.input.as_bytes()[self.pos..]) {
            Ok(self.pos + off)
        } else {
            self.pos = self.input.len();
            Err(DecodeError::truncated(self.pos))
        }
    }

    /// Reads the start tag at `lt` (`<name attr="v" ...>` or `.../>`); a non-empty element is
    /// opened.
    fn start_tag(&mut self, lt: usize) -> Result<Start<'i>, DecodeError> {
        let input = self.input;
        let b = input.as_bytes();
        let len = b.len();
        let mut i = lt + 1;
        while i < len && !NAME_END[usize::from(b[i])] {
            i += 1;
        }
        if i >= len {
            return Err(DecodeError::truncated(len));
        }
        let name = &input[lt + 1..i];
        if name.is_empty() {
            return Err(DecodeError::xml("a tag without a name", lt));
        }
        let local = match memchr::memrchr(b':', name.as_bytes()) {
            Some(c) => &name[c + 1..],
            None => name,
        };
        let parent_depth = self.open.len();
        self.pop_bindings(parent_depth);
        let depth = parent_depth + 1;
        self.pending.clear();
        let mut type_attr = None;
        let empty = loop {
            while i < len && is_ws(b[i]) {
                i += 1;
            }
            if i >= len {
                return Err(DecodeError::truncated(len));
            }
            match b[i] {
                b'>' => {
                    i += 1;
                    break false;
                }
                b'/' => match b.get(i + 1) {
                    Some(b'>') => {
                        i += 2;
                        break true;
                    }
                    Some(_) => return Err(DecodeError::xml(format!("`/` inside <{name}>"), i)),
                    None => return Err(DecodeError::truncated(len)),
                },
                _ => {}
            }
            let at = i;
            while i < len && !NAME_END[usize::from(b[i])] {
                i += 1;
            }
            let key = &input[at..i];
            if key.is_empty() {
                return Err(DecodeError::xml(
                    format!("an attribute without a name in <{name}>"),
                    at,
                ));
            }
            while i < len && is_ws(b[i]) {
                i += 1;
            }
            if i >= len {
                return Err(DecodeError::truncated(len));
            }
            if b[i] != b'=' {
                return Err(DecodeError::xml(
                    format!("attribute {key} without a value in <{name}>"),
                    at,
                ));
            }
            i += 1;
            while i < len && is_ws(b[i]) {
                i += 1;
            }
            if i >= len {
                return Err(DecodeError::truncated(len));
            }
            let quote = b[i];
            if quote != b'"' && quote != b'\'' {
                return Err(DecodeError::xml(
                    format!("the value of attribute {key} is not quoted"),
                    i,
                ));
            }
            let vstart = i + 1;
            let Some(vlen) = memchr(quote, &b[vstart..]) else {
                return Err(DecodeError::truncated(len));
            };
            let value = &input[vstart..vstart + vlen];
            i = vstart + vlen + 1;
            match memchr(b':', key.as_bytes()) {
                Some(c) => {
                    let (prefix, attr_local) = (&key[..c], &key[c + 1..]);
                    if prefix == "xmlns" {
                        self.bind(attr_local, value, depth, at)?;
                    } else if attr_local == "type" || attr_local == "nil" {
                        self.pending.push(PendingAttr {
                            prefix,
                            nil: attr_local == "nil",
                            value,
                            position: vstart,
                        });
                    }
                }
                None if key == "xmlns" => self.bind("", value, depth, at)?,
                None if key == "type" => type_attr = Some(attr_value(value, vstart)?),
                None => {}
            }
        };
        let position = lt as u64;
        self.pos = i;
        let mut xsi = None;
        let mut nil = false;
        for k in 0..self.pending.len() {
            let p = self.pending[k];
            if self.resolve(p.prefix) != Some(XSI_NS) {
                continue;
            }
            let value = attr_value(p.value, p.position)?;
            if p.nil {
                nil = matches!(value.trim(), "true" | "1");
            } else {
                xsi = Some(self.xsi_type(value));
            }
        }
        if !empty {
            if parent_depth >= MAX_DEPTH as usize {
                return Err(DecodeError::unexpected(
                    format!("nesting deeper than {MAX_DEPTH} elements"),
                    position,
                ));
            }
            self.open.push(name);
        }
        Ok(Start {
            name,
            local,
            empty,
            nil,
            xsi,
            type_attr,
            position,
        })
    }

    /// Records `xmlns:prefix="value"` (`prefix` empty: `xmlns="value"`) for the element at
    /// `depth`.
    fn bind(
        &mut self,
        prefix: &'i str,
        value: &'i str,
        depth: usize,
        at: usize,
    ) -> Result<(), DecodeError> {
        let uri = attr_value(value, at)?;
        let bad = match prefix {
            "xmlns" => true,
            "xml" => uri != XML_NS,
            "" => false,
            _ => uri.is_empty() || uri == XML_NS,
        };
        if bad {
            return Err(DecodeError::xml(
                format!("the namespace binding of prefix {prefix:?} to {uri:?} is not allowed"),
                at,
            ));
        }
        self.bindings.push(Binding { prefix, uri, depth });
        Ok(())
    }

    /// Resolves the value of an `xsi:type` attribute (`xsd:string`, `vim25:VirtualDisk`,
    /// `VirtualDisk`: no prefix means the default namespace).
    fn xsi_type(&self, value: Cow<'i, str>) -> XsiType<'i> {
        fn split(v: &str) -> (&str, &str) {
            v.trim().split_once(':').unwrap_or(("", v.trim()))
        }
        let ns = |prefix: &str| match self.resolve(prefix) {
            Some(XSD_NS) => XsiNs::Xsd,
            _ => XsiNs::Vim,
        };
        match value {
            Cow::Borrowed(v) => {
                let (prefix, local) = split(v);
                XsiType {
                    ns: ns(prefix),
                    local: Cow::Borrowed(local),
                }
            }
            Cow::Owned(v) => {
                let (prefix, local) = split(&v);
                XsiType {
                    ns: ns(prefix),
                    local: Cow::Owned(local.to_owned()),
                }
            }
        }
    }

    /// Reads the end tag at `lt`, which must close the innermost open element.
    #[inline]
    fn end_tag(&mut self, lt: usize) -> Result<(), DecodeError> {
        let input = self.input;
        let b = input.as_bytes();
        let from = lt + 2;
        let Some(&expected) = self.open.last() else {
            return Err(self.stray_end(lt));
        };
        if b.get(from..)
            .is_some_and(|r| r.starts_with(expected.as_bytes()))
        {
            let mut i = from + expected.len();
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            match b.get(i) {
                Some(b'>') => {
                    self.pos = i + 1;
                    self.open.pop();
                    let depth = self.open.len();
                    self.pop_bindings(depth);
                    return Ok(());
                }
                None => return Err(DecodeError::truncated(b.len())),
                Some(_) => {}
            }
        }
        Err(self.stray_end(lt))
    }

    /// The error for an end tag at `lt` that does not close the innermost open element.
    #[cold]
    fn stray_end(&self, lt: usize) -> DecodeError {
        let rest = &self.input[lt + 2..];
        let Some(gt) = memchr(b'>', rest.as_bytes()) else {
            return DecodeError::truncated(self.input.len());
        };
        let found = rest[..gt].trim_end();
        match self.open.last() {
            Some(open) => {
                DecodeError::xml(format!("end tag </{found}> where </{open}> belongs"), lt)
            }
            None => DecodeError::xml(format!("end tag </{found}> without a start tag"), lt),
        }
    }

    /// Reads the `<!...>` or `<?...?>` markup at `lt`.
    fn markup(&mut self, lt: usize) -> Result<Markup<'i>, DecodeError> {
        let input = self.input;
        let b = input.as_bytes();
        let rest = &b[lt..];
        let find = |from: usize, pat: &[u8]| {
            memmem::find(&b[from..], pat)
                .map(|off| from + off)
                .ok_or_else(|| DecodeError::truncated(b.len()))
        };
        if rest.starts_with(b"<!--") {
            let end = find(lt + 4, b"-->")?;
            self.pos = end + 3;
            Ok(Markup::Skipped)
        } else if rest.starts_with(b"<![CDATA[") {
            let end = find(lt + 9, b"]]>")?;
            self.pos = end + 3;
            Ok(Markup::CData(&input[lt + 9..end]))
        } else if rest.starts_with(b"<?") {
            let end = find(lt + 2, b"?>")?;
            self.pos = end + 2;
            Ok(Markup::Skipped)
        } else {
            // `<!DOCTYPE ...>`, possibly with an internal subset in brackets.
            let mut nest = 0usize;
            let mut quote = None;
            for (off, &c) in rest.iter().enumerate().skip(2) {
                match (quote, c) {
                    (Some(q), _) if c == q => quote = None,
                    (None, b'"' | b'\'') => quote = Some(c),
                    (None, b'[') => nest += 1,
                    (None, b']') => nest = nest.saturating_sub(1),
                    (None, b'>') if nest == 0 => {
                        self.pos = lt + off + 1;
                        return Ok(Markup::Skipped);
                    }
                    _ => {}
                }
            }
            Err(DecodeError::truncated(b.len()))
        }
    }

    /// The next child element of the element being read, or `None` at its end tag.
    ///
    /// Text, comments and CDATA between child elements are skipped.
    pub fn next_child(&mut self) -> Result<Option<Start<'i>>, DecodeError> {
        loop {
            let lt = self.next_lt()?;
            let input = self.input;
            match input.as_bytes().get(lt + 1) {
                Some(b'/') => {
                    self.end_tag(lt)?;
                    return Ok(None);
                }
                Some(b'!' | b'?') => {
                    self.markup(lt)?;
                }
                Some(_) => return self.start_tag(lt).map(Some),
                None => return Err(DecodeError::truncated(input.len())),
            }
        }
    }

    /// Reads the text content of `start` up to its end tag, entities resolved.
    ///
    /// A child element inside is an error: the schema declares a simple value here.
    #[inline]
    pub fn read_text(&mut self, start: &Start<'_>) -> Result<Cow<'i, str>, DecodeError> {
        if start.empty {
            return Ok(Cow::Borrowed(""));
        }
        let input = self.input;
        let b = input.as_bytes();
        if let Some(off) = memchr(b'<', &b[self.pos..]) {
            let lt = self.pos + off;
            let raw = &input[self.pos..lt];
            if b.get(lt + 1) == Some(&b'/') && memchr2(b'&', b'\r', raw.as_bytes()).is_none() {
                self.end_tag(lt)?;
                return Ok(Cow::Borrowed(raw));
            }
        }
        self.read_text_slow(start).map(Cow::Owned)
    }

    /// `read_text` for text with references, CDATA, comments or carriage returns.
    #[cold]
    fn read_text_slow(&mut self, start: &Start<'_>) -> Result<String, DecodeError> {
        let mut out = String::new();
        loop {
            let lt = self.next_lt()?;
            let input = self.input;
            unescape_into(&mut out, &input[self.pos..lt], false, self.pos)?;
            self.pos = lt;
            match input.as_bytes().get(lt + 1) {
                Some(b'/') => {
                    self.end_tag(lt)?;
                    return Ok(out);
                }
                Some(b'!' | b'?') => {
                    if let Markup::CData(c) = self.markup(lt)? {
                        unescape_cdata(&mut out, c);
                    }
                }
                Some(_) => {
                    return Err(DecodeError::unexpected(
                        format!("element inside the text of <{}>", start.local()),
                        lt as u64,
                    ));
                }
                None => return Err(DecodeError::truncated(input.len())),
            }
        }
    }

    /// Skips `start`'s content up to its end tag.
    pub fn skip(&mut self, start: &Start<'_>) -> Result<(), DecodeError> {
        if start.empty {
            return Ok(());
        }
        let target = self.open.len().saturating_sub(1);
        loop {
            let lt = self.next_lt()?;
            let input = self.input;
            match input.as_bytes().get(lt + 1) {
                Some(b'/') => {
                    self.end_tag(lt)?;
                    if self.open.len() <= target {
                        return Ok(());
                    }
                }
                Some(b'!' | b'?') => {
                    self.markup(lt)?;
                }
                Some(_) => {
                    self.start_tag(lt)?;
                }
                None => return Err(DecodeError::truncated(input.len())),
            }
        }
    }

    /// Reads `start` to its end tag and returns the element's raw XML, tags included.
    pub fn raw(&mut self, start: &Start<'_>) -> Result<String, DecodeError> {
        self.skip(start)?;
        let from = usize::try_from(start.position).unwrap_or(usize::MAX);
        let raw = self.input.get(from..self.pos).unwrap_or_default();
        Ok(raw.trim_start().to_owned())
    }
}

/// Appends CDATA content with line ends normalised (references are not resolved in CDATA).
fn unescape_cdata(out: &mut String, raw: &str) {
    let mut rest = raw;
    while let Some(i) = memchr(b'\r', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = rest[i + 1..].strip_prefix('\n').unwrap_or(&rest[i + 1..]);
    }
    out.push_str(rest);
}

/// Decodes the content of `start` into `object`, property by property.
///
/// Properties are matched by element name against the type's descriptor, expecting schema
/// order but accepting any; unknown elements are skipped (forward compatibility).
pub fn decode_object(
    d: &mut Decoder<'_>,
    start: &Start<'_>,
    _field: &FieldInfo,
    object: &mut dyn DataObject,
) -> Result<(), DecodeError> {
    if start.empty {
        return Ok(());
    }
    let fields = object.type_info().all_fields();
    let mut cursor = 0;
    while let Some(child) = d.next_child()? {
        let found = find_field(fields, cursor, child.local());
        let Some(i) = found else {
            d.skip(&child)?;
            continue;
        };
        cursor = i;
        if child.nil {
            d.skip(&child)?;
            continue;
        }
        let f = fields[i];
        match object.field_mut(i) {
            FieldMut::One(s) => s.decode(d, &child, f)?,
            FieldMut::Opt(s) => s.decode(d, &child, f)?,
            FieldMut::Many(s) => s.decode(d, &child, f)?,
        }
    }
    Ok(())
}

/// The index of the property called `name`, searched from `cursor` (the previous property's
/// index: the wire sends properties in schema order) to the end, then from the start.
#[inline]
fn find_field(fields: &[&FieldInfo], cursor: usize, name: &str) -> Option<usize> {
    let (before, from) = fields.split_at(cursor.min(fields.len()));
    if let Some(i) = from.iter().position(|f| f.name == name) {
        return Some(cursor + i);
    }
    before.iter().position(|f| f.name == name)
}

/// The body of a SOAP response: a result, or a fault.
pub(crate) enum Body {
    /// The body's element (`<XxxResponse>`, or a request's method), positioned before its
    /// first child; its local name.
    Response(String),
    /// `<soapenv:Fault>`, decoded.
    Fault(super::SoapFault),
}

/// Decodes a SOAP response envelope into `result` (each `<returnval>` goes into the slot; `None`
/// for a void method), or returns the SOAP fault it carries.
pub fn decode_response(
    body: &str,
    result: Option<(&FieldInfo, FieldMut<'_>)>,
) -> Result<(), super::ResponseError> {
    let mut d = Decoder::new(body);
    match open_body(&mut d)? {
        Body::Fault(fault) => Err(super::ResponseError::Fault(Box::new(fault))),
        Body::Response(_) => {
            let mut result = result;
            while let Some(child) = d.next_child()? {
                match (&mut result, child.local()) {
                    (Some((f, slot)), "returnval") => match slot {
                        FieldMut::One(s) => s.decode(&mut d, &child, f)?,
                        FieldMut::Opt(s) => s.decode(&mut d, &child, f)?,
                        FieldMut::Many(s) => s.decode(&mut d, &child, f)?,
                    },
                    _ => d.skip(&child)?,
                }
            }
            close_envelope(&mut d)?;
            Ok(())
        }
    }
}

/// Reads `<Envelope>`, skips `<Header>`, enters `<Body>` and its first element.
pub(crate) fn open_body(d: &mut Decoder<'_>) -> Result<Body, DecodeError> {
    let Some(envelope) = d.next_child()? else {
        return Err(DecodeError::unexpected("no root element", d.position()));
    };
    if envelope.empty {
        return Err(DecodeError::unexpected("empty envelope", envelope.position));
    }
    if envelope.local() != "Envelope" {
        return Err(DecodeError::unexpected(
            format!("<{}> where a SOAP Envelope belongs", envelope.local()),
            envelope.position,
        ));
    }
    loop {
        let Some(child) = d.next_child()? else {
            return Err(DecodeError::unexpected(
                "envelope without a Body",
                d.position(),
            ));
        };
        if child.local() != "Body" {
            d.skip(&child)?;
            continue;
        }
        let Some(inner) = d.next_child()? else {
            return Err(DecodeError::unexpected("empty SOAP Body", d.position()));
        };
        let is_fault = inner.local() == "Fault" && d.element_ns(&inner) == Some(SOAPENV_NS);
        if is_fault {
            return super::any::read_fault(d, &inner).map(Body::Fault);
        }
        if inner.empty {
            return Err(DecodeError::unexpected(
                format!("empty <{}>", inner.local()),
                inner.position,
            ));
        }
        return Ok(Body::Response(inner.local().to_owned()));
    }
}

/// After the response element's end tag: the closing `Body` and `Envelope` tags.
pub(crate) fn close_envelope(d: &mut Decoder<'_>) -> Result<(), DecodeError> {
    // </Body>: extra elements after the response are skipped.
    while let Some(extra) = d.next_child()? {
        d.skip(&extra)?;
    }
    // </Envelope>: a trailing Header-like element is skipped too.
    while let Some(extra) = d.next_child()? {
        d.skip(&extra)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The tokenizer against quick-xml's `NsReader` (the reader the decoder was first built on):
    //! both flatten a document to the same lines (element namespace and local name, resolved
    //! `xsi:type`, `type`, `xsi:nil`, text with references resolved), on the fixture corpus and
    //! on mutations of it.

    use std::fmt::Write as _;

    use proptest::prelude::*;
    use quick_xml::events::Event;
    use quick_xml::name::{QName, ResolveResult};
    use quick_xml::reader::NsReader;

    use super::{Decoder, Markup, XSI_NS, XsiNs, unescape_into};

    fn flush(text: &mut String, out: &mut Vec<String>) {
        if !text.trim().is_empty() {
            out.push(format!("T {text}"));
        }
        text.clear();
    }

    /// The document as lines, read by this module's tokenizer.
    fn ours(input: &str) -> Result<Vec<String>, String> {
        let mut d = Decoder::new(input);
        let mut out = Vec::new();
        let mut text = String::new();
        let mut started = false;
        loop {
            let lt = d.next_lt().map_err(|e| e.to_string())?;
            unescape_into(&mut text, &input[d.pos..lt], false, d.pos).map_err(|e| e.to_string())?;
            d.pos = lt;
            match input.as_bytes().get(lt + 1) {
                Some(b'/') => {
                    d.end_tag(lt).map_err(|e| e.to_string())?;
                    flush(&mut text, &mut out);
                    out.push("E".into());
                }
                Some(b'!' | b'?') => {
                    if let Markup::CData(c) = d.markup(lt).map_err(|e| e.to_string())? {
                        super::unescape_cdata(&mut text, c);
                    }
                }
                Some(_) => {
                    let s = d.start_tag(lt).map_err(|e| e.to_string())?;
                    flush(&mut text, &mut out);
                    let mut line = format!("S {}|{}", d.element_ns(&s).unwrap_or(""), s.local());
                    if let Some(x) = s.xsi_type() {
                        let ns = if x.ns == XsiNs::Xsd { "xsd" } else { "vim" };
                        write!(line, " xsi={ns}:{}", x.local()).unwrap();
                    }
                    if let Some(t) = s.type_attr() {
                        write!(line, " type={t}").unwrap();
                    }
                    if s.is_nil() {
                        line.push_str(" nil");
                    }
                    out.push(line);
                    started = true;
                    if s.is_empty() {
                        out.push("E".into());
                    }
                }
                None => return Err("truncated".into()),
            }
            if started && d.open.is_empty() {
                return Ok(out);
            }
        }
    }

    /// The document as lines, read by quick-xml's `NsReader`.
    fn quick(input: &str) -> Result<Vec<String>, String> {
        let mut reader = NsReader::from_str(input);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        let mut out = Vec::new();
        let mut text = String::new();
        let mut depth = 0usize;
        loop {
            let (ns, ev) = reader.read_resolved_event().map_err(|e| e.to_string())?;
            let ns = match ns {
                // A namespace name is the attribute value after normalisation (XML 1.0
                // section 3.3.3: a line break or tab becomes a space, then references are
                // expanded; XML Names 1.0); quick-xml reports it raw, so normalise it here
                // before comparing.
                ResolveResult::Bound(n) => {
                    let raw = n.0.replace("\r\n", " ").replace(['\r', '\n', '\t'], " ");
                    quick_xml::escape::unescape(&raw)
                        .map_or(raw.clone(), std::borrow::Cow::into_owned)
                }
                _ => String::new(),
            };
            match ev {
                Event::Start(ref tag) | Event::Empty(ref tag) => {
                    flush(&mut text, &mut out);
                    let name = tag.name();
                    let local = name.0.rsplit(':').next().unwrap_or(name.0);
                    let mut line = format!("S {ns}|{local}");
                    let (mut xsi, mut ty, mut nil) = (None, None, false);
                    for attr in tag.attributes().with_checks(false) {
                        let attr = attr.map_err(|e| e.to_string())?;
                        let key = attr.key.0;
                        let value = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| e.to_string())?;
                        match key.split_once(':') {
                            None if key == "type" => ty = Some(value.into_owned()),
                            Some((prefix, local_name)) if prefix != "xmlns" => {
                                let (ans, _) = reader.resolver().resolve_attribute(attr.key);
                                if !matches!(ans, ResolveResult::Bound(n) if n.0 == XSI_NS) {
                                    continue;
                                }
                                if local_name == "type" {
                                    let (tns, tl) =
                                        reader.resolver().resolve_element(QName(value.trim()));
                                    let tns = match tns {
                                        ResolveResult::Bound(n) if n.0 == super::XSD_NS => "xsd",
                                        _ => "vim",
                                    };
                                    xsi = Some(format!("{tns}:{}", tl.as_ref()));
                                } else if local_name == "nil" {
                                    nil = matches!(value.trim(), "true" | "1");
                                }
                            }
                            _ => {}
                        }
                    }
                    if let Some(x) = xsi {
                        write!(line, " xsi={x}").unwrap();
                    }
                    if let Some(ty) = ty {
                        write!(line, " type={ty}").unwrap();
                    }
                    if nil {
                        line.push_str(" nil");
                    }
                    out.push(line);
                    if matches!(ev, Event::Empty(_)) {
                        out.push("E".into());
                        if depth == 0 {
                            return Ok(out);
                        }
                    } else {
                        depth += 1;
                    }
                }
                Event::End(_) => {
                    flush(&mut text, &mut out);
                    out.push("E".into());
                    depth = depth.checked_sub(1).ok_or("stray end tag")?;
                    if depth == 0 {
                        return Ok(out);
                    }
                }
                Event::Text(t) => text.push_str(&t.xml10_content()),
                Event::CData(c) => text.push_str(&c.xml10_content()),
                Event::GeneralRef(g) => {
                    let c = super::resolve_entity(&g).ok_or("unknown entity")?;
                    text.push(c);
                }
                Event::Eof => return Err("truncated".into()),
                _ => {}
            }
        }
    }

    fn corpus() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut docs = vec![std::fs::read_to_string(dir.join("rpex-quirks.soap.xml")).unwrap()];
        for e in std::fs::read_dir(dir.join("govmomi")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "xml") {
                docs.push(std::fs::read_to_string(p).unwrap());
            }
        }
        docs
    }

    #[test]
    fn the_corpus_reads_as_quick_xml_reads_it() {
        let docs = corpus();
        assert!(docs.len() >= 3);
        for doc in &docs {
            let a = ours(doc).unwrap();
            let b = quick(doc).unwrap();
            assert!(a.len() > 20, "{a:?}");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn markup_edge_cases_read_as_quick_xml_reads_them() {
        let cases = [
            r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r a='1'><!-- c --><x>a&amp;b&#x41;&#66;<![CDATA[<&>]]>c</x ></r>"#,
            "<r xmlns:p=\"urn:q\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><p:a i:type=\" p:T \"/><b i:nil=\"1\">x\r\ny\rz</b></r>",
            r#"<r xmlns="urn:vim25" xmlns:s="http://www.w3.org/2001/XMLSchema"><v xmlns:X="http://www.w3.org/2001/XMLSchema-instance" X:type="s:int" type="a&amp;b	c">1</v><w X:type="s:int"/></r>"#,
            r#"<r><a xmlns="http://www.w3.org/2001/XMLSchema" xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="string"/><b i:type="string"/></r>"#,
            // A line break inside a namespace name is normalised to a space (found by the
            // mutation test below).
            "<r xmlns=\"\r\nurn:vim25\"><a xmlns:p=\"urn:\tq\rx\"><p:b/></a></r>",
        ];
        for doc in cases {
            assert_eq!(ours(doc).unwrap(), quick(doc).unwrap(), "{doc}");
        }
        for bad in [
            "<r></s>",
            "<r><a></r>",
            "</r>",
            "<r",
            "<r a>",
            "<r a=b>",
            "<r>&bogus;</r>",
            "",
        ] {
            assert!(ours(bad).is_err(), "{bad}");
            assert!(quick(bad).is_err(), "{bad}");
        }
    }

    const FRAGMENTS: &[&str] = &[
        "<",
        ">",
        "</",
        "/>",
        "&amp;",
        "&#x0;",
        "&#65;",
        "&bogus;",
        "<![CDATA[x]]>",
        "<!-- c -->",
        "<?pi x?>",
        "\r\n",
        "\r",
        r#" xsi:type="xsd:int""#,
        r#" xsi:type="nope:Thing""#,
        r#" xsi:nil="true""#,
        r#" xmlns:xsi="urn:other""#,
        r#" xmlns="urn:x""#,
        r#" type="Folder""#,
        "<a/>",
        "<b>t</b>",
        "'",
        "\"",
        "=",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// Wherever both readers accept a mutated document, they read the same thing.
        #[test]
        fn mutations_read_as_quick_xml_reads_them(
            doc in 0usize..16,
            edits in prop::collection::vec((any::<usize>(), 0usize..FRAGMENTS.len()), 1..5),
            cut in any::<usize>(),
            do_cut in any::<bool>(),
        ) {
            let docs = corpus();
            let mut s = docs[doc % docs.len()].clone();
            for (at, f) in edits {
                let mut at = at % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, FRAGMENTS[f]);
            }
            if do_cut {
                let mut at = cut % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.truncate(at);
            }
            if let (Ok(a), Ok(b)) = (ours(&s), quick(&s)) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
