// policy_load: a closed-loop load generator for the Postfix policy protocol.
//
// Each connection behaves like one of Postfix's proxymap/smtpd policy clients: it keeps its TCP
// connection open, sends one full Postfix 3.7 RCPT-stage request (all 29 attributes, blank line
// at the end), waits for the `action=...` reply and its blank line, and only then sends the next.
// The requests draw on a fixed set of distinct (client address, sender, recipient) triplets,
// visited in a fixed pseudo-random order that all connections share, so every server sees the
// same sequence of triplets run after run.
//
// --mix scale draws the requests from the scale benchmark's data instead (bench/scale_mix.h, the
// same functions state_fill fills a store with): a share of the requests repeat one of the
// --existing triplets a filled store holds, picked at random over all of them; the rest are
// triplets never sent before, some of them from one of the --offenders addresses of the
// reputation records. The picks depend on --seed, --run and the request's number only; runs
// with another --run share no new triplet and repeat no pick of a stored one.
//
// Latency is measured per request, from just before the write to the end of the reply, and
// recorded exactly (1 µs buckets below 100 ms, 1 ms buckets above), so percentiles are not
// estimates from samples. Only requests that complete after the warm-up and inside the measured
// window count.
//
// Output: a human summary on stdout and one machine-readable line starting with "RESULT".
// Exit status: 0 when at least one request succeeded, 1 otherwise, 2 on bad usage.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <boost/asio.hpp>

#include "load_stats.h"
#include "scale_mix.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string target = "127.0.0.1:10040";
  int connections = 1;
  double duration_s = 10.0;
  uint64_t requests = 0;  // when > 0, measure this many requests instead of a duration
  double warmup_s = 2.0;
  int triplets = 5000;
  int threads = 1;
  double timeout_s = 5.0;
  uint64_t seed = 20240601;
  // --cold-dns 1: every request's sender is in a domain never seen before
  // (nN.cold.test), so the server's DNS cache cannot answer: the cold-cache case.
  bool cold_dns = false;
  // --mix scale: the scale benchmark's requests (see the top of this file).
  bool scale = false;
  uint64_t existing = 1'000'000;   // triplets 0..existing-1 are the filled store's
  uint64_t offenders = 1'000'000;  // reputation records 0..offenders-1
  double existing_share = 0.5;     // requests that repeat a stored triplet
  double offender_share = 0.05;    // requests with a new triplet from a known offender
  uint64_t run = 0;                // runs against one server pick other triplets
};

[[noreturn]] void usage(int status) {
  std::FILE* out = status == 0 ? stdout : stderr;
  std::fputs(
      "usage: policy_load [--target HOST:PORT] [--connections N] [--duration SECONDS | "
      "--requests N]\n"
      "                   [--warmup SECONDS] [--triplets N] [--threads N] [--timeout SECONDS]\n"
      "                   [--cold-dns 1] [--seed N]\n"
      "                   [--mix classic|scale] [--existing N] [--offenders N]\n"
      "                   [--existing-share F] [--offender-share F] [--run N]\n"
      "Closed-loop Postfix policy (smtpd_access_policy, RCPT stage) load over persistent\n"
      "connections. Defaults: 127.0.0.1:10040, 1 connection, 10 s after 2 s warm-up,\n"
      "5000 triplets, 1 thread, 5 s per-request timeout.\n"
      "--mix scale: the scale benchmark's mix; --existing-share (0.5) of the requests repeat\n"
      "one of --existing (1000000) stored triplets, --offender-share (0.05) come from one of\n"
      "--offenders (1000000) known offenders with a new triplet, the rest are new triplets.\n",
      out);
  std::exit(status);
}

[[noreturn]] void die_usage(const std::string& message) {
  std::cerr << "policy_load: " << message << "\n";
  usage(2);
}

