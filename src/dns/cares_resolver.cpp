#include "dns/cares_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <list>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "core/ip_address.h"

namespace spamward {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr int kClassIn = 1;
constexpr int kTypeSoa = 6;
constexpr int kMaxAddresses = 256;  // A/AAAA records kept from one answer

int rr_type(DnsType type) {
  switch (type) {
    case DnsType::a:
      return 1;
    case DnsType::aaaa:
      return 28;
    case DnsType::ptr:
      return 12;
    case DnsType::txt:
      return 16;
    case DnsType::mx:
      return 15;
  }
  return 1;
}

// ---- TTLs from the raw reply ------------------------------------------------------------
// The ares_parse_* functions do not report TTLs for PTR, TXT and MX, nor the SOA of a
// negative answer, so the reply is walked once here for both.

uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint16_t be16(const unsigned char* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

// The offset just past the (possibly compressed) name at `pos`, or -1 if malformed.
long skip_name(const unsigned char* buf, long len, long pos) {
  while (pos < len) {
    unsigned char b = buf[pos];
    if (b == 0) return pos + 1;
    if ((b & 0xC0) == 0xC0) return pos + 2 <= len ? pos + 2 : -1;
    if ((b & 0xC0) != 0) return -1;
    pos += 1 + b;
  }
  return -1;
}

// RFC 2181 §8: a TTL with the top bit set is treated as 0.
uint32_t sane_ttl(uint32_t ttl) {
  return (ttl & 0x80000000u) ? 0 : ttl;
}

struct ReplyTtls {
  std::optional<uint32_t> answer_min;  // smallest TTL in the answer section
  std::optional<uint32_t> negative;    // min(SOA TTL, SOA MINIMUM) from the authority section
};

ReplyTtls scan_ttls(const unsigned char* buf, int length) {
  ReplyTtls out;
  long len = length;
  if (!buf || len < 12) return out;
  int qd = be16(buf + 4), an = be16(buf + 6), ns = be16(buf + 8);
  long pos = 12;
  for (int i = 0; i < qd; ++i) {
    pos = skip_name(buf, len, pos);
    if (pos < 0 || pos + 4 > len) return out;
    pos += 4;
  }
  for (int i = 0; i < an + ns; ++i) {
    pos = skip_name(buf, len, pos);
    if (pos < 0 || pos + 10 > len) return out;
    int type = be16(buf + pos);
    uint32_t ttl = sane_ttl(be32(buf + pos + 4));
    long rdlen = be16(buf + pos + 8);
    long rdata = pos + 10;
    if (rdata + rdlen > len) return out;
    if (i < an) {
      out.answer_min = out.answer_min ? std::min(*out.answer_min, ttl) : ttl;
    } else if (type == kTypeSoa && !out.negative) {
      long p = skip_name(buf, len, rdata);     // MNAME
      if (p >= 0) p = skip_name(buf, len, p);  // RNAME
      if (p >= 0 && p + 20 <= rdata + rdlen) {
        uint32_t minimum = sane_ttl(be32(buf + p + 16));  // after SERIAL REFRESH RETRY EXPIRE
        out.negative = std::min(ttl, minimum);
      }
    }
    pos = rdata + rdlen;
  }
  return out;
}

// ---- Decoding a reply -------------------------------------------------------------------

struct Decoded {
  DnsAnswer answer;
  const char* error = nullptr;  // the errors_total label when answer.status is error
};

Decoded make(DnsAnswer::Status status, const char* error = nullptr, uint32_t ttl = 0) {
  return Decoded{DnsAnswer{status, {}, ttl}, error};
}

Decoded negative(DnsAnswer::Status status, const unsigned char* abuf, int alen) {
  return make(status, nullptr, scan_ttls(abuf, alen).negative.value_or(0));
}

// Names as the checks compare them: lower-case, no trailing dot.
std::string name_of(const char* raw) {
  return dns_canonical_name(raw ? raw : "");
}

int parse_records(DnsType type, const unsigned char* abuf, int alen,
                  std::vector<std::string>& out) {
  switch (type) {
    case DnsType::a: {
      std::vector<ares_addrttl> addrs(kMaxAddresses);
      int n = kMaxAddresses;
      int rc = ares_parse_a_reply(abuf, alen, nullptr, addrs.data(), &n);
      if (rc != ARES_SUCCESS) return rc;
      for (int i = 0; i < n; ++i) {
        char text[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &addrs[i].ipaddr, text, sizeof text)) out.emplace_back(text);
      }
      return ARES_SUCCESS;
    }
    case DnsType::aaaa: {
      std::vector<ares_addr6ttl> addrs(kMaxAddresses);
      int n = kMaxAddresses;
      int rc = ares_parse_aaaa_reply(abuf, alen, nullptr, addrs.data(), &n);
      if (rc != ARES_SUCCESS) return rc;
      for (int i = 0; i < n; ++i) {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &addrs[i].ip6addr, text, sizeof text)) out.emplace_back(text);
      }
      return ARES_SUCCESS;
    }
    case DnsType::ptr: {
      hostent* host = nullptr;
      unsigned char unused[4] = {};  // c-ares copies it into the hostent; we never read it
      int rc = ares_parse_ptr_reply(abuf, alen, unused, sizeof unused, AF_INET, &host);
      if (rc != ARES_SUCCESS) return rc;
      // c-ares puts every PTR name, in answer order, into h_aliases (h_name is one of them).
      for (char** alias = host->h_aliases; alias && *alias; ++alias) out.push_back(name_of(*alias));
      if (out.empty() && host->h_name) out.push_back(name_of(host->h_name));
      ares_free_hostent(host);
      return ARES_SUCCESS;
    }
    case DnsType::txt: {
      ares_txt_ext* txt = nullptr;
      int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
      if (rc != ARES_SUCCESS) return rc;
      // A record's character-strings arrive as consecutive nodes, the first flagged
      // record_start; they are joined without separators (RFC 7208 §3.3).
      for (ares_txt_ext* t = txt; t; t = t->next) {
        if (t->record_start || out.empty()) out.emplace_back();
        out.back().append(reinterpret_cast<const char*>(t->txt), t->length);
      }
      ares_free_data(txt);
      return ARES_SUCCESS;
    }
    case DnsType::mx: {
      ares_mx_reply* mx = nullptr;
      int rc = ares_parse_mx_reply(abuf, alen, &mx);
      if (rc != ARES_SUCCESS) return rc;
      std::vector<std::pair<unsigned short, std::string>> exchanges;
      for (ares_mx_reply* m = mx; m; m = m->next) {
        std::string name = name_of(m->host);
        if (!name.empty()) exchanges.emplace_back(m->priority, std::move(name));  // null MX
      }
      ares_free_data(mx);
      std::stable_sort(exchanges.begin(), exchanges.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (auto& e : exchanges) out.push_back(std::move(e.second));
      return ARES_SUCCESS;
    }
  }
  return ARES_EBADRESP;
}

