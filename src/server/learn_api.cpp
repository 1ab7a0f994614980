#include "server/learn_api.h"

#include <spdlog/spdlog.h>

#include "core/strings.h"
#include "server/http_util.h"

namespace spamward {
namespace {

std::string_view outcome_name(LearnOutcome o) {
  switch (o) {
    case LearnOutcome::learned:
      return "learned";
    case LearnOutcome::moved:
      return "moved";
    case LearnOutcome::already_learned:
      return "already_learned";
    case LearnOutcome::forgotten:
      return "forgotten";
    case LearnOutcome::not_learned:
      return "not_learned";
  }
  return "?";
}

HttpServer::Response handle_learn(Bayes& bayes, MessageClass cls, const MessageLimits& limits,
                                  const HttpServer::Request& request) {
  auto params = query_parameters(request.target);
  if (!params) return json_error(400, "malformed query string");
  std::string domain;
  bool forget = false;
  for (const auto& [key, value] : *params) {
    if (key == "domain") {
      domain = to_lower(value);
    } else if (key == "rcpt") {
      domain = bayes.namespace_for({value});
    } else if (key == "forget") {
      forget = value == "1" || value == "true" || value == "yes";
    }
  }
  if (domain.find('/') != std::string::npos) return json_error(400, "domain is not a domain name");
  if (!bayes.options().per_domain) domain.clear();
  const Message message = parse_message(request.body, limits);
  try {
    LearnOutcome outcome =
        forget ? bayes.forget(message, domain) : bayes.learn(message, cls, domain);
    bayes.commit();
    LearnedTotals totals = bayes.totals(domain);
    spdlog::info("bayes: {} via HTTP: {} ({} database)", forget ? "forget" : "learn",
                 outcome_name(outcome), domain.empty() ? "global" : domain);
    return json_response({{"outcome", outcome_name(outcome)},
                          {"class", cls == MessageClass::spam ? "spam" : "ham"},
                          {"database", domain.empty() ? std::string("global") : domain},
                          {"learned", {{"spam", totals.spam}, {"ham", totals.ham}}}});
  } catch (const std::exception& e) {
    spdlog::error("bayes: learning via HTTP failed: {}", e.what());
    return json_error(500, std::string("learning failed: ") + e.what());
  }
}

class BayesSpamdLearner final : public SpamdLearner {
 public:
  explicit BayesSpamdLearner(Bayes& bayes) : bayes_(bayes) {}

  boost::asio::awaitable<bool> learn(std::shared_ptr<const Message> message, bool spam) override {
    LearnOutcome outcome = bayes_.learn(*message, spam ? MessageClass::spam : MessageClass::ham);
    bayes_.commit();
    co_return outcome == LearnOutcome::learned || outcome == LearnOutcome::moved;
  }
  boost::asio::awaitable<bool> forget(std::shared_ptr<const Message> message) override {
    LearnOutcome outcome = bayes_.forget(*message);
    bayes_.commit();
    co_return outcome == LearnOutcome::forgotten;
  }

 private:
  Bayes& bayes_;
};

}  // namespace

HttpServer::Handler make_learn_handler(Bayes& bayes, MessageClass cls, MessageLimits limits) {
  return [&bayes, cls, limits](
             const HttpServer::Request& request) -> boost::asio::awaitable<HttpServer::Response> {
    co_return handle_learn(bayes, cls, limits, request);
  };
}

std::shared_ptr<SpamdLearner> make_spamd_learner(Bayes& bayes) {
  return std::make_shared<BayesSpamdLearner>(bayes);
}

}  // namespace spamward