template <typename T>
T parse_number(std::string_view name, std::string_view text) {
  T value{};
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last) {
    die_usage("bad value for --" + std::string(name) + ": '" + std::string(text) + "'");
  }
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") usage(0);
    if (!arg.starts_with("--")) die_usage("unexpected argument '" + std::string(arg) + "'");
    arg.remove_prefix(2);
    std::string_view name = arg;
    std::string_view value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc) die_usage("--" + std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "target") {
      o.target = std::string(value);
    } else if (name == "connections") {
      o.connections = parse_number<int>(name, value);
    } else if (name == "duration") {
      o.duration_s = parse_number<double>(name, value);
    } else if (name == "requests") {
      o.requests = parse_number<uint64_t>(name, value);
    } else if (name == "warmup") {
      o.warmup_s = parse_number<double>(name, value);
    } else if (name == "triplets") {
      o.triplets = parse_number<int>(name, value);
    } else if (name == "threads") {
      o.threads = parse_number<int>(name, value);
    } else if (name == "timeout") {
      o.timeout_s = parse_number<double>(name, value);
    } else if (name == "cold-dns") {
      o.cold_dns = parse_number<int>(name, value) != 0;
    } else if (name == "seed") {
      o.seed = parse_number<uint64_t>(name, value);
    } else if (name == "mix") {
      if (value != "classic" && value != "scale") die_usage("--mix must be classic or scale");
      o.scale = value == "scale";
    } else if (name == "existing") {
      o.existing = parse_number<uint64_t>(name, value);
    } else if (name == "offenders") {
      o.offenders = parse_number<uint64_t>(name, value);
    } else if (name == "existing-share") {
      o.existing_share = parse_number<double>(name, value);
    } else if (name == "offender-share") {
      o.offender_share = parse_number<double>(name, value);
    } else if (name == "run") {
      o.run = parse_number<uint64_t>(name, value);
    } else {
      die_usage("unknown option --" + std::string(name));
    }
  }
  if (o.connections < 1 || o.connections > 100000) die_usage("--connections must be 1..100000");
  if (o.threads < 1 || o.threads > 256) die_usage("--threads must be 1..256");
  if (o.triplets < 1 || o.triplets > 10000000) die_usage("--triplets must be 1..10000000");
  if (!(o.duration_s > 0)) die_usage("--duration must be > 0");
  if (!(o.warmup_s >= 0)) die_usage("--warmup must be >= 0");
  if (!(o.timeout_s > 0)) die_usage("--timeout must be > 0");
  if (!(o.existing_share >= 0 && o.offender_share >= 0 &&
        o.existing_share + o.offender_share <= 1)) {
    die_usage("--existing-share and --offender-share must be >= 0 and add up to at most 1");
  }
  if (o.run >= (uint64_t{1} << 20)) die_usage("--run must be below 1048576");
  return o;
}

// splitmix64: tiny, fast and fully determined by the seed, so the mix is identical on every
// machine and standard library (std::mt19937 distributions are not portable across libraries).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------------
// The request mix.

struct Network {
  bool v6;
  // IPv4: the first octets fixed, the rest random. IPv6: a /48 prefix text; the subnet and
  // interface identifier are random, so the same /64 recurs the way real senders' /64s do.
  std::string_view prefix;
  int fixed_octets;  // IPv4 only
  int weight;
};

// Documentation ranges (RFC 5737, RFC 3849) and a few ordinary-looking public blocks. They are
// only ever text in a request; nothing is sent to them.
constexpr Network kNetworks[] = {
    {false, "192.0.2", 3, 6},     {false, "198.51.100", 3, 6},   {false, "203.0.113", 3, 6},
    {false, "81.2", 2, 8},        {false, "185.12", 2, 8},       {false, "209.85", 2, 10},
    {false, "62.210", 2, 6},      {false, "94.100", 2, 6},       {false, "45.33", 2, 6},
    {false, "77.88", 2, 6},       {false, "157.240", 2, 4},      {false, "40.92", 2, 8},
    {true, "2001:db8:10", 0, 5},  {true, "2001:db8:20", 0, 3},   {true, "2a00:1450:4864", 0, 4},
    {true, "2a01:4f8:c17", 0, 3}, {true, "2603:10a6:20b", 0, 3},
};

using scale_mix::kLocalDomains;
using scale_mix::kSenderDomains;

constexpr std::string_view kHeloWords[] = {"localhost", "user", "ylmf-pc", "WIN-3J1B0", "mail"};

struct Triplet {
  std::string client_address;
  std::string sender;
  std::string recipient;
  // Everything of the request that depends only on the triplet, pre-rendered once so the
  // generator spends as little CPU as possible per request (it shares the cores with the server).
  std::string fixed_block;
};

