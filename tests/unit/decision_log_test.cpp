#include <gtest/gtest.h>

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/log.h"
#include "engine/decision_log.h"

using namespace spamward;

namespace {

Transaction sample_tx() {
  Transaction tx;
  tx.id = "3F1A2B";
  tx.client_address = IpAddress::parse("192.0.2.1");
  tx.helo = "mx.example.net";
  tx.sender = "a@b.example";
  tx.recipients = {"c@d.example"};
  tx.recipient = "e@f.example";
  tx.stage = Stage::rcpt;
  return tx;
}

Verdict sample_verdict() {
  Verdict v;
  v.action = Action::reject;
  v.applied = Action::reject;
  v.score = 16.5;
  v.symbols = {{"RBL_X", 3.0, Family::dnsbl, "127.0.0.2"}, {"DENYLIST", 20.0, Family::admin, ""}};
  v.families = {Family::dnsbl};
  v.reason = "listed in the deny list";
  return v;
}

// A strict reader for the text format: `decision` then key=value pairs, values bare or
// double-quoted with backslash escapes (\" \\ \xNN). Fails the test on anything else, so
// a value that escaped its quoting shows up as an extra or malformed field.
std::vector<std::pair<std::string, std::string>> parse_line(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> fields;
  EXPECT_EQ(line.rfind("decision ", 0), 0u) << line;
  size_t i = 9;
  while (i < line.size()) {
    size_t eq = line.find('=', i);
    if (eq == std::string::npos) {
      ADD_FAILURE() << "no '=' after offset " << i << " in " << line;
      break;
    }
    std::string key = line.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i];
        if (c == '"') {
          closed = true;
          ++i;
          break;
        }
        if (c == '\\' && i + 1 < line.size()) {
          char n = line[i + 1];
          if (n == 'x' && i + 3 < line.size()) {
            value += static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16));
            i += 4;
          } else {
            value += n;
            i += 2;
          }
          continue;
        }
        value += c;
        ++i;
      }
      EXPECT_TRUE(closed) << "unterminated quote in " << line;
    } else {
      size_t end = line.find(' ', i);
      if (end == std::string::npos) end = line.size();
      value = line.substr(i, end - i);
      i = end;
    }
    fields.emplace_back(key, value);
    if (i < line.size()) {
      EXPECT_EQ(line[i], ' ') << "fields must be separated by one space: " << line;
      ++i;
    }
  }
  return fields;
}

std::map<std::string, std::string> field_map(const std::string& line) {
  std::map<std::string, std::string> out;
  for (auto& [k, v] : parse_line(line)) {
    EXPECT_TRUE(out.emplace(k, v).second) << "duplicate field " << k << " in " << line;
  }
  return out;
}

}  // namespace

TEST(DecisionLog, TextHasEveryField) {
  EXPECT_EQ(format_decision_text(sample_tx(), sample_verdict()),
            "decision id=3F1A2B client=192.0.2.1 helo=mx.example.net from=<a@b.example> "
            "rcpt=<c@d.example>,<e@f.example> stage=rcpt action=reject score=16.50 "
            "symbols=RBL_X(3.00),DENYLIST(20.00) reason=\"listed in the deny list\"");
}

TEST(DecisionLog, TextOptionalFieldsOnlyWhenRelevant) {
  auto tx = sample_tx();
  auto v = sample_verdict();
  std::string plain = format_decision_text(tx, v);
  EXPECT_EQ(plain.find("dry_run"), std::string::npos);
  EXPECT_EQ(plain.find("trusted"), std::string::npos);
  EXPECT_EQ(plain.find("failed_checks"), std::string::npos);
  EXPECT_EQ(plain.find("client_name"), std::string::npos);

  tx.client_name = "mail.example.net";
  v.dry_run = true;
  v.applied = Action::accept;
  v.trusted = true;
  v.failed_checks = {"dnsbl", "spf"};
  auto f = field_map(format_decision_text(tx, v));
  EXPECT_EQ(f["client_name"], "mail.example.net");
  EXPECT_EQ(f["dry_run"], "true");
  EXPECT_EQ(f["action"], "reject");
  EXPECT_EQ(f["applied"], "accept");
  EXPECT_EQ(f["trusted"], "true");
  EXPECT_EQ(f["failed_checks"], "dnsbl,spf");
}

TEST(DecisionLog, TextEmptyValuesAndBounce) {
  Transaction tx;  // nothing known: no id, client, HELO, sender or recipients
  Verdict v;
  std::string line = format_decision_text(tx, v);
  EXPECT_EQ(line,
            "decision id=\"\" client=\"\" helo=\"\" from=<> rcpt=\"\" stage=connect action=accept "
            "score=0.00 symbols=\"\"");
  EXPECT_EQ(field_map(line).size(), 9u);
}

