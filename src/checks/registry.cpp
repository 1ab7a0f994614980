#include "checks/registry.h"

#include "checks/admin_lists_check.h"
#include "checks/dnsbl_check.h"
#include "checks/helo_check.h"
#include "checks/rdns_check.h"
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
  // One check per [[dnsbl]]/[[dnswl]]; their health state is rebuilt with each config.
  for (auto& c : make_dnsbl_checks(config, env)) checks.push_back(std::move(c));
  // rDNS and HELO always exist: they use the MTA's facts, and DNS only when there is a resolver.
  checks.push_back(make_rdns_check(env));
  checks.push_back(make_helo_check(env, config.network.our_names));
  (void)config;  // DNSBL, rDNS/HELO, greylisting, reputation... register here as they land.
  return checks;
}

}  // namespace spamward