Decoded decode(int status, DnsType type, const unsigned char* abuf, int alen) {
  using S = DnsAnswer::Status;
  switch (status) {
    case ARES_SUCCESS: {
      Decoded d = make(S::ok);
      int rc = abuf ? parse_records(type, abuf, alen, d.answer.records) : ARES_EBADRESP;
      ReplyTtls ttls = scan_ttls(abuf, alen);
      if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && d.answer.records.empty())) {
        // Records of other types only (a CNAME, a null MX): no data for this type.
        return make(S::nodata, nullptr, ttls.negative.value_or(ttls.answer_min.value_or(0)));
      }
      if (rc != ARES_SUCCESS) return make(S::error, "badresp");
      d.answer.ttl = ttls.answer_min.value_or(0);
      return d;
    }
    case ARES_ENODATA:
      return negative(S::nodata, abuf, alen);
    case ARES_ENOTFOUND:
      return negative(S::nxdomain, abuf, alen);
    case ARES_ETIMEOUT:
      return make(S::timeout);
    case ARES_ESERVFAIL:
      return make(S::error, "servfail");
    case ARES_EREFUSED:
      return make(S::error, "refused");
    case ARES_EFORMERR:
      return make(S::error, "formerr");
    case ARES_ENOTIMP:
      return make(S::error, "notimp");
    case ARES_EBADRESP:
      return make(S::error, "badresp");
    case ARES_ECONNREFUSED:
      return make(S::error, "connrefused");
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
      return make(S::error, "shutdown");
    default:
      return make(S::error, "other");
  }
}

