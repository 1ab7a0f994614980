// write_blocklist_file (ips/exporter.h): one address or CIDR per line, nothing else, so any
// firewall script can read it line by line.
#include <string>

#include "ips/atomic_file.h"
#include "ips/exporter.h"

namespace spamward {

void write_blocklist_file(const std::string& path, const std::vector<Ban>& bans) {
  std::string content;
  content.reserve(bans.size() * 20);
  for (const Ban& ban : bans) {
    content += ban.target.to_string();
    content += '\n';
  }
  write_file_atomically(path, content);
}

}  // namespace spamward
