//! A mock vCenter on wiremock for the client's HTTP-level tests (`client_wire.rs`,
//! `client_session.rs`): the versions document, the service content and the first login of
//! the connect sequence, and [`on`], the start of a handler for the calls a test answers.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

/// A file under `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// An XML answer with `status`.
pub(crate) fn xml(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "text/xml; charset=utf-8")
}

/// The start of a handler for the SOAP calls whose body holds `element` (`"<CurrentTime "`):
/// add matchers (`.and(cookie(..))`), the answer, expectations, then mount it.
pub(crate) fn on(element: &str) -> MockBuilder {
    Mock::given(method("POST")).and(body_string_contains(element))
}

/// Answers every call whose body holds `element` with `response`.
pub(crate) async fn answer(s: &MockServer, element: &str, response: ResponseTemplate) {
    on(element).respond_with(response).mount(s).await;
}

/// How the mock vCenter answers the connect sequence; [`MockVcenter::start`] mounts it.
pub(crate) struct MockVcenter {
    /// The answer to `GET /sdk/vimServiceVersions.xml`; `None`: 404 to every GET.
    versions: Option<String>,
    /// The answer to `RetrieveServiceContent` on `/sdk`.
    service_content: String,
    /// The `SOAPAction` `RetrieveServiceContent` must carry, if checked.
    soap_action: Option<String>,
    /// How many `RetrieveServiceContent` calls are expected, if checked.
    service_content_calls: Option<u64>,
    login: Login,
}

/// The first password login.
enum Login {
    /// None is mounted (the test mounts its own, or the client has no credentials).
    Unmounted,
    /// Exactly one, carrying the password, answered so.
    Once {
        password: String,
        response: ResponseTemplate,
    },
    /// None may happen.
    Never,
}

impl MockVcenter {
    /// govmomi's vcsim as captured on the wire (`tests/fixtures/vcsim-wire/`).
    pub(crate) fn vcsim() -> Self {
        Self::new(
            Some(fixture("vcsim-wire/vimServiceVersions.xml")),
            fixture("vcsim-wire/retrieve-service-content.xml"),
        )
    }

    /// A vCenter with this versions document (`None`: it has none) and this answer to
    /// `RetrieveServiceContent`.
    pub(crate) fn new(versions: Option<String>, service_content: String) -> Self {
        Self {
            versions,
            service_content,
            soap_action: None,
            service_content_calls: None,
            login: Login::Unmounted,
        }
    }

    /// `RetrieveServiceContent` must carry this `SOAPAction`.
    pub(crate) fn soap_action(mut self, action: &str) -> Self {
        self.soap_action = Some(action.to_owned());
        self
    }

    /// `RetrieveServiceContent` is expected exactly `n` times.
    pub(crate) fn service_content_calls(mut self, n: u64) -> Self {
        self.service_content_calls = Some(n);
        self
    }

    /// The first `Login`, expected exactly once, must carry `password` and gets `response`.
    pub(crate) fn first_login(mut self, password: &str, response: ResponseTemplate) -> Self {
        self.login = Login::Once {
            password: password.to_owned(),
            response,
        };
        self
    }

    /// No password `Login` may happen (the client logs in with a token).
    pub(crate) fn no_password_login(mut self) -> Self {
        self.login = Login::Never;
        self
    }

    /// Starts the server with the connect sequence mounted.
    pub(crate) async fn start(self) -> MockServer {
        let s = MockServer::start().await;
        match self.versions {
            Some(doc) => {
                Mock::given(method("GET"))
                    .and(path("/sdk/vimServiceVersions.xml"))
                    .respond_with(xml(200, doc))
                    .mount(&s)
                    .await;
            }
            None => {
                Mock::given(method("GET"))
                    .respond_with(ResponseTemplate::new(404))
                    .mount(&s)
                    .await;
            }
        }
        let mut content = on("<RetrieveServiceContent ").and(path("/sdk"));
        if let Some(action) = &self.soap_action {
            content = content.and(header("soapaction", action.as_str()));
        }
        let mut content = content.respond_with(xml(200, self.service_content));
        if let Some(n) = self.service_content_calls {
            content = content.expect(n);
        }
        content.mount(&s).await;
        match self.login {
            Login::Unmounted => {}
            Login::Once { password, response } => {
                on("<Login ")
                    .and(body_string_contains(password.as_str()))
                    .respond_with(response)
                    .up_to_n_times(1)
                    .expect(1)
                    .named("first login")
                    .mount(&s)
                    .await;
            }
            Login::Never => {
                on("<Login ")
                    .respond_with(ResponseTemplate::new(599))
                    .expect(0)
                    .named("no password login")
                    .mount(&s)
                    .await;
            }
        }
        s
    }
}