bool parse_port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

std::optional<DnsServer> parse_dns_server(std::string_view text) {
  // The same split and address syntax as the config loader (core/config.cpp), so a config
  // that loaded never fails here: "HOST" or "HOST@PORT", HOST as IpAddress::parse takes it
  // (brackets allowed).
  DnsServer server;
  std::string_view host = text;
  if (auto at = host.rfind('@'); at != std::string_view::npos) {
    if (!parse_port(host.substr(at + 1), server.port)) return std::nullopt;
    host = host.substr(0, at);
  }
  auto address = IpAddress::parse(host);
  if (!address) return std::nullopt;
  server.family = address->is_v4() ? AF_INET : AF_INET6;
  std::copy(address->bytes().begin(), address->bytes().end(), server.address);
  return server;
}

// ---- The resolver -----------------------------------------------------------------------

namespace {

// One caller's query. Shared by the caller's coroutine, the queue and the c-ares callback.
// `deadline` is both the timeout and the wake-up: the query is answered by setting `answer`
// and cancelling the timer; if the timer expires first, the coroutine answers timeout. The
// first to set `answer` wins; everyone else sees it set and leaves it alone.
struct Pending {
  Pending(const asio::any_io_executor& ex, std::string n, DnsType t)
      : name(std::move(n)), type(t), deadline(ex) {}
  std::string name;
  DnsType type;
  SteadyClock::time_point started;
  asio::steady_timer deadline;
  std::optional<DnsAnswer> answer;
  bool queued = false;
  std::list<std::shared_ptr<Pending>>::iterator queue_pos;
};

// A socket c-ares asked us to watch. Non-owning: c-ares opens and closes the fd; we release
// the descriptor (which also cancels our waits) when c-ares says it is done with it.
struct Watch {
  Watch(const asio::any_io_executor& ex, int f) : sd(ex, f), fd(f) {}
  asio::posix::stream_descriptor sd;
  int fd;
  bool want_read = false;
  bool want_write = false;
  bool reading = false;  // an async_wait(wait_read) is outstanding
  bool writing = false;
  bool closed = false;
};

}  // namespace

struct CaresResolver::Impl {
  // The c-ares callback's argument: which resolver, which query.
  struct Sent {
    Impl* impl;
    std::shared_ptr<Pending> pending;
  };

