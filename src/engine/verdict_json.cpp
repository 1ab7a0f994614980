#include "engine/verdict_json.h"

namespace spamward {

nlohmann::json verdict_json(const Verdict& v) {
  nlohmann::json symbols = nlohmann::json::array();
  for (const auto& s : v.symbols) {
    symbols.push_back({{"name", s.name},
                       {"score", s.score},
                       {"family", std::string(to_string(s.family))},
                       {"detail", s.detail}});
  }
  nlohmann::json families = nlohmann::json::array();
  for (Family f : v.families) families.push_back(std::string(to_string(f)));
  return {{"file", nullptr},    {"action", std::string(to_string(v.action))},
          {"score", v.score},   {"families", families},
          {"symbols", symbols}, {"reason", v.reason}};
}

}  // namespace spamward
