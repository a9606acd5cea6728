"""csms.api.proxies: which client a trusted proxy names, and which peers are trusted proxies."""

from csms.api.proxies import forwarded, is_trusted_proxy, parse_trusted_proxies


def _client(xff: str) -> object:
    scope = {"type": "http", "client": ("10.0.0.1", 40000), "headers": [(b"x-forwarded-for", xff.encode())]}
    return forwarded(scope)["client"]


def test_a_forwarded_address_with_a_port_names_the_client() -> None:
    assert _client("1.2.3.4:5678") == ("1.2.3.4", 0)
    assert _client("[2001:db8::1]:5678") == ("2001:db8::1", 0)
    assert _client("[2001:db8::1]") == ("2001:db8::1", 0)


def test_plain_forwarded_addresses_still_name_the_client_and_names_do_not() -> None:
    assert _client("9.9.9.9, 1.2.3.4") == ("1.2.3.4", 0)
    assert _client("2001:db8::1") == ("2001:db8::1", 0)
    assert _client("unknown") == ("10.0.0.1", 40000)


def test_trusted_proxies_are_one_rule() -> None:
    nets = parse_trusted_proxies(["127.0.0.1, 10.0.0.0/8"])
    assert is_trusted_proxy("10.2.3.4", nets) and is_trusted_proxy("::ffff:10.2.3.4", nets)
    assert not is_trusted_proxy("11.0.0.1", nets) and not is_trusted_proxy("?", nets)
    assert not is_trusted_proxy("127.0.0.1", ())
