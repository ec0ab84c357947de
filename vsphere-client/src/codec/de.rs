//! The decoder: quick-xml's namespace-aware reader driven by the descriptor tables.

use std::borrow::Cow;
use std::fmt;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, QName, ResolveResult};
use quick_xml::reader::Reader;

use super::{DataObject, FieldInfo, FieldMut};

/// The XML Schema namespace (`xsd:`).
pub(crate) const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// The XML Schema instance namespace (`xsi:`).
pub(crate) const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The SOAP 1.1 envelope namespace.
pub(crate) const SOAPENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

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
pub struct XsiType {
    ns: XsiNs,
    local: String,
}

impl XsiType {
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
    tag: BytesStart<'i>,
    empty: bool,
    nil: bool,
    xsi: Option<XsiType>,
    type_attr: Option<String>,
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

impl Start<'_> {
    /// The element's local name.
    pub fn local(&self) -> &str {
        let name = self.tag.name();
        let full: &str = name.0;
        match full.rfind(':') {
            Some(i) => &full[i + 1..],
            None => full,
        }
    }

    /// The element's `xsi:type`, resolved by namespace.
    pub fn xsi_type(&self) -> Option<&XsiType> {
        self.xsi.as_ref()
    }

    /// The unqualified `type` attribute (the managed object type of a reference).
    pub fn type_attr(&self) -> Option<&str> {
        self.type_attr.as_deref()
    }

    /// Whether the element is self-closing (`<x/>`): it has no content to read.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether the element carries `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        self.nil
    }
}

/// A pull decoder over one XML document held in memory.
///
/// Namespaces are resolved with quick-xml's [`NamespaceResolver`], fed only by the elements that
/// declare bindings (`xmlns`, `xmlns:p`): most elements of a SOAP body declare none, and skipping
/// the per-element scope bookkeeping of quick-xml's `NsReader` makes the reader about a fifth
/// faster. Names are resolved against the same bindings an `NsReader` would hold.
pub struct Decoder<'i> {
    reader: Reader<&'i [u8]>,
    ns: NamespaceResolver,
    /// The depths of the open elements that declared namespace bindings, innermost last.
    ns_scopes: Vec<u32>,
    /// The last event was an empty element that declared bindings: drop them before the next.
    pending_pop: bool,
    input: &'i str,
    text: String,
    depth: u32,
}

/// Whether a start tag may declare namespace bindings (a false positive only costs an empty
/// scope).
fn declares_ns(tag: &BytesStart<'_>) -> bool {
    let raw = tag.attributes_raw();
    !raw.is_empty() && raw.contains("xmlns")
}

