from csms.core.addresses import address_key


def test_ipv4_is_its_own_key() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"


def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"


def test_ipv6_addresses_of_one_64_share_a_key() -> None:
    a, b = address_key("2001:db8:1:2::1"), address_key("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert a == b == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != a
    assert address_key("[2001:db8:1:2::5]") == a
    assert address_key("fe80::1%eth0") == "fe80::/64"


def test_what_is_not_an_address_is_kept() -> None:
    assert address_key("?") == "?"