TEST(DecisionLog, TextIdFallsBackToQueueIdThenInstance) {
  Transaction tx;
  tx.instance = "inst.1";
  EXPECT_EQ(field_map(format_decision_text(tx, Verdict{}))["id"], "inst.1");
  tx.queue_id = "ABC123";
  EXPECT_EQ(field_map(format_decision_text(tx, Verdict{}))["id"], "ABC123");
}

TEST(DecisionLog, HostileHeloCannotForgeFieldsOrLines) {
  auto tx = sample_tx();
  const std::string hostile =
      "evil action=accept score=0.00\r\ndecision id=FORGED action=accept \"quoted\" "
      "back\\slash\x1b[2J";
  tx.helo = hostile;
  std::string line = format_decision_text(tx, sample_verdict());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  auto f = field_map(line);  // fails on duplicate keys, e.g. a second action=
  EXPECT_EQ(f["action"], "reject");
  EXPECT_EQ(f["score"], "16.50");
  EXPECT_EQ(f["id"], "3F1A2B");
  EXPECT_EQ(f["helo"], hostile);  // nothing lost: the escapes decode to the original
  EXPECT_NE(line.find("helo=\"evil action=accept score=0.00\\x0d\\x0adecision"), std::string::npos)
      << line;
  EXPECT_NE(line.find("\\\"quoted\\\" back\\\\slash\\x1b[2J\""), std::string::npos) << line;
}

TEST(DecisionLog, HostileAddressesCannotForgeRecipients) {
  auto tx = sample_tx();
  tx.sender = "x> rcpt=<y";
  tx.recipients = {"a@b>,<forged@example.org"};
  tx.recipient = "";
  std::string line = format_decision_text(tx, sample_verdict());
  auto f = field_map(line);
  EXPECT_EQ(f["from"], "<x> rcpt=<y>");
  // Decoded, it reads like two recipients; in the line the brackets are \x-escaped, so a
  // reader splitting the raw value on ">,<" sees the one recipient it is.
  EXPECT_EQ(f["rcpt"], "<a@b>,<forged@example.org>");
  EXPECT_NE(line.find("rcpt=\"<a@b\\x3e,\\x3cforged@example.org>\""), std::string::npos) << line;
}

TEST(DecisionLog, HostileSymbolAndCheckNamesStayInTheirList) {
  Verdict v = sample_verdict();
  v.symbols = {{"RBL_A(9.00),RBL_B", 1.0, Family::dnsbl, ""}};
  v.failed_checks = {"a,b"};
  std::string line = format_decision_text(sample_tx(), v);
  EXPECT_NE(line.find("symbols=\"RBL_A\\x289.00\\x29\\x2cRBL_B(1.00)\""), std::string::npos)
      << line;
  EXPECT_NE(line.find("failed_checks=\"a\\x2cb\""), std::string::npos) << line;
}

TEST(DecisionLog, TextEscapesInvalidUtf8AndBidiButKeepsValidUtf8) {
  auto tx = sample_tx();
  tx.helo = "m\xc3\xbcller";  // "müller"
  EXPECT_NE(format_decision_text(tx, sample_verdict()).find("helo=\"m\xc3\xbcller\""),
            std::string::npos);
  tx.helo =
      "a\xe2\x80\xae"
      "b\xff\xc2\x9b";  // RLO, an invalid byte, C1 CSI
  std::string line = format_decision_text(tx, sample_verdict());
  EXPECT_NE(line.find("helo=\"a\\xe2\\x80\\xaeb\\xff\\xc2\\x9b\""), std::string::npos) << line;
}

