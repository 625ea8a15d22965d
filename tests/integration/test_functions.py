"""gateway/functions.lua against a real redis-server (SPEC §3, §4 Recovery).

The template is rendered here exactly as the gateway renders it (plain text
replacement of its 5 placeholders) and loaded with FUNCTION LOAD REPLACE."""

import json
import time

import pytest
import redis as redis_py

import pgtest
from pgtest import fn_name, render_functions, wait_until

PREFIX = "pushgate:"
FN = "pushgate_"


def load(r, prefix=PREFIX, **kw):
    return r.execute_command("FUNCTION", "LOAD", "REPLACE", render_functions(prefix, **kw))


def publish(r, channel, payload, fn=FN):
    return r.execute_command("FCALL", fn + "publish", 0, channel, payload)


def history(r, channel, since, fn=FN):
    return r.execute_command("FCALL_RO", fn + "history", 0, channel, str(since))


def redis_now_ms(r):
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def pairs(flat):
    """[id1, env1, id2, env2, ...] -> [(id1, env1), ...]"""
    return list(zip(flat[0::2], flat[1::2]))


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory):
    """One redis-server for the whole module: these tests call functions on
    Redis and start no gateway, and a server per test (300 of them in
    test_control_functions.py) was most of their time. Each test gets it
    empty (rds below)."""
    with pgtest.running_redis(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


@pytest.fixture
def rds(shared_redis):
    """The shared server, emptied: no keys, no function library."""
    c = shared_redis.client()
    c.flushall()
    c.execute_command("FUNCTION", "FLUSH")
    yield c
    c.close()


@pytest.fixture
def r(rds):
    load(rds)
    return rds


def test_library_is_named_after_prefix_and_history_is_read_only(r):
    libs = r.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "pushgate_lib")
    assert len(libs) == 1
    lib = dict(zip(libs[0][0::2], libs[0][1::2]))
    assert lib["library_name"] == "pushgate_lib"
    funcs = {}
    for f in lib["functions"]:
        d = dict(zip(f[0::2], f[1::2]))
        funcs[d["name"]] = d["flags"]
    assert set(funcs) == {"pushgate_publish", "pushgate_history", "pushgate_disconnect",
                          "pushgate_subscribe", "pushgate_unsubscribe",
                          "pushgate_presence", "pushgate_presence_stats",
                          "pushgate_presence_update", "pushgate_presence_beat",
                          "pushgate_presence_reset"}
    assert funcs["pushgate_history"] == ["no-writes"]
    assert funcs["pushgate_publish"] == []


def test_publish_returns_decimal_id_from_redis_clock(r):
    before = redis_now_ms(r)
    rid = publish(r, "news", '{"data":1}')
    after = redis_now_ms(r)
    assert isinstance(rid, str) and rid.isdigit(), rid
    n = int(rid)
    assert before * 1000 <= n <= after * 1000 + 999
    assert n < 2 ** 53
    assert r.get("pushgate:seq") == rid


def test_ids_rise_strictly_across_channels(r):
    ids = [int(publish(r, ch, str(i)))
           for i in range(60) for ch in ("a", "user:1", "orders.eu")]
    assert ids == sorted(set(ids)), "ids must rise strictly, never repeat"
    assert r.get("pushgate:seq") == str(ids[-1])


def test_id_follows_seq_when_seq_is_ahead_of_clock(r):
    ahead = redis_now_ms(r) * 1000 + 10 ** 9
    r.set("pushgate:seq", str(ahead))
    assert publish(r, "a", "1") == str(ahead + 1)
    assert publish(r, "b", "2") == str(ahead + 2)


def test_id_stays_formatted_as_digits_near_2_pow_53(r):
    big = 2 ** 53 - 10
    r.set("pushgate:seq", str(big))
    assert publish(r, "a", "1") == str(big + 1)


