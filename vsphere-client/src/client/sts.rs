//! SAML bearer tokens from vCenter's Security Token Service (STS) and `LoginByToken`.
//!
//! [`StsClient::issue`] sends a WS-Trust 1.3 `RequestSecurityToken` (`Issue`, `KeyType`
//! Bearer, the user name and password in a WS-Security `UsernameToken`) to the STS
//! (`https://vc/sts/STSService/vsphere.local`), and takes the signed `saml2:Assertion` out of
//! the `RequestSecurityTokenResponse` verbatim. [`Client::login_by_token`](super::Client::login_by_token)
//! (or [`ConnectOptions::login_by_token`](super::ConnectOptions::login_by_token), which also
//! renews the session with a fresh token when it expires) then calls `LoginByToken` with the
//! assertion in the WS-Security header of that one request.
//!
//! The token is a secret: [`SamlToken`] never shows it in `Debug`, and it is never logged or
//! put into an error. Holder-of-key tokens (which need the request signed with a private key)
//! are not built.
//!
//! The request and response shapes are pure functions ([`issue_request`],
//! [`parse_issue_response`], [`security_header`]) so they are tested without a network.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Instrument;
use url::Url;

use super::transport::{HttpTransport, SoapRequest, TlsPolicy, Transport};
use crate::Error;
use crate::codec::{DateTime, SecretString};

/// The WS-Trust `SOAPAction` of a token request.
pub const WS_TRUST_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue";

const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// The default token lifetime asked for (vCenter caps it by its own policy).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// A SAML 2.0 bearer token (the signed `Assertion` element, byte for byte). A secret.
#[derive(Clone)]
pub struct SamlToken {
    assertion: SecretString,
    expires: Option<DateTime>,
}

impl fmt::Debug for SamlToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamlToken")
            .field("assertion", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl SamlToken {
    /// A token from an assertion obtained elsewhere (`<saml2:Assertion ...>...</saml2:Assertion>`).
    ///
    /// ```
    /// use vsphere_client::client::SamlToken;
    /// let t = SamlToken::from_assertion(
    ///     r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_1">
    ///     <saml2:Subject><saml2:NameID>admin@vsphere.local</saml2:NameID></saml2:Subject>
    ///     </saml2:Assertion>"#).unwrap();
    /// assert_eq!(t.subject().as_deref(), Some("admin@vsphere.local"));
    /// assert!(!format!("{t:?}").contains("vsphere.local"));
    /// assert!(SamlToken::from_assertion("<x/>").is_err());
    /// ```
    pub fn from_assertion(xml: &str) -> Result<Self, Error> {
        let assertion = find_assertion(xml).ok_or_else(|| sts_error("", "no SAML Assertion"))?;
        Ok(Self {
            assertion: SecretString::from(assertion),
            expires: None,
        })
    }

    /// When the token expires, if the STS said.
    pub fn expires(&self) -> Option<DateTime> {
        self.expires
    }

    /// The assertion XML (a secret: do not log it).
    pub fn expose_assertion(&self) -> &str {
        self.assertion.expose()
    }

    /// The subject (`Subject/NameID`): the user the token speaks for.
    pub fn subject(&self) -> Option<String> {
        let xml = self.assertion.expose();
        let subject = element_inner(xml, "Subject")?;
        element_inner(subject, "NameID").map(|s| unescape(s.trim()))
    }
}

fn sts_error(code: &str, message: &str) -> Error {
    Error::Sts {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Escapes text for an XML element or attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The start of the first element with local name `local` (any prefix): `(start, name_end)`
/// where `xml[start..]` begins with `<` and `xml[start + 1..name_end]` is the qualified name.
fn find_start(xml: &str, local: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(rel) = xml[at..].find('<') {
        let start = at + rel;
        let rest = &xml[start + 1..];
        let name_len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        let local_name = name.rsplit(':').next().unwrap_or(name);
        if local_name == local && !name.starts_with('/') {
            return Some((start, start + 1 + name_len));
        }
        at = start + 1;
    }
    None
}

/// The whole first element with local name `local`, tags included (nesting counted).
fn element_outer<'a>(xml: &'a str, local: &str) -> Option<(&'a str, &'a str)> {
    let (start, name_end) = find_start(xml, local, 0)?;
    let qname = &xml[start + 1..name_end];
    let open_end = start + xml[start..].find('>')?;
    if xml[..open_end].ends_with('/') {
        return Some((&xml[start..=open_end], qname));
    }
    let open = format!("<{qname}");
    let close = format!("</{qname}>");
    let mut depth = 1;
    let mut at = open_end + 1;
    while depth > 0 {
        let next_close = at + xml[at..].find(&close)?;
        // Nested elements of the same name before that close.
        let mut scan = at;
        while let Some(rel) = xml[scan..next_close].find(&open) {
            let p = scan + rel + open.len();
            if xml[p..].starts_with(|c: char| c.is_whitespace() || c == '>') {
                // A nested element of the same name, unless it closes itself.
                let tag_end = p + xml[p..].find('>')?;
                if !xml[..tag_end].ends_with('/') {
                    depth += 1;
                }
            }
            scan = p;
        }
        depth -= 1;
        at = next_close + close.len();
    }
    Some((&xml[start..at], qname))
}

/// The content of the first element with local name `local`.
fn element_inner<'a>(xml: &'a str, local: &str) -> Option<&'a str> {
    let (outer, qname) = element_outer(xml, local)?;
    let open_end = outer.find('>')?;
    let close = format!("</{qname}>");
    outer
        .strip_suffix(close.as_str())
        .map(|inner| &inner[open_end + 1..])
}

