#include "checks/gtube_check.h"

namespace spamward {
namespace {

class GtubeCheck final : public Check {
 public:
  std::string_view name() const override { return "gtube"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::admin; }

  boost::asio::awaitable<std::vector<Symbol>> run(const Transaction& tx) override {
    co_return evaluate(tx);
  }
  std::optional<std::vector<Symbol>> run_now(const Transaction& tx) override {
    return evaluate(tx);
  }

 private:
  static std::vector<Symbol> evaluate(const Transaction& tx) {
    std::vector<Symbol> out;
    if (tx.message && contains_gtube(*tx.message)) {
      out.push_back(known_symbol("GTUBE", "the GTUBE test string"));
    }
    return out;
  }
};

}  // namespace

bool contains_gtube(const Message& message) {
  for (const auto& part : message.parts) {
    if (part.text.find(kGtube) != std::string::npos) return true;
  }
  return message.raw_body.find(kGtube) != std::string::npos;
}

std::unique_ptr<Check> make_gtube_check() {
  return std::make_unique<GtubeCheck>();
}

}  // namespace spamward