std::string random_v4(Rng& rng, const Network& n) {
  std::string s(n.prefix);
  for (int i = n.fixed_octets; i < 4; ++i) {
    // Avoid .0 and .255 in the last octet; they look like network and broadcast addresses.
    uint64_t octet = i == 3 ? 1 + rng.below(254) : rng.below(256);
    s += '.';
    s += std::to_string(octet);
  }
  return s;
}

std::string hex4(uint64_t v) {
  char buf[8];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v & 0xffff, 16);
  (void)ec;
  return std::string(buf, end);
}

std::string random_v6(Rng& rng, const Network& n) {
  std::string s(n.prefix);
  s += ':' + hex4(rng.below(16));  // a handful of /64s per /48
  // Half the hosts use a small interface identifier (servers), half a random one (SLAAC).
  if (rng.below(2) == 0) {
    s += "::" + hex4(1 + rng.below(64));
  } else {
    for (int i = 0; i < 4; ++i) s += ':' + hex4(rng.next());
  }
  return s;
}

std::string reversed_name(const std::string& address, std::string_view domain) {
  std::string s;
  for (char c : address) s += (c == '.' || c == ':') ? '-' : c;
  return s + "." + std::string(domain);
}

// Attribute order as Postfix 3.7's smtpd_check.c sends them, minus the per-request ones
// (instance, queue_id, client_port, size, recipient_count) that render_request adds.
void render_fixed_block(std::string& b, std::string_view client_address,
                        std::string_view client_name, std::string_view reverse_name,
                        std::string_view helo, std::string_view sender, std::string_view recipient,
                        bool tls) {
  b += "request=smtpd_access_policy\n";
  b += "protocol_state=RCPT\n";
  b += "protocol_name=ESMTP\n";
  auto attribute = [&b](std::string_view name, std::string_view value) {
    b += name;
    b += '=';
    b += value;
    b += '\n';
  };
  attribute("client_address", client_address);
  attribute("client_name", client_name);
  attribute("reverse_client_name", reverse_name);
  attribute("helo_name", helo);
  attribute("sender", sender);
  attribute("recipient", recipient);
  b += "sasl_method=\nsasl_username=\nsasl_sender=\n";
  b += "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n";
  if (tls) {
    b += "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n";
    b += "encryption_keysize=256\n";
  } else {
    b += "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n";
  }
  b += "etrn_domain=\nstress=\npolicy_context=\n";
  b += "server_address=127.0.0.1\nserver_port=25\n";
}

