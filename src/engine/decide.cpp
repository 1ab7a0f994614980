// The rules that turn symbols into an action (DESIGN §1, §3.5). Pure: no I/O, no clock.
#include <algorithm>
#include <array>
#include <cmath>

#include <fmt/format.h>

#include "core/config.h"
#include "engine/engine.h"

namespace spamward {

namespace {

bool wildcard_match(std::string_view pattern, std::string_view text) {
  // Iterative '*' matcher; both sides already lower-cased. Linear in practice for the short
  // patterns of [exempt].
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const Symbol* find(const std::vector<Symbol>& symbols, std::string_view name) {
  auto it =
      std::find_if(symbols.begin(), symbols.end(), [&](const Symbol& s) { return s.name == name; });
  return it == symbols.end() ? nullptr : &*it;
}

std::string families_text(const std::vector<Family>& families) {
  std::string out;
  for (Family f : families) {
    if (!out.empty()) out += ", ";
    out += to_string(f);
  }
  return out;
}

std::string top_symbols(const std::vector<Symbol>& symbols) {
  std::vector<const Symbol*> positive;
  for (const auto& s : symbols) {
    if (s.score > 0) positive.push_back(&s);
  }
  std::sort(positive.begin(), positive.end(),
            [](const Symbol* a, const Symbol* b) { return a->score > b->score; });
  std::string out;
  for (size_t i = 0; i < positive.size() && i < 4; ++i) {
    if (!out.empty()) out += ", ";
    out += positive[i]->name;
  }
  return out;
}

}  // namespace

bool matches_exempt(const std::vector<std::string>& patterns, std::string_view recipient) {
  if (recipient.empty()) return false;
  std::string rcpt = to_lower(recipient);
  for (const auto& pattern : patterns) {
    if (wildcard_match(to_lower(pattern), rcpt)) return true;
  }
  return false;
}

void apply_score_overrides(const Config& config, std::vector<Symbol>& symbols) {
  for (auto& s : symbols) {
    auto it = config.scores.find(s.name);
    if (it != config.scores.end()) s.score = s.scale >= 0.0 ? it->second * s.scale : it->second;
    if (s.max_score >= 0.0) s.score = std::min(s.score, s.max_score);
  }
}

Verdict decide(const Config& config, std::vector<Symbol> symbols, const DecisionFacts& facts) {
  const auto& actions = config.actions;
  Verdict v;
  v.failed_checks = facts.failed_checks;
  if (facts.trusted) {
    v.trusted = true;
    v.action = v.applied = Action::accept;
    v.reason = "client in a trusted network: not checked";
    return v;
  }

  // Score and the families that each add at least 1.0 (admin decisions are not evidence).
  std::array<double, 6> family_sum{};
  for (const auto& s : symbols) {
    v.score += s.score;
    family_sum[static_cast<size_t>(s.family)] += s.score;
  }
  v.score = std::round(v.score * 1000.0) / 1000.0;  // keep sums of decimals printable
  for (Family f : {Family::dnsbl, Family::rfc, Family::auth, Family::content, Family::behaviour}) {
    if (family_sum[static_cast<size_t>(f)] >= 1.0 - 1e-9) v.families.push_back(f);
  }
  const int family_count = static_cast<int>(v.families.size());

  // The refusals that stand alone (DESIGN §1), in precedence order. The allow list is the
  // admin's word and beats everything but the facts (GTUBE test, unknown recipient).
  if (const Symbol* s = find(symbols, "GTUBE")) {
    v.action = Action::reject;
    v.standalone = Standalone::gtube;
    v.reason = "GTUBE test string";
    v.reply_text = "Refused: message contains the GTUBE test string";
    (void)s;
  } else if (const Symbol* s = find(symbols, "RCPT_UNKNOWN")) {
    v.action = Action::reject;
    v.standalone = Standalone::unknown_recipient;
    v.reason = "unknown recipient" + (s->detail.empty() ? "" : " " + s->detail);
    v.reply_text = "Recipient address rejected: user unknown";
  } else if (const Symbol* s = find(symbols, "ALLOWLIST")) {
    v.action = Action::accept;
    v.reason = "on the allow list (" + s->detail + ")";
  } else if (const Symbol* s = find(symbols, "DENYLIST")) {
    v.action = Action::reject;
    v.standalone = Standalone::denylist;
    v.reason = "on the deny list (" + s->detail + ")";
    v.reply_text = "Access denied by the site's administrator";
  } else if (const Symbol* s = find(symbols, "REPUTATION_BANNED")) {
    v.standalone = Standalone::ban;
    v.permanent_ban = s->permanent;
    v.action = s->permanent ? Action::reject : Action::tempfail;
    v.reason = "banned for repeated offences" + (s->detail.empty() ? "" : " (" + s->detail + ")");
    v.reply_text = s->permanent ? "Too many offences from your address; contact the postmaster"
                                : "Too many offences from your address; try again later";
  } else if (const Symbol* s = find(symbols, "BACKSCATTER"); s && config.batv.enforce) {
    v.action = Action::reject;
    v.standalone = Standalone::backscatter;
    v.reason = "bounce to an address we never used as a sender (BATV)";
    v.reply_text = "Bounce refused: we did not send the original message";
  } else if (v.score >= actions.reject && family_count >= actions.reject_min_families) {
    v.action = Action::reject;
    v.reason =
        fmt::format("score {:.2f} >= reject {:.2f} with {} families ({}): {}", v.score,
                    actions.reject, family_count, families_text(v.families), top_symbols(symbols));
    v.reply_text = "Message refused as spam (" + top_symbols(symbols) + ")";
  } else if (facts.greylist_applies) {
    // The gate decided (selective: the score reached the threshold; always: every new
    // triplet). Above reject without enough families, a deferral still beats tagging: it is
    // temporary and costs a spammer the retry.
    v.action = Action::greylist;
    v.reason =
        v.score >= actions.greylist
            ? fmt::format("score {:.2f} >= greylist {:.2f}: new triplet deferred", v.score,
                          actions.greylist)
            : fmt::format("score {:.2f}: new triplet deferred ([greylist] mode always)", v.score);
  } else if (v.score >= actions.tag) {
    v.action = Action::tag;
    if (v.score >= actions.reject) {
      v.reason = fmt::format(
          "score {:.2f} >= reject {:.2f} but only {} of {} families ({}): tagged", v.score,
          actions.reject, family_count, actions.reject_min_families, families_text(v.families));
    } else {
      v.reason = fmt::format("score {:.2f} >= tag {:.2f}", v.score, actions.tag);
    }
  } else {
    v.action = Action::accept;
    v.reason = fmt::format("score {:.2f} below thresholds", v.score);
  }

  // Mail to exempt recipients (postmaster@, abuse@) is never refused except by a ban. A
  // greylisting deferral is not a refusal: the gate never greylists an exempt recipient's
  // triplet, and when another recipient of the same message was deferred, the message waits
  // as a whole and reaches every recipient after the retry.
  if (facts.exempt && v.action >= Action::tempfail && v.standalone != Standalone::ban) {
    v.action = v.score >= actions.tag ? Action::tag : Action::accept;
    v.standalone = Standalone::none;
    v.reply_text.clear();
    v.reason += "; exempt recipient: not refused";
  }
  // A check that could only have lowered the score failed: never refuse for want of it.
  if (facts.failed_lowering && v.action == Action::reject) {
    v.action = Action::tempfail;
    v.permanent_ban = false;
    v.reason += "; capped at tempfail because a score-lowering check failed";
    v.reply_text = "Temporary problem checking your message; try again later";
  }

  v.symbols = std::move(symbols);
  v.applied = v.action;
  if (actions.dry_run) {
    v.dry_run = true;
    // Monitor-only: never defer or refuse; tagging changes no delivery, so it stays.
    if (v.applied >= Action::greylist)
      v.applied = v.score >= actions.tag ? Action::tag : Action::accept;
  }
  return v;
}

}  // namespace spamward
