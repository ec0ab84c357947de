//! Guest identity: what VMware Tools report for a VM (`guest`, `summary.guest`).
//!
//! The identity is derived on every read from the VM's power state, devices and
//! `extraConfig` (nothing stored per VM). A powered-on VM runs its tools: `guest.guestState = running`, `toolsRunningStatus =
//! guestToolsRunning`, an IP address from a deterministic 10.x.y.z pool (by the VM's id), its
//! name as host name, and one `guest.net` entry per NIC (the first NIC holds the address). A VM
//! that is not powered on reports `notRunning` and no addresses.
//!
//! govmomi vcsim's hook is honoured: `extraConfig` keys `SET.guest.ipAddress` (alias `ip0`) and
//! `SET.guest.hostName` set through `ReconfigVM_Task` override the address and host name. They
//! are kept in the VM's `config.extraConfig`, so the override also survives a power cycle.

use vsphere_client::codec::{Any, Poly};
use vsphere_client::types::{
    GuestInfo, GuestNicInfo, OptionValue, VirtualDevice, VirtualMachineConfigInfo,
    VirtualMachineGuestSummary, VirtualMachinePowerState, VirtualMachineRuntimeInfo,
    VirtualMachineToolsStatus,
};

use crate::devices::{self, Class};
use crate::inventory::Inventory;

/// The extraConfig key that overrides the guest's IP address.
pub(crate) const SET_IP: &str = "SET.guest.ipAddress";
/// The extraConfig key that overrides the guest's host name.
pub(crate) const SET_HOST_NAME: &str = "SET.guest.hostName";

/// vcsim's aliases for `SET.` keys.
pub(crate) fn canonical_key(key: &str) -> &str {
    if key == "ip0" { SET_IP } else { key }
}

/// The pool address of a VM: `10.a.b.c` from the number in its id (`vm-42` -> `10.0.0.43`),
/// never a network or broadcast address.
pub(crate) fn pool_ip(vm_id: &str) -> String {
    let n: u64 = vm_id
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            // Ids without a number (restored from elsewhere): a stable hash.
            vm_id
                .bytes()
                .fold(7_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        });
    let last = n % 253 + 1;
    let rest = n / 253;
    format!("10.{}.{}.{last}", (rest / 256) % 256, rest % 256)
}

