// Recipient validation and address guessing (issue 7): the edit distance, the recipient list
// (state/recipient_list.h), the guessing tracker (state/address_guessing.h) and the recipients
// check through the Engine (checks/recipients_check.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checks/recipients_check.h"
#include "core/edit_distance.h"
#include "engine/engine.h"
#include "engine_support.h"
#include "state/address_guessing.h"
#include "state/recipient_list.h"
#include "test_support.h"

using namespace spamward;
using namespace spamward::test;
using namespace std::chrono_literals;

namespace {

TEST(EditDistance, CountsTranspositionsAsOneEdit) {
  EXPECT_EQ(damerau_levenshtein("john", "john", 2), 0u);
  EXPECT_EQ(damerau_levenshtein("jhon", "john", 2), 1u);   // transposition
  EXPECT_EQ(damerau_levenshtein("jon", "john", 2), 1u);    // deletion
  EXPECT_EQ(damerau_levenshtein("joohn", "john", 2), 1u);  // insertion
  EXPECT_EQ(damerau_levenshtein("jahn", "john", 2), 1u);   // substitution
  EXPECT_EQ(damerau_levenshtein("", "abc", 5), 3u);
  EXPECT_EQ(damerau_levenshtein("ceo", "john", 2), 3u);    // limit + 1: beyond the limit
  EXPECT_EQ(damerau_levenshtein("a", "abcdefgh", 2), 3u);  // length difference alone
  EXPECT_EQ(damerau_levenshtein("webmaster", "webmastre", 2), 1u);
}

TEST(RecipientSet, ReadsAddressesCatchAllsBareUsersAndPostfixMaps) {
  auto set = RecipientSet::parse(
      "# valid recipients\n"
      "alice@example.org\n"
      "Bob@Example.ORG   example.org/bob/   # a postfix virtual_mailbox_maps line\n"
      "   continued-value-of-bob\n"
      "@catchall.example\n"
      "support\n"
      "\n");
  EXPECT_EQ(set.classify("alice@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("BOB@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("anyone@catchall.example").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("support@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("alice+lists@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("postmaster@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("Abuse@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("postmaster").status, RecipientStatus::valid);
  EXPECT_EQ(set.classify("ceo@example.org").status, RecipientStatus::unknown);
  EXPECT_EQ(set.classify("continued-value-of-bob@example.org").status, RecipientStatus::unknown);
  // Not our domain: not judged.
  EXPECT_EQ(set.classify("ceo@elsewhere.example").status, RecipientStatus::not_ours);
  EXPECT_TRUE(set.is_our_domain("EXAMPLE.org"));
  EXPECT_FALSE(set.is_our_domain("elsewhere.example"));
}

TEST(RecipientSet, TellsTyposFromGuesses) {
  auto set = RecipientSet::parse("john@example.org\nmargaret@example.org\n");
  // Up to 5 characters: distance 1.
  EXPECT_EQ(set.classify("jhon@example.org").typo_of, "john@example.org");
  EXPECT_EQ(set.classify("jo@example.org").typo_of, "");  // distance 2 on a short name
  // Longer: distance 2.
  EXPECT_EQ(set.classify("margret@example.org").typo_of, "margaret@example.org");
  EXPECT_EQ(set.classify("magret@example.org").typo_of, "margaret@example.org");
  EXPECT_EQ(set.classify("mgret@example.org").typo_of, "");  // distance 3
  EXPECT_EQ(set.classify("webmaster@example.org").typo_of, "");
  EXPECT_EQ(set.classify("webmaster@example.org").status, RecipientStatus::unknown);
}

TEST(RecipientSet, RejectsBadLinesNamingTheLine) {
  try {
    RecipientSet::parse("alice@example.org\nbob@\n");
    FAIL() << "no error";
  } catch (const RecipientListError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_NE(std::string(e.what()).find("not an address"), std::string::npos);
  }
  EXPECT_THROW(RecipientSet::parse("a@b@example.org\n"), RecipientListError);
  EXPECT_THROW(RecipientSet::parse(std::string(5000, 'a') + "\n"), RecipientListError);
  EXPECT_THROW(RecipientSet::parse("@nodot\n"), RecipientListError);
}

TEST(RecipientList, ReloadsAChangedFileAndKeepsTheLastGoodList) {
  auto dir =
      std::filesystem::temp_directory_path() / ("spamward-rcpt-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "recipients").string();
  { std::ofstream(path) << "alice@example.org\n"; }
  RecipientList list(path, 0ms);
  EXPECT_EQ(list.current()->classify("bob@example.org").status, RecipientStatus::unknown);
  { std::ofstream(path) << "alice@example.org\nbob@example.org\n"; }
  EXPECT_EQ(list.current()->classify("bob@example.org").status, RecipientStatus::valid);
  { std::ofstream(path) << "alice@example.org\nbroken@\nbob@example.org\ncarol@example.org\n"; }
  // A bad edit keeps the last good list.
  EXPECT_EQ(list.current()->classify("bob@example.org").status, RecipientStatus::valid);
  EXPECT_EQ(list.current()->classify("carol@example.org").status, RecipientStatus::unknown);
  std::filesystem::remove_all(dir);
  EXPECT_THROW(RecipientList((dir / "missing").string()), RecipientListError);
}

class GuessingTest : public testing::Test {
 protected:
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  Reputation rep_{*store_, clock_, ReputationConfig{}, 0ms};
  AddressGuessingOptions options_;
  std::unique_ptr<AddressGuessing> guess_ =
      std::make_unique<AddressGuessing>(*store_, clock_, options_, &rep_);
};

TEST_F(GuessingTest, ThreeUnknownRecipientsMakeAnOffenceOnce) {
  auto client = ip("198.51.100.7");
  EXPECT_FALSE(guess_->note_unknown(client, "ceo@example.org").guessing);
  EXPECT_FALSE(guess_->note_unknown(client, "ceo@example.org").guessing);  // the same one again
  EXPECT_FALSE(guess_->note_unknown(client, "info@example.org").guessing);
  auto third = guess_->note_unknown(client, "sales@example.org");
  EXPECT_TRUE(third.guessing);
  EXPECT_TRUE(third.newly_flagged);
  ASSERT_TRUE(third.ban.has_value());
  EXPECT_NE(third.evidence.find("3 unknown recipients"), std::string::npos) << third.evidence;
  EXPECT_NE(third.evidence.find("sales@example.org"), std::string::npos);
  EXPECT_TRUE(rep_.ban_for(client).has_value());
  // More guesses in the same window: still guessing, but no second offence.
  auto fourth = guess_->note_unknown(client, "admin@example.org");
  EXPECT_TRUE(fourth.guessing);
  EXPECT_FALSE(fourth.newly_flagged);
  EXPECT_NEAR(rep_.offence_count(client), 1.0, 0.01);
  EXPECT_TRUE(guess_->flagged(client));
  auto report = rep_.report(Prefix(client, 32));
  ASSERT_TRUE(report.offences.has_value());
  EXPECT_EQ(report.offences->history.back().kind, OffenceKind::guessing);
}

TEST_F(GuessingTest, AValidRecipientClearsSuspicion) {
  auto client = ip("198.51.100.7");
  guess_->note_valid(client);
  guess_->note_unknown(client, "ceo@example.org");
  guess_->note_unknown(client, "info@example.org");
  EXPECT_FALSE(guess_->note_unknown(client, "sales@example.org").guessing);
  EXPECT_FALSE(rep_.ban_for(client).has_value());
}

TEST_F(GuessingTest, GuessesOutsideTheWindowDoNotAddUp) {
  auto client = ip("2001:db8:1::7");
  guess_->note_unknown(client, "ceo@example.org");
  guess_->note_unknown(client, "info@example.org");
  clock_.advance(11min);
  EXPECT_FALSE(guess_->note_unknown(client, "sales@example.org").guessing);
  EXPECT_TRUE(guess_->note_unknown(client, "admin@example.org").guessing == false);
  EXPECT_TRUE(guess_->note_unknown(client, "hr@example.org").guessing);
}

TEST_F(GuessingTest, GuessesSpreadOverANetworkCount) {
  EXPECT_FALSE(guess_->note_unknown(ip("203.0.113.1"), "ceo@example.org").guessing);
  EXPECT_FALSE(guess_->note_unknown(ip("203.0.113.2"), "info@example.org").guessing);
  auto v = guess_->note_unknown(ip("203.0.113.3"), "sales@example.org");
  EXPECT_TRUE(v.guessing);
  EXPECT_NE(v.evidence.find("203.0.113.0/24"), std::string::npos) << v.evidence;
}

TEST_F(GuessingTest, CampaignOverTenNetworksFlagsEveryParticipant) {
  const char* parts[] = {"ceo",     "info",   "sales",   "admin",     "hr",        "jobs",
                         "billing", "office", "contact", "webmaster", "marketing", "press"};
  std::vector<IpAddress> clients;
  bool detected = false;
  for (int n = 0; n < 10; ++n) {
    auto client = ip(("192.0." + std::to_string(10 + n) + ".5").c_str());
    clients.push_back(client);
    for (int k = 0; k < 2; ++k) {
      auto v = guess_->note_unknown(client, std::string(parts[(n + k) % 12]) + "@example.org");
      if (v.guessing) {
        EXPECT_TRUE(v.campaign);
        EXPECT_NE(v.evidence.find("campaign at example.org"), std::string::npos);
        detected = true;
      }
    }
    EXPECT_EQ(detected, n >= 4) << "network " << n;  // the fifth network completes it
  }
  // Every participant is banned, the early ones included.
  for (const auto& c : clients) EXPECT_TRUE(rep_.ban_for(c).has_value()) << c.to_string();
}

TEST_F(GuessingTest, ManySendersToOneDepartedUserAreNoCampaign) {
  for (int n = 0; n < 20; ++n) {
    auto client = ip(("192.0." + std::to_string(10 + n) + ".5").c_str());
    EXPECT_FALSE(guess_->note_unknown(client, "departed@example.org").guessing);
  }
}

TEST_F(GuessingTest, NetworksThatAlsoSendValidMailAreNoCampaign) {
  for (int n = 0; n < 10; ++n) {
    auto client = ip(("192.0." + std::to_string(10 + n) + ".5").c_str());
    guess_->note_valid(client);
    EXPECT_FALSE(guess_->note_unknown(client, "old1@example.org").guessing);
    EXPECT_FALSE(
        guess_->note_unknown(client, "old" + std::to_string(n + 2) + "@example.org").guessing);
  }
}

TEST_F(GuessingTest, DryRunReportsWithoutOffences) {
  options_.record_offences = false;
  guess_ = std::make_unique<AddressGuessing>(*store_, clock_, options_, &rep_);
  auto client = ip("198.51.100.9");
  guess_->note_unknown(client, "a1@example.org");
  guess_->note_unknown(client, "a2@example.org");
  auto v = guess_->note_unknown(client, "a3@example.org");
  EXPECT_TRUE(v.guessing);
  EXPECT_FALSE(v.ban.has_value());
  EXPECT_FALSE(rep_.ban_for(client).has_value());
}

TEST_F(GuessingTest, AValueThatDoesNotDecodeIsAbsent) {
  auto client = ip("198.51.100.7");
  store_->put("guess", "a|198.51.100.7", "\x01garbage");
  EXPECT_FALSE(guess_->note_unknown(client, "ceo@example.org").guessing);
}

// ---- the check through the Engine ----

Verdict run(Engine& engine, const Transaction& tx) {
  return evaluate_now(engine, tx);
}

class RecipientsCheckTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("spamward-rcheck-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "valid") << "john@example.org\nalice@example.org\n";
    config_.recipients.valid = "file:" + (dir_ / "valid").string();
    config_.network.trusted.clear();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::shared_ptr<Engine> engine(bool read_only = false) {
    Env env{&clock_, nullptr, store_.get(), nullptr, {}};
    env.reputation = &rep_;
    env.read_only = read_only;
    std::vector<std::unique_ptr<Check>> checks;
    checks.push_back(make_recipients_check(config_, env, load_recipient_list(config_)));
    return std::make_shared<Engine>(std::make_shared<const Config>(config_), env,
                                    std::move(checks));
  }
  static Transaction rcpt(const char* client, const char* recipient) {
    Transaction tx;
    tx.stage = Stage::rcpt;
    tx.client_address = ip(client);
    tx.sender = "someone@sender.example";
    tx.recipient = recipient;
    return tx;
  }

  std::filesystem::path dir_;
  Config config_;
  FakeClock clock_;
  std::unique_ptr<Store> store_ = make_memory_store(clock_);
  Reputation rep_{*store_, clock_, ReputationConfig{}, 0ms};
};

TEST_F(RecipientsCheckTest, UnknownRecipientIsRefusedOnItsOwn) {
  auto e = engine();
  auto v = run(*e, rcpt("198.51.100.7", "nobody@example.org"));
  EXPECT_EQ(v.action, Action::reject);
  EXPECT_EQ(v.standalone, Standalone::unknown_recipient);
  EXPECT_EQ(run(*e, rcpt("198.51.100.7", "john@example.org")).action, Action::accept);
  EXPECT_EQ(run(*e, rcpt("198.51.100.7", "postmaster@example.org")).action, Action::accept);
  EXPECT_EQ(run(*e, rcpt("198.51.100.7", "anyone@not-ours.example")).action, Action::accept);
}

TEST_F(RecipientsCheckTest, ThreeGuessesBanButTyposDoNot) {
  auto e = engine();
  for (const char* typo : {"jhon@example.org", "alcie@example.org", "jon@example.org"}) {
    auto v = run(*e, rcpt("198.51.100.8", typo));
    EXPECT_EQ(v.action, Action::reject);
    EXPECT_EQ(std::count_if(v.symbols.begin(), v.symbols.end(),
                            [](const Symbol& s) { return s.name == "ADDRESS_GUESSING"; }),
              0);
  }
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.8")).has_value());
  run(*e, rcpt("198.51.100.9", "ceo@example.org"));
  run(*e, rcpt("198.51.100.9", "info@example.org"));
  auto v = run(*e, rcpt("198.51.100.9", "sales@example.org"));
  EXPECT_TRUE(std::any_of(v.symbols.begin(), v.symbols.end(),
                          [](const Symbol& s) { return s.name == "ADDRESS_GUESSING"; }));
  EXPECT_TRUE(rep_.ban_for(ip("198.51.100.9")).has_value());
}

TEST_F(RecipientsCheckTest, ReadOnlyEvaluationsRememberNothing) {
  auto e = engine(/*read_only=*/true);
  for (const char* r : {"ceo@example.org", "info@example.org", "sales@example.org"})
    EXPECT_EQ(run(*e, rcpt("198.51.100.10", r)).action, Action::reject);
  EXPECT_FALSE(rep_.ban_for(ip("198.51.100.10")).has_value());
  EXPECT_EQ(store_->count("guess"), 0);
}

TEST_F(RecipientsCheckTest, ABadListIsAConfigErrorNamingItsLine) {
  std::ofstream(dir_ / "valid") << "john@example.org\nbroken@\n";
  try {
    load_recipient_list(config_);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.key(), "recipients.valid");
  }
}

}  // namespace
