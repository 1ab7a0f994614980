// scale_mix.h: the data of the scale benchmark (issue 4, point 5), shared by state_fill (which
// fills a store with it) and policy_load --mix scale (which sends requests drawn from it).
//
// Everything is a pure function of (seed, index), so the two programs agree on every triplet
// and every offender without a file between them, and neither has to hold a million of them:
// - greylist_triplet(seed, i): the i-th (client, sender, recipient) triplet, with the client
//   names the MTA would report. Indexes 0..N-1 are the N triplets state_fill stores; any other
//   index is, with overwhelming probability, a triplet the store has never seen.
// - greylist_state(seed, i): the greylisting history state_fill gives triplet i (passed or
//   still waiting, and when).
// - offender(seed, j): the client address of reputation record j. Distinct for every j.
//   offence_count(seed, j) and offence_age_s(seed, j, k): how many offences state_fill
//   records for it, and when.
//
// The triplets' clients come from 65,536 IPv4 /24 networks spread over public unicast space and
// 16,384 IPv6 /64 networks (a fifth of the triplets); their client and HELO names from the
// classic mix's 1,000. Sender local parts and recipients contain no digits, so spamward's and
// postgrey's sender normalisations (both fold digit runs of VERP addresses to '#') leave them
// alone and both servers key the same triplets apart. Senders are
// in the 20 sender domains of the classic mix (bench/run's local unbound publishes an SPF
// record for each); no triplet client is inside the networks those records allow, so SPF never
// passes and spamward keys every triplet by its client network, as postgrey does.
//
// Offenders: 4 in 5 are IPv4, 1 in 5 IPv6. A tenth of each family sits in dense networks
// (250 offending addresses per /24, 50 per /64: these networks get banned as a whole); the rest
// are sparse (3 per /24, 2 per /64 and 3 /64s per /48: below spamward's network_after of 5).
//
// Only the C++ standard library: policy_load must not depend on spamward's code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace scale_mix {

