"""SPEC §7 on Redis: gateway/functions.lua's disconnect, subscribe and
unsubscribe functions in both key forms (SPEC §10), and publish's one-key
form, against a real redis-server.

Nodes listen for orders on <prefix>_control with PSUBSCRIBE of the exact,
glob-escaped name; here two redis-py pubsub connections do the same and
stand in for two nodes, so every call must return 2 and both must receive
the same order text."""

import json
import re

import pytest
import redis as redis_py

from pgtest import fn_name, wait_until
from test_functions import (FN, PREFIX, load, publish, r, rds,  # noqa: F401 (fixtures)
                            shared_redis)

CONTROL = PREFIX + "_control"
REVOKED = PREFIX + "revoked"
ROUTE = PREFIX + "{_control}:revoked"
KEY_FORMS = ["zero-key", "one-key"]


def glob_escape(name):
    return re.sub(r"([\\*?\[\]])", r"\\\1", name)


def fcall(r, fn, *args, key=None, stem=FN):
    """FCALL <stem><fn> in the zero-key form, or the one-key form with key."""
    keys = [0] if key is None else [1, key]
    return r.execute_command("FCALL", stem + fn, *keys, *args)


def route(form):
    return ROUTE if form == "one-key" else None


def listen(r, channel):
    ps = r.pubsub()
    ps.psubscribe(glob_escape(channel))
    msg = wait_until(lambda: ps.get_message(timeout=0.1), msg="psubscribe confirmation")
    assert msg["type"] == "psubscribe"
    return ps


@pytest.fixture
def nodes(r):
    subs = [listen(r, CONTROL) for _ in range(2)]
    yield subs
    for ps in subs:
        ps.close()


def next_order(ps, channel=CONTROL):
    m = wait_until(lambda: ps.get_message(timeout=0.1), msg="an order")
    assert m["type"] == "pmessage" and m["channel"] == channel, m
    return m["data"]


def orders(nodes):
    """The next order each node received; all must be the same text."""
    got = [next_order(ps) for ps in nodes]
    assert got[0] == got[1]
    return got[0]


def assert_nothing_published(r, nodes):
    """One connection's publishes arrive in order: when a marker order sent
    now is the first thing both nodes get, nothing was published before it."""
    assert fcall(r, "unsubscribe", "marker", "marker") == len(nodes)
    assert orders(nodes) == \
        '{"type":"unsubscribe","user":"marker","channel":"marker"}'


def redis_sec(r):
    return r.time()[0]


def test_library_registers_the_control_functions(r):
    libs = r.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "pushgate_lib")
    lib = dict(zip(libs[0][0::2], libs[0][1::2]))
    funcs = {}
    for f in lib["functions"]:
        d = dict(zip(f[0::2], f[1::2]))
        funcs[d["name"]] = d["flags"]
    for name in ("disconnect", "subscribe", "unsubscribe"):
        # no no-writes flag: a function with it may not PUBLISH
        assert funcs[FN + name] == []


ORDER_CASES = [
    # (function, arguments, exact order text)
    ("disconnect", ["42"],
     '{"type":"disconnect","user":"42","code":4000,"reason":""}'),
    ("disconnect", ["42", "{}"],
     '{"type":"disconnect","user":"42","code":4000,"reason":""}'),
    ("disconnect", ["42", '{"reason":"bye","reconnect":true,"revoke":false}'],
     '{"type":"disconnect","user":"42","code":4000,"reason":"bye"}'),
    ("disconnect", ["u.x:y@z-w_1", ' { "reconnect" : false } '],
     '{"type":"disconnect","user":"u.x:y@z-w_1","code":4003,"reason":""}'),
    ("subscribe", ["42", "room.7"],
     '{"type":"subscribe","user":"42","channel":"room.7"}'),
    ("subscribe", ["42", "room.7", "123"],
     '{"type":"subscribe","user":"42","channel":"room.7","since":"123"}'),
    ("subscribe", ["42", "user:7", "0"],
     '{"type":"subscribe","user":"42","channel":"user:7","since":"0"}'),
    ("subscribe", ["42", "broadcast", "9" * 19],
     '{"type":"subscribe","user":"42","channel":"broadcast","since":"' + "9" * 19 + '"}'),
    ("unsubscribe", ["42", "room.7"],
     '{"type":"unsubscribe","user":"42","channel":"room.7"}'),
    ("unsubscribe", ["a" * 123, "b" * 128],
     '{"type":"unsubscribe","user":"' + "a" * 123 + '","channel":"' + "b" * 128 + '"}'),
]