TEST(DecisionLog, JsonHasTheFieldsAndParses) {
  auto tx = sample_tx();
  auto v = sample_verdict();
  v.failed_checks = {"dnswl"};
  std::string text = decision_json(tx, v).dump();
  EXPECT_EQ(text.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["event"], "decision");
  EXPECT_EQ(j["id"], "3F1A2B");
  EXPECT_EQ(j["client"], "192.0.2.1");
  EXPECT_EQ(j["helo"], "mx.example.net");
  EXPECT_EQ(j["from"], "a@b.example");
  EXPECT_EQ(j["rcpt"], nlohmann::json::array({"c@d.example", "e@f.example"}));
  EXPECT_EQ(j["stage"], "rcpt");
  EXPECT_EQ(j["action"], "reject");
  EXPECT_EQ(j["applied"], "reject");
  EXPECT_EQ(j["dry_run"], false);
  EXPECT_EQ(j["trusted"], false);
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), 16.5);
  ASSERT_EQ(j["symbols"].size(), 2u);
  EXPECT_EQ(j["symbols"][0]["name"], "RBL_X");
  EXPECT_DOUBLE_EQ(j["symbols"][0]["score"].get<double>(), 3.0);
  EXPECT_EQ(j["symbols"][0]["family"], "dnsbl");
  EXPECT_EQ(j["symbols"][0]["detail"], "127.0.0.2");
  EXPECT_EQ(j["families"], nlohmann::json::array({"dnsbl"}));
  EXPECT_EQ(j["failed_checks"], nlohmann::json::array({"dnswl"}));
  EXPECT_EQ(j["reason"], "listed in the deny list");
  EXPECT_FALSE(j.contains("time"));  // added by the logger
}

TEST(DecisionLog, JsonKeepsHostileTextInsideStrings) {
  auto tx = sample_tx();
  tx.helo = "evil\r\n{\"action\":\"accept\"}\"";
  tx.client_address.reset();
  std::string text = decision_json(tx, sample_verdict()).dump();
  EXPECT_EQ(text.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["helo"], tx.helo);
  EXPECT_EQ(j["action"], "reject");
  EXPECT_TRUE(j["client"].is_null());
}

TEST(DecisionLog, JsonReplacesInvalidUtf8) {
  auto tx = sample_tx();
  tx.helo =
      "a\xff"
      "b";
  tx.sender = "\xc0\xaf@x";  // overlong '/'
  auto j = decision_json(tx, sample_verdict());
  std::string text;
  ASSERT_NO_THROW(text = j.dump());  // nlohmann's default dump throws on invalid UTF-8
  EXPECT_EQ(j["helo"],
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(j["from"], "\xef\xbf\xbd\xef\xbf\xbd@x");
}

// Logging to a file, in both formats, and reopening after a rotation.
class DecisionLogFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("spamward-log-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "spamward.log").string();
  }
  void TearDown() override {
    setup_logging(LogConfig{});  // back to stderr text for the other tests
    std::filesystem::remove_all(dir_);
  }
  static std::vector<std::string> lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(DecisionLogFile, JsonLinesCarryTimeAndFields) {
  LogConfig config;
  config.format = "json";
  config.file = path_;
  setup_logging(config);
  auto tx = sample_tx();
  tx.helo = "two\nlines";
  log_decision(tx, sample_verdict(), true);
  spdlog::info("hello {}", "world\n");
  auto got = lines(path_);
  ASSERT_EQ(got.size(), 2u);
  auto d = nlohmann::json::parse(got[0]);
  EXPECT_TRUE(std::regex_match(d["time"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << d["time"];
  EXPECT_EQ(d["event"], "decision");
  EXPECT_EQ(d["helo"], "two\nlines");
  EXPECT_EQ(d["action"], "reject");
  auto m = nlohmann::json::parse(got[1]);
  EXPECT_EQ(m["level"], "info");
  EXPECT_EQ(m["msg"], "hello world\n");
  EXPECT_TRUE(m.contains("time"));
}

TEST_F(DecisionLogFile, TextLineHasTimeLevelAndDecision) {
  LogConfig config;
  config.file = path_;
  setup_logging(config);
  log_decision(sample_tx(), sample_verdict(), false);
  auto got = lines(path_);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(std::regex_match(
      got[0],
      std::regex(
          R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d \[info\] decision id=3F1A2B .*)")))
      << got[0];
  EXPECT_NE(got[0].find("symbols=RBL_X(3.00),DENYLIST(20.00)"), std::string::npos);
}

TEST_F(DecisionLogFile, ReopenFollowsRotation) {
  LogConfig config;
  config.file = path_;
  setup_logging(config);
  spdlog::info("before rotation");
  std::filesystem::rename(path_, path_ + ".1");
  spdlog::info("still the old file");
  reopen_log();
  spdlog::info("after rotation");
  auto old_lines = lines(path_ + ".1");
  auto new_lines = lines(path_);
  ASSERT_EQ(old_lines.size(), 2u);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_NE(new_lines[0].find("after rotation"), std::string::npos);
}

TEST_F(DecisionLogFile, UnopenableFileIsAnErrorNamingThePath) {
  LogConfig config;
  config.file = (dir_ / "missing-dir" / "x.log").string();
  try {
    setup_logging(config);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(config.file), std::string::npos) << e.what();
  }
  config.file.clear();
  config.format = "xml";
  EXPECT_THROW(setup_logging(config), std::runtime_error);
}