def test_ids_keep_rising_after_redis_loses_its_data(r):
    first = int(publish(r, "a", "1"))
    # Let Redis' clock pass the first id's millisecond, then lose everything
    # (seq included) as a restart without persistence would.
    wait_until(lambda: redis_now_ms(r) > first // 1000, timeout=2, msg="clock tick")
    r.flushall()
    assert r.get("pushgate:seq") is None
    floor = redis_now_ms(r) * 1000
    second = int(publish(r, "a", "2"))
    assert second >= floor
    assert second > first


ENVELOPE_CASES = [
    # (payload, expected envelope with ID for the id)
    ('{"event":"order.shipped","data":{"order":7}}',
     '{"event":"order.shipped","data":{"order":7},"id":"ID"}'),
    ('{"data":{"x":[],"y":{}},"n":1.50}',
     '{"data":{"x":[],"y":{}},"n":1.50,"id":"ID"}'),
    ('  {"data": [1, 2]} \n', '  {"data": [1, 2],"id":"ID"}'),
    ('{"data":null}', '{"data":null,"id":"ID"}'),
    ('{"a":1}', '{"data":{"a":1},"id":"ID"}'),
    ('{"x":{"data":1}}', '{"data":{"x":{"data":1}},"id":"ID"}'),
    ('[]', '{"data":[],"id":"ID"}'),
    ('[1, 2.50, 1e3, {}]', '{"data":[1, 2.50, 1e3, {}],"id":"ID"}'),
    ('42', '{"data":42,"id":"ID"}'),
    ('-0.5e+3', '{"data":-0.5e+3,"id":"ID"}'),
    ('12345678901234567890123', '{"data":12345678901234567890123,"id":"ID"}'),
    ('"hi"', '{"data":"hi","id":"ID"}'),
    ('true', '{"data":true,"id":"ID"}'),
    ('null', '{"data":null,"id":"ID"}'),
    ('hello "world"', '{"data":"hello \\"world\\"","id":"ID"}'),
    ('', '{"data":"","id":"ID"}'),
    # cjson.decode accepts these, but they are not JSON: they must arrive as
    # strings, never copied verbatim into the envelope.
    ('0x10', '{"data":"0x10","id":"ID"}'),
    ('NaN', '{"data":"NaN","id":"ID"}'),
    ('Infinity', '{"data":"Infinity","id":"ID"}'),
    ('01', '{"data":"01","id":"ID"}'),
    ('1.', '{"data":"1.","id":"ID"}'),
    ('[1,]', '{"data":"[1,]","id":"ID"}'),
    ('{"data":1', '{"data":"{\\"data\\":1","id":"ID"}'),
    ('{"data":1}}', '{"data":"{\\"data\\":1}}","id":"ID"}'),
    # Unicode passes through byte for byte.
    ('{"data":"héllo ✓ 😀"}', '{"data":"héllo ✓ 😀","id":"ID"}'),
    ('"\\u00e9\\ud83d\\ude00"', '{"data":"\\u00e9\\ud83d\\ude00","id":"ID"}'),
    ('héllo ✓', '{"data":"héllo ✓","id":"ID"}'),
]


@pytest.mark.parametrize("payload,expected", ENVELOPE_CASES,
                         ids=[repr(c[0])[:40] for c in ENVELOPE_CASES])
def test_envelope_text_is_exact_and_shared_by_pubsub_and_history(r, payload, expected):
    ps = r.pubsub()
    ps.subscribe("pushgate:orders.eu")
    wait_until(lambda: ps.get_message(timeout=0.1), msg="subscribe confirmation")
    rid = publish(r, "orders.eu", payload)
    want = expected.replace("ID", rid)

    msg = wait_until(lambda: ps.get_message(timeout=0.1), msg="published message")
    ps.close()
    assert msg["channel"] == "pushgate:orders.eu"
    assert msg["data"] == want

    entries = r.xrange("pushgate:history:orders.eu")
    assert entries == [(f"{rid}-0", {"p": want})]
    env = json.loads(want)  # every envelope is JSON with id a digit string
    assert env["id"] == rid


def test_envelope_for_non_json_text_decodes_to_the_same_text(r):
    for text in ("a/b \\ \t \x01 end", "ünïcødé", "{not json}", "[1 2]"):
        rid = publish(r, "x", text)
        (_, fields), = r.xrevrange("pushgate:history:x", count=1)
        assert json.loads(fields["p"]) == {"data": text, "id": rid}


@pytest.mark.parametrize("payload,data", [
    (b"\xff abc", "\ufffd abc"),
    (b'{"data":"\xc3"}', '{"data":"\ufffd"}'),
    (b"\xc0\xaf overlong", "\ufffd\ufffd overlong"),
    (b"\xed\xa0\x80 surrogate", "\ufffd\ufffd\ufffd surrogate"),
    (b"\xf4\x90\x80\x80 too big", "\ufffd\ufffd\ufffd\ufffd too big"),
    (b"ok \xe2\x9c\x93 then \xe2\x9c", "ok \u2713 then \ufffd\ufffd"),
])
def test_invalid_utf8_becomes_a_string_with_replacement_chars(rds, payload, data):
    load(rds)
    rid = rds.execute_command("FCALL", "pushgate_publish", 0, "x", payload)
    (_, fields), = rds.xrevrange("pushgate:history:x", count=1)
    assert json.loads(fields["p"]) == {"data": data, "id": rid}


def test_nesting_the_gateway_can_parse_is_kept_verbatim(r):
    # 63 levels + the {"data": ...} wrapper = 64, the gateway's parse limit
    payload = "[" * 63 + "]" * 63
    rid = publish(r, "x", payload)
    (_, fields), = r.xrevrange("pushgate:history:x", count=1)
    assert fields["p"] == '{"data":' + payload + ',"id":"' + rid + '"}'


def test_deeper_nesting_becomes_text_instead_of_an_unparseable_envelope(r):
    # deeper than the gateway parses: stored as a JSON string, as the gateway
    # itself would treat it on a raw PUBLISH; 3000 levels also prove the
    # validator is iterative (no stack overflow)
    for depth in (64, 3000):
        payload = "[" * depth + "]" * depth
        rid = publish(r, "x", payload)
        (_, fields), = r.xrevrange("pushgate:history:x", count=1)
        assert json.loads(fields["p"]) == {"data": payload, "id": rid}


@pytest.mark.parametrize("channel", [
    "", "a" * 129, "a b", "ä", "a/b", "a*", "news\n", "_reserved", "_",
])
def test_publish_rejects_bad_or_reserved_channel(r, channel):
    with pytest.raises(redis_py.exceptions.ResponseError) as ei:
        publish(r, channel, "1")
    msg = str(ei.value)
    assert ("reserved" in msg) if channel.startswith("_") else ("channel" in msg)
    assert r.keys("*") == [], "a refused publish must write nothing"


@pytest.mark.parametrize("channel", ["a", "a" * 128, "user:42", "x.y-z_w:v@host", "A9"])
def test_publish_accepts_every_valid_channel(r, channel):
    rid = publish(r, channel, "1")
    assert r.xlen(f"pushgate:history:{channel}") == 1
    assert rid.isdigit()


def test_publish_rejects_payload_over_max_bytes(rds):
    load(rds, max_bytes=64)
    assert publish(rds, "a", "x" * 64).isdigit()
    assert publish(rds, "a", "é" * 32).isdigit()  # 64 bytes, 32 chars
    with pytest.raises(redis_py.exceptions.ResponseError, match="too large"):
        publish(rds, "a", "x" * 65)
    with pytest.raises(redis_py.exceptions.ResponseError, match="too large"):
        publish(rds, "a", "é" * 32 + "x")
    assert rds.xlen("pushgate:history:a") == 2


@pytest.mark.parametrize("args", [
    [0], [0, "a"], [0, "a", "1", "extra"], [1, "somekey", "a", "1"],
])
def test_publish_rejects_wrong_argument_count(r, args):
    with pytest.raises(redis_py.exceptions.ResponseError, match="arguments"):
        r.execute_command("FCALL", "pushgate_publish", *args)
    assert r.keys("*") == []


def test_history_is_capped_at_history_size_exactly(rds):
    load(rds, history_size=3)
    ids = [publish(rds, "c", str(i)) for i in range(5)]
    entries = rds.xrange("pushgate:history:c")
    assert [e[0] for e in entries] == [f"{i}-0" for i in ids[2:]]


def test_history_expires_history_ttl_after_last_message(rds):
    load(rds, history_ttl=300)
    publish(rds, "c", "1")
    assert 290 <= rds.ttl("pushgate:history:c") <= 300
    rds.expire("pushgate:history:c", 5)
    publish(rds, "c", "2")
    assert 290 <= rds.ttl("pushgate:history:c") <= 300, "each publish renews the TTL"
    assert rds.ttl("pushgate:seq") == -1, "seq must not expire"


def test_history_returns_entries_after_since_in_order(r):
    ids = [publish(r, "c", json.dumps({"data": i})) for i in range(5)]
    publish(r, "other", "x")
    res = history(r, "c", ids[1])
    assert res[0] == 1
    got = pairs(res[1:])
    assert [i for i, _ in got] == ids[2:]
    assert [json.loads(e) for _, e in got] == [{"data": i, "id": ids[i]} for i in range(2, 5)]
    assert history(r, "c", ids[-1]) == [1]


def test_history_since_between_ids_of_other_channels(r):
    a1 = publish(r, "a", "1")
    b1 = publish(r, "b", "2")
    a2 = publish(r, "a", "3")
    res = history(r, "a", b1)
    assert res[0] == 1 and [i for i, _ in pairs(res[1:])] == [a2]
    assert a1 < b1 < a2


def test_history_after_trim_is_incomplete_only_if_needed_entries_are_gone(rds):
    load(rds, history_size=3)
    ids = [publish(rds, "c", str(i)) for i in range(5)]
    # ids[1] was trimmed: asking for everything after ids[0] cannot be complete.
    res = history(rds, "c", ids[0])
    assert res[0] == 0
    assert [i for i, _ in pairs(res[1:])] == ids[2:]
    # Everything after ids[1] is still there.
    res = history(rds, "c", ids[1])
    assert res[0] == 1
    assert [i for i, _ in pairs(res[1:])] == ids[2:]
    res = history(rds, "c", ids[3])
    assert res == [1, ids[4], json.dumps({"data": 4, "id": ids[4]}, separators=(",", ":"))]


def test_history_size_zero_keeps_nothing_and_reports_the_gap(rds):
    load(rds, history_size=0)
    first = publish(rds, "c", "1")
    publish(rds, "c", "2")
    assert rds.xlen("pushgate:history:c") == 0
    assert history(rds, "c", first)[0] == 0


def test_history_of_missing_stream_with_recent_since_is_complete(r):
    since = redis_now_ms(r) * 1000 - 5000 * 1000  # 5 s ago, TTL is 300 s
    assert history(r, "never", since) == [1]


def test_history_of_missing_stream_with_since_older_than_ttl_is_incomplete(r):
    since = (redis_now_ms(r) - 301 * 1000) * 1000
    assert history(r, "never", since) == [0]


def test_history_of_expired_stream_is_incomplete(rds):
    load(rds, history_ttl=1)
    first = publish(rds, "c", "1")
    wait_until(lambda: rds.exists("pushgate:history:c") == 0, timeout=5,
               msg="stream expiry")
    wait_until(lambda: redis_now_ms(rds) - int(first) // 1000 > 1000, timeout=2,
               msg="since older than the TTL")
    assert history(rds, "c", first) == [0]
    # A new message after expiry: still incomplete (what came between is
    # gone), but what there is gets delivered.
    second = publish(rds, "c", "2")
    res = history(rds, "c", first)
    assert res[0] == 0 and [i for i, _ in pairs(res[1:])] == [second]


def test_history_older_than_ttl_but_still_reaching_back_is_complete(rds):
    load(rds, history_ttl=1)
    first = publish(rds, "c", "1")
    rds.persist("pushgate:history:c")  # as if messages kept it alive
    wait_until(lambda: redis_now_ms(rds) - int(first) // 1000 > 1000, timeout=3,
               msg="since older than the TTL")
    second = publish(rds, "c", "2")
    res = history(rds, "c", first)
    assert res[0] == 1 and [i for i, _ in pairs(res[1:])] == [second]


def test_history_works_through_fcall_ro_on_a_read_only_replica_flagged_call(r):
    publish(r, "c", "1")
    # no-writes functions may be called with FCALL_RO; publish may not.
    assert history(r, "c", 0)[1:2] != []
    with pytest.raises(redis_py.exceptions.ResponseError):
        r.execute_command("FCALL_RO", "pushgate_publish", 0, "c", "1")


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "", "12345678901234567890123"])
def test_history_rejects_malformed_since(r, since):
    with pytest.raises(redis_py.exceptions.ResponseError, match="since"):
        history(r, "c", since)