  Impl(asio::any_io_executor executor, CaresOptions opts, Metrics* m);
  ~Impl();

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_reply(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  void submit(const std::shared_ptr<Pending>& p);
  void send(const std::shared_ptr<Pending>& p);
  void pump();
  void finish(const std::shared_ptr<Pending>& p, Decoded decoded);
  void expire(const std::shared_ptr<Pending>& p, bool cancelled_by_caller);
  void watch(int fd, bool readable, bool writable);
  void arm(const std::shared_ptr<Watch>& w);
  void on_ready(const std::shared_ptr<Watch>& w, bool readable, bool writable);
  void reschedule();
  void observe(const Pending& p);

  asio::any_io_executor ex;
  CaresOptions options;
  Metrics* metrics;
  ares_channel channel = nullptr;
  asio::steady_timer retransmit;
  uint64_t retransmit_generation = 0;
  bool retransmit_armed = false;
  std::unordered_map<int, std::shared_ptr<Watch>> watches;
  std::list<std::shared_ptr<Pending>> queue;
  size_t in_flight = 0;
  size_t peak = 0;
  bool destroying = false;
  // Handlers hold a weak_ptr to this: once it is gone they return without touching `this`.
  std::shared_ptr<int> life = std::make_shared<int>(0);
};

CaresResolver::Impl::Impl(asio::any_io_executor executor, CaresOptions opts, Metrics* m)
    : ex(std::move(executor)), options(std::move(opts)), metrics(m), retransmit(ex) {
  if (options.max_in_flight == 0) options.max_in_flight = 1;

  std::vector<ares_addr_port_node> nodes;
  for (const auto& text : options.servers) {
    auto server = parse_dns_server(text);
    if (!server) {
      throw std::invalid_argument("[dns] servers: \"" + text +
                                  "\" is not \"IP\", \"IP@PORT\" or \"[IPv6]@PORT\"");
    }
    ares_addr_port_node node{};
    node.family = server->family;
    if (server->family == AF_INET) {
      std::memcpy(&node.addr.addr4, server->address, 4);
    } else {
      std::memcpy(&node.addr.addr6, server->address, 16);
    }
    node.udp_port = node.tcp_port = server->port;
    nodes.push_back(node);
  }
  for (size_t i = 0; i + 1 < nodes.size(); ++i) nodes[i].next = &nodes[i + 1];

  static std::once_flag library_once;
  std::call_once(library_once, [] { ares_library_init(ARES_LIB_INIT_ALL); });

  // c-ares' own schedule: two tries per server, the second with double the wait, so with n
  // servers it gives up after about 3 * n * per_try = timeout (for the configured n). Our
  // deadline timer is what callers see; this only decides when c-ares stops retransmitting.
  size_t n = std::max<size_t>(1, nodes.size());
  auto per_try = std::max<long long>(50, options.timeout.count() / static_cast<long long>(3 * n));
  ares_options ao{};
  int mask = 0;
  ao.sock_state_cb = &Impl::on_sock_state;
  ao.sock_state_cb_data = this;
  mask |= ARES_OPT_SOCK_STATE_CB;
  ao.timeout = static_cast<int>(per_try);
  mask |= ARES_OPT_TIMEOUTMS;
  ao.tries = 2;
  mask |= ARES_OPT_TRIES;
  // EDNS0 with a 1232-byte buffer (the DNS flag day 2020 size): long TXT (SPF) answers fit
  // in UDP instead of falling back to TCP.
  ao.flags = ARES_FLAG_EDNS;
  mask |= ARES_OPT_FLAGS;
  ao.ednspsz = 1232;
  mask |= ARES_OPT_EDNSPSZ;
  int rc = ares_init_options(&channel, &ao, mask);
  if (rc != ARES_SUCCESS) {
    throw std::runtime_error(std::string("cannot start the DNS resolver: ") + ares_strerror(rc));
  }
  if (!nodes.empty()) {
    rc = ares_set_servers_ports(channel, nodes.data());
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel);
      throw std::runtime_error(std::string("cannot set [dns] servers: ") + ares_strerror(rc));
    }
  }

  if (metrics) {
    metrics->describe("spamward_dns_queries_total", Metrics::Type::counter,
                      "DNS queries sent to the DNS servers (cache misses), by type");
    metrics->describe("spamward_dns_timeouts_total", Metrics::Type::counter,
                      "DNS queries that got no answer within [dns] timeout_ms");
    metrics->describe("spamward_dns_errors_total", Metrics::Type::counter,
                      "DNS queries that failed (SERVFAIL, REFUSED, bad reply, overload, ...)");
    metrics->describe("spamward_dns_seconds", Metrics::Type::histogram,
                      "Time to answer a DNS query from the network, queueing included",
                      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5});
  }
}

CaresResolver::Impl::~Impl() {
  destroying = true;
  life.reset();
  std::list<std::shared_ptr<Pending>> waiting;
  waiting.swap(queue);
  for (auto& p : waiting) {
    p->queued = false;
    finish(p, make(DnsAnswer::Status::error, "shutdown"));
  }
  // Calls on_reply with ARES_EDESTRUCTION for every query in flight, and on_sock_state(fd,
  // 0, 0) for every socket before closing it.
  ares_destroy(channel);
  for (auto& [fd, w] : watches) {
    w->closed = true;
    w->sd.release();
  }
  watches.clear();
  retransmit.cancel();
}

void CaresResolver::Impl::submit(const std::shared_ptr<Pending>& p) {
  if (in_flight < options.max_in_flight && queue.empty()) {
    send(p);
  } else if (queue.size() < options.max_queued) {
    queue.push_back(p);
    p->queued = true;
    p->queue_pos = std::prev(queue.end());
  } else {
    finish(p, make(DnsAnswer::Status::error, "overload"));
  }
  pump();
}

void CaresResolver::Impl::pump() {
  while (!destroying && in_flight < options.max_in_flight && !queue.empty()) {
    std::shared_ptr<Pending> p = queue.front();
    queue.pop_front();
    p->queued = false;
    // Its deadline passed while it waited (its coroutine has yet to run): asking now would
    // only load the server for an answer nobody takes.
    if (p->deadline.expiry() <= SteadyClock::now()) continue;
    send(p);
  }
}

