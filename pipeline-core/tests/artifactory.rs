//! The Artifactory backend against a wiremock server that follows JFrog's documented REST API:
//! storage info, checksum deploy (404 when the content is unknown), deploy with checksum
//! headers, checksum search, properties, AQL and copy.

use std::collections::BTreeMap;

use pipeline_core::Error;
use pipeline_core::artifact::{ArtifactStore, digest};
use pipeline_core::artifactory::ArtifactoryStore;
use serde_json::json;
use wiremock::matchers::{
    body_string_contains, header, header_exists, method, path, path_regex, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn store(server: &MockServer) -> ArtifactoryStore {
    ArtifactoryStore::new(&format!("{}/artifactory", server.uri()), Some("tok".into())).unwrap()
}

fn hex(data: &[u8]) -> String {
    digest(data).trim_start_matches("sha256:").to_owned()
}

fn storage_info(sha: &str) -> serde_json::Value {
    json!({
        "repo": "dev", "path": "/app/1/app-1", "created": "2026-11-28T10:00:00.000Z",
        "size": "2", "mimeType": "application/gzip",
        "checksums": {"sha1": "x", "md5": "y", "sha256": sha},
    })
}

#[tokio::test]
async fn publish_uploads_unknown_content_with_checksum_headers() {
    let server = MockServer::start().await;
    let sha = hex(b"v1");
    Mock::given(method("GET"))
        .and(path("/artifactory/api/storage/dev/app/1/app-1"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    // Checksum deploy first: Artifactory does not know the content yet.
    Mock::given(method("PUT"))
        .and(path_regex(r"^/artifactory/dev/app/1/app-1;commit=abc$"))
        .and(header("x-checksum-deploy", "true"))
        .and(header("x-checksum-sha256", sha.as_str()))
        .and(header("authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/artifactory/dev/app/1/app-1;commit=abc$"))
        .and(header("x-checksum-sha256", sha.as_str()))
        .and(body_string_contains("v1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "repo": "dev", "path": "/app/1/app-1", "size": "2",
            "checksums": {"sha256": sha},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = store(&server)
        .publish(
            "dev",
            "app",
            "1",
            "application/gzip",
            b"v1",
            BTreeMap::from([("commit".to_owned(), "abc".to_owned())]),
        )
        .await
        .unwrap();
    assert_eq!(r.digest, digest(b"v1"));
    assert_eq!(r.size, 2);
}

#[tokio::test]
async fn publish_is_idempotent_and_versions_are_immutable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/artifactory/api/storage/dev/app/1/app-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(storage_info(&hex(b"v1"))))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let s = store(&server);
    let same = s
        .publish("dev", "app", "1", "t", b"v1", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(same.digest, digest(b"v1"));
    let e = s
        .publish("dev", "app", "1", "t", b"v2", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
}

#[tokio::test]
async fn fetch_finds_content_by_digest_and_checks_it() {
    let server = MockServer::start().await;
    let uri = format!("{}/artifactory/api/storage/dev/app/1/app-1", server.uri());
    Mock::given(method("GET"))
        .and(path("/artifactory/api/search/checksum"))
        .and(query_param("sha256", hex(b"v1").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"uri": uri}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/artifactory/dev/app/1/app-1"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"v1".to_vec()))
        .mount(&server)
        .await;
    let s = store(&server);
    assert_eq!(s.fetch(&digest(b"v1")).await.unwrap(), b"v1");
    // Same search answer for another digest: the download does not match it.
    Mock::given(method("GET"))
        .and(path("/artifactory/api/search/checksum"))
        .and(query_param("sha256", hex(b"v9").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"uri": uri}]})))
        .mount(&server)
        .await;
    assert!(s.fetch(&digest(b"v9")).await.is_err());
}

#[tokio::test]
async fn properties_aql_latest_passed_and_promotion_by_copy() {
    let server = MockServer::start().await;
    let sha = hex(b"v2");
    Mock::given(method("PUT"))
        .and(path("/artifactory/api/storage/dev/app/2/app-2"))
        .and(query_param("properties", "passed.Test=true"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/artifactory/api/search/aql"))
        .and(body_string_contains("\"@passed.Test\":{\"$eq\":\"true\"}"))
        .and(body_string_contains("items.find("))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"repo": "dev", "path": "app/2", "name": "app-2", "created": "2026-11-28T11:00:00.000Z"}],
            "range": {"start_pos": 0, "end_pos": 1, "total": 1},
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/artifactory/api/storage/dev/app/2/app-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(storage_info(&sha)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/artifactory/api/storage/dev/app/2/app-2"))
        .and(query_param("properties", ""))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"properties": {"passed.Test": ["true"]}})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/artifactory/api/copy/dev/app/2/app-2"))
        .and(query_param("to", "/prod/app/2/app-2"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"messages": [{"level": "INFO", "message": "copying dev:app/2/app-2 to prod:app/2/app-2 completed successfully"}]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/artifactory/api/storage/prod/app/2/app-2"))
        .and(query_param(
            "properties",
            "promoted.by=ann|promoted.from=dev|promoted.reason=release",
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let s = store(&server);
    s.mark_passed("dev", "app", "2", "Test").await.unwrap();
    let latest = s
        .latest_passed("dev", "app", "Test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.reference.version, "2");
    assert_eq!(latest.reference.digest, format!("sha256:{sha}"));
    assert_eq!(latest.properties["passed.Test"], "true");
    let promoted = s
        .promote("dev", "prod", "app", "2", "ann", "release")
        .await
        .unwrap();
    assert_eq!(promoted.repo, "prod");
    assert_eq!(promoted.digest, latest.reference.digest);
    let e = s
        .set_channel("prod", "app", "latest", "2", "ann", "")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }));
    assert!(!format!("{s:?}").contains("tok"));
}
