use super::*;

#[test]
fn ranges_hold_their_addresses_and_mapped_ipv4() {
    let v4 = Cidr::parse("10.0.0.0/8").expect("range");
    assert!(v4.contains("10.200.1.2".parse().expect("ip")));
    assert!(!v4.contains("11.0.0.1".parse().expect("ip")));
    assert!(
        v4.contains("::ffff:10.1.2.3".parse().expect("ip")),
        "dual stack"
    );
    assert!(!v4.contains("fd00::1".parse().expect("ip")));
    let v6 = Cidr::parse("fd00::/8").expect("range");
    assert!(v6.contains("fd12::1".parse().expect("ip")));
    assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
    let everything = Cidr::parse("0.0.0.0/0").expect("range");
    assert!(everything.contains("192.0.2.1".parse().expect("ip")));
    let host = Cidr::parse("192.0.2.7").expect("host");
    assert_eq!(host.to_string(), "192.0.2.7/32");
    assert!(host.contains("192.0.2.7".parse().expect("ip")));
    assert!(!host.contains("192.0.2.8".parse().expect("ip")));
}

#[test]
fn bad_ranges_name_the_problem() {
    let error = |text| Cidr::parse(text).expect_err(text);
    assert!(error("10.0.0.1/8").contains("host bits are set (the range starts at 10.0.0.0)"));
    assert!(error("10.0.0.0/33").contains("0 to 32"));
    assert!(error("fd00::/129").contains("0 to 128"));
    assert!(error("nlb").contains("not an IPv4 or IPv6"));
}

#[test]
fn shares_are_fractions_to_the_thousandth() {
    let share = Share::parse("0.8").expect("share");
    assert_eq!(share, Share::DEFAULT);
    assert_eq!(share.to_string(), "0.8");
    assert_eq!(Share::parse("1").expect("one").to_string(), "1");
    assert_eq!(share.of(Duration::from_secs(350)), Duration::from_secs(280));
    for bad in ["0", "1.5", "-0.2", "most"] {
        assert!(Share::parse(bad).is_err(), "{bad}");
    }
}