std::vector<Triplet> make_triplets(int count, uint64_t seed) {
  Rng rng(seed);
  int total_weight = 0;
  for (const auto& n : kNetworks) total_weight += n.weight;

  std::vector<Triplet> out;
  out.reserve(static_cast<size_t>(count));
  std::set<std::string> seen;
  while (static_cast<int>(out.size()) < count) {
    int pick = static_cast<int>(rng.below(static_cast<uint64_t>(total_weight)));
    const Network* net = &kNetworks[0];
    for (const auto& n : kNetworks) {
      if (pick < n.weight) {
        net = &n;
        break;
      }
      pick -= n.weight;
    }
    Triplet t;
    t.client_address = net->v6 ? random_v6(rng, *net) : random_v4(rng, *net);
    // About 4% null senders (bounces), the rest from a pool where some senders recur.
    if (rng.below(25) != 0) {
      const auto& dom = kSenderDomains[rng.below(std::size(kSenderDomains))];
      t.sender = "user" + std::to_string(rng.below(400)) + "@" + std::string(dom);
    }
    const auto& local = kLocalDomains[rng.below(std::size(kLocalDomains))];
    t.recipient = "rcpt" + std::to_string(rng.below(300)) + "@" + std::string(local);
    std::string key = t.client_address + ' ' + t.sender + ' ' + t.recipient;
    if (!seen.insert(key).second) continue;

    // Client names as Postfix reports them: verified (client_name == reverse_client_name),
    // forward-mismatch (client_name=unknown, reverse name present), or no PTR at all.
    std::string client_name, reverse_name;
    const auto& dom = kSenderDomains[rng.below(std::size(kSenderDomains))];
    switch (rng.below(10)) {
      case 0:
      case 1:
        client_name = reverse_name = "unknown";
        break;
      case 2:
        client_name = "unknown";
        reverse_name = reversed_name(t.client_address, "dyn.example.net");
        break;
      default:
        client_name = reverse_name =
            "mail" + std::to_string(rng.below(50)) + "." + std::string(dom);
    }
    std::string helo;
    switch (rng.below(8)) {
      case 0:
        helo = "[" + t.client_address + "]";
        break;
      case 1:
        helo = std::string(kHeloWords[rng.below(std::size(kHeloWords))]);
        break;
      default:
        helo = client_name == "unknown" ? "mx." + std::string(dom) : client_name;
    }
    bool tls = rng.below(4) != 0;
    render_fixed_block(t.fixed_block, t.client_address, client_name, reverse_name, helo, t.sender,
                       t.recipient, tls);
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measurement.

using bench::ErrorKind;
using bench::Histogram;
using bench::kErrorKinds;
using bench::kErrorNames;

// State shared by all threads. Everything here is either immutable after start or atomic.
struct Shared {
  Options options;
  tcp::endpoint endpoint;
  std::vector<Triplet> triplets;
  std::vector<uint32_t> order;  // a fixed permutation of triplet indexes
  std::atomic<uint64_t> next_request{0};
  Clock::time_point warm_end;
  Clock::time_point end;  // duration mode only
  // Requests mode: measured requests still to do; the run ends when it reaches 0.
  std::atomic<int64_t> remaining{0};
  std::atomic<bool> stop{false};

  bool requests_mode() const { return options.requests > 0; }
};

// Per-thread results; merged after the threads join, so no locking on the hot path.
struct Stats {
  Histogram histogram;
  uint64_t errors[kErrorKinds] = {};
  std::map<std::string, uint64_t, std::less<>> actions;
  Clock::time_point last_completion{};
  // Every answered request, warm-up included: with the generator's CPU time this gives its cost
  // per request, and bench/run divides the server's CPU time by it too.
  uint64_t answered = 0;
};

struct Connection {
  int id = 0;
  std::unique_ptr<tcp::socket> socket;
  Clock::time_point busy_since{};
  bool busy = false;
  bool timed_out = false;
  bool done = false;
};

struct Worker {
  Shared& shared;
  asio::io_context io{1};
  Stats stats;
  std::vector<std::unique_ptr<Connection>> connections;
  int live = 0;

  explicit Worker(Shared& s) : shared(s) {}
};

void append_number(std::string& s, uint64_t v, int base = 10) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, base);
  (void)ec;
  s.append(buf, end);
}

// The per-request attributes, then the blank line that ends the request.
void render_request(std::string& out, std::string_view fixed_block, int conn_id, uint64_t seq,
                    uint64_t cold_serial) {
  out.assign(fixed_block);
  if (cold_serial) {
    // A later sender= replaces the triplet's: the policy protocol keeps the last value.
    out += "sender=user@n";
    append_number(out, cold_serial);
    out += ".cold.test\n";
  }
  // Postfix's instance is unique per SMTP transaction; here each request is its own
  // transaction, as when every client sends one recipient per connection.
  out += "instance=";
  append_number(out, static_cast<uint64_t>(conn_id) + 0x1000, 16);
  out += '.';
  append_number(out, seq, 16);
  out += ".0\n";
  // At RCPT time Postfix has no queue id yet unless smtpd_delay_open_until_valid_rcpt=no.
  out += "queue_id=\n";
  out += "client_port=";
  append_number(out, 1024 + (seq * 7919 + static_cast<uint64_t>(conn_id)) % 64000);
  out += "\nsize=";
  append_number(out, (seq % 4 == 0) ? 0 : 2000 + (seq * 131) % 60000);
  out += "\nrecipient_count=0\n\n";
}