@pytest.mark.parametrize("form", KEY_FORMS)
@pytest.mark.parametrize("fn,args,want", ORDER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ORDER_CASES)])
def test_order_reaches_every_listening_node_and_returns_their_number(
        r, nodes, form, fn, args, want):
    n = fcall(r, fn, *args, key=route(form))
    assert n == 2 and isinstance(n, int)
    assert orders(nodes) == want
    assert not r.exists(REVOKED), "only a revoke writes the revocation hash"


def test_order_count_follows_the_listeners(r):
    assert fcall(r, "unsubscribe", "42", "room.7") == 0
    subs = [listen(r, CONTROL) for _ in range(3)]
    try:
        assert fcall(r, "disconnect", "42", key=ROUTE) == 3
        subs.pop().close()
        wait_until(lambda: len(r.client_list(_type="pubsub")) == 2, msg="a node gone")
        assert fcall(r, "subscribe", "42", "x") == 2
    finally:
        for ps in subs:
            ps.close()


@pytest.mark.parametrize("form", KEY_FORMS)
def test_revoke_stores_redis_second_and_sets_the_ttl(r, nodes, form):
    before = redis_sec(r)
    opts = '{"revoke":true,"reason":"stolen laptop"}'
    assert fcall(r, "disconnect", "42", opts, key=route(form)) == 2
    after = redis_sec(r)
    text = orders(nodes)
    m = re.fullmatch(r'\{"type":"disconnect","user":"42","code":4003,'
                     r'"reason":"stolen laptop","revoked_at":(\d+)\}', text)
    assert m, text  # an integer, never 1.76e+09
    at = int(m.group(1))
    assert before <= at <= after
    assert r.hgetall(REVOKED) == {"42": str(at)}
    assert 86390 < r.ttl(REVOKED) <= 86400

    # a later revocation renews the hash's TTL (it lapses with its newest field)
    r.expire(REVOKED, 50)
    assert fcall(r, "disconnect", "7", '{"revoke":true,"reconnect":true}') == 2
    assert json.loads(orders(nodes))["code"] == 4003
    assert set(r.hgetall(REVOKED)) == {"42", "7"}
    assert r.ttl(REVOKED) > 86390


def test_revoke_ttl_comes_from_the_template(rds):
    load(rds, revoke_ttl=2)
    fcall(rds, "disconnect", "42", '{"revoke":true}')
    assert 0 < rds.ttl(REVOKED) <= 2


def start_of_a_second(r):
    """Redis' current second, with at least 0.7 s of it left, so that calls
    made right after see the same second."""
    def fresh():
        sec, usec = r.time()
        return sec if usec < 300000 else None
    return wait_until(fresh, timeout=3, interval=0.01, msg="start of a second")


@pytest.mark.parametrize("options", [None, "{}", '{"reconnect":false}', '{"revoke":true}'])
def test_every_disconnect_removes_lapsed_revocations(rds, options):
    load(rds, revoke_ttl=2)
    now = start_of_a_second(rds)
    rds.hset(REVOKED, mapping={
        "ancient": "1",
        "lapsed": str(now - 2),        # value + ttl <= now: lapsed
        "live": str(now - 1),          # value + ttl > now: still refuses
        "future": str(now + 100),
        "odd": "not-a-second",         # not written by the function: left alone
    })
    args = ["42"] if options is None else ["42", options]
    fcall(rds, "disconnect", *args)
    want = {"live": str(now - 1), "future": str(now + 100), "odd": "not-a-second"}
    if options == '{"revoke":true}':
        want["42"] = str(now)
    assert rds.hgetall(REVOKED) == want


