// The OpenSPF RFC 7208 conformance suite (../shared/testsuites/spf/rfc7208-tests.yml) run
// against check_host() on a FixtureResolver. One GoogleTest case per suite test, named
// "<scenario>__<test>", so a failure says which one. The harness follows the suite's README:
// - SPF entries are also served as TXT unless the name has an explicit TXT entry;
//   "TXT: NONE" is no record;
// - a bare TIMEOUT makes every query type without a record listed before it time out;
// - names not in the zone are NXDOMAIN, except "error." names, which time out;
// - names match case-insensitively and without a trailing dot; CNAMEs are followed (a loop
//   is a server failure);
// - "explanation: DEFAULT" is the default explanation, set to the literal "DEFAULT".
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "auth/spf.h"
#include "dns/dns_cache.h"
#include "dns/resolver.h"

using namespace spamward;

namespace {

const char* kSuitePath = SPAMWARD_SOURCE_DIR "/../shared/testsuites/spf/rfc7208-tests.yml";

std::string normalize(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

// One name's zone data as the suite lists it.
struct ZoneName {
  std::map<std::string, std::vector<std::string>> records;  // "TXT", "A", ... in order
  std::set<std::string> before_timeout;  // types with a record listed before TIMEOUT
  bool timeout = false;
  bool explicit_txt = false;
  std::vector<std::string> spf;  // SPF entries, served as TXT when explicit_txt is false
  std::vector<std::pair<int, std::string>> mx;
  std::string cname;
};

std::string join_strings(const YAML::Node& value) {
  if (value.IsSequence()) {
    std::string out;
    for (const auto& part : value) out += part.as<std::string>();
    return out;
  }
  return value.as<std::string>();
}

std::map<std::string, ZoneName> parse_zone(const YAML::Node& zonedata) {
  std::map<std::string, ZoneName> zone;
  if (!zonedata || !zonedata.IsMap()) return zone;
  for (const auto& entry : zonedata) {
    ZoneName& z = zone[normalize(entry.first.as<std::string>())];
    for (const auto& rr : entry.second) {
      if (rr.IsScalar()) {
        if (rr.as<std::string>() == "TIMEOUT") z.timeout = true;
        continue;
      }
      for (const auto& kv : rr) {
        std::string type = kv.first.as<std::string>();
        const YAML::Node& v = kv.second;
        auto seen = [&](const std::string& t) {
          if (!z.timeout) z.before_timeout.insert(t);
        };
        if (type == "SPF") {
          z.spf.push_back(join_strings(v));
        } else if (type == "TXT") {
          z.explicit_txt = true;
          if (v.IsScalar() && v.as<std::string>() == "NONE") continue;
          z.records["TXT"].push_back(join_strings(v));
          seen("TXT");
        } else if (type == "MX") {
          z.mx.emplace_back(v[0].as<int>(), v[1].as<std::string>());
          seen("MX");
        } else if (type == "CNAME") {
          z.cname = normalize(v.as<std::string>());
        } else {
          z.records[type].push_back(v.as<std::string>());
          seen(type);
        }
      }
    }
    // SPF copies come after every listed entry, so after a TIMEOUT too.
    if (!z.explicit_txt) {
      for (const auto& s : z.spf) z.records["TXT"].push_back(s);
      if (!z.spf.empty() && !z.timeout) z.before_timeout.insert("TXT");
    }
    std::stable_sort(z.mx.begin(), z.mx.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [pref, name] : z.mx) z.records["MX"].push_back(name);
  }
  return zone;
}

DnsAnswer answer_for(const std::map<std::string, ZoneName>& zone, const std::string& name,
                     DnsType type) {
  std::string current = name;
  for (int hops = 0; hops < 10; ++hops) {
    auto it = zone.find(current);
    if (it == zone.end()) {
      if (current.rfind("error.", 0) == 0) return {DnsAnswer::Status::timeout, {}, 0};
      return {DnsAnswer::Status::nxdomain, {}, 0};
    }
    const ZoneName& z = it->second;
    if (!z.cname.empty()) {
      current = z.cname;
      continue;
    }
    std::string t = to_string(type);
    if (z.timeout && !z.before_timeout.contains(t)) return {DnsAnswer::Status::timeout, {}, 0};
    auto rec = z.records.find(t);
    if (rec == z.records.end() || rec->second.empty()) return {DnsAnswer::Status::nodata, {}, 0};
    return {DnsAnswer::Status::ok, rec->second, 300};
  }
  return {DnsAnswer::Status::error, {}, 0};  // CNAME loop
}

// Serves the zone through a FixtureResolver; this wrapper only normalizes the queried name
// and answers the "error." names outside the zone, which a fixed table cannot list.
class SuiteResolver final : public Resolver {
 public:
  explicit SuiteResolver(const std::map<std::string, ZoneName>& zone) {
    for (const auto& [name, z] : zone) {
      for (DnsType t : {DnsType::a, DnsType::aaaa, DnsType::ptr, DnsType::txt, DnsType::mx}) {
        fixture_.set(name, t, answer_for(zone, name, t));
      }
    }
  }
  boost::asio::awaitable<DnsAnswer> query(std::string name, DnsType type) override {
    name = normalize(std::move(name));
    ++queries;
    if (name.rfind("error.", 0) == 0) co_return DnsAnswer{DnsAnswer::Status::timeout, {}, 0};
    auto inner = fixture_.query(name, type);
    DnsAnswer a = co_await std::move(inner);
    co_return a;
  }
  int queries = 0;

 private:
  FixtureResolver fixture_;
};

struct SuiteCase {
  std::string scenario;
  std::string test;
  std::string gtest_name;
  std::string helo, host, mailfrom;
  std::vector<std::string> results;
  std::optional<std::string> explanation;
  std::shared_ptr<const std::map<std::string, ZoneName>> zone;
};

std::string identifier(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

struct Suite {
  std::vector<SuiteCase> cases;
  std::string load_error;
};

const Suite& suite() {
  static const Suite loaded = [] {
    Suite s;
    try {
      for (const auto& doc : YAML::LoadAllFromFile(kSuitePath)) {
        std::string scenario = doc["description"].as<std::string>();
        auto zone =
            std::make_shared<const std::map<std::string, ZoneName>>(parse_zone(doc["zonedata"]));
        for (const auto& t : doc["tests"]) {
          SuiteCase c;
          c.scenario = scenario;
          c.test = t.first.as<std::string>();
          c.gtest_name = identifier(scenario) + "__" + identifier(c.test);
          const YAML::Node& body = t.second;
          c.helo = body["helo"].as<std::string>();
          c.host = body["host"].as<std::string>();
          c.mailfrom = body["mailfrom"].as<std::string>();
          if (body["result"].IsSequence()) {
            for (const auto& r : body["result"]) c.results.push_back(r.as<std::string>());
          } else {
            c.results.push_back(body["result"].as<std::string>());
          }
          if (body["explanation"]) c.explanation = body["explanation"].as<std::string>();
          c.zone = zone;
          s.cases.push_back(std::move(c));
        }
      }
    } catch (const std::exception& e) {
      s.load_error = e.what();
    }
    return s;
  }();
  return loaded;
}

SpfResult run(const SuiteCase& c, int* queries) {
  auto ip = IpAddress::parse(c.host);
  if (!ip) throw std::invalid_argument("bad host " + c.host);
  SuiteResolver dns(*c.zone);
  SpfIdentity id = spf_identity(c.mailfrom, c.helo);
  SpfOptions options;
  options.default_explanation = "DEFAULT";
  options.now_unix = 1'700'000'000;
  boost::asio::io_context io;
  SpfResult result;
  std::exception_ptr error;
  auto task = check_host(dns, *ip, id.domain, id.sender, c.helo, options);
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, SpfResult r) {
    error = e;
    result = std::move(r);
  });
  io.run();
  if (error) std::rethrow_exception(error);
  *queries = dns.queries;
  return result;
}

TEST(SpfSuiteFile, LoadsAll203Tests) {
  ASSERT_EQ(suite().load_error, "") << kSuitePath;
  EXPECT_EQ(suite().cases.size(), 203u);
  std::set<std::string> names;
  for (const auto& c : suite().cases) names.insert(c.gtest_name);
  EXPECT_EQ(names.size(), suite().cases.size()) << "test names must be unique";
}

class SpfSuite : public testing::TestWithParam<size_t> {};

TEST_P(SpfSuite, Rfc7208) {
  const SuiteCase& c = suite().cases.at(GetParam());
  SCOPED_TRACE("scenario \"" + c.scenario + "\", test " + c.test + ": host " + c.host +
               ", mailfrom \"" + c.mailfrom + "\", helo \"" + c.helo + "\"");
  int queries = 0;
  SpfResult r = run(c, &queries);
  std::string got(to_string(r.code));
  std::string expected;
  for (const auto& e : c.results) expected += (expected.empty() ? "" : " or ") + e;
  EXPECT_NE(std::find(c.results.begin(), c.results.end(), got), c.results.end())
      << "got " << got << ", expected " << expected << " (mechanism \"" << r.mechanism
      << "\", problem \"" << r.problem << "\")";
  if (c.explanation) {
    EXPECT_EQ(r.explanation, *c.explanation);
  }
  // Whatever the record says, the evaluation stays bounded (§4.6.4 plus our own limits).
  EXPECT_LE(queries, 200);
}

std::vector<size_t> case_indexes() {
  std::vector<size_t> idx(suite().cases.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  return idx;
}

INSTANTIATE_TEST_SUITE_P(SpfRfc7208, SpfSuite, testing::ValuesIn(case_indexes()),
                         [](const testing::TestParamInfo<size_t>& info) {
                           return suite().cases.at(info.param).gtest_name;
                         });

}  // namespace