// The triplet attributes of request n of the scale mix (see the top of this file).
void scale_fixed_block(const Options& o, uint64_t n, std::string& out) {
  // Every pick depends on the run too: another run against the same server repeats neither
  // its new triplets nor its picks of stored ones (which the first run has already retried).
  const uint64_t r = (o.run << 40) + n;
  const uint64_t h = scale_mix::hash(o.seed, 50, r);
  const double u = static_cast<double>(h >> 11) / static_cast<double>(uint64_t{1} << 53);
  scale_mix::Triplet t;
  if (u < o.existing_share && o.existing > 0) {
    t = scale_mix::greylist_triplet(o.seed, scale_mix::hash(o.seed, 51, r) % o.existing);
  } else {
    // An index far above any stored one.
    t = scale_mix::greylist_triplet(o.seed, (uint64_t{1} << 62) + r);
    if (u < o.existing_share + o.offender_share && o.offenders > 0) {
      t.client_address = scale_mix::offender(o.seed, scale_mix::hash(o.seed, 52, r) % o.offenders);
    }
  }
  out.clear();
  render_fixed_block(out, t.client_address, t.client_name, t.reverse_client_name, t.helo, t.sender,
                     t.recipient, (h & 3) != 0);
}

std::string_view action_word(std::string_view reply) {
  // reply starts with "action="; the word is up to the first space or newline.
  std::string_view v = reply.substr(7);
  auto stop = v.find_first_of(" \n");
  return v.substr(0, stop);
}

asio::awaitable<void> run_connection(Worker& w, Connection& c) {
  Shared& s = w.shared;
  auto executor = co_await asio::this_coro::executor;
  const auto token = asio::as_tuple(asio::use_awaitable);
  constexpr std::string_view kEnd = "\n\n";
  std::string request;
  std::string reply;
  std::string fixed;  // the scale mix's triplet attributes of this request
  request.reserve(1024);
  uint64_t seq = 0;
  asio::steady_timer backoff(executor);

  while (!s.stop.load(std::memory_order_relaxed)) {
    if (!c.socket || !c.socket->is_open()) {
      c.socket = std::make_unique<tcp::socket>(executor);
      reply.clear();
      auto [ec] = co_await c.socket->async_connect(s.endpoint, token);
      if (ec) {
        ++w.stats.errors[static_cast<size_t>(ErrorKind::connect)];
        c.socket->close();
        // Back off so a dead server does not turn the run into a connect storm.
        backoff.expires_after(std::chrono::milliseconds(20));
        auto [wait_ec] = co_await backoff.async_wait(token);
        (void)wait_ec;
        continue;
      }
      boost::system::error_code opt_ec;
      c.socket->set_option(tcp::no_delay(true), opt_ec);
    }

    const uint64_t n = s.next_request.fetch_add(1, std::memory_order_relaxed);
    const uint64_t cold_serial = s.options.cold_dns ? n + 1 : 0;
    if (s.options.scale) {
      scale_fixed_block(s.options, n, fixed);
      render_request(request, fixed, c.id, seq++, cold_serial);
    } else {
      const Triplet& t = s.triplets[s.order[n % s.order.size()]];
      render_request(request, t.fixed_block, c.id, seq++, cold_serial);
    }

    const auto start = Clock::now();
    c.busy_since = start;
    c.busy = true;
    c.timed_out = false;
    const auto out = asio::buffer(request);
    auto [write_ec, written] = co_await asio::async_write(*c.socket, out, token);
    (void)written;
    size_t reply_len = 0;
    boost::system::error_code read_ec = write_ec;
    if (!write_ec) {
      auto in = asio::dynamic_buffer(reply, 64 * 1024);
      auto [ec, len] = co_await asio::async_read_until(*c.socket, in, kEnd, token);
      read_ec = ec;
      reply_len = len;
    }
    const auto finish = Clock::now();
    c.busy = false;

    if (read_ec) {
      ErrorKind kind = c.timed_out                   ? ErrorKind::timeout
                       : read_ec == asio::error::eof ? ErrorKind::closed
                                                     : ErrorKind::io;
      if (!s.stop.load(std::memory_order_relaxed) || kind != ErrorKind::io) {
        ++w.stats.errors[static_cast<size_t>(kind)];
      }
      boost::system::error_code close_ec;
      c.socket->close(close_ec);
      continue;
    }

    std::string_view r(reply.data(), reply_len);
    bool ok = r.starts_with("action=");
    if (ok) {
      ++w.stats.answered;
    } else {
      ++w.stats.errors[static_cast<size_t>(ErrorKind::bad_reply)];
    }

    if (finish >= s.warm_end) {
      bool record = true;
      if (s.requests_mode()) {
        record = s.remaining.fetch_sub(1, std::memory_order_relaxed) > 0;
        if (!record) s.stop.store(true, std::memory_order_relaxed);
      } else if (finish >= s.end) {
        record = false;
        s.stop.store(true, std::memory_order_relaxed);
      }
      if (record && ok) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(finish - start).count();
        w.stats.histogram.record(static_cast<uint64_t>(us));
        w.stats.last_completion = std::max(w.stats.last_completion, finish);
        auto word = action_word(r);
        auto it = w.stats.actions.find(word);
        if (it == w.stats.actions.end()) {
          w.stats.actions.emplace(std::string(word), 1);
        } else {
          ++it->second;
        }
      }
    }
    reply.erase(0, reply_len);
  }
  if (c.socket) {
    boost::system::error_code ec;
    c.socket->close(ec);
  }
  c.done = true;
  --w.live;
}

