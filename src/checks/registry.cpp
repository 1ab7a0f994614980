#include "checks/registry.h"

#include "checks/admin_lists_check.h"
#include "checks/backscatter_check.h"
#include "checks/bayes_check.h"
#include "checks/bounce_origin_check.h"
#include "checks/dkim_check.h"
#include "checks/dmarc_check.h"
#include "checks/dnsbl_check.h"
#include "checks/gtube_check.h"
#include "checks/header_check.h"
#include "checks/helo_check.h"
#include "checks/rdns_check.h"
#include "checks/recipients_check.h"
#include "checks/reputation_check.h"
#include "checks/spf_check.h"
#include "checks/trap_check.h"
#include "state/admin_lists.h"

namespace spamward {

std::vector<std::unique_ptr<Check>> make_checks(const Config& config, const Env& env) {
  std::vector<std::unique_ptr<Check>> checks;
  // The ban check first: it is the first thing a connection meets (issue 4).
  if (auto reputation = make_reputation_check(env)) checks.push_back(std::move(reputation));
  if (env.store && env.clock) {
    auto lists = std::make_shared<AdminLists>(*env.store, *env.clock);
    for (auto& c : make_admin_list_checks(lists)) checks.push_back(std::move(c));
  }
  // Clients that connect to an address no MX points to (issue 7): an offence at once.
  if (auto trap = make_trap_check(config, env)) checks.push_back(std::move(trap));
  // Unknown recipients and address guessing, when [recipients] valid names a list.
  if (auto recipients = make_recipients_check(config, env, load_recipient_list(config)))
    checks.push_back(std::move(recipients));
  // Bounces to our addresses without a valid BATV tag, when [batv] keys are set (issue 7).
  if (auto bs = make_backscatter_check(config, env)) checks.push_back(std::move(bs));
  if (auto origin = make_bounce_origin_check(config, env)) checks.push_back(std::move(origin));
  // Checks that need DNS exist only when there is a resolver.
  if (auto spf = make_spf_check(env)) checks.push_back(std::move(spf));
  if (auto dkim = make_dkim_check(env)) checks.push_back(std::move(dkim));
  if (auto dmarc = make_dmarc_check(env)) checks.push_back(std::move(dmarc));
  // One check per [[dnsbl]]/[[dnswl]]; their health state is rebuilt with each config.
  for (auto& c : make_dnsbl_checks(config, env)) checks.push_back(std::move(c));
  // rDNS and HELO always exist: they use the MTA's facts, and DNS only when there is a resolver.
  checks.push_back(make_rdns_check(env));
  checks.push_back(make_helo_check(env, config.network.our_names));
  // Content checks: they run at end of message, when there is one (milter, spamd, HTTP, check).
  checks.push_back(make_gtube_check());
  if (env.clock) checks.push_back(make_header_check(env));
  if (auto bayes = make_bayes_check(env.bayes)) checks.push_back(std::move(bayes));
  // Greylisting is not a check: it depends on the score (engine/greylist_gate.h).
  return checks;
}

}  // namespace spamward
