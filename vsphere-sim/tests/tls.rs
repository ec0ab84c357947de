//! HTTPS with the generated self-signed certificate: the SDK's own client connects by pinning
//! its thumbprint (SHA-1 and SHA-256) and by trusting it as a CA, and refuses a wrong pin.

use vsphere_client::client::{Client, ConnectOptions, Thumbprint, TlsPolicy};
use vsphere_client::mo::ServiceInstance;
use vsphere_sim::{Error, Simulator};

async fn connect(sim: &Simulator, tls: TlsPolicy) -> Result<Client, vsphere_client::Error> {
    let options = ConnectOptions::new(&sim.url_with_credentials())?.with_tls(tls);
    Client::connect(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_pins_the_generated_certificate() {
    let sim = Simulator::builder().tls(true).start().await.unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    for pin in [sim.thumbprint().unwrap(), sim.thumbprint_sha256().unwrap()] {
        let client = connect(&sim, TlsPolicy::Pinned(Thumbprint::parse(&pin).unwrap()))
            .await
            .unwrap();
        assert_eq!(
            client.service_content().about.as_ref().unwrap().api_type,
            "VirtualCenter"
        );
        ServiceInstance::new("ServiceInstance")
            .current_time(&client)
            .await
            .unwrap();
        client.logout().await.unwrap();
    }

    assert!(
        sim.certificate_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let der = sim.certificate_der().unwrap().to_vec();
    let client = connect(&sim, TlsPolicy::CustomCa(vec![der.into()]))
        .await
        .unwrap();
    client.logout().await.unwrap();

    let wrong = Thumbprint::parse(&"ab".repeat(32)).unwrap();
    assert!(connect(&sim, TlsPolicy::Pinned(wrong)).await.is_err());
}

#[tokio::test]
async fn plain_http_has_no_thumbprint() {
    let sim = Simulator::builder().start().await.unwrap();
    assert!(matches!(sim.thumbprint(), Err(Error::NoTls)));
    assert!(sim.certificate_pem().is_none());
}
