//! The decoder fuzzer: arbitrary bytes, and mutations of real envelopes (truncation, byte
//! flips, spliced fragments, deep nesting), must decode or fail with a typed error, never
//! panic. Runs a bounded number of cases in the test command; set `PROPTEST_CASES` for more.

use proptest::prelude::*;
use vsphere_client::mo::methods::RETRIEVE_PROPERTIES_EX;
use vsphere_client::rpc;
use vsphere_client::types::RetrieveResult;

const QUIRKS: &str = include_str!("fixtures/rpex-quirks.soap.xml");

/// Fragments that stress the decoder's special cases when spliced in anywhere.
const FRAGMENTS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "&amp;",
    "&#x0;",
    "&#xFFFFFF;",
    "&bogus;",
    "<![CDATA[x]]>",
    "<!-- c -->",
    r#" xsi:type="ArrayOfVirtualDevice""#,
    r#" xsi:type="xsd:int""#,
    r#" xsi:type="nope:Thing""#,
    r#" xsi:nil="true""#,
    r#" xmlns:xsi="urn:other""#,
    r#"<val xsi:type="ArrayOfAnyType"><anyType xsi:type="ArrayOfAnyType"></anyType></val>"#,
    "<propSet><name>x</name><val xsi:type=\"VirtualDisk\"><backing/></val></propSet>",
    "\u{0}",
    "\u{feff}",
];

fn decode(body: &str) {
    // The result does not matter; only that it is a value or a typed error.
    let _ = rpc::opt::<RetrieveResult>(body, &RETRIEVE_PROPERTIES_EX);
}

fn splice(base: &str, at: usize, frag: &str) -> String {
    let mut at = at % (base.len() + 1);
    while !base.is_char_boundary(at) {
        at -= 1;
    }
    let mut s = String::with_capacity(base.len() + frag.len());
    s.push_str(&base[..at]);
    s.push_str(frag);
    s.push_str(&base[at..]);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        decode(&s);
    }

    #[test]
    fn truncated_envelopes_never_panic(cut in 0usize..QUIRKS.len()) {
        let mut cut = cut;
        while !QUIRKS.is_char_boundary(cut) {
            cut -= 1;
        }
        decode(&QUIRKS[..cut]);
    }

    #[test]
    fn spliced_envelopes_never_panic(
        edits in prop::collection::vec((any::<usize>(), 0usize..FRAGMENTS.len()), 1..6)
    ) {
        let mut s = QUIRKS.to_owned();
        for (at, f) in edits {
            s = splice(&s, at, FRAGMENTS[f]);
        }
        decode(&s);
    }

    #[test]
    fn byte_flips_never_panic(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = QUIRKS.as_bytes().to_vec();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Ok(s) = std::str::from_utf8(&bytes) {
            decode(s);
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let mut s = String::from(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><propSet><name>n</name><val xsi:type="ArrayOfAnyType">"#,
    );
    for _ in 0..depth {
        s.push_str(r#"<anyType xsi:type="ArrayOfAnyType">"#);
    }
    let err = rpc::opt::<RetrieveResult>(&s, &RETRIEVE_PROPERTIES_EX).unwrap_err();
    assert!(err.to_string().contains("RetrievePropertiesEx"), "{err}");
}
