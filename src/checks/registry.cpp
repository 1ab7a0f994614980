#include "checks/registry.h"

#include "checks/admin_lists_check.h"
#include "checks/spf_check.h"
#include "state/admin_lists.h"

namespace spamward {

std::vector<std::unique_ptr<Check>> make_checks(const Config& config, const Env& env) {
  std::vector<std::unique_ptr<Check>> checks;
  if (env.store && env.clock) {
    auto lists = std::make_shared<AdminLists>(*env.store, *env.clock);
    for (auto& c : make_admin_list_checks(lists)) checks.push_back(std::move(c));
  }
  // Checks that need DNS exist only when there is a resolver.
  if (auto spf = make_spf_check(env)) checks.push_back(std::move(spf));
  (void)config;  // DNSBL, rDNS/HELO, greylisting, reputation... register here as they land.
  return checks;
}

}  // namespace spamward
