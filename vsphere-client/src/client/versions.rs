//! Version negotiation from `/sdk/vimServiceVersions.xml`.

/// Picks the newest release that both the server (per its `vimServiceVersions.xml`) and this
/// build (`known`, oldest first) speak for `urn:vim25`. `None` when the document lists no
/// vim25 release this build knows.
///
/// ```
/// use vsphere_client::client::negotiate_release;
/// let xml = r#"<namespaces version="1.0"><namespace><name>urn:vim25</name>
///   <version>9.9.9.9</version><priorVersions><version>8.0.2.0</version>
///   <version>8.0.1.0</version></priorVersions></namespace></namespaces>"#;
/// assert_eq!(negotiate_release(xml, &["8.0.1.0", "8.0.2.0", "8.0.3.0"]).as_deref(), Some("8.0.2.0"));
/// ```
pub fn negotiate_release(xml: &str, known: &[&str]) -> Option<String> {
    let offered = vim25_versions(xml);
    known
        .iter()
        .rev()
        .find(|k| offered.iter().any(|o| o == *k))
        .map(|k| (*k).to_owned())
}

/// Every `<version>` inside the `<namespace>` whose `<name>` is `urn:vim25`.
fn vim25_versions(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in xml.split("<namespace>").skip(1) {
        let block = block.split("</namespace>").next().unwrap_or("");
        let name = between(block, "<name>", "</name>").map(str::trim);
        if name != Some("urn:vim25") {
            continue;
        }
        let mut rest = block;
        while let Some(start) = rest.find("<version>") {
            rest = &rest[start + "<version>".len()..];
            let Some(end) = rest.find("</version>") else {
                break;
            };
            out.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    out
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCSIM: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<namespaces version="1.0">
 <namespace>
  <name>urn:vim25</name>
  <version>8.0.2.0</version>
  <priorVersions>
   <version>8.0.1.0</version>
   <version>7.0</version>
   <version>6.7</version>
  </priorVersions>
 </namespace>
 <namespace>
  <name>urn:vim2</name>
  <version>2.0</version>
 </namespace>
</namespaces>"#;

    #[test]
    fn picks_the_newest_common_release() {
        let known = crate::codec::Service::Vim25.releases();
        assert_eq!(negotiate_release(VCSIM, known).as_deref(), Some("8.0.2.0"));
        assert_eq!(
            negotiate_release(VCSIM, &["6.5", "6.7"]).as_deref(),
            Some("6.7")
        );
    }

    #[test]
    fn other_namespaces_and_garbage_give_nothing() {
        assert_eq!(negotiate_release(VCSIM, &["2.0"]), None);
        assert_eq!(negotiate_release("<html>404</html>", &["8.0.2.0"]), None);
        assert_eq!(
            negotiate_release("<namespace><name>urn:vim25", &["8.0.2.0"]),
            None
        );
    }
}
