// NftablesExporter (ips/exporter.h): the ban sets in nftables, through libnftables.
//
// The script is built only from the validated family and table name, Prefix::to_string()
// output and numbers, so nothing read from outside reaches the nft parser as text. One
// nft_run_cmd_from_buffer call applies it as one transaction: a packet never meets a
// half-filled set, and a failure leaves the previous contents in place.
#include <nftables/libnftables.h>

#include <algorithm>
#include <memory>
#include <string>

#include "ips/exporter.h"

namespace spamward {
namespace {

// Elements per "add element" statement: keeps each statement (and the parser's work on it)
// bounded on a large ban set; the transaction still covers them all.
constexpr size_t kElementsPerStatement = 1000;
// nft refuses element timeouts of a few years ("value too large"); bans are far shorter
// ([reputation] ban_max), and every periodic export sets the timeouts afresh anyway.
constexpr int64_t kMaxTimeoutSeconds = 365 * 24 * 3600;

bool valid_table_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alpha(c) || digit(c) || c == '_'; });
}

struct NftContextDeleter {
  void operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }
};
using NftContext = std::unique_ptr<nft_ctx, NftContextDeleter>;

// libnftables' error text, on one line for the log and bounded: nft echoes the offending
// statement, which can hold a thousand elements.
std::string one_line(const char* text) {
  constexpr size_t kMaxBytes = 600;
  std::string out = text ? text : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  std::replace(out.begin(), out.end(), '\n', ' ');
  if (out.size() > kMaxBytes) out = out.substr(0, kMaxBytes) + "...";
  return out.empty() ? "unknown error" : out;
}

}  // namespace

NftablesExporter::NftablesExporter(std::string table) {
  auto space = table.find(' ');
  if (space == std::string::npos) {
    family_ = "inet";
    name_ = table;
  } else {
    family_ = table.substr(0, space);
    name_ = table.substr(space + 1);
  }
  if (family_ != "ip" && family_ != "ip6" && family_ != "inet") {
    throw ExportError("nftables table \"" + table + "\": the family must be ip, ip6 or inet");
  }
  if (!valid_table_name(name_)) {
    throw ExportError("nftables table \"" + table +
                      "\": the name must match [A-Za-z][A-Za-z0-9_]{0,31}");
  }
}

NftablesExporter::~NftablesExporter() = default;

std::string NftablesExporter::script(const std::vector<Ban>& bans, TimePoint now) const {
  const std::string table = family_ + " " + name_;
  struct SetSpec {
    const char* name;
    const char* type;
    bool v4;
  };
  std::vector<SetSpec> sets;
  // An "ip" table sees only IPv4 packets and an "ip6" table only IPv6 ones, and a set of the
  // other family could never match there: create only the set that can.
  if (family_ != "ip6") sets.push_back({"banned4", "ipv4_addr", true});
  if (family_ != "ip") sets.push_back({"banned6", "ipv6_addr", false});

  std::string out = "add table " + table + "\n";
  for (const SetSpec& set : sets) {
    out += "add set " + table + " " + set.name + " { type " + set.type +
           "; flags interval,timeout; }\n";
  }
  for (const SetSpec& set : sets) out += "flush set " + table + " " + set.name + "\n";

  for (const SetSpec& set : sets) {
    size_t in_statement = 0;
    for (const Ban& ban : bans) {
      if (ban.target.address().is_v4() != set.v4) continue;
      if (ban.until <= now) continue;
      // Remaining seconds, rounded up so the kernel never drops a ban early; at least 1s
      // (nft refuses a zero timeout), at most kMaxTimeoutSeconds.
      int64_t remaining_ms = (ban.until - now).count();
      int64_t seconds = std::clamp<int64_t>((remaining_ms + 999) / 1000, 1, kMaxTimeoutSeconds);
      if (in_statement == 0) {
        out += "add element " + table + " " + set.name + " { ";
      } else {
        out += ", ";
      }
      out += ban.target.to_string() + " timeout " + std::to_string(seconds) + "s";
      if (++in_statement == kElementsPerStatement) {
        out += " }\n";
        in_statement = 0;
      }
    }
    if (in_statement != 0) out += " }\n";
  }
  return out;
}

void NftablesExporter::apply(const std::vector<Ban>& bans, TimePoint now) {
  const std::string text = script(bans, now);
  NftContext ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) throw ExportError("nftables table " + family_ + " " + name_ + ": nft_ctx_new failed");
  // Buffered, so libnftables never prints to our stdout/stderr and its messages reach the
  // exception instead.
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), text.c_str()) != 0) {
    throw ExportError("nftables table " + family_ + " " + name_ + ": " +
                      one_line(nft_ctx_get_error_buffer(ctx.get())));
  }
}

}  // namespace spamward
