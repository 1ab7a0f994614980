// CaresResolver against a real unbound started on a free 127.0.0.1 port with local data
// (answers, TTLs, the cache, the in-flight cap, TCP fallback), and against a "black hole"
// UDP socket that never answers (DNS down: every query completes with timeout in time).
// unbound runs in the foreground as our child and is stopped in TearDownTestSuite, which
// gtest runs even when tests fail; PR_SET_PDEATHSIG stops it if this process dies instead.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/metrics.h"
#include "dns/cares_resolver.h"

namespace spamward {
namespace {

using namespace std::chrono_literals;
using S = DnsAnswer::Status;
using SteadyClock = std::chrono::steady_clock;

// Generous for a loaded 2-core machine, still far below anything a caller would notice.
constexpr auto kSlack = 1500ms;

// ---- Sockets ----------------------------------------------------------------------------

// A UDP socket bound to 127.0.0.1 on a free port; closed on destruction.
struct UdpSocket {
  int fd = -1;
  uint16_t port = 0;
  UdpSocket() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      return;
    }
    port = ntohs(sa.sin_port);
  }
  ~UdpSocket() {
    if (fd >= 0) ::close(fd);
  }
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
};

// A port free for both UDP and TCP on 127.0.0.1 right now (unbound binds both).
uint16_t free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    UdpSocket udp;
    if (udp.port == 0) continue;
    int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(udp.port);
    bool ok = tcp >= 0 && ::bind(tcp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    if (tcp >= 0) ::close(tcp);
    if (ok) return udp.port;
  }
  return 0;
}

// Sends one A query for `name` to 127.0.0.1:port and waits up to `wait` for any reply.
bool dns_answers(uint16_t port, const std::string& name, std::chrono::milliseconds wait) {
  std::string packet("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  std::stringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    packet += static_cast<char>(label.size());
    packet += label;
  }
  packet += std::string("\x00\x00\x01\x00\x01", 5);
  UdpSocket s;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(port);
  if (::sendto(s.fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) <
      0) {
    return false;
  }
  pollfd pfd{s.fd, POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(wait.count())) <= 0) return false;
  char reply[512];
  return ::recv(s.fd, reply, sizeof reply, 0) >= 12;
}

// ---- unbound ------------------------------------------------------------------------------

std::string big_txt_strings() {
  // Six 250-byte strings: the answer (~1.5 KB) is over the 1232-byte EDNS size c-ares offers,
  // so unbound truncates it over UDP and c-ares must retry over TCP.
  std::string out;
  for (char c : std::string("abcdef")) out += " \"" + std::string(250, c) + "\"";
  return out;
}

std::string unbound_config(const std::string& dir, uint16_t port) {
  std::ostringstream c;
  c << "server:\n"
    << "  interface: 127.0.0.1@" << port << "\n"
    << "  do-daemonize: no\n"
    << "  username: \"\"\n"
    << "  chroot: \"\"\n"
    << "  directory: \"" << dir << "\"\n"
    << "  pidfile: \"\"\n"
    << "  use-syslog: no\n"
    << "  num-threads: 1\n"
    << "  access-control: 127.0.0.0/8 allow\n"
    << "  do-ip6: no\n"
    << "  module-config: \"iterator\"\n"
    << "  do-not-query-localhost: no\n"
    << "  local-zone: \"in-addr.arpa.\" static\n"
    << "  local-zone: \"example.test.\" static\n"
    << "  local-data: \"example.test. 3600 SOA ns.example.test. hostmaster.example.test. 1 3600 "
       "600 86400 120\"\n"
    << "  local-data: \"a.example.test. 300 A 192.0.2.1\"\n"
    << "  local-data: \"a.example.test. 300 A 192.0.2.2\"\n"
    << "  local-data: \"a.example.test. 300 AAAA 2001:db8::1\"\n"
    << "  local-data-ptr: \"192.0.2.1 Host-1.Example.TEST\"\n"
    << "  local-data: \"2.2.0.192.in-addr.arpa. PTR one.example.test.\"\n"
    << "  local-data: \"2.2.0.192.in-addr.arpa. PTR two.example.test.\"\n"
    << "  local-data: 'split.example.test. TXT \"v=spf1 ip4:198.51.100.0/24 \" "
       "\"ip4:203.0.113.0/24 -all\"'\n"
    << "  local-data: 'multi.example.test. TXT \"first\"'\n"
    << "  local-data: 'multi.example.test. TXT \"second\"'\n"
    << "  local-data: 'big.example.test. TXT" << big_txt_strings() << "'\n"
    << "  local-data: \"mail.example.test. MX 20 MX2.Example.test.\"\n"
    << "  local-data: \"mail.example.test. MX 10 mx1.example.test.\"\n";
  return c.str();
}

