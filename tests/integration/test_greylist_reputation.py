#!/usr/bin/python3
"""Greylisting and reputation through the real daemon (issue 4, point 4: integration).

The same stories as the unit scenarios, with second-scale durations, through the policy
protocol:
  - a correct MTA is deferred with a text that says when to retry, passes after min_delay,
    and its network is auto-allowed after auto_allow_after passes;
  - a mail farm retrying from another network its SPF record authorises passes (unbound
    publishes the record);
  - a bot re-sending at once never passes, is banned (450), shows up in `spamward ip` and in
    the blocklist file, and `spamward allow` lifts the ban (file and answer);
  - a multi-recipient message is deferred at DATA as a whole and accepted as a whole;
  - selective mode leaves a clean sender alone.
"""

import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from unbound import Unbound  # noqa: E402

MIN_DELAY = 2.0
LOCAL_ZONES = [("farm.test.", "static")]
LOCAL_DATA = ['farm.test. TXT "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all"']


def greylisting(**extra):
    g = {"mode": "always", "min_delay": "2s", "max_wait": "1m", "auto_allow_after": 2,
         "auto_allow_ttl": "1h", "hammering": 4}
    g.update(extra)
    return g


class GreylistAndReputation(h.IntegrationCase):
    def settings(self, **overrides):
        s = {"greylist": greylisting(),
             "reputation": {"ban_base": "30s", "ban_factor": 4.0, "ban_max": "1h"},
             "ips": {"export": "all"}}
        s.update(overrides)
        return s

    def rcpt(self, sw, client, sender, rcpt, conn=None, **kw):
        fields = dict(client_address=client, sender=sender, recipient=rcpt,
                      helo_name="mx.example.net", client_name="mx.example.net",
                      reverse_client_name="mx.example.net")
        fields.update(kw)
        attrs = h.policy_attrs(**fields)
        if conn is not None:
            return conn.request(attrs)
        return sw.policy(attrs)

    def test_correct_mta_passes_and_is_auto_allowed(self):
        sw = self.spamward(self.settings())
        client, sender = "192.0.2.20", "news@sender.example"
        first = self.rcpt(sw, client, sender, "a@local.example.test")
        self.assertTrue(first["action"].startswith("DEFER_IF_PERMIT 4.7.1"), first)
        self.assertRegex(first["action"], r"try again in \d+ seconds? \(after \d\d:\d\d:\d\d UTC\)")
        # An early retry is deferred again and does not count.
        early = self.rcpt(sw, client, sender, "a@local.example.test")
        self.assertTrue(early["action"].startswith("DEFER_IF_PERMIT"), early)
        time.sleep(MIN_DELAY + 0.3)
        passed = self.rcpt(sw, client, sender, "a@local.example.test")
        self.assertEqual(passed["action"], "DUNNO", passed)
        self.assertIsNotNone(sw.wait_log(lambda l: "decision" in l and "GREYLIST_PASSED" in l))
        # A second triplet from the same /24 (another host), passed after its delay.
        other = "192.0.2.21"
        self.assertTrue(self.rcpt(sw, other, sender, "b@local.example.test")["action"]
                        .startswith("DEFER_IF_PERMIT"))
        time.sleep(MIN_DELAY + 0.3)
        self.assertEqual(self.rcpt(sw, other, sender, "b@local.example.test")["action"], "DUNNO")
        # Two successful retries: the /24 now skips greylisting for a new triplet.
        fresh = self.rcpt(sw, "192.0.2.99", "someone@else.example", "c@local.example.test")
        self.assertEqual(fresh["action"], "DUNNO", fresh)
        self.assertIsNotNone(sw.wait_log(lambda l: "GREYLIST_AUTO_ALLOWED" in l))
        rc, out, err = sw.cli("ip", "192.0.2.20")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"greylist network 192\.0\.2\.0/24: 2 successful retries")
        self.assertIn("auto-allowed until", out)

    def test_farm_retrying_from_another_spf_network_passes(self):
        dns = Unbound(self.tmp, local_zones=LOCAL_ZONES, local_data=LOCAL_DATA)
        self._servers.append(dns)
        dns.start()
        sw = self.spamward(self.settings(dns={"servers": [f"127.0.0.1@{dns.port}"],
                                              "timeout_ms": 500}))
        first = self.rcpt(sw, "198.51.100.7", "bulk@farm.test", "d@local.example.test")
        self.assertTrue(first["action"].startswith("DEFER_IF_PERMIT"), first)
        self.assertIsNotNone(sw.wait_log(lambda l: "198.51.100.7" in l and "SPF_PASS" in l and
                                         "GREYLIST(" in l))
        time.sleep(MIN_DELAY + 0.3)
        # The retry comes from another pool network that the same SPF record authorises.
        retry = self.rcpt(sw, "203.0.113.44", "bulk@farm.test", "d@local.example.test")
        self.assertEqual(retry["action"], "DUNNO", retry)
        # A sender whose SPF does not cover the new network gets no such favour.
        self.assertTrue(self.rcpt(sw, "198.51.100.8", "x@nospf.test", "e@local.example.test")
                        ["action"].startswith("DEFER_IF_PERMIT"))
        time.sleep(MIN_DELAY + 0.3)
        moved = self.rcpt(sw, "203.0.113.45", "x@nospf.test", "e@local.example.test")
        self.assertTrue(moved["action"].startswith("DEFER_IF_PERMIT"), moved)

    def test_hammering_bot_is_banned_exported_and_lifted(self):
        sw = self.spamward(self.settings())
        bot = "192.0.2.66"
        banned = os.path.join(sw.dir, "banned.txt")

        def exported():
            with open(banned) as f:
                return f.read().split()
        answers = [self.rcpt(sw, bot, "win@lottery.example", "f@local.example.test")["action"]
                   for _ in range(5)]
        for a in answers:
            self.assertTrue(a.startswith("DEFER_IF_PERMIT"), answers)
        # The 4th early retry was the offence: the next connection meets the ban.
        ban = self.rcpt(sw, bot, "win@lottery.example", "f@local.example.test")
        self.assertTrue(ban["action"].startswith("450 4.7.1"), ban)
        self.assertIn("try again later", ban["action"])
        self.assertTrue(h.wait_until(lambda: os.path.exists(banned) and bot in exported(), 5),
                        f"{bot} not exported to {banned}")
        # Even after min_delay the bot does not pass: it is banned, and its triplet is marked.
        time.sleep(MIN_DELAY + 0.3)
        self.assertTrue(self.rcpt(sw, bot, "win@lottery.example", "f@local.example.test")
                        ["action"].startswith("450"))
        rc, out, err = sw.cli("ip", bot)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"offences: 1 in all")
        self.assertIn("hammering", out)
        self.assertRegex(out, r"ban: 192\.0\.2\.66 until .* \(offence 1, 4xx, temporary\)")
        self.assertRegex(out, r"next offence: number 2, ban for 2m")
        # The admin forgives: the ban is lifted, the export drops it, mail is accepted.
        rc, out, err = sw.cli("allow", "add", bot)
        self.assertEqual(rc, 0, err)
        self.assertIn("lifted 1 ban", out)
        self.assertTrue(h.wait_until(lambda: bot not in exported(), 5), exported())
        ok = self.rcpt(sw, bot, "win@lottery.example", "f@local.example.test")
        self.assertEqual(ok["action"], "DUNNO", ok)

    def test_multi_recipient_message_deferred_and_accepted_as_a_whole(self):
        sw = self.spamward(self.settings(greylist=greylisting(mode="selective"),
                                         actions={"greylist": 0.5},
                                         scores={"HELO_NOT_FQDN": 1.0}))
        client, sender = "192.0.2.30", "list@example.org"

        def deliver():
            with h.PolicyConnection(sw.policy_port) as conn:
                instance = h.policy_attrs()["instance"]
                common = dict(instance=instance, helo_name="badhelo")
                r1 = self.rcpt(sw, client, sender, "one@local.example.test", conn=conn, **common)
                r2 = self.rcpt(sw, client, sender, "postmaster@local.example.test", conn=conn,
                               **common)
                data = self.rcpt(sw, client, sender, "", conn=conn, recipient_count="1",
                                 protocol_state="DATA", **common)
                return r1["action"], r2["action"], data["action"]

        r1, r2, data = deliver()
        self.assertTrue(r1.startswith("DEFER_IF_PERMIT"), r1)
        self.assertEqual(r2, "DUNNO")  # postmaster@ is exempt, so it got 250...
        self.assertTrue(data.startswith("DEFER_IF_PERMIT"), data)  # ...but the message waits
        time.sleep(MIN_DELAY + 0.3)
        r1, r2, data = deliver()
        self.assertEqual((r1, r2, data), ("DUNNO", "DUNNO", "DUNNO"))

    def test_selective_mode_leaves_clean_senders_alone(self):
        sw = self.spamward(self.settings(greylist=greylisting(mode="selective")))
        reply = self.rcpt(sw, "192.0.2.40", "friend@small.example", "g@local.example.test")
        self.assertEqual(reply["action"], "DUNNO", reply)
        line = sw.wait_log(lambda l: "decision" in l and "192.0.2.40" in l)
        self.assertIsNotNone(line)
        self.assertNotIn("GREYLIST", line)

    def test_bad_compat_list_is_a_config_error(self):
        compat = os.path.join(self.tmp, "compat.txt")
        with open(compat, "w") as f:
            f.write("# ours\n192.0.2.0/24\n*.pool.example\n192.0.2.0/33\n")
        sw = self.spamward(self.settings(greylist=greylisting(compat_list=compat)), start=False)
        rc, out, err = sw.cli("config", "check")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("greylist.compat_list", err)
        self.assertIn(f"{compat}:4", err)
        # A good file passes, and its entries skip greylisting (compatibility, not trust).
        with open(compat, "w") as f:
            f.write("192.0.2.0/24   # a pool that retries from everywhere\n")
        rc, out, err = sw.cli("config", "check")
        self.assertEqual(rc, 0, out + err)
        sw.start()
        reply = self.rcpt(sw, "192.0.2.5", "a@pool.example", "h@local.example.test")
        self.assertEqual(reply["action"], "DUNNO", reply)
        reply = self.rcpt(sw, "198.51.100.5", "a@pool.example", "h@local.example.test")
        self.assertTrue(reply["action"].startswith("DEFER_IF_PERMIT"), reply)


