//! Which IP addresses a webhook may be sent to: the SSRF address classification.
//!
//! Every address is put into one [`AddressClass`]; only [`AddressClass::Public`] is a valid
//! target by default. `FE_WEBHOOK_ALLOW_PRIVATE=true` (development and tests) also admits
//! [`AddressClass::Private`] and [`AddressClass::Loopback`]; link-local (which holds the cloud
//! metadata endpoint 169.254.169.254), multicast, unspecified and reserved addresses are never
//! admitted. IPv6 forms that embed an IPv4 address (v4-mapped `::ffff:a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded address; other transition
//! forms (v4-compatible `::a.b.c.d`, Teredo) are reserved. Anything outside the global
//! unicast range `2000::/3` is reserved. Pure: no IO here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a target resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable unicast.
    Public,
    /// RFC 1918, carrier-grade NAT (100.64/10), unique local (fc00::/7), site-local.
    Private,
    /// 127/8, ::1.
    Loopback,
    /// 169.254/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// Broadcast, documentation, benchmarking, protocol-assignment, future-use ranges and
    /// transition forms that hide their real destination.
    Reserved,
}

impl AddressClass {
    /// A short name for error messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::Reserved => "reserved",
        }
    }

    /// Whether a webhook may be delivered to an address of this class.
    pub fn is_allowed(self, allow_private: bool) -> bool {
        match self {
            Self::Public => true,
            Self::Private | Self::Loopback => allow_private,
            Self::LinkLocal | Self::Multicast | Self::Unspecified | Self::Reserved => false,
        }
    }
}

/// Classifies an address (see the module documentation).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) | (100, 64..=127, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (224..=239, _, _) => AddressClass::Multicast,
        // 240/4 (future use) includes the broadcast address.
        (240..=255, _, _) => AddressClass::Reserved,
        // Protocol assignments, the three documentation nets, 6to4 relay anycast, benchmarking.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (192, 88, 99) => {
            AddressClass::Reserved
        }
        (198, 18..=19, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    match s[0] {
        0xff00..=0xffff => AddressClass::Multicast,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        0xfec0..=0xfeff | 0xfc00..=0xfdff => AddressClass::Private,
        // Local-use NAT64 (64:ff9b:1::/48) translates to private networks.
        0x0064 if s[1] == 0xff9b && s[2] == 1 => AddressClass::Private,
        // Teredo (2001::/32) and documentation (2001:db8::/32) hide or lack a destination.
        0x2001 if s[1] == 0 || s[1] == 0x0db8 => AddressClass::Reserved,
        0x2000..=0x3fff => AddressClass::Public,
        // Everything else (v4-compatible ::/96, discard 100::/64, unassigned space).
        _ => AddressClass::Reserved,
    }
}

/// The IPv4 address an IPv6 address forwards to: v4-mapped, NAT64 well-known prefix, 6to4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    if s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn v4_ranges() {
        for (addr, expected) in [
            ("8.8.8.8", AddressClass::Public),
            ("93.184.216.34", AddressClass::Public),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("100.128.0.1", AddressClass::Public),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.2.10", AddressClass::Reserved),
            ("198.51.100.1", AddressClass::Reserved),
            ("203.0.113.5", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
        ] {
            assert_eq!(class(addr), expected, "{addr}");
        }
    }

    #[test]
    fn v6_ranges() {
        for (addr, expected) in [
            ("2606:4700::1111", AddressClass::Public),
            ("::", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("fe80::1", AddressClass::LinkLocal),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fec0::1", AddressClass::Private),
            ("ff02::1", AddressClass::Multicast),
            ("2001:db8::1", AddressClass::Reserved),
            ("2001:0:4136:e378::1", AddressClass::Reserved),
            ("100::1", AddressClass::Reserved),
            ("::7f00:1", AddressClass::Reserved),
            ("64:ff9b:1::a00:1", AddressClass::Private),
        ] {
            assert_eq!(class(addr), expected, "{addr}");
        }
    }

    #[test]
    fn embedded_v4_addresses_are_judged_by_their_v4_part() {
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("::ffff:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::LinkLocal);
        assert_eq!(class("::ffff:8.8.8.8"), AddressClass::Public);
        assert_eq!(class("64:ff9b::7f00:1"), AddressClass::Loopback);
        assert_eq!(class("64:ff9b::808:808"), AddressClass::Public);
        assert_eq!(class("2002:c0a8:0101::1"), AddressClass::Private);
        assert_eq!(class("2002:0808:0808::1"), AddressClass::Public);
    }

    #[test]
    fn only_public_is_allowed_by_default() {
        for c in [
            AddressClass::Private,
            AddressClass::Loopback,
            AddressClass::LinkLocal,
            AddressClass::Multicast,
            AddressClass::Unspecified,
            AddressClass::Reserved,
        ] {
            assert!(!c.is_allowed(false), "{c:?}");
        }
        assert!(AddressClass::Public.is_allowed(false));
    }

    #[test]
    fn the_private_flag_never_opens_metadata_or_multicast() {
        assert!(AddressClass::Private.is_allowed(true));
        assert!(AddressClass::Loopback.is_allowed(true));
        assert!(!AddressClass::LinkLocal.is_allowed(true));
        assert!(!AddressClass::Multicast.is_allowed(true));
        assert!(!AddressClass::Unspecified.is_allowed(true));
        assert!(!AddressClass::Reserved.is_allowed(true));
    }
}