// Closes the socket of any request outstanding longer than --timeout, and, once the run is
// over, of every connection still waiting, so a stuck server cannot hang the generator.
// One timer per thread instead of one per request keeps the per-request cost down.
asio::awaitable<void> watchdog(Worker& w) {
  Shared& s = w.shared;
  auto executor = co_await asio::this_coro::executor;
  const auto token = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer timer(executor);
  const auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(s.options.timeout_s));
  std::optional<Clock::time_point> stop_seen;
  while (w.live > 0) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(token);
    (void)ec;
    const auto now = Clock::now();
    if (!s.requests_mode() && now >= s.end) s.stop.store(true, std::memory_order_relaxed);
    if (s.stop.load(std::memory_order_relaxed) && !stop_seen) stop_seen = now;
    const bool drain_over = stop_seen && now - *stop_seen > limit;
    for (auto& c : w.connections) {
      if (c->done || !c->socket) continue;
      if ((c->busy && now - c->busy_since > limit) || drain_over) {
        c->timed_out = c->busy;
        boost::system::error_code close_ec;
        c->socket->close(close_ec);
      }
    }
  }
}

tcp::endpoint resolve_target(const std::string& target) {
  auto colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()) {
    die_usage("--target must be HOST:PORT, got '" + target + "'");
  }
  std::string host = target.substr(0, colon);
  std::string port = target.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, port, ec);
  if (ec || results.empty()) {
    std::cerr << "policy_load: cannot resolve " << target << ": " << ec.message() << "\n";
    std::exit(1);
  }
  return results.begin()->endpoint();
}

}  // namespace