def test_sweep_of_only_lapsed_fields_leaves_no_hash(rds):
    load(rds, revoke_ttl=2)
    rds.hset(REVOKED, mapping={"a": "1", "b": "2"})
    fcall(rds, "disconnect", "42", key=ROUTE)
    assert not rds.exists(REVOKED)


def test_subscribe_and_unsubscribe_leave_revocations_alone(r):
    r.hset(REVOKED, "a", "1")
    fcall(r, "subscribe", "42", "x")
    fcall(r, "unsubscribe", "42", "x", key=ROUTE)
    assert r.hgetall(REVOKED) == {"a": "1"}


def json_str(s):
    return json.dumps(s, ensure_ascii=False)


REASON_CASES = [
    # (reason given, reason published)
    ("a" * 100, "a" * 100),
    ("a" * 101, "a" * 100),
    ("a" * 99 + "é" + "bcd", "a" * 99),          # é would take bytes 100-101
    ("a" * 98 + "é" + "bcd", "a" * 98 + "é"),     # é ends at byte 100
    ("a" * 97 + "😀" + "x", "a" * 97),            # 4 bytes, 98-101
    ("a" * 96 + "😀" + "x", "a" * 96 + "😀"),
    ("✓" * 40, "✓" * 33),                         # 3 bytes each: 99
    # escapes do not count against the 100 bytes, and a cut never splits one
    ('"' * 120, '"' * 100),
    ("/\\\n\t\x01" * 30, ("/\\\n\t\x01" * 30)[:100]),
    ("a/b </script> \u2028 \x7f \x00 end", "a/b </script> \u2028 \x7f \x00 end"),
]


@pytest.mark.parametrize("reason,want", REASON_CASES,
                         ids=[f"reason-{i}" for i in range(len(REASON_CASES))])
def test_reason_is_cut_to_100_bytes_at_a_character_boundary(r, nodes, reason, want):
    assert len(want.encode()) <= 100
    opts = json.dumps({"reason": reason})  # ASCII, every non-ASCII as \u escape
    assert fcall(r, "disconnect", "42", opts) == 2
    text = orders(nodes)
    order = json.loads(text)
    assert order == {"type": "disconnect", "user": "42", "code": 4000, "reason": want}
    # compact: nothing but the encoded reason between the fixed members
    head = '{"type":"disconnect","user":"42","code":4000,"reason":'
    assert text.startswith(head) and text.endswith("}")
    assert json.loads(text[len(head):-1]) == want


def test_raw_utf8_reason_is_cut_like_an_escaped_one(r, nodes):
    reason = "a" * 99 + "é" + "z"
    opts = ('{"reason":' + json_str(reason) + "}").encode()
    assert b"\\u" not in opts
    assert fcall(r, "disconnect", "42", opts) == 2
    assert json.loads(orders(nodes))["reason"] == "a" * 99


BAD_USERS = ["", "4 2", "a" * 124, "ä", "a/b", "a*", "42\n", "42\r\nPING", b"\xff"]
BAD_CHANNELS = ["", "a b", "a" * 129, "ä", "a/b", "room\n"]
RESERVED = ["_control", "_", "_events"]