class Unbound {
 public:
  // Starts unbound and waits until it answers. On failure returns false with `why`.
  bool start(std::string& why) {
    if (::access("/usr/sbin/unbound", X_OK) != 0) {
      why = "/usr/sbin/unbound is missing (scripts/install-deps installs it)";
      return false;
    }
    char tmpl[] = "/tmp/spamward-unbound-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      why = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    // The port is free when chosen but another process may take it before unbound binds it:
    // try a few.
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = free_port();
      std::string conf = dir_ + "/unbound.conf";
      std::ofstream(conf) << unbound_config(dir_, port_);
      std::string log = dir_ + "/unbound.log";
      pid_ = ::fork();
      if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        std::FILE* out = std::freopen(log.c_str(), "w", stderr);
        if (out) ::dup2(::fileno(out), 1);
        ::execl("/usr/sbin/unbound", "unbound", "-d", "-c", conf.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
      }
      auto give_up = SteadyClock::now() + 10s;
      while (SteadyClock::now() < give_up) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;  // exited: probably the port was taken
        }
        if (dns_answers(port_, "a.example.test", 100ms)) return true;
      }
      std::ifstream in(log);
      why = std::string(std::istreambuf_iterator<char>(in), {});
      stop_process();
    }
    why = "unbound did not start: " + why;
    return false;
  }

  void stop() {
    stop_process();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  uint16_t port() const { return port_; }
  ~Unbound() { stop(); }

 private:
  void stop_process() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto give_up = SteadyClock::now() + 3s;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (SteadyClock::now() > give_up) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      ::usleep(10'000);
    }
    pid_ = -1;
  }

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// ---- Running queries ----------------------------------------------------------------------

struct Outcome {
  DnsAnswer answer;
  std::chrono::milliseconds took{-1};
  int completions = 0;
};

// A free coroutine: its parameters live in its frame.
boost::asio::awaitable<void> timed_query(Resolver& resolver, std::string name, DnsType type,
                                         Outcome& out) {
  auto started = SteadyClock::now();
  auto q = resolver.query(std::move(name), type);
  DnsAnswer answer = co_await std::move(q);
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
  out.answer = std::move(answer);
  ++out.completions;
}

void spawn(boost::asio::io_context& io, Resolver& resolver, std::string name, DnsType type,
           Outcome& out) {
  auto task = timed_query(resolver, std::move(name), type, out);
  boost::asio::co_spawn(io, std::move(task), boost::asio::detached);
}

// Runs the loop until no work is left (bounded, so a bug fails the test instead of hanging).
void run(boost::asio::io_context& io) {
  io.restart();
  io.run_for(30s);
  EXPECT_TRUE(io.stopped()) << "the event loop still had work after 30 s";
}

// ---- Tests against unbound ----------------------------------------------------------------

class CaresResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    unbound_ = new Unbound;
    if (!unbound_->start(why_)) {
      delete unbound_;
      unbound_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete unbound_;  // stops unbound and removes its directory
    unbound_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(unbound_, nullptr) << why_; }

  CaresOptions options() const {
    CaresOptions o;
    o.servers = {"127.0.0.1@" + std::to_string(unbound_->port())};
    o.timeout = 3000ms;
    return o;
  }

  DnsAnswer ask(Resolver& resolver, const std::string& name, DnsType type) {
    Outcome out;
    spawn(io_, resolver, name, type, out);
    run(io_);
    EXPECT_EQ(out.completions, 1);
    return out.answer;
  }

  static Unbound* unbound_;
  static std::string why_;
  boost::asio::io_context io_;
};

