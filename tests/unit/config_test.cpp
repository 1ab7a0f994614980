// The config loader (DESIGN §3.3): defaults, the shipped file, and one test per class of
// error, each asserting the file, line and key the admin is pointed to.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "bayes/bayes.h"
#include "cli/commands.h"
#include "core/config.h"

using namespace spamward;

namespace {

// The error parse_config throws for `text`, or nullopt when it loads.
std::optional<ConfigError> error_of(const std::string& text) {
  try {
    parse_config(text, "test.toml");
  } catch (const ConfigError& e) {
    return e;
  }
  return std::nullopt;
}

#define EXPECT_CONFIG_ERROR(text, want_line, want_key)                    \
  do {                                                                    \
    auto err_ = error_of(text);                                           \
    ASSERT_TRUE(err_.has_value()) << "loaded without error:\n" << (text); \
    EXPECT_EQ(err_->file(), "test.toml");                                 \
    EXPECT_EQ(err_->line(), (want_line)) << err_->what();                 \
    EXPECT_EQ(err_->key(), (want_key)) << err_->what();                   \
  } while (0)

bool has_prefix(const std::vector<Prefix>& list, const char* text) {
  auto p = Prefix::parse(text);
  return p && std::find(list.begin(), list.end(), *p) != list.end();
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("spamward-config-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter_++) + ".toml");
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

}  // namespace

TEST(ConfigDefaults, EmptyFileGivesDocumentedDefaults) {
  Config c = parse_config("", "empty.toml");
  EXPECT_EQ(c.source, "empty.toml");
  EXPECT_EQ(c.listen.policy, "127.0.0.1:10040");
  EXPECT_EQ(c.listen.http, "127.0.0.1:10043");
  EXPECT_EQ(c.store.backend, "lmdb");
  EXPECT_EQ(c.store.path, "var/spamward");
  EXPECT_EQ(c.dns.timeout, Duration(2000));
  EXPECT_EQ(c.actions.greylist, 3.0);
  EXPECT_EQ(c.actions.tag, 6.0);
  EXPECT_EQ(c.actions.reject, 15.0);
  EXPECT_EQ(c.actions.reject_min_families, 2);
  EXPECT_FALSE(c.actions.dry_run);
  EXPECT_EQ(c.greylist.min_delay, std::chrono::minutes(5));
  EXPECT_EQ(c.reputation.ban_max, std::chrono::hours(24));
  EXPECT_EQ(c.ips.export_mode, "permanent");
  EXPECT_TRUE(c.dnsbl.empty());
  EXPECT_TRUE(c.scores.empty());
}

TEST(ConfigDefaults, TrustsLoopbackOnly) {
  NetworkConfig n;
  ASSERT_EQ(n.trusted.size(), 2u);
  EXPECT_TRUE(has_prefix(n.trusted, "127.0.0.0/8"));
  EXPECT_TRUE(has_prefix(n.trusted, "::1/128"));
  EXPECT_TRUE(n.relays.empty());
}

TEST(ConfigDefaults, ListGetsRefusedCodesBlockedByDefault) {
  Config c = parse_config("[[dnsbl]]\nname = \"ex\"\nzone = \"bl.example.org\"\n", "t.toml");
  ASSERT_EQ(c.dnsbl.size(), 1u);
  EXPECT_EQ(c.dnsbl[0].weight, 1.0);
  EXPECT_FALSE(c.dnsbl[0].ipv6);
  ASSERT_EQ(c.dnsbl[0].blocked_codes.size(), 1u);
  EXPECT_EQ(c.dnsbl[0].blocked_codes[0].to_string(), "127.255.255.0/24");
}

TEST(ConfigLoad, ShippedConfigLoadsClean) {
  // Built with std::filesystem: `std::string(MACRO) + "..."` trips a GCC 12 -Warray-bounds
  // false positive at -O2.
  const std::string path =
      (std::filesystem::path(SPAMWARD_SOURCE_DIR) / "config" / "spamward.toml").string();
  Config c = load_config(path);
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.listen.policy, "127.0.0.1:10040");
  EXPECT_EQ(c.listen.milter, "127.0.0.1:10041");
  EXPECT_EQ(c.listen.spamd, "127.0.0.1:10042");
  EXPECT_EQ(c.listen.http, "127.0.0.1:10043");
  EXPECT_EQ(c.store.path, "var/spamward");
  EXPECT_TRUE(c.dnsbl.empty());  // no list is enabled without the admin's consent
  EXPECT_TRUE(c.dnswl.empty());
  EXPECT_TRUE(c.imap.empty());
  // The shipped file restates the defaults: loading it changes nothing.
  Config d = parse_config("", "d.toml");
  EXPECT_EQ(c.actions.reject, d.actions.reject);
  EXPECT_EQ(c.greylist.auto_allow_ttl, d.greylist.auto_allow_ttl);
  EXPECT_EQ(c.reputation.offence_half_life, d.reputation.offence_half_life);
  EXPECT_EQ(c.network.trusted, d.network.trusted);
  EXPECT_EQ(c.exempt.recipients, d.exempt.recipients);
  EXPECT_EQ(c.batv.max_age, d.batv.max_age);
}

TEST(ConfigLoad, ReadsEverySectionsValues) {
  Config c = parse_config(R"(
[listen]
policy = "[::1]:2525"
http = "unix:/run/spamward/http.sock"
[dns]
servers = ["127.0.0.1@5353", "::1", "2001:db8::53@53"]
timeout_ms = 500
[network]
trusted = ["10.0.0.0/8"]
relays = ["192.0.2.10"]
our_names = ["mx.example.org", "192.0.2.1"]
[actions]
greylist = 8          # above tag: allowed
tag = 5
reject = 20
[scores]
RDNS_DYNAMIC = 2
RBL_MY_LIST = 4.5
DNSWL_GOOD = 1.5
[[dnsbl]]
name = "my-list"
zone = "bl.example.org."
weight = 2.5
ipv6 = true
codes = { "127.0.0.2" = 3.0, "127.0.0.10" = 1 }
blocked_codes = []
[[dnswl]]
name = "good"
zone = "wl.example.org"
[greylist]
mode = "always"
min_delay = "1m30s"
[reputation]
ban_factor = 2
ban_max = "5d"
[trap]
mx_addresses = ["192.0.2.25", "2001:db8::25"]
listen = ["192.0.2.99:25"]
[[imap]]
url = "imaps://mail.example.org"
user = "alice"
password_file = "/etc/spamward/imap-alice.secret"
spam_folders = ["Junk"]
[batv]
keys = ["0123456789abcdef0123"]
enforce = true
[ips]
export = "all"
nft_table = "inet spamward"
[store]
backend = "redis"
url = "redis://127.0.0.1:6379/0"
)",
                          "full.toml");
  EXPECT_EQ(c.listen.policy, "[::1]:2525");
  EXPECT_EQ(c.listen.milter, "");  // a [listen] table turns off the servers it leaves out
  EXPECT_EQ(c.listen.spamd, "");
  EXPECT_EQ(c.listen.http, "unix:/run/spamward/http.sock");
  EXPECT_EQ(c.dns.servers.size(), 3u);
  EXPECT_EQ(c.dns.timeout, Duration(500));
  EXPECT_TRUE(has_prefix(c.network.trusted, "10.0.0.0/8"));
  EXPECT_FALSE(has_prefix(c.network.trusted, "127.0.0.0/8"));  // replaced, not merged
  EXPECT_EQ(c.actions.greylist, 8.0);
  EXPECT_EQ(c.actions.tag, 5.0);
  EXPECT_EQ(c.scores.at("RDNS_DYNAMIC"), 2.0);  // integer accepted as a number
  EXPECT_EQ(c.scores.at("RBL_MY_LIST"), 4.5);
  EXPECT_EQ(c.scores.at("DNSWL_GOOD"), 1.5);
  ASSERT_EQ(c.dnsbl.size(), 1u);
  EXPECT_EQ(c.dnsbl[0].zone, "bl.example.org");  // trailing dot dropped
  EXPECT_EQ(c.dnsbl[0].codes.at("127.0.0.10"), 1.0);
  EXPECT_TRUE(c.dnsbl[0].blocked_codes.empty());
  ASSERT_EQ(c.dnswl.size(), 1u);
  EXPECT_EQ(c.greylist.mode, "always");
  EXPECT_EQ(c.greylist.min_delay, Duration(90'000));
  EXPECT_EQ(c.reputation.ban_factor, 2.0);
  EXPECT_EQ(c.trap.mx_addresses.size(), 2u);
  ASSERT_EQ(c.imap.size(), 1u);
  EXPECT_EQ(c.imap[0].user, "alice");
  EXPECT_TRUE(c.batv.enforce);
  EXPECT_EQ(c.ips.export_mode, "all");
  EXPECT_EQ(c.store.backend, "redis");
}

TEST(ConfigErrors, MessageNamesFileLineKeyAndProblem) {
  auto err = error_of("[log]\nformat = \"xml\"\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(std::string(err->what()),
            "test.toml:2: key 'log.format': \"xml\" is not one of \"text\", \"json\"");
  EXPECT_EQ(err->problem(), "\"xml\" is not one of \"text\", \"json\"");
}

TEST(ConfigErrors, UnknownKeyAtTopLevel) {
  EXPECT_CONFIG_ERROR("# comment\n\nfoo = 1\n", 3, "foo");
}

TEST(ConfigErrors, UnknownKeyNested) {
  EXPECT_CONFIG_ERROR("[dns]\nservers = []\ntimeout = 5\n", 3, "dns.timeout");
  auto err = error_of("[dns]\ntimeout = 5\n");
  ASSERT_TRUE(err);
  EXPECT_NE(err->problem().find("did you mean 'dns.timeout_ms'"), std::string::npos) << err->what();
  // Inside an array of tables the key names the entry.
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\n\n[[dnsbl]]\nname = "
      "\"b\"\nzone = \"b.example\"\nweigth = 2\n",
      8, "dnsbl[2].weigth");
}

TEST(ConfigErrors, UnknownTable) {
  EXPECT_CONFIG_ERROR("[store]\npath = \"x\"\n\n[stroe]\n", 4, "stroe");
  EXPECT_CONFIG_ERROR("[store]\npath = \"x\"\n[store.extra]\nfoo = 1\n", 3, "store.extra");
  auto err = error_of("[frobnicate]\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->problem(), "unknown table");
  err = error_of("[stroe]\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->problem(), "unknown table (did you mean 'store'?)");
}

TEST(ConfigErrors, WrongType) {
  EXPECT_CONFIG_ERROR("[actions]\nreject = \"15\"\n", 2, "actions.reject");  // never a string
  EXPECT_CONFIG_ERROR("[actions]\ndry_run = 1\n", 2, "actions.dry_run");
  EXPECT_CONFIG_ERROR("[greylist]\nipv4_prefix = 24.0\n", 2, "greylist.ipv4_prefix");
  EXPECT_CONFIG_ERROR("listen = \"127.0.0.1:1\"\n", 1, "listen");
  EXPECT_CONFIG_ERROR("[network]\ntrusted = \"10.0.0.0/8\"\n", 2, "network.trusted");
  EXPECT_CONFIG_ERROR("[dnsbl]\nname = \"x\"\n", 1, "dnsbl");  // needs [[dnsbl]]
  EXPECT_FALSE(error_of("[actions]\nreject = 20\n"));          // an integer is a number
}

TEST(ConfigErrors, BadDuration) {
  EXPECT_CONFIG_ERROR("[greylist]\nmode = \"off\"\nmax_wait = \"2 days\"\n", 3,
                      "greylist.max_wait");
  EXPECT_CONFIG_ERROR("[reputation]\nban_base = 600\n", 2, "reputation.ban_base");
  EXPECT_CONFIG_ERROR("[reputation]\nban_base = \"0s\"\n", 2, "reputation.ban_base");
  EXPECT_CONFIG_ERROR("[reputation]\nban_max = \"7d\"\n", 2, "reputation.ban_max");
  // Cross-key: reported on the later key of the two.
  EXPECT_CONFIG_ERROR("[greylist]\nmax_wait = \"1m\"\nmin_delay = \"5m\"\n", 3,
                      "greylist.min_delay");
}

TEST(ConfigErrors, BadPrefixPointsAtTheElementsLine) {
  EXPECT_CONFIG_ERROR("[network]\ntrusted = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n", 4,
                      "network.trusted");
  EXPECT_CONFIG_ERROR("[network]\nrelays = [\"0.0.0.0/0\"]\n", 2, "network.relays");
  EXPECT_CONFIG_ERROR("[greylist]\nipv6_prefix = 0\n", 2, "greylist.ipv6_prefix");
  EXPECT_CONFIG_ERROR("[reputation]\nipv4_prefix = 33\n", 2, "reputation.ipv4_prefix");
}

TEST(ConfigErrors, BadListenSpec) {
  EXPECT_CONFIG_ERROR("[listen]\npolicy = \"127.0.0.1:10040\"\nmilter = \"localhost:10041\"\n", 3,
                      "listen.milter");
  EXPECT_CONFIG_ERROR("[listen]\nspamd = \"::1:783\"\n", 2, "listen.spamd");
  EXPECT_CONFIG_ERROR("[listen]\npolicy = \"127.0.0.1:70000\"\n", 2, "listen.policy");
  EXPECT_CONFIG_ERROR("[listen]\npolicy = \"127.0.0.1:9\"\nhttp = \"127.0.0.1:9\"\n", 3,
                      "listen.http");
  EXPECT_CONFIG_ERROR("[trap]\nlisten = [\"192.0.2.1\"]\n", 2, "trap.listen");
  EXPECT_FALSE(error_of("[listen]\npolicy = \"\"\nmilter = \"127.0.0.1:0\"\n"));  // "" is off
}

TEST(ConfigErrors, BadEnum) {
  EXPECT_CONFIG_ERROR("[store]\nbackend = \"sqlite\"\n", 2, "store.backend");
  EXPECT_CONFIG_ERROR("[greylist]\nmode = \"sometimes\"\n", 2, "greylist.mode");
  EXPECT_CONFIG_ERROR("[ips]\nexport = \"none\"\n", 2, "ips.export");
}

TEST(ConfigErrors, ThresholdOrder) {
  auto err = error_of("[actions]\ngreylist = 3\ntag = 6\nreject = 5\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->line(), 4);
  EXPECT_EQ(err->key(), "actions.reject");
  EXPECT_NE(err->problem().find("6"), std::string::npos) << err->what();
  EXPECT_NE(err->problem().find("5"), std::string::npos) << err->what();
  // Only greylist was set, so greylist is what broke the order against the default reject.
  EXPECT_CONFIG_ERROR("[actions]\n\ngreylist = 15\n", 3, "actions.greylist");
  EXPECT_CONFIG_ERROR("[actions]\nreject = 20\ntag = 20\n", 3, "actions.tag");
  EXPECT_CONFIG_ERROR("[actions]\ntag = 0\n", 2, "actions.tag");
  EXPECT_CONFIG_ERROR("[actions]\nreject_min_families = 6\n", 2, "actions.reject_min_families");
}

TEST(ConfigErrors, ScoresNeedAKnownSymbol) {
  EXPECT_CONFIG_ERROR("[scores]\nRDNS_NONE = 1\nRDNS_DYNMAIC = 2\n", 3, "scores.RDNS_DYNMAIC");
  auto err = error_of("[scores]\nRDNS_DYNMAIC = 2\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->problem(), "unknown symbol (did you mean RDNS_DYNAMIC?)");
  EXPECT_CONFIG_ERROR("[scores]\nRBL_NOPE = 2\n", 2, "scores.RBL_NOPE");
  EXPECT_CONFIG_ERROR("[scores]\nHELO_FORGED = \"high\"\n", 2, "scores.HELO_FORGED");
  // A list defined after [scores] still provides its symbol.
  EXPECT_FALSE(
      error_of("[scores]\nRBL_LATE_ONE = 2\n[[dnsbl]]\nname = \"late-one\"\nzone = "
               "\"x.example\"\n"));
}

TEST(ConfigErrors, DnsblListRules) {
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\n[[dnsbl]]\nname = \"a\"\nzone = "
      "\"b.example\"\n",
      5, "dnsbl[2].name");
  // Same symbol RBL_A_B from two spellings is a duplicate too.
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a-b\"\nzone = \"a.example\"\n[[dnsbl]]\nname = \"a_b\"\nzone = "
      "\"b.example\"\n",
      5, "dnsbl[2].name");
  // The same name in dnsbl and dnswl is fine: the symbols differ.
  EXPECT_FALSE(
      error_of("[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\n[[dnswl]]\nname = "
               "\"a\"\nzone = \"w.example\"\n"));
  EXPECT_CONFIG_ERROR("[[dnsbl]]\nname = \"a b\"\nzone = \"a.example\"\n", 2, "dnsbl[1].name");
  EXPECT_CONFIG_ERROR("\n[[dnsbl]]\nname = \"a\"\n", 2, "dnsbl[1]");  // zone missing
  EXPECT_CONFIG_ERROR("[[dnswl]]\nname = \"a\"\nzone = \"not a zone\"\n", 3, "dnswl[1].zone");
  EXPECT_CONFIG_ERROR("[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\nweight = 0\n", 4,
                      "dnsbl[1].weight");
}

TEST(ConfigErrors, BadReturnCode) {
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\ncodes = { \"127.0.0.2\" = 3.0, "
      "\"10.0.0.2\" = 1.0 }\n",
      4, "dnsbl[1].codes.\"10.0.0.2\"");
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\n[dnsbl.codes]\n\"127.0.0.2\" = \"3\"\n", 5,
      "dnsbl[1].codes.\"127.0.0.2\"");
  EXPECT_CONFIG_ERROR(
      "[[dnsbl]]\nname = \"a\"\nzone = \"a.example\"\nblocked_codes = [\"127.255.255\"]\n", 4,
      "dnsbl[1].blocked_codes");
}

TEST(ConfigErrors, OtherSectionRules) {
  EXPECT_CONFIG_ERROR("[store]\nbackend = \"redis\"\n", 2, "store.url");
  EXPECT_CONFIG_ERROR("[store]\nurl = \"http://x\"\n", 2, "store.url");
  EXPECT_CONFIG_ERROR("[batv]\nenforce = true\n", 2, "batv.enforce");
  EXPECT_CONFIG_ERROR("[batv]\nkeys = [\"short\"]\n", 2, "batv.keys");
  EXPECT_CONFIG_ERROR("[dns]\nservers = [\"127.0.0.1@0\"]\n", 2, "dns.servers");
  EXPECT_CONFIG_ERROR("[dns]\nservers = [\"ns.example.org\"]\n", 2, "dns.servers");
  EXPECT_CONFIG_ERROR("[[imap]]\nurl = \"https://mail.example.org\"\n", 2, "imap[1].url");
  EXPECT_CONFIG_ERROR("[[imap]]\nurl = \"imaps://mail.example.org\"\nspam_folders = [\"J\"]\n", 1,
                      "imap[1].user");
  EXPECT_CONFIG_ERROR("[trap]\nmx_addresses = [\"mx.example.org\"]\n", 2, "trap.mx_addresses");
  EXPECT_CONFIG_ERROR("[ips]\nnft_table = \"spamward\"\n", 2, "ips.nft_table");
  // Names the exporter would refuse at run time are refused here, at load.
  EXPECT_CONFIG_ERROR("[ips]\nnft_table = \"inet bad-name\"\n", 2, "ips.nft_table");
  EXPECT_CONFIG_ERROR("[ips]\nnft_table = \"inet 9abc\"\n", 2, "ips.nft_table");
  EXPECT_CONFIG_ERROR("[ips]\nnft_table = \"inet " + std::string(33, 'a') + "\"\n", 2,
                      "ips.nft_table");
  EXPECT_CONFIG_ERROR("[limits]\nmax_connections = 0\n", 2, "limits.max_connections");
  EXPECT_CONFIG_ERROR("[reputation]\nban_factor = 0.5\n", 2, "reputation.ban_factor");
  EXPECT_CONFIG_ERROR("[recipients]\nvalid = \"/etc/spamward/recipients\"\n", 2,
                      "recipients.valid");
}

TEST(ConfigLoad, AutoAllowAfterZeroTurnsAutoAllowingOff) {
  // 0 is documented as "auto-allow off" (GreylistTable honours it); negatives are refused.
  EXPECT_EQ(parse_config("[greylist]\nauto_allow_after = 0\n", "t.toml").greylist.auto_allow_after,
            0);
  EXPECT_CONFIG_ERROR("[greylist]\nauto_allow_after = -1\n", 2, "greylist.auto_allow_after");
}

TEST(ConfigErrors, OnlyTheFirstProblemInTheFileIsReported) {
  // toml++ keeps keys sorted; the loader must still report in file order.
  EXPECT_CONFIG_ERROR("[store]\nzzz = 1\n[actions]\naaa = 1\n", 2, "store.zzz");
  EXPECT_CONFIG_ERROR("[log]\nformat = \"xml\"\n[dns]\nbogus = 1\n", 2, "log.format");
}

TEST(ConfigErrors, TomlSyntaxErrorHasItsLine) {
  auto err = error_of("[store]\npath = \"x\"\nbackend = = 1\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->line(), 3);
  EXPECT_EQ(err->key(), "");
  EXPECT_EQ(std::string(err->what()).rfind("test.toml:3: TOML syntax error", 0), 0u) << err->what();
}

TEST(ConfigErrors, MissingFileIsAConfigErrorOnLineZero) {
  try {
    load_config("/nonexistent/spamward.toml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), "/nonexistent/spamward.toml");
    EXPECT_EQ(e.line(), 0);
    EXPECT_NE(e.problem().find("No such file"), std::string::npos) << e.what();
  }
}

TEST(ConfigCheckCommand, OkAndErrorExitCodes) {
  TempFile good("[actions]\ndry_run = true\n");
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli::cmd_config_check(good.path()), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), good.path() + ": ok\n");

  TempFile bad("[actions]\ndry_run = true\ntypo = 1\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::cmd_config_check(bad.path()), 2);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "spamward: config error: " + bad.path() + ":3: key 'actions.typo': unknown key\n");
}

TEST(ConfigCheckCommand, GivenPathWins) {
  EXPECT_EQ(cli::resolve_config_path("/tmp/x.toml"), "/tmp/x.toml");
  std::string fallback = cli::resolve_config_path("");
  EXPECT_TRUE(fallback == "/etc/spamward/spamward.toml" || fallback == "config/spamward.toml")
      << fallback;
  EXPECT_EQ(fallback == "/etc/spamward/spamward.toml",
            std::filesystem::exists("/etc/spamward/spamward.toml"));
}

TEST(ConfigScores, TemperrorOverrideMustStayZero) {
  EXPECT_NO_THROW(parse_config("[scores]\nSPF_TEMPERROR = 0\n", "t.toml"));
  try {
    parse_config("[scores]\nSPF_FAIL = 3\nSPF_TEMPERROR = 1.5\n", "t.toml");
    FAIL() << "a non-zero SPF_TEMPERROR was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.line(), 3);
    EXPECT_EQ(e.key(), "scores.SPF_TEMPERROR");
  }
}

// [[imap]] (DESIGN §3.3): every key, the defaults, and one case per validation rule.
TEST(ConfigImap, LoadsEveryKey) {
  Config c = parse_config(R"(
[bayes]
min_learned = 50
autolearn = false
model = "fisher"
[[imap]]
url = "imaps://mail.example.org:993/"
user = "alice@example.org"
password_file = "/etc/spamward/imap-alice.secret"
spam_folders = ["Junk", "Spam/Ünwanted"]
ham_folders = ["Archive", "Say \"hi\""]
ca_file = "/etc/spamward/ca.pem"
[[imap]]
url = "imap://[2001:db8::1]:143"
user = "bob"
password_file = "bob.secret"
ham_folders = ["INBOX"]
)",
                          "imap.toml");
  EXPECT_EQ(c.bayes.min_learned, 50);
  EXPECT_FALSE(c.bayes.autolearn);
  EXPECT_EQ(c.bayes.model, "fisher");
  EXPECT_EQ(bayes_options(c.bayes).model, BayesModel::fisher);
  ASSERT_EQ(c.imap.size(), 2u);
  EXPECT_EQ(c.imap[0].url, "imaps://mail.example.org:993/");
  EXPECT_EQ(c.imap[0].user, "alice@example.org");
  EXPECT_EQ(c.imap[0].password_file, "/etc/spamward/imap-alice.secret");
  EXPECT_EQ(c.imap[0].spam_folders, (std::vector<std::string>{"Junk", "Spam/Ünwanted"}));
  EXPECT_EQ(c.imap[0].ham_folders, (std::vector<std::string>{"Archive", "Say \"hi\""}));
  EXPECT_EQ(c.imap[0].ca_file, "/etc/spamward/ca.pem");
  EXPECT_TRUE(c.imap[1].spam_folders.empty());
  EXPECT_EQ(c.imap[1].ca_file, "");

  Config d = parse_config("", "empty.toml");
  EXPECT_EQ(d.bayes.min_learned, 200);
  EXPECT_TRUE(d.bayes.autolearn);
  EXPECT_EQ(d.bayes.model, "logistic");
  EXPECT_EQ(bayes_options(d.bayes).model, BayesModel::logistic);
  EXPECT_TRUE(d.imap.empty());
}

TEST(ConfigImap, Errors) {
  const std::string head =
      "[[imap]]\nuser = \"a\"\npassword_file = \"p\"\nspam_folders = [\"J\"]\n";
  // url: scheme, host, port, no path/query/user info
  for (const char* url :
       {"https://mail.example.org", "imaps://", "imap:///", "imaps://user:pw@mail.example.org",
        "imaps://mail.example.org/INBOX", "imaps://mail.example.org?x",
        "imaps://mail.example.org:0", "imaps://mail.example.org:99999",
        "imaps://mail.example.org:x", "imaps://[nonsense]", "imaps://bad host"}) {
    EXPECT_CONFIG_ERROR(head + "url = \"" + url + "\"\n", 5, "imap[1].url");
  }
  // every [[imap]] needs url, user and password_file, and at least one folder
  EXPECT_CONFIG_ERROR("[[imap]]\nuser = \"a\"\npassword_file = \"p\"\nspam_folders = [\"J\"]\n", 1,
                      "imap[1].url");
  EXPECT_CONFIG_ERROR("[[imap]]\nurl = \"imaps://h\"\nuser = \"a\"\nspam_folders = [\"J\"]\n", 1,
                      "imap[1].password_file");
  EXPECT_CONFIG_ERROR("[[imap]]\nurl = \"imaps://h\"\nuser = \"a\"\npassword_file = \"p\"\n", 1,
                      "imap[1]");
  EXPECT_CONFIG_ERROR("[[imap]]\nurl = \"imaps://h\"\nuser = \"a\\nb\"\n", 3, "imap[1].user");
  // folder names: no line breaks or control characters, valid UTF-8, no duplicates
  const std::string box = "[[imap]]\nurl = \"imaps://h\"\nuser = \"a\"\npassword_file = \"p\"\n";
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"Junk\\r\\nA1 DELETE INBOX\"]\n", 5,
                      "imap[1].spam_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"a\\tb\"]\n", 5, "imap[1].spam_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"\"]\n", 5, "imap[1].spam_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"J\", \"J\"]\n", 5, "imap[1].spam_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"J\"]\nham_folders = [\"K\", \"J\"]\n", 6,
                      "imap[1].ham_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [3]\n", 5, "imap[1].spam_folders");
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"J\"]\nfolders = [\"x\"]\n", 6, "imap[1].folders");
  EXPECT_CONFIG_ERROR("[imap]\nurl = \"imaps://h\"\n", 1, "imap");
  // the same account twice
  EXPECT_CONFIG_ERROR(box + "spam_folders = [\"J\"]\n" + box + "ham_folders = [\"K\"]\n", 8,
                      "imap[2].user");
  // [bayes]
  EXPECT_CONFIG_ERROR("[bayes]\nmin_learned = 0\n", 2, "bayes.min_learned");
  EXPECT_CONFIG_ERROR("[bayes]\nautolearn = \"yes\"\n", 2, "bayes.autolearn");
  EXPECT_CONFIG_ERROR("[bayes]\nmin_lerned = 5\n", 2, "bayes.min_lerned");
  EXPECT_CONFIG_ERROR("[bayes]\nmodel = \"svm\"\n", 2, "bayes.model");