MALFORMED = (
    [("disconnect", [u], "user") for u in BAD_USERS]
    + [("subscribe", [u, "room"], "user") for u in BAD_USERS]
    + [("unsubscribe", [u, "room"], "user") for u in BAD_USERS]
    + [("subscribe", ["42", c], "channel") for c in BAD_CHANNELS]
    + [("unsubscribe", ["42", c], "channel") for c in BAD_CHANNELS]
    + [("subscribe", ["42", c], "reserved") for c in RESERVED]
    + [("unsubscribe", ["42", c], "reserved") for c in RESERVED]
    + [("subscribe", ["42", "room", s], "since")
       for s in ["", "abc", "-1", "1.5", " 1", "1 ", "1" * 20, "0x10", "1e3"]]
    # not JSON (cjson.decode would take some of these)
    + [("disconnect", ["42", o], "not JSON") for o in [
        "", " ", "{", "nope", "{'reason':'x'}", '{"reason":"x",}', '{"reason":"x"} {}',
        '{"reason":"x"}x', '{reason:"x"}', '{"revoke":tru}', '{"reason":"a\x01"}',
        '{"revoke":NaN}', '{"revoke":0x10}', '{"revoke":01}',
        "[" * 70 + "]" * 70]]
    # JSON, but not an object
    + [("disconnect", ["42", o], "object") for o in [
        "[]", '["reason"]', '"reason"', "1", "null", "true", "false"]]
    + [("disconnect", ["42", o], "unknown") for o in [
        '{"foo":1}', '{"Reason":"x"}', '{"reason":"x","code":4003}',
        '{"revoked_at":1}', '{"reason ":"x"}', '{"":true}', b'{"\xff":true}',
        '{"\\r\\nX":true}']]
    + [("disconnect", ["42", o], "must be a") for o in [
        '{"reason":1}', '{"reason":null}', '{"reason":["x"]}', '{"reason":{}}',
        '{"reason":true}', '{"reconnect":"false"}', '{"reconnect":0}',
        '{"reconnect":null}', '{"revoke":1}', '{"revoke":null}', '{"revoke":"true"}',
        '{"revoke":[]}']]
    + [("disconnect", ["42", o], "Unicode|UTF-8") for o in [
        b'{"reason":"\xff"}', b'{"reason":"\xc3"}', b'{"reason":"\xc0\xaf"}',
        b'{"reason":"\xed\xa0\x80"}', b'{"reason":"\xf4\x90\x80\x80"}',
        b'{"reason":"' + b"a" * 150 + b'\xff"}',  # past the cut: still refused
        '{"reason":"\\ud800"}', '{"reason":"\\udc00\\ud800"}', '{"reason":"\\ud800x"}']]
    + [("disconnect", [], "arguments"), ("disconnect", ["42", "{}", "x"], "arguments"),
       ("subscribe", ["42"], "arguments"), ("subscribe", ["42", "r", "1", "x"], "arguments"),
       ("unsubscribe", ["42"], "arguments"), ("unsubscribe", ["42", "r", "1"], "arguments")]
)


def malformed_id(case):
    fn, args, _ = case
    return fn + ":" + repr(args)[:50]


@pytest.fixture
def revocations(r):
    """A live and a lapsed revocation: a refused call must not even sweep."""
    fields = {"live": str(redis_sec(r) + 10), "lapsed": "1"}
    r.hset(REVOKED, mapping=fields)
    return fields


@pytest.mark.parametrize("form", KEY_FORMS)
@pytest.mark.parametrize("fn,args,match", MALFORMED, ids=[malformed_id(c) for c in MALFORMED])
def test_malformed_call_is_an_error_and_changes_nothing(
        r, nodes, revocations, form, fn, args, match):
    with pytest.raises(redis_py.exceptions.ResponseError, match=match) as ei:
        fcall(r, fn, *args, key=route(form))
    msg = str(ei.value)
    assert "\n" not in msg and "\r" not in msg and "PING" not in msg
    assert r.hgetall(REVOKED) == revocations
    assert_nothing_published(r, nodes)


WRONG_ROUTES = [
    PREFIX + "revoked", PREFIX + "{_control}", PREFIX + "_control", "{_control}:revoked",
    "other:{_control}:revoked", PREFIX.upper() + "{_control}:revoked",
    ROUTE + " ", PREFIX + "{42}:revoked", PREFIX + "{room}:history",
]


@pytest.mark.parametrize("fn,args", [
    ("disconnect", ["42", '{"revoke":true}']),
    ("subscribe", ["42", "room", "1"]),
    ("unsubscribe", ["42", "room"]),
])
@pytest.mark.parametrize("key", WRONG_ROUTES)
def test_wrong_routing_key_is_an_error_and_changes_nothing(
        r, nodes, revocations, fn, args, key):
    with pytest.raises(redis_py.exceptions.ResponseError, match="key") as ei:
        fcall(r, fn, *args, key=key)
    assert ROUTE in str(ei.value), "the error says which key is wanted"
    assert r.hgetall(REVOKED) == revocations
    assert_nothing_published(r, nodes)