int main(int argc, char** argv) {
  Shared shared;
  shared.options = parse_options(argc, argv);
  const Options& o = shared.options;
  shared.endpoint = resolve_target(o.target);
  if (!o.scale) shared.triplets = make_triplets(o.triplets, o.seed);
  shared.order.resize(shared.triplets.size());
  for (size_t i = 0; i < shared.order.size(); ++i) shared.order[i] = static_cast<uint32_t>(i);
  Rng shuffle_rng(o.seed ^ 0x5bd1e995ULL);
  for (size_t i = shared.order.size(); i > 1; --i) {
    std::swap(shared.order[i - 1], shared.order[shuffle_rng.below(i)]);
  }

  std::vector<std::unique_ptr<Worker>> workers;
  const int threads = std::min(o.threads, o.connections);
  for (int i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>(shared));
  for (int i = 0; i < o.connections; ++i) {
    auto c = std::make_unique<Connection>();
    c->id = i;
    Worker& w = *workers[static_cast<size_t>(i % threads)];
    w.connections.push_back(std::move(c));
    ++w.live;
  }

  const auto start = Clock::now();
  shared.warm_end = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(o.warmup_s));
  shared.end = shared.warm_end + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.duration_s));
  shared.remaining.store(static_cast<int64_t>(o.requests));

  for (auto& w : workers) {
    for (auto& c : w->connections) {
      auto session = run_connection(*w, *c);
      asio::co_spawn(w->io, std::move(session), asio::detached);
    }
    auto dog = watchdog(*w);
    asio::co_spawn(w->io, std::move(dog), asio::detached);
  }
  std::vector<std::thread> pool;
  for (size_t i = 1; i < workers.size(); ++i) {
    pool.emplace_back([&w = *workers[i]] { w.io.run(); });
  }
  workers[0]->io.run();
  for (auto& t : pool) t.join();

  Stats total;
  for (auto& w : workers) {
    total.histogram.merge(w->stats.histogram);
    for (size_t k = 0; k < kErrorKinds; ++k) total.errors[k] += w->stats.errors[k];
    for (auto& [word, count] : w->stats.actions) total.actions[word] += count;
    total.last_completion = std::max(total.last_completion, w->stats.last_completion);
    total.answered += w->stats.answered;
  }
  const Histogram& h = total.histogram;
  double window_s = o.duration_s;
  if (shared.requests_mode()) {
    window_s = h.count()
                   ? std::chrono::duration<double>(total.last_completion - shared.warm_end).count()
                   : 0.0;
  }
  const double rps = window_s > 0 ? static_cast<double>(h.count()) / window_s : 0.0;
  uint64_t errors = 0;
  for (auto e : total.errors) errors += e;
  // The generator's own CPU time: on a shared machine it competes with the server it measures.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  const double cpu_us_per_req =
      total.answered ? cpu_s * 1e6 / static_cast<double>(total.answered) : 0.0;

  if (o.scale) {
    std::printf(
        "target %s  connections %d  threads %d  scale mix: %.0f%% of %llu stored triplets, "
        "%.0f%% from %llu offenders, run %llu  warm-up %.1f s  window %.2f s\n",
        o.target.c_str(), o.connections, threads, o.existing_share * 100,
        static_cast<unsigned long long>(o.existing), o.offender_share * 100,
        static_cast<unsigned long long>(o.offenders), static_cast<unsigned long long>(o.run),
        o.warmup_s, window_s);
  } else {
    std::printf(
        "target %s  connections %d  threads %d  triplets %zu  warm-up %.1f s  window %.2f s\n",
        o.target.c_str(), o.connections, threads, shared.triplets.size(), o.warmup_s, window_s);
  }
  std::printf("requests %llu  errors %llu  rate %.0f req/s\n",
              static_cast<unsigned long long>(h.count()), static_cast<unsigned long long>(errors),
              rps);
  std::printf("latency µs: p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu  mean %.1f\n",
              static_cast<unsigned long long>(h.percentile(0.50)),
              static_cast<unsigned long long>(h.percentile(0.90)),
              static_cast<unsigned long long>(h.percentile(0.99)),
              static_cast<unsigned long long>(h.percentile(0.999)),
              static_cast<unsigned long long>(h.max_us()), h.mean_us());
  std::string actions;
  for (auto& [word, count] : total.actions) {
    actions += (actions.empty() ? "" : ",") + word + ":" + std::to_string(count);
  }
  std::printf("actions: %s\n", actions.empty() ? "-" : actions.c_str());
  std::printf("generator: %.2f CPU s, %.1f µs per request (%llu answered, warm-up included)\n",
              cpu_s, cpu_us_per_req, static_cast<unsigned long long>(total.answered));
  if (errors) {
    std::string detail;
    for (size_t k = 0; k < kErrorKinds; ++k) {
      if (total.errors[k]) {
        detail += std::string(detail.empty() ? "" : ", ") + std::string(kErrorNames[k]) + " " +
                  std::to_string(total.errors[k]);
      }
    }
    std::printf("errors: %s\n", detail.c_str());
  }
  std::printf(
      "RESULT target=%s conns=%d threads=%d requests=%llu errors=%llu rps=%.0f p50_us=%llu "
      "p90_us=%llu p99_us=%llu p999_us=%llu max_us=%llu mean_us=%.1f answered=%llu "
      "client_cpu_s=%.2f actions=%s\n",
      o.target.c_str(), o.connections, threads, static_cast<unsigned long long>(h.count()),
      static_cast<unsigned long long>(errors), rps,
      static_cast<unsigned long long>(h.percentile(0.50)),
      static_cast<unsigned long long>(h.percentile(0.90)),
      static_cast<unsigned long long>(h.percentile(0.99)),
      static_cast<unsigned long long>(h.percentile(0.999)),
      static_cast<unsigned long long>(h.max_us()), h.mean_us(),
      static_cast<unsigned long long>(total.answered), cpu_s,
      actions.empty() ? "-" : actions.c_str());
  return h.count() > 0 ? 0 : 1;
}