class GreylistThroughPostfix(h.IntegrationCase):
    """A real Postfix calls spamward at RCPT and at DATA, as the docs tell admins to."""

    def test_two_recipient_mail_is_deferred_then_delivered_whole(self):
        sw = self.spamward({"greylist": greylisting(), "ips": {"export": "all"}})
        policy = f"check_policy_service inet:127.0.0.1:{sw.policy_port}"
        pf = self.postfix(sw.policy_port, extra_main_cf=(
            f"smtpd_recipient_restrictions = reject_unauth_destination, {policy}\n"
            f"smtpd_data_restrictions = {policy}\n"))
        # postmaster@ is exempt: it gets 250 at RCPT, so only the DATA answer keeps the message
        # from being delivered to it alone.
        to = "bob@local.example.test,postmaster@local.example.test"
        token = f"grey-{os.getpid()}-{time.time_ns()}"

        def send():
            return h.swaks(pf.smtp_port, to, from_="news@sender.example", client_addr="192.0.2.50",
                           headers=[f"Subject: {token}"])

        rc, transcript = send()
        self.assertNotEqual(rc, 0, transcript)
        replies = h.smtp_replies(transcript, "450")
        self.assertTrue(any("Greylisted, please try again in" in r for r in replies), transcript)
        time.sleep(1.0)
        self.assertEqual(pf.count_messages(token, "bob"), 0)
        self.assertEqual(pf.count_messages(token, "catchall"), 0)
        self.assertEqual(pf.queue(), [], "nothing may be queued for a deferred message")
        time.sleep(MIN_DELAY)
        rc, transcript = send()
        self.assertEqual(rc, 0, transcript)
        self.assertIsNotNone(pf.wait_message(token, "bob"))
        self.assertIsNotNone(pf.wait_message(token, "catchall"))
        self.assertEqual(pf.count_messages(token, "bob"), 1)
        self.assertEqual(pf.count_messages(token, "catchall"), 1)


if __name__ == "__main__":
    h.main()