@pytest.mark.parametrize("fn,args", [
    ("disconnect", ["42"]), ("subscribe", ["42", "room"]), ("unsubscribe", ["42", "room"]),
    ("publish", ["room", "1"]),
])
def test_two_keys_are_an_error(r, nodes, fn, args):
    key = PREFIX + "{room}:history" if fn == "publish" else ROUTE
    with pytest.raises(redis_py.exceptions.ResponseError, match="arguments"):
        r.execute_command("FCALL", FN + fn, 2, key, key, *args)
    assert r.keys("*") == []
    assert_nothing_published(r, nodes)


def test_one_key_publish_matches_the_zero_key_form(r):
    ps = r.pubsub()
    ps.subscribe(PREFIX + "news")
    wait_until(lambda: ps.get_message(timeout=0.1), msg="subscribe confirmation")
    a = publish(r, "news", '{"data":1}')
    b = fcall(r, "publish", "news", '{"data":2}', key=PREFIX + "{news}:history")
    got = [wait_until(lambda: ps.get_message(timeout=0.1), msg="message")["data"]
           for _ in range(2)]
    ps.close()
    assert int(a) < int(b)
    want = ['{"data":1,"id":"%s"}' % a, '{"data":2,"id":"%s"}' % b]
    assert got == want
    assert r.xrange(PREFIX + "history:news") == [(f"{a}-0", {"p": want[0]}),
                                                 (f"{b}-0", {"p": want[1]})]
    assert r.get(PREFIX + "seq") == b


@pytest.mark.parametrize("key", [
    PREFIX + "{other}:history", PREFIX + "history:news", PREFIX + "{news}:presence",
    "{news}:history", PREFIX + "{news}:history:", "other:{news}:history", PREFIX + "{news}",
    ROUTE,
])
def test_one_key_publish_refuses_a_key_of_another_channel(r, key):
    with pytest.raises(redis_py.exceptions.ResponseError, match="key") as ei:
        fcall(r, "publish", "news", "1", key=key)
    assert PREFIX + "{<channel>}:history" in str(ei.value)
    assert r.keys("*") == [], "a refused publish must write nothing"


@pytest.mark.parametrize("channel,match", [
    ("_control", "reserved"), ("a b", "channel"), ("", "channel"),
])
def test_one_key_publish_still_checks_the_channel(r, channel, match):
    with pytest.raises(redis_py.exceptions.ResponseError, match=match):
        fcall(r, "publish", channel, "1", key=PREFIX + "{" + channel + "}:history")
    assert r.keys("*") == []


def test_each_prefix_has_its_own_orders_and_revocations(rds):
    other = "other-app.v2:"
    stem = fn_name(other)
    load(rds, PREFIX)
    load(rds, other, revoke_ttl=5)
    mine, theirs = listen(rds, CONTROL), listen(rds, other + "_control")
    try:
        assert fcall(rds, "disconnect", "42", '{"revoke":true}', stem=stem,
                     key=other + "{_control}:revoked") == 1
        assert json.loads(next_order(theirs, other + "_control"))["code"] == 4003
        assert set(rds.hgetall(other + "revoked")) == {"42"}
        assert 0 < rds.ttl(other + "revoked") <= 5
        assert not rds.exists(REVOKED)
        with pytest.raises(redis_py.exceptions.ResponseError, match="key"):
            fcall(rds, "subscribe", "42", "x", stem=stem, key=ROUTE)
        assert fcall(rds, "subscribe", "42", "x") == 1
        assert json.loads(next_order(mine))["type"] == "subscribe"
        # their next order is their own marker: mine never reached them
        assert fcall(rds, "unsubscribe", "marker", "m", stem=stem) == 1
        assert json.loads(next_order(theirs, other + "_control"))["user"] == "marker"
    finally:
        mine.close()
        theirs.close()