void CaresResolver::Impl::send(const std::shared_ptr<Pending>& p) {
  ++in_flight;
  peak = std::max(peak, in_flight);
  if (metrics) metrics->inc("spamward_dns_queries_total", {{"type", to_string(p->type)}});
  auto* sent = new Sent{this, p};
  // May call on_reply at once (a name c-ares cannot encode): on_reply copes.
  ares_query(channel, p->name.c_str(), kClassIn, rr_type(p->type), &Impl::on_reply, sent);
  reschedule();
}

void CaresResolver::Impl::on_reply(void* arg, int status, int, unsigned char* abuf, int alen) {
  // C code calls this: nothing may escape.
  std::unique_ptr<Sent> sent(static_cast<Sent*>(arg));
  Impl* self = sent->impl;
  --self->in_flight;
  if (sent->pending->answer) return;  // it timed out already; the late reply is dropped
  try {
    self->finish(sent->pending, decode(status, sent->pending->type, abuf, alen));
  } catch (...) {
    sent->pending->answer = DnsAnswer{DnsAnswer::Status::error, {}, 0};
    sent->pending->deadline.cancel();
  }
}

void CaresResolver::Impl::observe(const Pending& p) {
  std::chrono::duration<double> took = SteadyClock::now() - p.started;
  metrics->observe("spamward_dns_seconds", {{"type", to_string(p.type)}}, took.count());
}

void CaresResolver::Impl::finish(const std::shared_ptr<Pending>& p, Decoded decoded) {
  bool timed_out = decoded.answer.status == DnsAnswer::Status::timeout;
  p->answer = std::move(decoded.answer);
  p->deadline.cancel();  // wakes the caller
  if (destroying || !metrics) return;
  observe(*p);
  if (timed_out) metrics->inc("spamward_dns_timeouts_total");
  if (decoded.error) metrics->inc("spamward_dns_errors_total", {{"status", decoded.error}});
}

void CaresResolver::Impl::expire(const std::shared_ptr<Pending>& p, bool cancelled_by_caller) {
  p->answer = DnsAnswer{DnsAnswer::Status::timeout, {}, 0};
  if (p->queued) {
    queue.erase(p->queue_pos);
    p->queued = false;
  }
  // A query still in flight keeps its slot until c-ares is done with it (on_reply).
  if (cancelled_by_caller || !metrics) return;
  observe(*p);
  metrics->inc("spamward_dns_timeouts_total");
}

// ---- Sockets and timers -----------------------------------------------------------------

void CaresResolver::Impl::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  try {
    static_cast<Impl*>(data)->watch(fd, readable != 0, writable != 0);
  } catch (const std::exception& e) {
    // Unwatched, the socket's queries time out: failing open, as with a dead server.
    spdlog::error("dns: cannot watch socket {}: {}", fd, e.what());
  }
}

void CaresResolver::Impl::watch(int fd, bool readable, bool writable) {
  auto it = watches.find(fd);
  if (!readable && !writable) {  // c-ares is about to close it
    if (it != watches.end()) {
      it->second->closed = true;
      it->second->sd.release();
      watches.erase(it);
    }
    return;
  }
  if (destroying) return;
  std::shared_ptr<Watch> w;
  if (it == watches.end()) {
    w = std::make_shared<Watch>(ex, fd);
    watches.emplace(fd, w);
  } else {
    w = it->second;
  }
  w->want_read = readable;
  w->want_write = writable;
  arm(w);
}

void CaresResolver::Impl::arm(const std::shared_ptr<Watch>& w) {
  std::weak_ptr<int> alive = life;
  if (w->want_read && !w->reading) {
    w->reading = true;
    w->sd.async_wait(asio::posix::stream_descriptor::wait_read,
                     [this, w, alive](const boost::system::error_code& ec) {
                       if (alive.expired() || w->closed) return;
                       w->reading = false;
                       if (ec == asio::error::operation_aborted) return;
                       on_ready(w, w->want_read, false);
                     });
  }
  if (w->want_write && !w->writing) {
    w->writing = true;
    w->sd.async_wait(asio::posix::stream_descriptor::wait_write,
                     [this, w, alive](const boost::system::error_code& ec) {
                       if (alive.expired() || w->closed) return;
                       w->writing = false;
                       if (ec == asio::error::operation_aborted) return;
                       on_ready(w, false, w->want_write);
                     });
  }
}

