// write_rbldnsd_zones (ips/exporter.h): rbldnsd datasets, so other servers can query our bans
// as a DNSBL. Format (rbldnsd(8), "ip4set Dataset", "ip6trie Dataset", "Resulting A values
// and TXT templates"):
//   # comment                         ignored (a line starting "#$" would be a special)
//   :127.0.0.2:Banned by spamward: $  default A value and TXT template ($: the queried IP)
//   192.0.2.0/24 :127.0.0.2:TEXT      an entry with its own A value and TXT text
// ip4set takes IPv4 CIDRs and addresses, ip6trie IPv6 prefixes (compressed notation is
// fine). rbldnsd reads lines of at most 511 bytes and cuts TXT at 255, so the text we add is
// bounded well below both.
#include <time.h>

#include <string>

#include "ips/atomic_file.h"
#include "ips/exporter.h"

namespace spamward {
namespace {

constexpr size_t kMaxReasonBytes = 160;
constexpr const char* kDefaultLine = ":127.0.0.2:Banned by spamward: $\n";

std::string utc_text(TimePoint t) {
  time_t seconds = static_cast<time_t>(to_unix_ms(t) / 1000);
  struct tm parts {};
  gmtime_r(&seconds, &parts);
  char buf[32];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(buf, n);
}

// The ban's reason as TXT text rbldnsd takes literally: printable ASCII only (a newline
// would start a new entry), no '$' (rbldnsd substitutes it), bounded.
std::string txt_safe(std::string_view reason) {
  std::string out;
  for (char c : reason) {
    if (out.size() >= kMaxReasonBytes) break;
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u > 0x7e || c == '$') ? '_' : c;
  }
  return out;
}

std::string dataset(std::string_view type, const std::vector<Ban>& bans, bool v4, TimePoint now) {
  std::string out = "# spamward bans (rbldnsd " + std::string(type) + "), generated " +
                    utc_text(now) + "; rewritten whole on every change\n";
  out += kDefaultLine;
  for (const Ban& ban : bans) {
    if (ban.target.address().is_v4() != v4) continue;
    out += ban.target.to_string();
    std::string reason = txt_safe(ban.reason);
    if (!reason.empty()) {
      out += " :127.0.0.2:Banned by spamward: ";
      out += reason;
    }
    out += '\n';
  }
  return out;
}

}  // namespace

void write_rbldnsd_zones(const std::string& dir, const std::vector<Ban>& bans, TimePoint now) {
  std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  write_file_atomically(base + "spamward.ip4set", dataset("ip4set", bans, true, now));
  write_file_atomically(base + "spamward.ip6trie", dataset("ip6trie", bans, false, now));
}

}  // namespace spamward