/// The `Assertion` element, with the declaration of its prefix added when it was declared on
/// an ancestor (exclusive canonicalisation, which signs SAML assertions, renders that
/// declaration anyway, so the signature stays valid).
fn find_assertion(xml: &str) -> Option<String> {
    find_assertion_in(xml, xml)
}

/// [`find_assertion`] in `scope`, looking up an inherited declaration in the whole `doc`.
fn find_assertion_in(scope: &str, doc: &str) -> Option<String> {
    let xml = doc;
    let (outer, qname) = element_outer(scope, "Assertion")?;
    let prefix = qname.split_once(':').map(|(p, _)| p);
    let attr = match prefix {
        Some(p) => format!("xmlns:{p}="),
        None => "xmlns=".to_owned(),
    };
    let open_end = outer.find('>')?;
    if outer[..open_end].contains(&attr) {
        return Some(outer.to_owned());
    }
    // Find the declaration in the document.
    let decl_at = xml.find(&attr)?;
    let value_start = decl_at + attr.len();
    let quote = xml[value_start..].chars().next()?;
    let value_end = value_start + 1 + xml[value_start + 1..].find(quote)?;
    let decl = &xml[decl_at..=value_end];
    let name_end = 1 + qname.len();
    Some(format!(
        "{} {decl}{}",
        &outer[..name_end],
        &outer[name_end..]
    ))
}

pub(crate) fn now() -> DateTime {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_unix(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
}

fn plus(t: DateTime, d: Duration) -> DateTime {
    DateTime::from_unix(
        t.unix_seconds()
            .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        0,
    )
}

/// The WS-Trust `RequestSecurityToken` envelope for a bearer token for `username`, valid from
/// `now` for `lifetime` (the documented vCenter SSO shape).
///
/// ```
/// use vsphere_client::client::issue_request;
/// use vsphere_client::codec::DateTime;
/// let now = DateTime::parse("2026-11-29T05:00:00Z").unwrap();
/// let xml = issue_request("admin@vsphere.local", "p<w", now, std::time::Duration::from_secs(600));
/// assert!(xml.contains("<wsse:Username>admin@vsphere.local</wsse:Username>"));
/// assert!(xml.contains("p&lt;w"));
/// assert!(xml.contains("<wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>"));
/// assert!(xml.contains("<wsu:Expires>2026-11-29T05:10:00Z</wsu:Expires>"));
/// ```
pub fn issue_request(username: &str, password: &str, now: DateTime, lifetime: Duration) -> String {
    let created = now.to_string();
    let expires = plus(now, lifetime).to_string();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<soapenv:Header><wsse:Security xmlns:wsse="{wsse}" xmlns:wsu="{wsu}">"#,
            r#"<wsu:Timestamp wsu:Id="_ts"><wsu:Created>{created}</wsu:Created>"#,
            r#"<wsu:Expires>{ts_expires}</wsu:Expires></wsu:Timestamp>"#,
            r#"<wsse:UsernameToken><wsse:Username>{user}</wsse:Username>"#,
            r#"<wsse:Password Type="{pwtype}">{password}</wsse:Password></wsse:UsernameToken>"#,
            r#"</wsse:Security></soapenv:Header><soapenv:Body>"#,
            r#"<wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512" xmlns:wsu="{wsu}">"#,
            r#"<wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</wst:TokenType>"#,
            r#"<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>"#,
            r#"<wst:Lifetime><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wst:Lifetime>"#,
            r#"<wst:Renewing Allow="true" OK="false"/>"#,
            r#"<wst:Delegatable>false</wst:Delegatable>"#,
            r#"<wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>"#,
            r#"<wst:SignatureAlgorithm>http://www.w3.org/2001/04/xmldsig-more#rsa-sha256</wst:SignatureAlgorithm>"#,
            r#"</wst:RequestSecurityToken></soapenv:Body></soapenv:Envelope>"#
        ),
        wsse = WSSE,
        wsu = WSU,
        created = created,
        ts_expires = plus(now, Duration::from_secs(600)),
        user = escape(username),
        pwtype = PASSWORD_TEXT,
        password = escape(password),
        expires = expires,
    )
}

