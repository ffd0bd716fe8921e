"""A derived session id is the same from one gateway release to the next.

OpenCode Go keeps a conversation's prompt cache under its `x-opencode-session`: an upgrade that
derived other ids would make every running conversation pay its whole prompt again on its next
turn. These ids were derived by the release of 2026-12-06 (before the hash's keyed state was
kept between ids)."""
from gateway.routing.session import Sessions, session_secret

SESSIONS = Sessions(session_secret(["sk-test-key-one", "sk-test-key-two"]))


def test_a_derived_id_is_the_one_earlier_releases_derived():
    body = {"model": "m", "messages": [
        {"role": "system", "content": "You are terse."},
        # Over 64 KiB: the opening is hashed by its length and its two ends.
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "text", "text": "x" * 70000}]}]}
    assert SESSIONS.session({}, body, "openai", "client-key") == \
        "gw-100908f01c66ec613b9b2fd1c789a96d"


def test_an_unsafe_client_id_hashes_to_the_one_earlier_releases_sent():
    assert SESSIONS.session({"session_id": "a b"}, {}, "openai", None) == \
        "h-e6b62eeac5a2b9462a8b518b86be2d10"