/// Elements nest at most this deep: vSphere payloads stay far below it, and the limit keeps a
/// hostile document from exhausting the stack of the recursive decoder.
pub const MAX_DEPTH: u32 = 64;

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
        let mut reader = Reader::from_str(input);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self {
            reader,
            ns: NamespaceResolver::default(),
            ns_scopes: Vec::new(),
            pending_pop: false,
            input,
            text: String::new(),
            depth: 0,
        }
    }

    /// The current byte offset.
    pub fn position(&self) -> u64 {
        self.reader.buffer_position()
    }

    fn xml_error(&self, e: &quick_xml::Error) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::Xml(e.to_string()),
            position: self.reader.error_position(),
        }
    }

    fn truncated(&self) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::Truncated,
            position: self.position(),
        }
    }

    /// An error for a value that does not parse as `xsd:expected`.
    pub fn bad_value(&self, expected: &'static str, found: &str) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::BadValue {
                expected,
                found: found.to_owned(),
            },
            position: self.position(),
        }
    }

    fn read(&mut self) -> Result<Event<'i>, DecodeError> {
        if self.pending_pop {
            self.ns.pop();
            self.pending_pop = false;
        }
        match self.reader.read_event() {
            Ok(Event::Eof) => Err(self.truncated()),
            Ok(ev) => {
                match &ev {
                    Event::Start(tag) => {
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return Err(DecodeError::unexpected(
                                format!("nesting deeper than {MAX_DEPTH} elements"),
                                self.position(),
                            ));
                        }
                        if declares_ns(tag) {
                            self.push_ns(tag)?;
                            self.ns_scopes.push(self.depth);
                        }
                    }
                    Event::Empty(tag) if declares_ns(tag) => {
                        self.push_ns(tag)?;
                        self.pending_pop = true;
                    }
                    Event::End(_) => {
                        if self.ns_scopes.last() == Some(&self.depth) {
                            self.ns_scopes.pop();
                            self.ns.pop();
                        }
                        self.depth = self.depth.saturating_sub(1);
                    }
                    _ => {}
                }
                Ok(ev)
            }
            Err(e) => Err(self.xml_error(&e)),
        }
    }

    fn push_ns(&mut self, tag: &BytesStart<'_>) -> Result<(), DecodeError> {
        self.ns
            .push(tag)
            .map_err(|e| self.xml_error(&quick_xml::Error::from(e)))
    }

    fn start(
        &self,
        tag: BytesStart<'i>,
        empty: bool,
        position: u64,
    ) -> Result<Start<'i>, DecodeError> {
        let mut xsi = None;
        let mut type_attr = None;
        let mut nil = false;
        for attr in tag.attributes().with_checks(false) {
            let attr = attr.map_err(|e| self.xml_error(&e.into()))?;
            let key = attr.key;
            let (prefix, local) = match key.0.split_once(':') {
                Some((p, l)) => (Some(p), l),
                None => (None, key.0),
            };
            if prefix == Some("xmlns") || key.0 == "xmlns" {
                continue;
            }
            if prefix.is_none() {
                if local == "type" {
                    type_attr = Some(self.attr_value(&attr)?.into_owned());
                }
                continue;
            }
            let (ns, _) = self.ns.resolve_attribute(key);
            if !matches!(ns, ResolveResult::Bound(n) if n.0 == XSI_NS) {
                continue;
            }
            match local {
                "type" => {
                    let value = self.attr_value(&attr)?;
                    let (ns, name) = self.ns.resolve_element(QName(value.trim()));
                    let ns = match ns {
                        ResolveResult::Bound(n) if n.0 == XSD_NS => XsiNs::Xsd,
                        _ => XsiNs::Vim,
                    };
                    xsi = Some(XsiType {
                        ns,
                        local: name.as_ref().to_owned(),
                    });
                }
                "nil" => nil = matches!(self.attr_value(&attr)?.trim(), "true" | "1"),
                _ => {}
            }
        }
        Ok(Start {
            tag,
            empty,
            nil,
            xsi,
            type_attr,
            position,
        })
    }

    fn attr_value<'a>(
        &self,
        attr: &'a quick_xml::events::attributes::Attribute<'a>,
    ) -> Result<Cow<'a, str>, DecodeError> {
        attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| self.xml_error(&e))
    }

    /// The next child element of the element being read, or `None` at its end tag.
    ///
    /// Text and comments between child elements are skipped.
    pub fn next_child(&mut self) -> Result<Option<Start<'i>>, DecodeError> {
        loop {
            let position = self.position();
            match self.read()? {
                Event::Start(tag) => return self.start(tag, false, position).map(Some),
                Event::Empty(tag) => return self.start(tag, true, position).map(Some),
                Event::End(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Reads the text content of `start` up to its end tag, entities resolved.
    ///
    /// A child element inside is an error: the schema declares a simple value here.
    pub fn read_text(&mut self, start: &Start<'_>) -> Result<Cow<'i, str>, DecodeError> {
        if start.empty {
            return Ok(Cow::Borrowed(""));
        }
        let mut first: Option<Cow<'i, str>> = None;
        let mut owned = false;
        self.text.clear();
        loop {
            match self.read()? {
                Event::Text(t) => {
                    let content = t.xml10_content();
                    if first.is_none() && !owned {
                        first = Some(content);
                    } else {
                        if let Some(f) = first.take() {
                            self.text.push_str(&f);
                        }
                        owned = true;
                        self.text.push_str(&content);
                    }
                }
                Event::CData(c) => {
                    if let Some(f) = first.take() {
                        self.text.push_str(&f);
                    }
                    owned = true;
                    self.text.push_str(&c.xml10_content());
                }
                Event::GeneralRef(r) => {
                    if let Some(f) = first.take() {
                        self.text.push_str(&f);
                    }
                    owned = true;
                    let resolved = match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => match r.resolve_char_ref() {
                            Ok(Some(c)) => c,
                            _ => {
                                return Err(DecodeError::unexpected(
                                    format!("entity &{};", &*r),
                                    self.position(),
                                ));
                            }
                        },
                    };
                    self.text.push(resolved);
                }
                Event::End(_) => break,
                Event::Start(_) | Event::Empty(_) => {
                    return Err(DecodeError::unexpected(
                        format!("element inside the text of <{}>", start.local()),
                        self.position(),
                    ));
                }
                _ => {}
            }
        }
        Ok(if owned {
            Cow::Owned(self.text.clone())
        } else {
            first.unwrap_or(Cow::Borrowed(""))
        })
    }

    /// Skips `start`'s content up to its end tag.
    pub fn skip(&mut self, start: &Start<'_>) -> Result<(), DecodeError> {
        if start.empty {
            return Ok(());
        }
        let mut depth = 0usize;
        loop {
            match self.read()? {
                Event::Start(_) => depth += 1,
                Event::End(_) => {
                    if depth == 0 {
                        return Ok(());
                    }
                    depth -= 1;
                }
                _ => {}
            }
        }
    }

    /// Reads `start` to its end tag and returns the element's raw XML, tags included.
    pub fn raw(&mut self, start: &Start<'_>) -> Result<String, DecodeError> {
        self.skip(start)?;
        let from = usize::try_from(start.position).unwrap_or(usize::MAX);
        let to = usize::try_from(self.position()).unwrap_or(usize::MAX);
        let raw = self.input.get(from..to).unwrap_or_default();
        Ok(raw.trim_start().to_owned())
    }
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
    let envelope = loop {
        let position = d.position();
        match d.read()? {
            Event::Start(tag) => break d.start(tag, false, position)?,
            Event::Empty(_) => return Err(DecodeError::unexpected("empty envelope", position)),
            _ => {}
        }
    };
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
        let (ns, _) = d.ns.resolve_element(inner.tag.name());
        let is_fault =
            inner.local() == "Fault" && matches!(ns, ResolveResult::Bound(n) if n.0 == SOAPENV_NS);
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
