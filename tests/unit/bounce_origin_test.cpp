// Bounces of messages we never sent (checks/bounce_origin_check.h, state/sent_messages.h).
#include <gtest/gtest.h>

#include "checks/bounce_origin_check.h"
#include "engine/engine.h"
#include "engine_support.h"
#include "mail/message.h"
#include "state/sent_messages.h"
#include "test_support.h"

using namespace spamward;
using namespace spamward::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kDsn =
    "From: MAILER-DAEMON@mx.elsewhere.example\r\n"
    "To: alice@example.org\r\n"
    "Message-ID: <bounce-1@mx.elsewhere.example>\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n\r\n"
    "Your message could not be delivered.\r\n"
    "--b\r\n"
    "Content-Type: message/delivery-status\r\n\r\n"
    "Final-Recipient: rfc822; nobody@elsewhere.example\r\n"
    "Status: 5.1.1\r\n"
    "--b\r\n"
    "Content-Type: text/rfc822-headers\r\n\r\n"
    "From: alice@example.org\r\n"
    "message-id:\r\n <{}>\r\n"
    "Subject: hello\r\n"
    "--b--\r\n";

std::string dsn_naming(const std::string& id) {
  std::string text = kDsn;
  text.replace(text.find("{}"), 2, id);
  return text;
}

TEST(BounceOrigin, FindsTheOriginalsMessageIdsInTheBody) {
  auto m = parse_message(dsn_naming("Orig-7@Example.ORG"));
  EXPECT_EQ(message_ids_in_body(m.raw_body), std::vector<std::string>{"<orig-7@example.org>"});
  EXPECT_TRUE(message_ids_in_body("no headers here\r\nMessage-ID: nothing\r\n").empty());
  EXPECT_EQ(normalize_message_id(" <A@B> (c)"), "<a@b>");
  EXPECT_EQ(normalize_message_id("<>"), "");
}

TEST(SentMessages, RemembersForMaxAgeAndKnowsSinceWhen) {
  FakeClock clock;
  auto store = make_memory_store(clock);
  SentMessages sent(*store, clock, std::chrono::hours(24 * 7));
  EXPECT_FALSE(sent.remembering_since().has_value());
  auto t0 = clock.now();
  sent.remember("<One@Example.org>");
  EXPECT_TRUE(sent.was_sent("<one@example.org>"));
  EXPECT_FALSE(sent.was_sent("<two@example.org>"));
  EXPECT_EQ(sent.remembering_since(), t0);
  clock.advance(std::chrono::hours(24 * 6));
  sent.remember("<two@example.org>");
  clock.advance(std::chrono::hours(24 * 2));
  EXPECT_FALSE(sent.was_sent("<one@example.org>"));  // older than max_age
  EXPECT_TRUE(sent.was_sent("<two@example.org>"));
  EXPECT_EQ(sent.remembering_since(), t0);  // kept while remembering goes on
}

class BounceOriginEngine : public testing::Test {
 protected:
  BounceOriginEngine() { config_.network.trusted = {*Prefix::parse("192.0.2.0/24")}; }

  std::shared_ptr<Engine> engine() {
    Env env{&clock_, nullptr, store_.get(), nullptr, {}};
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(make_bounce_origin_check(config_, env));
    return std::make_shared<Engine>(std::make_shared<const Config>(config_), env,
                                    std::move(checks));
  }
  Transaction eom(const char* client, std::string sender, const std::string& raw) {
    Transaction tx;
    tx.stage = Stage::eom;
    tx.client_address = ip(client);
    tx.sender = std::move(sender);
    tx.recipients = {"alice@example.org"};
    tx.message = std::make_shared<Message>(parse_message(raw));
    return tx;
  }
  static bool backscatter(const Verdict& v) {
    return std::any_of(v.symbols.begin(), v.symbols.end(),
                       [](const Symbol& s) { return s.name == "BACKSCATTER"; });
  }

  Config config_;
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
};

TEST_F(BounceOriginEngine, ABounceOfAMessageWeNeverSentIsBackscatter) {
  auto e = engine();
  auto send = [&](const char* id) {
    evaluate_now(
        *e, eom("192.0.2.5", "alice@example.org",
                std::string("From: alice@example.org\r\nMessage-ID: <") + id + ">\r\n\r\nhi\r\n"));
  };
  send("first@example.org");
  // Not judged before a full max_age of remembering.
  EXPECT_FALSE(backscatter(evaluate_now(*e, eom("198.51.100.7", "", dsn_naming("forged@x")))));
  clock_.advance(std::chrono::hours(24 * 6));
  send("second@example.org");
  clock_.advance(std::chrono::hours(25));
  EXPECT_TRUE(backscatter(evaluate_now(*e, eom("198.51.100.7", "", dsn_naming("forged@x")))));
  EXPECT_FALSE(
      backscatter(evaluate_now(*e, eom("198.51.100.7", "", dsn_naming("second@example.org")))));
  // An auto-reply (no original attached) and ordinary mail are not judged.
  EXPECT_FALSE(backscatter(
      evaluate_now(*e, eom("198.51.100.7", "", "From: a@b.example\r\n\r\nI am away.\r\n"))));
  EXPECT_FALSE(
      backscatter(evaluate_now(*e, eom("198.51.100.7", "bob@b.example", dsn_naming("forged@x")))));
}

}  // namespace