/// The token in an STS response, or the STS's fault as a typed error (`FailedAuthentication`
/// is [`Error::InvalidLogin`] for `username`).
pub fn parse_issue_response(body: &str, username: &str) -> Result<SamlToken, Error> {
    if find_start(body, "Fault", 0).is_some() {
        let code = element_inner(body, "faultcode").map_or_else(String::new, |c| {
            let c = unescape(c.trim());
            c.rsplit(':').next().unwrap_or(&c).to_owned()
        });
        let message = element_inner(body, "faultstring")
            .map(|s| unescape(s.trim()))
            .unwrap_or_default();
        if code == "FailedAuthentication" {
            return Err(Error::InvalidLogin {
                username: username.to_owned(),
            });
        }
        return Err(Error::Sts { code, message });
    }
    let token = element_inner(body, "RequestedSecurityToken")
        .ok_or_else(|| sts_error("", "the response has no RequestedSecurityToken"))?;
    let assertion = find_assertion_in(token, body)
        .ok_or_else(|| sts_error("", "the RequestedSecurityToken holds no SAML Assertion"))?;
    let expires = element_inner(body, "Lifetime")
        .and_then(|l| element_inner(l, "Expires"))
        .and_then(|e| DateTime::parse(e.trim()));
    Ok(SamlToken {
        assertion: SecretString::from(assertion),
        expires,
    })
}

/// The `soapenv:Header` carrying `token` for `LoginByToken` (a bearer token needs no
/// signature: the assertion and a timestamp).
pub fn security_header(token: &SamlToken, now: DateTime) -> String {
    format!(
        concat!(
            r#"<soapenv:Header><wsse:Security xmlns:wsse="{wsse}" xmlns:wsu="{wsu}">"#,
            r#"<wsu:Timestamp wsu:Id="_ts"><wsu:Created>{created}</wsu:Created>"#,
            r#"<wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>{assertion}"#,
            r#"</wsse:Security></soapenv:Header>"#
        ),
        wsse = WSSE,
        wsu = WSU,
        created = now,
        expires = plus(now, Duration::from_secs(600)),
        assertion = token.expose_assertion(),
    )
}

/// Puts `header` into a request envelope, before its body.
pub(crate) fn with_header(envelope: &str, header: &str) -> Option<String> {
    let at = envelope.find("<soapenv:Body>")?;
    let mut out = String::with_capacity(envelope.len() + header.len());
    out.push_str(&envelope[..at]);
    out.push_str(header);
    out.push_str(&envelope[at..]);
    Some(out)
}

/// The STS of the vCenter at `sdk`, where vCenter (and govmomi's simulator) serve it:
/// `https://host/sts/STSService/vsphere.local`.
///
/// ```
/// use vsphere_client::client::default_sts_url;
/// let sdk = url::Url::parse("https://vc.example.com/sdk").unwrap();
/// assert_eq!(default_sts_url(&sdk).as_str(), "https://vc.example.com/sts/STSService/vsphere.local");
/// ```
pub fn default_sts_url(sdk: &Url) -> Url {
    let mut u = sdk.clone();
    u.set_path("/sts/STSService/vsphere.local");
    u.set_query(None);
    u
}

/// A client of a Security Token Service.
#[derive(Clone, Debug)]
pub struct StsClient {
    url: Url,
    transport: Arc<dyn Transport>,
    timeout: Duration,
}

impl StsClient {
    /// An STS client for `url`, checking certificates by `tls`.
    pub fn new(url: Url, tls: &TlsPolicy) -> Result<Self, Error> {
        Ok(Self::with_transport(
            url,
            Arc::new(HttpTransport::new(tls)?),
        ))
    }

    /// An STS client over any [`Transport`].
    pub fn with_transport(url: Url, transport: Arc<dyn Transport>) -> Self {
        Self {
            url,
            transport,
            timeout: super::DEFAULT_TIMEOUT,
        }
    }

