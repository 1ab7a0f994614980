// select_exported (ips/exporter.h): which bans the exports carry.
#include <algorithm>

#include "ips/exporter.h"

namespace spamward {

std::vector<Ban> select_exported(const std::vector<Ban>& bans, std::string_view mode,
                                 TimePoint now) {
  bool all = mode == "all";
  if (!all && mode != "permanent") {
    throw ExportError("unknown export mode \"" + std::string(mode) + "\"");
  }
  std::vector<Ban> kept;
  kept.reserve(bans.size());
  for (const Ban& ban : bans) {
    if (ban.until <= now) continue;  // expired: the snapshot may still hold it
    if (!all && !ban.permanent) continue;
    kept.push_back(ban);
  }

  // Prefix order is family (IPv4 first), then address, then length: a network sorts before
  // every prefix inside it. For one target, the longest-lasting ban comes first and wins.
  std::sort(kept.begin(), kept.end(), [](const Ban& a, const Ban& b) {
    if (a.target != b.target) return a.target < b.target;
    return a.until > b.until;
  });

  // Kept prefixes never overlap (that is the invariant being built), so in sorted order the
  // only kept prefix that can contain the next one is the last kept. nftables interval sets
  // refuse overlapping elements, and listing an address under its banned network adds
  // nothing for a blocklist reader.
  std::vector<Ban> merged;
  merged.reserve(kept.size());
  for (Ban& ban : kept) {
    if (!merged.empty()) {
      const Prefix& last = merged.back().target;
      if (last.address().family() == ban.target.address().family() &&
          last.length() <= ban.target.length() && last.contains(ban.target.address())) {
        continue;
      }
    }
    merged.push_back(std::move(ban));
  }
  return merged;
}

}  // namespace spamward
