#include "checks/header_check.h"

#include <fmt/format.h>

#include <chrono>
#include <optional>

#include "core/strings.h"
#include "mail/date.h"
#include "mail/mailbox.h"

namespace spamward {
namespace {

// "<left@right>" with no spaces inside, as RFC 5322 §3.6.4 msg-id (obsolete forms with
// comments around it are tolerated by trimming).
bool valid_message_id(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() < 5 || v.front() != '<' || v.back() != '>') return false;
  std::string_view inner = v.substr(1, v.size() - 2);
  size_t at = inner.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == inner.size()) return false;
  for (char c : inner) {
    if (c == ' ' || c == '<' || c == '>' || c == '\t') return false;
  }
  return true;
}

std::string hours_text(Duration d) {
  auto h = std::chrono::duration_cast<std::chrono::hours>(d).count();
  if (h >= 48) return fmt::format("{} days", h / 24);
  return fmt::format("{} hours", h);
}

class HeaderCheck final : public SyncCheck {
 public:
  HeaderCheck(const Clock& clock, HeaderCheckLimits limits) : clock_(clock), limits_(limits) {}

  std::string_view name() const override { return "headers"; }
  Stage stage() const override { return Stage::eom; }
  Family family() const override { return Family::rfc; }

 protected:
  std::vector<Symbol> evaluate(const Transaction& tx) const override {
    std::vector<Symbol> out;
    if (!tx.message || tx.authenticated()) return out;
    const Message& m = *tx.message;

    TimePoint reference = clock_.now();
    auto received = m.headers_named("Received");
    if (!received.empty()) {
      if (auto newest = received_date(received.front()->value)) reference = *newest;
    }
    check_date(m, reference, out);
    check_message_id(m, out);
    check_from(m, out);
    if (m.header_8bit) out.push_back(known_symbol("HDR_8BIT", "raw 8-bit bytes in the header"));
    check_received(received, out);
    return out;
  }

  void check_date(const Message& m, TimePoint reference, std::vector<Symbol>& out) const {
    auto dates = m.headers_named("Date");
    if (dates.empty()) {
      out.push_back(known_symbol("HDR_DATE_MISSING", "no Date header"));
      return;
    }
    if (dates.size() > 1) {
      out.push_back(known_symbol("HDR_DATE_INVALID", fmt::format("{} Date headers", dates.size())));
      return;
    }
    auto date = parse_mail_date(dates.front()->value);
    if (!date) {
      out.push_back(known_symbol("HDR_DATE_INVALID", printable(dates.front()->value)));
      return;
    }
    if (*date > reference + limits_.future_slack) {
      out.push_back(known_symbol("HDR_DATE_FUTURE",
                                 hours_text(*date - reference) + " after it was received"));
    } else if (*date < reference - limits_.past_slack) {
      out.push_back(
          known_symbol("HDR_DATE_PAST", hours_text(reference - *date) + " before it was received"));
    }
  }

  static void check_message_id(const Message& m, std::vector<Symbol>& out) {
    auto ids = m.headers_named("Message-ID");
    if (ids.empty()) {
      out.push_back(known_symbol("HDR_MESSAGE_ID_MISSING", "no Message-ID header"));
    } else if (ids.size() > 1) {
      out.push_back(
          known_symbol("HDR_MESSAGE_ID_INVALID", fmt::format("{} Message-ID headers", ids.size())));
    } else if (!valid_message_id(ids.front()->value)) {
      out.push_back(known_symbol("HDR_MESSAGE_ID_INVALID", printable(ids.front()->value)));
    }
  }

  static void check_from(const Message& m, std::vector<Symbol>& out) {
    auto froms = m.headers_named("From");
    if (froms.empty()) {
      out.push_back(known_symbol("HDR_FROM_MISSING", "no From header"));
      return;
    }
    if (froms.size() > 1) {
      out.push_back(known_symbol("HDR_FROM_INVALID", fmt::format("{} From headers", froms.size())));
      return;
    }
    auto mailboxes = field_mailboxes(*froms.front(), 20);
    const Mailbox* real = nullptr;
    for (const auto& mb : mailboxes) {
      if (mb.valid) {
        real = &mb;
        break;
      }
    }
    if (!real) {
      out.push_back(known_symbol("HDR_FROM_INVALID", printable(froms.front()->value)));
      return;
    }
    std::string shown = address_in_text(real->display);
    if (!shown.empty() && !iequals(domain_of(shown), domain_of(real->address))) {
      out.push_back(
          known_symbol("HDR_FROM_DISPLAY_MISMATCH",
                       printable(shown) + " shown, " + printable(real->address) + " real"));
    }
  }

  void check_received(const std::vector<const HeaderField*>& received,
                      std::vector<Symbol>& out) const {
    if (received.size() > limits_.max_hops) {
      out.push_back(
          known_symbol("HDR_RECEIVED_IMPLAUSIBLE", fmt::format("{} hops", received.size())));
      return;
    }
    // Top to bottom is newest to oldest: an older hop must not be dated after a newer one
    // (beyond clock skew). Unparseable dates are skipped, not judged.
    std::optional<TimePoint> newer;
    for (size_t i = 0; i < received.size(); ++i) {
      auto date = received_date(received[i]->value);
      if (!date) continue;
      if (newer && *date > *newer + limits_.future_slack) {
        out.push_back(known_symbol("HDR_RECEIVED_IMPLAUSIBLE",
                                   fmt::format("hop {} dated {} after the hop above it", i + 1,
                                               hours_text(*date - *newer))));
        return;
      }
      newer = date;
    }
  }

  const Clock& clock_;
  const HeaderCheckLimits limits_;
};

}  // namespace

std::unique_ptr<Check> make_header_check(const Env& env, HeaderCheckLimits limits) {
  return std::make_unique<HeaderCheck>(*env.clock, limits);
}

}  // namespace spamward