/// The value of an extraConfig key on a VM, as text.
fn extra(config: &VirtualMachineConfigInfo, key: &str) -> Option<String> {
    config
        .extra_config
        .iter()
        .find(|o| o.key == key)
        .and_then(|o| match &o.value {
            Some(Any::String(s)) => Some(s.clone()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

/// The guest identity a VM reports, from its power state, devices and overrides.
pub(crate) fn info(inv: &Inventory, vm: &str) -> Option<GuestInfo> {
    let config = inv.data::<VirtualMachineConfigInfo>(vm, "config")?;
    let power = inv
        .data::<VirtualMachineRuntimeInfo>(vm, "runtime")
        .map(|r| r.power_state.clone())?;
    let mut g = GuestInfo::default();
    g.guest_id = Some(config.guest_id.clone());
    g.guest_full_name = Some(config.guest_full_name.clone());
    g.guest_family = Some("linuxGuest".to_owned());
    g.tools_version = Some("12352".to_owned());
    g.tools_version_status = Some("guestToolsUnmanaged".to_owned());
    g.hw_version = Some(config.version.clone());
    let running = power == VirtualMachinePowerState::PoweredOn && !config.template;
    if !running {
        g.tools_status = Some(VirtualMachineToolsStatus::ToolsNotRunning);
        g.tools_running_status = Some("guestToolsNotRunning".to_owned());
        g.guest_state = "notRunning".to_owned();
        return Some(g);
    }
    g.tools_status = Some(VirtualMachineToolsStatus::ToolsOk);
    g.tools_running_status = Some("guestToolsRunning".to_owned());
    g.guest_state = "running".to_owned();
    g.guest_operations_ready = Some(true);
    g.interactive_guest_operations_ready = Some(false);
    g.guest_state_change_supported = Some(true);
    let ip = extra(config, SET_IP).unwrap_or_else(|| pool_ip(vm));
    g.host_name = Some(extra(config, SET_HOST_NAME).unwrap_or_else(|| config.name.clone()));
    let nics: Vec<&Poly<VirtualDevice>> = config
        .hardware
        .as_ref()
        .map(|h| {
            h.device
                .iter()
                .filter(|d| devices::class(d) == Class::Nic)
                .collect()
        })
        .unwrap_or_default();
    g.net = nics
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut n = GuestNicInfo::default();
            n.network = d
                .backing
                .as_ref()
                .and_then(|b| devices::get_opt::<String>(b.as_object(), "deviceName"))
                .or_else(|| d.device_info.as_ref().map(|i| i.summary.clone()));
            n.mac_address = devices::get_opt::<String>(d.as_object(), "macAddress");
            n.connected = true;
            n.device_config_id = d.key;
            if i == 0 {
                n.ip_address = vec![ip.clone()];
            }
            n
        })
        .collect();
    g.ip_address = Some(ip);
    Some(g)
}

/// The `summary.guest` of a guest identity.
pub(crate) fn summary(g: &GuestInfo) -> VirtualMachineGuestSummary {
    let mut s = VirtualMachineGuestSummary::default();
    s.guest_id.clone_from(&g.guest_id);
    s.guest_full_name.clone_from(&g.guest_full_name);
    s.tools_status.clone_from(&g.tools_status);
    s.tools_version_status.clone_from(&g.tools_version_status);
    s.tools_running_status.clone_from(&g.tools_running_status);
    s.host_name.clone_from(&g.host_name);
    s.ip_address.clone_from(&g.ip_address);
    s.hw_version.clone_from(&g.hw_version);
    s
}

/// Applies a spec's `extraConfig` to a VM's: a key with an empty value is removed, others are
/// set (vCenter's rule); `ip0` is vcsim's alias of `SET.guest.ipAddress`.
pub(crate) fn apply_extra_config(
    config: &mut VirtualMachineConfigInfo,
    opts: &[Poly<OptionValue>],
) {
    for o in opts {
        let key = canonical_key(&o.key).to_owned();
        let empty = match &o.value {
            None => true,
            Some(Any::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        config.extra_config.retain(|e| e.key != key);
        if !empty {
            let mut v = OptionValue::default();
            v.key = key;
            v.value.clone_from(&o.value);
            config.extra_config.push(Poly::new(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{self, PowerOp};
    use vsphere_client::types::VirtualMachineConfigSpec;

    fn setup() -> (Inventory, String) {
        let inv = Inventory::build(&crate::InventoryShape::default());
        let mut ids: Vec<String> = inv
            .of_type("VirtualMachine")
            .map(|o| o.moref.value.clone())
            .collect();
        ids.sort();
        (inv, ids.remove(0))
    }

    #[test]
    fn pool_addresses_are_distinct_and_valid() {
        let a: std::collections::HashSet<String> =
            (0..10_000).map(|n| pool_ip(&format!("vm-{n}"))).collect();
        assert_eq!(a.len(), 10_000);
        assert_eq!(pool_ip("vm-42"), "10.0.0.43");
        assert!(
            a.iter()
                .all(|ip| !ip.ends_with(".0") && !ip.ends_with(".255"))
        );
    }

    #[test]
    fn a_powered_on_vm_reports_tools_and_an_address_cleared_on_power_off() {
        let (mut inv, vm) = setup();
        let g = info(&inv, &vm).unwrap();
        assert_eq!(g.guest_state, "running");
        assert_eq!(g.tools_running_status.as_deref(), Some("guestToolsRunning"));
        assert_eq!(g.ip_address.as_deref(), Some(pool_ip(&vm).as_str()));
        assert_eq!(g.net.len(), 1);
        assert_eq!(g.net[0].ip_address, vec![pool_ip(&vm)]);
        assert!(g.net[0].mac_address.is_some());
        let s = vm::summary(&inv, &vm).unwrap();
        assert_eq!(
            s.guest.as_ref().unwrap().ip_address.as_deref(),
            Some(pool_ip(&vm).as_str())
        );

        vm::power(&mut inv, &vm, PowerOp::Off).unwrap();
        let g = info(&inv, &vm).unwrap();
        assert_eq!(g.guest_state, "notRunning");
        assert_eq!(
            g.tools_running_status.as_deref(),
            Some("guestToolsNotRunning")
        );
        assert!(g.ip_address.is_none() && g.net.is_empty());
    }

    #[test]
    fn extra_config_overrides_the_address_and_host_name() {
        let (mut inv, vm) = setup();
        let mut spec = VirtualMachineConfigSpec::default();
        let opt = |k: &str, v: &str| {
            let mut o = OptionValue::default();
            o.key = k.to_owned();
            o.value = Some(Any::String(v.to_owned()));
            Poly::new(o)
        };
        spec.extra_config = vec![
            opt(SET_IP, "192.168.1.10"),
            opt(SET_HOST_NAME, "db01"),
            opt("guestinfo.x", "1"),
        ];
        vm::reconfigure(&mut inv, &vm, &spec).unwrap();
        let g = info(&inv, &vm).unwrap();
        assert_eq!(g.ip_address.as_deref(), Some("192.168.1.10"));
        assert_eq!(g.host_name.as_deref(), Some("db01"));
        assert_eq!(g.net[0].ip_address, vec!["192.168.1.10".to_owned()]);
        // The override survives a power cycle; removing the key restores the pool address.
        vm::power(&mut inv, &vm, PowerOp::Off).unwrap();
        vm::power(&mut inv, &vm, PowerOp::On).unwrap();
        let g = info(&inv, &vm).unwrap();
        assert_eq!(g.ip_address.as_deref(), Some("192.168.1.10"));
        spec.extra_config = vec![opt("ip0", "")];
        vm::reconfigure(&mut inv, &vm, &spec).unwrap();
        let g = info(&inv, &vm).unwrap();
        assert_eq!(g.ip_address.as_deref(), Some(pool_ip(&vm).as_str()));
        let c = inv.data::<VirtualMachineConfigInfo>(&vm, "config").unwrap();
        assert!(c.extra_config.iter().any(|o| o.key == "guestinfo.x"));
    }
}