Unbound* CaresResolverTest::unbound_ = nullptr;
std::string CaresResolverTest::why_;

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_F(CaresResolverTest, AnswersEachType) {
  CaresResolver resolver(io_.get_executor(), options(), nullptr);

  DnsAnswer a = ask(resolver, "a.example.test", DnsType::a);
  EXPECT_EQ(a.status, S::ok);
  EXPECT_EQ(sorted(a.records), (std::vector<std::string>{"192.0.2.1", "192.0.2.2"}));
  EXPECT_GT(a.ttl, 0u);
  EXPECT_LE(a.ttl, 300u);

  DnsAnswer aaaa = ask(resolver, "A.Example.Test.", DnsType::aaaa);
  EXPECT_EQ(aaaa.status, S::ok);
  EXPECT_EQ(aaaa.records, std::vector<std::string>{"2001:db8::1"});

  DnsAnswer ptr = ask(resolver, "1.2.0.192.in-addr.arpa", DnsType::ptr);
  EXPECT_EQ(ptr.status, S::ok);
  EXPECT_EQ(ptr.records, std::vector<std::string>{"host-1.example.test"});
  DnsAnswer ptrs = ask(resolver, "2.2.0.192.in-addr.arpa.", DnsType::ptr);
  EXPECT_EQ(ptrs.status, S::ok);
  EXPECT_EQ(sorted(ptrs.records),
            (std::vector<std::string>{"one.example.test", "two.example.test"}));

  DnsAnswer split = ask(resolver, "split.example.test", DnsType::txt);
  EXPECT_EQ(split.status, S::ok);
  EXPECT_EQ(split.records,
            std::vector<std::string>{"v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all"});

  DnsAnswer multi = ask(resolver, "multi.example.test", DnsType::txt);
  EXPECT_EQ(multi.status, S::ok);
  EXPECT_EQ(sorted(multi.records), (std::vector<std::string>{"first", "second"}));

  DnsAnswer mx = ask(resolver, "mail.example.test", DnsType::mx);
  EXPECT_EQ(mx.status, S::ok);
  EXPECT_EQ(mx.records, (std::vector<std::string>{"mx1.example.test", "mx2.example.test"}));
}

TEST_F(CaresResolverTest, NegativeAnswersCarryTheSoaTtl) {
  CaresResolver resolver(io_.get_executor(), options(), nullptr);
  DnsAnswer nx = ask(resolver, "nope.example.test", DnsType::a);
  EXPECT_EQ(nx.status, S::nxdomain);
  EXPECT_TRUE(nx.records.empty());
  EXPECT_EQ(nx.ttl, 120u);  // min(SOA TTL, SOA MINIMUM)
  EXPECT_TRUE(nx.definitive());

  DnsAnswer nodata = ask(resolver, "a.example.test", DnsType::txt);
  EXPECT_EQ(nodata.status, S::nodata);
  EXPECT_TRUE(nodata.records.empty());
  EXPECT_EQ(nodata.ttl, 120u);
}

TEST_F(CaresResolverTest, TruncatedAnswerIsFetchedOverTcp) {
  CaresResolver resolver(io_.get_executor(), options(), nullptr);
  DnsAnswer big = ask(resolver, "big.example.test", DnsType::txt);
  ASSERT_EQ(big.status, S::ok);
  ASSERT_EQ(big.records.size(), 1u);
  EXPECT_EQ(big.records[0].size(), 6u * 250u);
  EXPECT_EQ(big.records[0].substr(245, 10), "aaaaabbbbb");
}

