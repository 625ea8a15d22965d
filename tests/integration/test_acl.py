"""ACL users (SPEC §10): redis://user:password@host:port/db sends AUTH user
password; a user holding only the rights the README's rule grants runs every
part of the node; a wrong password is treated like an unreachable Redis (the
node stays up, /readyz 503, the log says why, it retries with backoff) and the
node becomes ready once the user is fixed. A real redis-server on loopback,
whose default user is switched off so nothing but the ACL user can work."""

import re
import time

import pytest
import redis as redis_py

import pgtest
from faultkit import open_stream
from pgtest import async_wait_until, wait_until
from sentinelkit import ACL_RULE, acl_setuser

CH = "feed"
USER, PASSWORD = "pushgate", "s3cret-pw"
ADMIN, ADMIN_PW = "admin", "admin-pw"

@pytest.fixture
def admin(redis_server):
    """An admin client; the default user is off, so the gateway can only
    get in as USER."""
    c = redis_server.client()
    c.execute_command("ACL", "SETUSER", ADMIN, "on", f">{ADMIN_PW}", "~*", "&*", "+@all")
    c.execute_command("ACL", "SETUSER", "default", "off")
    c.close()
    a = redis_py.Redis(host="127.0.0.1", port=redis_server.port, username=ADMIN,
                       password=ADMIN_PW, decode_responses=True, socket_timeout=5)
    a.execute_command("CLIENT", "KILL", "USER", "default")   # the fixture's own
    yield a
    a.close()


def url(redis_server, user=USER, password=PASSWORD, db=0):
    return f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/{db}"


ARGS = ["--api-key", pgtest.API_KEY, "--public-topics", CH]


def test_readme_documents_the_tested_rule():
    readme = (pgtest.REPO / "README.md").read_text()
    assert ACL_RULE in " ".join(readme.split()), "README's ACL rule differs from the tested one"


def test_acl_user_with_the_documented_rights_runs_the_node(redis_server, admin,
                                                           gateway_factory):
    acl_setuser(admin, USER, PASSWORD)
    # db 2: SELECT is among the rights; a short ping interval makes the
    # liveness probe (PUBLISH through the command link) run too.
    gw = gateway_factory(ARGS + ["--ping-interval", "1"], redis_url=url(redis_server, db=2))

    async def main():
        c = await open_stream(gw.port, "ws", f"channels={CH}", keep=True)
        await async_wait_until(lambda: admin.pubsub_numsub("pushgate:" + CH)[0][1] >= 1,
                               timeout=10, msg="subscribed")
        r1 = gw.publish({"channel": CH, "data": {"n": 1}})
        r2 = gw.publish({"channel": CH, "data": {"n": 2}})
        assert r1.status == 200 and r2.status == 200, (r1, r2)
        await async_wait_until(lambda: len(c.ids) == 2, msg="two deliveries")
        # recovery reads history (FCALL_RO) with the same user
        first = r1.json()["id"]
        again = await open_stream(gw.port, "ws", f"channels={CH}&since={first}", keep=True)
        await async_wait_until(lambda: again.ids, msg="replayed message")
        assert again.ids == [int(r2.json()["id"])]
        c.transport.close()
        again.transport.close()
    pgtest.run(main())
    # The liveness probe ran too: a PUBLISH beyond the two inside the
    # publish function (commandstats counts both kinds).
    wait_until(lambda: admin.info("commandstats")["cmdstat_publish"]["calls"] >= 3,
               timeout=5, msg="the liveness probe's PUBLISH")
    assert pgtest.metric_value(gw.metrics(), "pushgate_redis_reconnects_total") == 0
    # Redis denied nothing to anyone
    assert admin.execute_command("ACL", "LOG") == []
    assert "NOPERM" not in gw.log()
    # every link authenticated as USER, none as default
    users = {c["user"] for c in admin.client_list() if c.get("user") != ADMIN}
    assert users == {USER}


def test_wrong_password_keeps_the_node_up_unready_until_the_user_is_fixed(
        redis_server, admin, gateway_factory):
    acl_setuser(admin, USER, "another-password")
    gw = gateway_factory(ARGS, redis_url=url(redis_server), ready=False)
    wait_until(lambda: "AUTH failed: WRONGPASS" in gw.log(), timeout=10,
               msg="the AUTH failure logged")
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < 3:
        seen.append(gw.readyz())
        time.sleep(0.1)
    assert set(seen) == {503}, seen
    assert gw.alive()
    assert gw.publish({"channel": CH, "data": 1}).status == 503
    assert gw.get("/healthz").status == 200
    log = gw.log()
    own = "\n".join(ln for ln in log.splitlines() if not ln.startswith("### "))
    assert PASSWORD not in own and "another-password" not in own
    # Backoff: a handful of attempts per link in those seconds, each wait
    # longer than the one before until the cap, not a tight loop.
    waits = [int(m) for m in re.findall(r"link=subscriber state=disconnected reconnecting in (\d+) ms",
                                        log)]
    assert 3 <= len(waits) <= 20, waits
    assert waits[-1] > waits[0] and max(waits) <= 5000, waits
    # The operator fixes the user: ready within one capped backoff.
    admin.execute_command("ACL", "SETUSER", USER, f">{PASSWORD}")
    wait_until(lambda: gw.readyz() == 200, timeout=8, msg="ready once the password is right")
    assert gw.publish({"channel": CH, "data": 1}).status == 200


def test_user_without_a_needed_right_is_refused_and_says_why(redis_server, admin,
                                                             gateway_factory):
    """Rights missing for the setup (here FUNCTION LOAD): unready, the NOPERM
    logged, no crash; granted later, the node becomes ready."""
    acl_setuser(admin, USER, PASSWORD)
    admin.execute_command("ACL", "SETUSER", USER, "-function|load")
    gw = gateway_factory(ARGS, redis_url=url(redis_server), ready=False)
    wait_until(lambda: "NOPERM" in gw.log(), timeout=10, msg="NOPERM logged")
    assert gw.readyz() == 503 and gw.alive()
    admin.execute_command("ACL", "SETUSER", USER, "+function|load")
    wait_until(lambda: gw.readyz() == 200, timeout=8, msg="ready once granted")