// splitmix64's finaliser over (seed, stream, index): independent streams of well-mixed bits.
inline uint64_t hash(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed ^ (stream * 0xd1342543de82ef95ULL) ^ (index * 0x9e3779b97f4a7c15ULL);
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The classic mix's sender domains; bench/run's unbound publishes an SPF record for each.
inline constexpr std::string_view kSenderDomains[] = {
    "example.com", "example.net",  "mail.example.org", "news.example.biz", "shop.example.info",
    "corp.test",   "lists.test",   "bounces.test",     "mx.invalid",       "example.co.uk",
    "example.de",  "example.fr",   "example.jp",       "example.com.br",   "example.ru",
    "gmail.test",  "outlook.test", "yahoo.test",       "web.test",         "gmx.test"};

inline constexpr std::string_view kLocalDomains[] = {"example.org", "example.edu",
                                                     "mail.example.org"};

inline constexpr std::string_view kSenderWords[] = {
    "newsletter", "info", "noreply", "billing", "alerts", "news",  "support", "orders",
    "jane",       "john", "maria",   "peter",   "team",   "hello", "sales",   "notify"};

inline constexpr uint64_t kTripletNets4 = 65536;
inline constexpr uint64_t kTripletNets6 = 16384;
inline constexpr uint64_t kSenderLocals = 200000;  // distinct sender local parts per word
inline constexpr uint64_t kRecipients = 50000;     // local users per local domain

// `v` in base 26 (a..z), at least `width` letters.
inline std::string letters(uint64_t v, int width = 1) {
  std::string out;
  do {
    out.insert(out.begin(), static_cast<char>('a' + v % 26));
    v /= 26;
  } while (v > 0 || static_cast<int>(out.size()) < width);
  return out;
}

inline std::string hex16(uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  v &= 0xffff;
  std::string out;
  do {
    out.insert(out.begin(), kHex[v % 16]);
    v /= 16;
  } while (v > 0);
  return out;
}

inline std::string dotted(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

// The /24 (as a 24-bit number) of triplet network k: first octet 11..222 except 127 and the
// ranges the SPF records allow, so no client ever passes SPF.
inline uint32_t triplet_net24(uint64_t seed, uint64_t k) {
  uint64_t h = hash(seed, 100, k);
  uint32_t first = 11 + static_cast<uint32_t>(h % 212);
  if (first == 127 || first == 192 || first == 198 || first == 203) ++first;
  return (first << 16) | static_cast<uint32_t>((h >> 16) & 0xffff);
}

// "2a0X:HHHH:HHHH:HHHH" for triplet /64 k.
inline std::string triplet_net64(uint64_t seed, uint64_t k) {
  uint64_t h = hash(seed, 101, k);
  return "2a0" + std::string(1, "0123456789abcdef"[h % 16]) + ":" + hex16(h >> 4) + ":" +
         hex16(h >> 20) + ":" + hex16(h >> 36);
}

struct Triplet {
  std::string client_address;
  std::string client_name;  // as Postfix reports it: a verified name or "unknown"
  std::string reverse_client_name;
  std::string helo;
  std::string sender;  // "" for a bounce
  std::string recipient;
};

inline Triplet greylist_triplet(uint64_t seed, uint64_t i) {
  Triplet t;
  const uint64_t h = hash(seed, 1, i);
  const bool v6 = h % 5 == 0;
  const std::string_view domain = kSenderDomains[(h >> 8) % std::size(kSenderDomains)];
  if (v6) {
    uint64_t k = hash(seed, 2, i) % kTripletNets6;
    uint64_t host = hash(seed, 3, i);
    t.client_address = triplet_net64(seed, k);
    if (host % 2 == 0) {  // a server's small interface identifier, or a SLAAC one
      t.client_address += "::" + hex16(1 + (host >> 1) % 64);
    } else {
      for (int g = 0; g < 4; ++g) t.client_address += ":" + hex16(host >> (1 + 16 * g));
    }
  } else {
    uint64_t k = hash(seed, 2, i) % kTripletNets4;
    uint32_t host = 1 + static_cast<uint32_t>(hash(seed, 3, i) % 254);
    t.client_address = dotted((triplet_net24(seed, k) << 8) | host);
  }
  // About 4% null senders (bounces).
  const uint64_t s = hash(seed, 4, i);
  if (s % 25 != 0) {
    t.sender = std::string(kSenderWords[(s >> 8) % std::size(kSenderWords)]) + "." +
               letters((s >> 16) % kSenderLocals) + "@" + std::string(domain);
  }
  const uint64_t r = hash(seed, 5, i);
  t.recipient = letters(r % kRecipients, 3) + "@" +
                std::string(kLocalDomains[(r >> 32) % std::size(kLocalDomains)]);
  // Client and HELO names from the classic mix's pool (50 per sender domain), so spamward's
  // DNS cache is as warm as in the classic runs (the HELO check resolves the name) and the
  // runs measure the state tables, not cold DNS.
  const uint64_t n = hash(seed, 6, i);
  std::string name = "mail" + std::to_string(n % 50) + "." + std::string(domain);
  switch ((n >> 40) % 10) {
    case 0:
    case 1:  // no PTR
      t.client_name = t.reverse_client_name = "unknown";
      t.helo = "mx." + std::string(domain);
      break;
    case 2:  // PTR without a matching forward record
      t.client_name = "unknown";
      t.reverse_client_name = name;
      t.helo = name;
      break;
    default:
      t.client_name = t.reverse_client_name = t.helo = name;
  }
  return t;
}

// The greylisting history state_fill gives triplet i, in seconds before the fill's "now".
// Half have passed (first attempt 35 min..30 days ago, retried 5..30 min later); half are still
// waiting for their retry (first attempt 1 min..40 h ago). Every one of them is live for hours
// after the fill: spamward keeps a waiting triplet 48 h and a passed one 35 days.
struct GreylistState {
  bool passed = false;
  int64_t first_age_s = 0;
  int64_t retry_after_s = 0;  // passed only: the passing retry came this long after the first
};

inline GreylistState greylist_state(uint64_t seed, uint64_t i) {
  const uint64_t h = hash(seed, 20, i);
  GreylistState s;
  s.passed = h % 2 == 0;
  if (s.passed) {
    s.first_age_s = 35 * 60 + static_cast<int64_t>((h >> 1) % (30 * 86400 - 35 * 60));
    s.retry_after_s = 5 * 60 + static_cast<int64_t>((h >> 40) % (25 * 60));
  } else {
    s.first_age_s = 60 + static_cast<int64_t>((h >> 1) % (40 * 3600 - 60));
  }
  return s;
}

// The client address of reputation record j; distinct for every j below 10 million.
inline std::string offender(uint64_t seed, uint64_t j) {
  const uint64_t h = hash(seed, 30, j);
  if (j % 5 != 0) {
    const uint64_t v = (j / 5) * 4 + (j % 5 - 1);  // index among the IPv4 offenders
    if (v % 10 == 0) {
      // Dense: 250 per /24, from 37.0.0.0/24 up.
      const uint64_t d = v / 10;
      const uint32_t net = (37u << 16) + static_cast<uint32_t>(d / 250);
      return dotted((net << 8) | static_cast<uint32_t>(1 + d % 250));
    }
    // Sparse: 3 per /24 from 78.0.0.0/24 up, each in its own third of the host range.
    const uint64_t s = (v / 10) * 9 + (v % 10 - 1);
    const uint32_t net = (78u << 16) + static_cast<uint32_t>(s / 3);
    const uint32_t host = 1 + static_cast<uint32_t>(s % 3) * 84 + static_cast<uint32_t>(h % 84);
    return dotted((net << 8) | host);
  }
  const uint64_t w = j / 5;  // index among the IPv6 offenders
  if (w % 10 == 0) {
    // Dense: 50 per /64, under 2001:67c::/32.
    const uint64_t d = w / 10;
    const uint64_t net = d / 50;
    return "2001:67c:" + hex16(net >> 16) + ":" + hex16(net) + "::" + hex16(1 + d % 50);
  }
  // Sparse: 2 per /64 with random interface identifiers, 3 /64s per /48, under 2a02::/16.
  const uint64_t s = (w / 10) * 9 + (w % 10 - 1);
  const uint64_t n64 = s / 2;
  const uint64_t n48 = n64 / 3;
  return "2a02:" + hex16(n48 >> 16) + ":" + hex16(n48) + ":" + hex16(n64 % 3) + ":" + hex16(h) +
         ":" + hex16(h >> 16) + ":" + hex16(h >> 32) + ":" + hex16(1 + s % 2);
}

// How many offences state_fill records for offender j: 80% one, 10% two, 5% three, 3% four,
// 2% five to eight (the repeat offenders whose bans escalate to a day and to 5xx).
inline int offence_count(uint64_t seed, uint64_t j) {
  const uint64_t h = hash(seed, 31, j) % 100;
  if (h < 80) return 1;
  if (h < 90) return 2;
  if (h < 95) return 3;
  if (h < 98) return 4;
  return 5 + static_cast<int>(hash(seed, 32, j) % 4);
}

// When offence k of offender j happened, in seconds before the fill's "now": over the last 60
// days, weighted towards the present (age = 60 d * x^2, x uniform), so about one in eight is
// from the last day.
inline int64_t offence_age_s(uint64_t seed, uint64_t j, int k) {
  const uint64_t h = hash(seed, 33, j * 16 + static_cast<uint64_t>(k));
  const double x = static_cast<double>(h >> 11) / static_cast<double>(uint64_t{1} << 53);
  return static_cast<int64_t>(60.0 * 86400.0 * x * x);
}

}  // namespace scale_mix
