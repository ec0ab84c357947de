//! The SDK's REST client (`vsphere_client::rest`) against the simulator's REST endpoints, in
//! both styles: the same checks it passes against govmomi's vcsim, plus what vcsim 0.24.2 does
//! not serve (`/api`, the vcenter listings, cardinality and associable-type rules).

use vsphere_client::Error;
use vsphere_client::client::ConnectOptions;
use vsphere_client::rest::{
    ApiStyle, Cardinality, CategorySpec, ClusterFilter, DatastoreFilter, HostConnectionState,
    HostFilter, NetworkFilter, NetworkType, ObjectId, RestClient, RestErrorKind, StylePreference,
    TagSpec, VmFilter, VmPowerState,
};
use vsphere_sim::Simulator;

async fn connect(sim: &Simulator, style: ApiStyle) -> RestClient {
    let options = ConnectOptions::new(&sim.url_with_credentials()).unwrap();
    RestClient::connect_with(options, StylePreference::Only(style))
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_prefer_api_and_refuse_a_bad_password() {
    let sim = Simulator::builder().start().await.unwrap();
    let options = ConnectOptions::new(&sim.url_with_credentials()).unwrap();
    let rest = RestClient::connect(options).await.unwrap();
    assert_eq!(rest.style(), ApiStyle::Api);
    let bad = ConnectOptions::new(&sim.url())
        .unwrap()
        .credentials_from(sim.user(), "wrong");
    let e = RestClient::connect(bad.clone()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidLogin { .. }), "{e:?}");
    let e = RestClient::connect_with(bad, StylePreference::Only(ApiStyle::Rest))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidLogin { .. }), "{e:?}");
    rest.logout().await.unwrap();
}

#[tokio::test]
async fn listings_match_the_inventory_in_both_styles() {
    let sim = Simulator::builder().start().await.unwrap();
    for style in [ApiStyle::Api, ApiStyle::Rest] {
        let rest = connect(&sim, style).await;
        let vms = rest.list_vms(&VmFilter::new()).await.unwrap();
        assert_eq!(vms.len(), 8, "{style:?}");
        assert!(vms.iter().all(|v| v.vm.starts_with("vm-")));
        assert!(vms.iter().all(|v| v.power_state == VmPowerState::PoweredOn));
        assert!(vms.iter().all(|v| v.cpu_count.is_some()));
        let one = rest
            .list_vms(&VmFilter::new().names("DC0_H0_VM0"))
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        let by_id = rest
            .list_vms(&VmFilter::new().vms(one[0].vm.clone()))
            .await
            .unwrap();
        assert_eq!(by_id, one);

        let clusters = rest.list_clusters(&ClusterFilter::new()).await.unwrap();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].name, "DC0_C0");
        let cid = clusters[0].cluster.clone();
        let hosts = rest
            .list_hosts(&HostFilter::new().clusters(cid.clone()))
            .await
            .unwrap();
        assert_eq!(hosts.len(), 3);
        assert!(
            hosts
                .iter()
                .all(|h| h.connection_state == HostConnectionState::Connected)
        );
        assert_eq!(rest.list_hosts(&HostFilter::new()).await.unwrap().len(), 4);
        let in_cluster = rest.list_vms(&VmFilter::new().clusters(cid)).await.unwrap();
        assert_eq!(in_cluster.len(), 6);
        let ds = rest
            .list_datastores(&DatastoreFilter::new().names("LocalDS_0"))
            .await
            .unwrap();
        assert_eq!(ds.len(), 1);
        assert!(ds[0].free_space.unwrap() < ds[0].capacity.unwrap());
        let nets = rest
            .list_networks(&NetworkFilter::new().types(NetworkType::StandardPortgroup))
            .await
            .unwrap();
        assert_eq!(nets[0].name, "VM Network");
        rest.logout().await.unwrap();
    }
}