def test_history_rejects_bad_channel_and_arg_count(r):
    with pytest.raises(redis_py.exceptions.ResponseError, match="channel"):
        history(r, "a b", 0)
    with pytest.raises(redis_py.exceptions.ResponseError, match="arguments"):
        r.execute_command("FCALL_RO", "pushgate_history", 0, "c")


def test_two_prefixes_share_one_redis_each_with_its_own_function(rds):
    other = "other-app.v2:"
    assert fn_name(other) == "other_app_v2_"
    load(rds, PREFIX, history_size=5)
    load(rds, other, history_size=2)
    load(rds, PREFIX, history_size=5)  # REPLACE of one leaves the other
    names = sorted(lib[1] for lib in rds.execute_command("FUNCTION", "LIST"))
    assert names == ["other_app_v2_lib", "pushgate_lib"]

    ps = rds.pubsub()
    ps.subscribe("pushgate:news", "other-app.v2:news")
    for _ in range(2):
        wait_until(lambda: ps.get_message(timeout=0.1), msg="subscribed")
    a = publish(rds, "news", "1")
    b = publish(rds, "news", "2", fn="other_app_v2_")
    got = [wait_until(lambda: ps.get_message(timeout=0.1), msg="message")
           for _ in range(2)]
    ps.close()
    assert [(m["channel"], json.loads(m["data"])["id"]) for m in got] == \
        [("pushgate:news", a), ("other-app.v2:news", b)]
    assert rds.get("pushgate:seq") == a
    assert rds.get("other-app.v2:seq") == b
    assert rds.xlen("pushgate:history:news") == 1
    assert rds.xlen("other-app.v2:history:news") == 1
    for i in range(3):
        publish(rds, "news", str(i), fn="other_app_v2_")
    assert rds.xlen("other-app.v2:history:news") == 2, "its own history size"
    res = history(rds, "news", 0, fn="other_app_v2_")
    assert len(pairs(res[1:])) == 2


def test_payload_at_max_bytes_of_json_numbers_is_fast_enough(rds):
    load(rds, max_bytes=65536)
    payload = "[" + ",".join(["123.5"] * 10000) + "]"
    payload = payload[:65535].rsplit(",", 1)[0] + "]"
    t0 = time.monotonic()
    rid = publish(rds, "big", payload)
    elapsed = time.monotonic() - t0
    (_, fields), = rds.xrevrange("pushgate:history:big", count=1)
    assert fields["p"] == '{"data":' + payload + ',"id":"' + rid + '"}'
    assert elapsed < 0.5, f"publishing 64 KB took {elapsed:.3f}s"
    text = '"' + "日本" * 10922 + '"'  # 65538 bytes would be too many
    text = text[:-2] + '"'
    assert len(text.encode()) <= 65536
    t0 = time.monotonic()
    publish(rds, "big", text)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"publishing 64 KB of UTF-8 took {elapsed:.3f}s"