TEST_F(CaresResolverTest, SecondQueryIsACacheHit) {
  Metrics metrics;
  FakeClock clock;
  DnsConfig config;
  config.servers = options().servers;
  auto resolver = make_resolver(io_.get_executor(), config, clock, &metrics);

  DnsAnswer first = ask(*resolver, "a.example.test", DnsType::a);
  EXPECT_EQ(first.status, S::ok);
  EXPECT_EQ(metrics.value("spamward_dns_queries_total", {{"type", "A"}}), 1);
  EXPECT_EQ(metrics.value("spamward_dns_cache_hits_total"), 0);
  EXPECT_EQ(metrics.histogram_count("spamward_dns_seconds", {{"type", "A"}}), 1);

  DnsAnswer second = ask(*resolver, "a.example.test", DnsType::a);
  EXPECT_EQ(sorted(second.records), sorted(first.records));
  EXPECT_EQ(metrics.value("spamward_dns_queries_total", {{"type", "A"}}), 1);
  EXPECT_EQ(metrics.value("spamward_dns_cache_hits_total"), 1);

  // Negative answers are cached too.
  EXPECT_EQ(ask(*resolver, "nope.example.test", DnsType::a).status, S::nxdomain);
  EXPECT_EQ(ask(*resolver, "nope.example.test", DnsType::a).status, S::nxdomain);
  EXPECT_EQ(metrics.value("spamward_dns_queries_total", {{"type", "A"}}), 2);
  EXPECT_EQ(metrics.value("spamward_dns_cache_hits_total"), 2);
}

TEST_F(CaresResolverTest, InFlightCapQueuesTheRest) {
  CaresOptions o = options();
  o.max_in_flight = 2;
  CaresResolver resolver(io_.get_executor(), o, nullptr);
  std::vector<Outcome> outcomes(20);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    spawn(io_, resolver, "n" + std::to_string(i) + ".example.test", DnsType::a, outcomes[i]);
  }
  run(io_);
  EXPECT_EQ(resolver.peak_in_flight(), 2u);
  EXPECT_EQ(resolver.in_flight(), 0u);
  EXPECT_EQ(resolver.queued(), 0u);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].completions, 1);
    EXPECT_EQ(outcomes[i].answer.status, S::nxdomain) << i;
  }
}

// ---- DNS down -----------------------------------------------------------------------------

TEST(CaresResolverDown, QueryTimesOutWithinTimeout) {
  UdpSocket black_hole;  // receives queries, never answers
  ASSERT_NE(black_hole.port, 0);
  boost::asio::io_context io;
  Metrics metrics;
  CaresOptions o;
  o.servers = {"127.0.0.1@" + std::to_string(black_hole.port)};
  o.timeout = 300ms;
  CaresResolver resolver(io.get_executor(), o, &metrics);

  Outcome out;
  spawn(io, resolver, "a.example.test", DnsType::a, out);
  run(io);
  EXPECT_EQ(out.completions, 1);
  EXPECT_EQ(out.answer.status, S::timeout);
  EXPECT_FALSE(out.answer.definitive());
  EXPECT_GE(out.took, 290ms);
  EXPECT_LT(out.took, 300ms + kSlack);
  EXPECT_EQ(metrics.value("spamward_dns_timeouts_total"), 1);
  EXPECT_EQ(metrics.value("spamward_dns_queries_total", {{"type", "A"}}), 1);
}

TEST(CaresResolverDown, ManyConcurrentQueriesAllComplete) {
  UdpSocket black_hole;
  ASSERT_NE(black_hole.port, 0);
  boost::asio::io_context io;
  Metrics metrics;
  CaresOptions o;
  o.servers = {"127.0.0.1@" + std::to_string(black_hole.port)};
  o.timeout = 300ms;
  o.max_in_flight = 512;  // 1000 queries: about half wait in the queue and time out there
  CaresResolver resolver(io.get_executor(), o, &metrics);

  std::vector<Outcome> outcomes(1000);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    spawn(io, resolver, "q" + std::to_string(i) + ".example.test", DnsType::txt, outcomes[i]);
  }
  run(io);
  int late = 0;
  for (const auto& out : outcomes) {
    EXPECT_EQ(out.completions, 1);
    EXPECT_EQ(out.answer.status, S::timeout);
    if (out.took >= 300ms + kSlack) ++late;
  }
  EXPECT_EQ(late, 0);
  EXPECT_EQ(resolver.peak_in_flight(), 512u);
  EXPECT_EQ(metrics.value("spamward_dns_timeouts_total"), 1000);
  EXPECT_EQ(resolver.in_flight(), 0u);  // c-ares gave up on the abandoned ones too
}