    /// The STS endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Asks for a bearer token for `username` valid for `lifetime`.
    pub async fn issue(
        &self,
        username: &str,
        password: &SecretString,
        lifetime: Duration,
    ) -> Result<SamlToken, Error> {
        let body = issue_request(username, password.expose(), now(), lifetime);
        let span = tracing::debug_span!("sts_issue", user = username);
        let response = self
            .transport
            .post_soap(SoapRequest {
                url: &self.url,
                soap_action: WS_TRUST_ISSUE,
                cookie: None,
                body,
                timeout: self.timeout,
            })
            .instrument(span)
            .await?;
        let looks_like_soap = response.body.contains("Envelope");
        if response.status != 200 && !(response.status == 500 && looks_like_soap) {
            return Err(Error::HttpStatus {
                what: "RequestSecurityToken",
                status: response.status,
            });
        }
        parse_issue_response(&response.body, username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSERTION: &str = r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1" Version="2.0"><saml2:Issuer>https://vc/websso</saml2:Issuer><saml2:Subject><saml2:NameID Format="http://schemas.xmlsoap.org/claims/UPN">Administrator@VSPHERE.LOCAL</saml2:NameID></saml2:Subject><saml2:Advice><saml2:Assertion ID="_inner"/></saml2:Advice></saml2:Assertion>"#;

    fn response(assertion: &str) -> String {
        format!(
            concat!(
                r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>"#,
                r#"<wst:RequestSecurityTokenResponseCollection xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512">"#,
                r#"<wst:RequestSecurityTokenResponse><wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</wst:TokenType>"#,
                r#"<wst:Lifetime><ns2:Created xmlns:ns2="{wsu}">2026-11-29T05:00:00.000Z</ns2:Created>"#,
                r#"<ns2:Expires xmlns:ns2="{wsu}">2026-11-29T06:00:00.000Z</ns2:Expires></wst:Lifetime>"#,
                r#"<wst:RequestedSecurityToken>{a}</wst:RequestedSecurityToken>"#,
                r#"<wst:Renewing Allow="true" OK="false"/><wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType>"#,
                r#"</wst:RequestSecurityTokenResponse></wst:RequestSecurityTokenResponseCollection></S:Body></S:Envelope>"#
            ),
            wsu = WSU,
            a = assertion
        )
    }

    #[test]
    fn the_assertion_is_taken_verbatim_with_nested_assertions() {
        let t = parse_issue_response(&response(ASSERTION), "u").unwrap();
        assert_eq!(t.expose_assertion(), ASSERTION);
        assert_eq!(t.subject().as_deref(), Some("Administrator@VSPHERE.LOCAL"));
        assert_eq!(t.expires(), DateTime::parse("2026-11-29T06:00:00Z"));
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("Assertion xmlns") && !debug.contains("VSPHERE"),
            "{debug}"
        );
    }

    #[test]
    fn a_prefix_declared_on_an_ancestor_is_carried_into_the_assertion() {
        let body = response(r#"<saml2:Assertion ID="_b"><saml2:Subject><saml2:NameID>x</saml2:NameID></saml2:Subject></saml2:Assertion>"#)
            .replace(
                "<S:Envelope ",
                r#"<S:Envelope xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" "#,
            );
        let t = parse_issue_response(&body, "u").unwrap();
        assert!(
            t.expose_assertion().starts_with(
                r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_b">"#
            ),
            "{}",
            t.expose_assertion()
        );
    }

    #[test]
    fn sts_faults_are_typed() {
        let fault = |code: &str, msg: &str| {
            format!(
                r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><S:Fault><faultcode xmlns:ns0="{WSSE}">ns0:{code}</faultcode><faultstring>{msg}</faultstring></S:Fault></S:Body></S:Envelope>"#
            )
        };
        let e = parse_issue_response(
            &fault("FailedAuthentication", "Authentication failed"),
            "bob",
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidLogin { username } if username == "bob"),
            "{e:?}"
        );
        let e = parse_issue_response(&fault("InvalidTimeRange", "clock skew &amp; more"), "bob")
            .unwrap_err();
        match e {
            Error::Sts { code, message } => {
                assert_eq!(code, "InvalidTimeRange");
                assert_eq!(message, "clock skew & more");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_issue_response("<html/>", "u"),
            Err(Error::Sts { .. })
        ));
    }

    #[test]
    fn the_security_header_goes_before_the_body() {
        let t = SamlToken::from_assertion(ASSERTION).unwrap();
        let now = DateTime::parse("2026-11-29T05:00:00Z").unwrap();
        let h = security_header(&t, now);
        assert!(h.contains(ASSERTION));
        assert!(h.contains("<wsu:Expires>2026-11-29T05:10:00Z</wsu:Expires>"));
        let env =
            "<soapenv:Envelope><soapenv:Body><LoginByToken/></soapenv:Body></soapenv:Envelope>";
        let with = with_header(env, &h).unwrap();
        assert!(with.starts_with("<soapenv:Envelope><soapenv:Header>"));
        assert!(with.ends_with(
            "</soapenv:Header><soapenv:Body><LoginByToken/></soapenv:Body></soapenv:Envelope>"
        ));
        assert!(with_header("<x/>", &h).is_none());
    }
}
