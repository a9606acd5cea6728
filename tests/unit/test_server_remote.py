"""A peer that is gone before its address is read must not take the server down."""

from csms.server import _remote


class _GoneRequest:
    @property
    def remote(self):
        raise OSError(107, "Transport endpoint is not connected")


def test_remote_of_a_peer_already_gone_is_a_placeholder_not_an_error():
    assert _remote(_GoneRequest()) == "?"