  auto err = error_of(box + "spam_folders = [\"Junk\\nX\"]\n");
  ASSERT_TRUE(err);
  EXPECT_NE(std::string(err->what()).find("line break"), std::string::npos) << err->what();
  err = error_of(head + "url = \"imaps://mail.example.org/INBOX\"\n");
  ASSERT_TRUE(err);
  EXPECT_NE(std::string(err->what()).find("spam_folders"), std::string::npos) << err->what();
}

// [headers] (Authentication-Results, RFC 8601): defaults, every key, and the validation of
// authserv_id (a plain host or domain name, written bare into the header).
TEST(ConfigHeaders, DefaultsKeysAndErrors) {
  Config d = parse_config("", "d.toml");
  EXPECT_FALSE(d.headers.authentication_results);
  EXPECT_EQ(d.headers.authserv_id, "");

  Config c = parse_config(
      "[headers]\nauthentication_results = true\nauthserv_id = \"MX-1.example.org\"\n", "t.toml");
  EXPECT_TRUE(c.headers.authentication_results);
  EXPECT_EQ(c.headers.authserv_id, "MX-1.example.org");

  EXPECT_CONFIG_ERROR("[headers]\nauthentication_results = \"yes\"\n", 2,
                      "headers.authentication_results");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = 3\n", 2, "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\n\nauthserv_id = \"mx example.org\"\n", 3, "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = \"mx.example.org;dkim=pass\"\n", 2,
                      "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = \"\\\"quoted\\\"\"\n", 2, "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = \"mx.example.org.\"\n", 2, "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = \"a..b\"\n", 2, "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthserv_id = \"mx\\r\\nX-Spam-Flag: NO\"\n", 2,
                      "headers.authserv_id");
  EXPECT_CONFIG_ERROR("[headers]\nauthentication_result = true\n", 2,
                      "headers.authentication_result");

  auto err = error_of("[headers]\nauthserv_id = \"a b\"\n");
  ASSERT_TRUE(err);
  EXPECT_EQ(std::string(err->what()).rfind("test.toml:2: key 'headers.authserv_id': ", 0), 0u)
      << err->what();
  EXPECT_NE(std::string(err->what()).find("host or domain name"), std::string::npos) << err->what();

  // The shipped file restates the defaults.
  const std::string path =
      (std::filesystem::path(SPAMWARD_SOURCE_DIR) / "config" / "spamward.toml").string();
  Config shipped = load_config(path);
  EXPECT_FALSE(shipped.headers.authentication_results);
  EXPECT_EQ(shipped.headers.authserv_id, "");
}