void CaresResolver::Impl::on_ready(const std::shared_ptr<Watch>& w, bool readable, bool writable) {
  const int fd = w->fd;
  ares_process_fd(channel, readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
  // Asio's epoll reactor is edge-triggered and a wait only sees edges that come after it
  // starts. c-ares may leave data behind (over TCP it reads one piece per call), so keep
  // processing while the socket is still ready; otherwise that data would wait for a new edge
  // that never comes.
  for (int round = 0; !w->closed; ++round) {
    short events = static_cast<short>((w->want_read ? POLLIN : 0) | (w->want_write ? POLLOUT : 0));
    if (events == 0) break;
    pollfd pfd{fd, events, 0};
    if (::poll(&pfd, 1, 0) <= 0 || (pfd.revents & POLLNVAL)) break;
    if (round == 64) {  // a busy socket: let other handlers run, then continue
      std::weak_ptr<int> alive = life;
      asio::post(ex, [this, w, alive] {
        if (!alive.expired() && !w->closed) on_ready(w, false, false);
      });
      break;
    }
    bool r = (pfd.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
    bool wr = (pfd.revents & (POLLOUT | POLLERR)) != 0;
    ares_process_fd(channel, r ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
  }
  if (!w->closed) arm(w);
  reschedule();
  pump();
}

void CaresResolver::Impl::reschedule() {
  if (destroying) return;
  timeval tv{};
  if (!ares_timeout(channel, nullptr, &tv)) {
    if (retransmit_armed) {
      ++retransmit_generation;
      retransmit.cancel();
      retransmit_armed = false;
    }
    return;
  }
  auto when =
      SteadyClock::now() + std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  // Re-arming on every packet would churn handlers. A timer that fires earlier than needed
  // is harmless (it processes and reschedules), so only an earlier time re-arms it.
  if (retransmit_armed && retransmit.expiry() <= when) return;
  retransmit.expires_at(when);
  retransmit_armed = true;
  uint64_t generation = ++retransmit_generation;
  std::weak_ptr<int> alive = life;
  retransmit.async_wait([this, alive, generation](const boost::system::error_code& ec) {
    if (alive.expired() || ec || generation != retransmit_generation) return;
    retransmit_armed = false;
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // c-ares' timeouts
    reschedule();
    pump();
  });
}

// ---- CaresResolver ----------------------------------------------------------------------

CaresResolver::CaresResolver(asio::any_io_executor executor, CaresOptions options, Metrics* metrics)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(options), metrics)) {}

CaresResolver::~CaresResolver() = default;

size_t CaresResolver::in_flight() const {
  return impl_->in_flight;
}
size_t CaresResolver::queued() const {
  return impl_->queue.size();
}
size_t CaresResolver::peak_in_flight() const {
  return impl_->peak;
}

asio::awaitable<DnsAnswer> CaresResolver::query(std::string name, DnsType type) {
  Impl* impl = impl_.get();
  auto p = std::make_shared<Pending>(impl->ex, dns_canonical_name(name), type);
  p->started = SteadyClock::now();
  p->deadline.expires_after(impl->options.timeout);
  impl->submit(p);
  if (!p->answer) {
    boost::system::error_code ec;
    auto wait = p->deadline.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await std::move(wait);
    // No answer yet means the resolver still exists: its destructor answers every pending
    // query before it goes. So only here may `impl` be used after the wait.
    if (!p->answer) impl->expire(p, ec == asio::error::operation_aborted);
  }
  co_return *p->answer;
}

std::unique_ptr<Resolver> make_resolver(asio::any_io_executor executor, const DnsConfig& config,
                                        const Clock& clock, Metrics* metrics) {
  CaresOptions options;
  options.servers = config.servers;
  options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.timeout);
  auto network = std::make_unique<CaresResolver>(std::move(executor), std::move(options), metrics);
  return std::make_unique<CachingResolver>(std::move(network), clock, metrics);
}

}  // namespace spamward