TEST(CaresResolverDown, FullQueueFailsFastWithError) {
  UdpSocket black_hole;
  ASSERT_NE(black_hole.port, 0);
  boost::asio::io_context io;
  Metrics metrics;
  CaresOptions o;
  o.servers = {"127.0.0.1@" + std::to_string(black_hole.port)};
  o.timeout = 300ms;
  o.max_in_flight = 1;
  o.max_queued = 2;
  CaresResolver resolver(io.get_executor(), o, &metrics);

  std::vector<Outcome> outcomes(5);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    spawn(io, resolver, "f" + std::to_string(i) + ".example.test", DnsType::a, outcomes[i]);
  }
  run(io);
  // Spawned in order: the first is sent, the next two wait, the last two find the queue full.
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(outcomes[i].answer.status, S::timeout) << i;
  for (size_t i = 3; i < 5; ++i) {
    EXPECT_EQ(outcomes[i].answer.status, S::error) << i;
    EXPECT_LT(outcomes[i].took, 100ms) << i;
  }
  EXPECT_EQ(metrics.value("spamward_dns_errors_total", {{"status", "overload"}}), 2);
  EXPECT_EQ(metrics.value("spamward_dns_timeouts_total"), 3);
}

TEST(CaresResolverDown, DestroyingTheResolverCompletesPendingQueries) {
  UdpSocket black_hole;
  ASSERT_NE(black_hole.port, 0);
  boost::asio::io_context io;
  CaresOptions o;
  o.servers = {"127.0.0.1@" + std::to_string(black_hole.port)};
  o.timeout = 5000ms;
  o.max_in_flight = 4;  // some in flight, some queued
  auto resolver = std::make_unique<CaresResolver>(io.get_executor(), o, nullptr);

  std::vector<Outcome> outcomes(10);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    spawn(io, *resolver, "d" + std::to_string(i) + ".example.test", DnsType::a, outcomes[i]);
  }
  io.run_for(50ms);  // the queries are sent and waiting
  EXPECT_EQ(resolver->in_flight(), 4u);
  EXPECT_EQ(resolver->queued(), 6u);
  auto destroyed = SteadyClock::now();
  resolver.reset();
  run(io);  // the coroutines resume after the resolver is gone
  EXPECT_LT(SteadyClock::now() - destroyed, 1s);  // not after their 5 s timeouts
  for (const auto& out : outcomes) {
    EXPECT_EQ(out.completions, 1);
    EXPECT_EQ(out.answer.status, S::error);
  }
}

// ---- Configuration ------------------------------------------------------------------------

TEST(CaresResolverConfig, ParsesServerForms) {
  auto v4 = parse_dns_server("127.0.0.1");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->port, 53);
  EXPECT_EQ(v4->address[0], 127);
  EXPECT_EQ(v4->address[3], 1);

  auto v4port = parse_dns_server("192.0.2.1@5353");
  ASSERT_TRUE(v4port);
  EXPECT_EQ(v4port->port, 5353);

  for (const char* text : {"::1@5353", "[::1]@5353"}) {
    auto v6 = parse_dns_server(text);
    ASSERT_TRUE(v6) << text;
    EXPECT_EQ(v6->family, AF_INET6) << text;
    EXPECT_EQ(v6->port, 5353) << text;
    EXPECT_EQ(v6->address[15], 1) << text;
  }
  auto v6bare = parse_dns_server("2001:db8::53");
  ASSERT_TRUE(v6bare);
  EXPECT_EQ(v6bare->family, AF_INET6);
  EXPECT_EQ(v6bare->port, 53);
  ASSERT_TRUE(parse_dns_server("[::1]"));
  auto bracketed_v4 = parse_dns_server("[127.0.0.1]@53");  // the config loader accepts it too
  ASSERT_TRUE(bracketed_v4);
  EXPECT_EQ(bracketed_v4->family, AF_INET);

  for (const char* bad : {"", "localhost", "127.0.0.1@", "127.0.0.1@0", "127.0.0.1@65536",
                          "127.0.0.1@53x", "[::1]53", "[::1", "::1@dns"}) {
    EXPECT_FALSE(parse_dns_server(bad)) << bad;
  }
}

TEST(CaresResolverConfig, BadServerThrows) {
  boost::asio::io_context io;
  CaresOptions o;
  o.servers = {"dns.example.org"};
  EXPECT_THROW(CaresResolver(io.get_executor(), o, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace spamward