#[tokio::test]
async fn tagging_end_to_end_in_both_styles_on_one_store() {
    let sim = Simulator::builder().start().await.unwrap();
    let api = connect(&sim, ApiStyle::Api).await;
    let old = connect(&sim, ApiStyle::Rest).await;
    let vms = api.list_vms(&VmFilter::new()).await.unwrap();
    let (vm0, vm1) = (ObjectId::vm(&vms[0].vm), ObjectId::vm(&vms[1].vm));

    let cat = api
        .create_category(
            &CategorySpec::new("env", Cardinality::Single).associable_type("VirtualMachine"),
        )
        .await
        .unwrap();
    // Visible through the other style, with the same id.
    assert_eq!(
        old.list_categories().await.unwrap(),
        std::slice::from_ref(&cat)
    );
    assert_eq!(old.get_category(&cat).await.unwrap().name, "env");
    let e = old
        .create_category(&CategorySpec::new("env", Cardinality::Multiple))
        .await
        .unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::AlreadyExists));

    let prod = old.create_tag(&TagSpec::new("prod", &cat)).await.unwrap();
    let dev = api.create_tag(&TagSpec::new("dev", &cat)).await.unwrap();
    let mut for_cat = api.list_tags_for_category(&cat).await.unwrap();
    for_cat.sort();
    let mut both = vec![prod.clone(), dev.clone()];
    both.sort();
    assert_eq!(for_cat, both);
    let mut for_cat_old = old.list_tags_for_category(&cat).await.unwrap();
    for_cat_old.sort();
    assert_eq!(for_cat_old, both);
    assert_eq!(api.get_tag(&prod).await.unwrap().name, "prod");

    api.attach(&prod, &vm0).await.unwrap();
    // SINGLE cardinality: a second tag of the category on the same VM is refused.
    let e = old.attach(&dev, &vm0).await.unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::InvalidArgument));
    // Associable types: a host is not a VM.
    let hosts = api.list_hosts(&HostFilter::new()).await.unwrap();
    let e = api
        .attach(&prod, &ObjectId::new("HostSystem", &hosts[0].host))
        .await
        .unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::InvalidArgument));
    // A VM that does not exist: unauthorized, as vCenter answers.
    let e = api
        .attach(&prod, &ObjectId::vm("vm-404"))
        .await
        .unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::Unauthorized));

    // Batch: one good VM tagged, one missing VM reported.
    let e = old
        .attach_to_objects(&prod, &[vm1.clone(), ObjectId::vm("vm-404")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("vm-404"), "{e}");
    let mut attached = api.list_attached_objects(&prod).await.unwrap();
    attached.sort();
    let mut want = vec![vm0.clone(), vm1.clone()];
    want.sort();
    assert_eq!(attached, want);
    let r = api
        .attach_to_objects(&dev, &[ObjectId::vm(&vms[2].vm)])
        .await
        .unwrap();
    assert!(r.success);
    assert_eq!(
        old.list_attached_tags(&vm0).await.unwrap(),
        std::slice::from_ref(&prod)
    );
    let per = api
        .list_attached_tags_on_objects(&[vm0.clone(), vm1.clone()])
        .await
        .unwrap();
    assert!(per.iter().all(|o| o.tag_ids == [prod.clone()]));

    old.detach(&prod, &vm0).await.unwrap();
    assert!(api.list_attached_tags(&vm0).await.unwrap().is_empty());
    api.delete_tag(&dev).await.unwrap();
    let e = old.get_tag(&dev).await.unwrap_err();
    assert_eq!(e.rest_kind(), Some(&RestErrorKind::NotFound));
    // Deleting the category takes its tags and associations with it.
    old.delete_category(&cat).await.unwrap();
    assert!(api.list_tags().await.unwrap().is_empty());
    assert!(api.list_attached_tags(&vm1).await.unwrap().is_empty());
}

#[tokio::test]
async fn expired_sessions_are_renewed_for_reads() {
    let sim = Simulator::builder().start().await.unwrap();
    for style in [ApiStyle::Api, ApiStyle::Rest] {
        let rest = connect(&sim, style).await;
        let before = rest.list_categories().await.unwrap();
        assert!(sim.expire_sessions() >= 1);
        // A read is repeated on a fresh session...
        assert_eq!(rest.list_categories().await.unwrap(), before);
        sim.expire_sessions();
        // ... a write is not, but the session is renewed for the next call.
        let spec = CategorySpec::new(format!("c-{style:?}"), Cardinality::Multiple);
        let e = rest.create_category(&spec).await.unwrap_err();
        assert_eq!(e.rest_kind(), Some(&RestErrorKind::Unauthenticated));
        rest.create_category(&spec).await.unwrap();
    }
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let sim = Simulator::builder().start().await.unwrap();
    let rest = connect(&sim, ApiStyle::Rest).await;
    rest.logout().await.unwrap();
    assert_eq!(sim.expire_sessions(), 0);
    assert!(matches!(
        rest.list_tags().await.unwrap_err(),
        Error::SessionClosed
    ));
}
