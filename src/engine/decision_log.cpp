#include "engine/decision_log.h"

#include <spdlog/spdlog.h>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/log.h"

namespace spamward {

namespace {

// Length of the valid UTF-8 sequence at s[i] (storing its code point), or 0 when the bytes
// there are not valid UTF-8 (overlong forms, surrogates and values past U+10FFFF included).
size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  size_t len;
  uint32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// Code points that change how a terminal or viewer shows the rest of the line: C1 controls,
// line/paragraph separators, and bidirectional embeddings, overrides and isolates.
bool is_dangerous_code_point(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void append_hex(std::string& out, std::string_view bytes) {
  for (unsigned char c : bytes) out += fmt::format("\\x{:02x}", c);
}

// Appends `raw` escaped for a text-line value (contract in decision_log.h). Sets `quote` when
// the value must be written in double quotes. `extra` lists ASCII characters that are
// \x-escaped as well (separators of the enclosing list).
void escape_into(std::string& out, std::string_view raw, bool& quote, std::string_view extra = {}) {
  for (size_t i = 0; i < raw.size();) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F || extra.find(static_cast<char>(c)) != std::string_view::npos) {
        append_hex(out, raw.substr(i, 1));
        quote = true;
      } else if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
        quote = true;
      } else {
        if (c == ' ' || c == '=') quote = true;
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    quote = true;
    uint32_t cp = 0;
    size_t len = decode_utf8(raw, i, cp);
    if (len == 0) {
      append_hex(out, raw.substr(i, 1));
      ++i;
    } else {
      if (is_dangerous_code_point(cp)) {
        append_hex(out, raw.substr(i, len));
      } else {
        out.append(raw.substr(i, len));
      }
      i += len;
    }
  }
}

std::string text_value(std::string_view raw, std::string_view extra = {}) {
  std::string escaped;
  bool quote = raw.empty();
  escape_into(escaped, raw, quote, extra);
  return quote ? "\"" + escaped + "\"" : escaped;
}

// A list value: each item escaped with `extra`, wrapped in `open`/`close`, joined by ','.
// The whole value is quoted when any item needs it.
template <typename Items, typename Render>
std::string text_list(const Items& items, Render render) {
  std::string joined;
  bool quote = false;
  bool first = true;
  for (const auto& item : items) {
    if (!first) joined += ',';
    first = false;
    render(joined, item, quote);
  }
  if (joined.empty()) quote = true;
  return quote ? "\"" + joined + "\"" : joined;
}

// JSON strings must be valid UTF-8 (nlohmann throws on dump otherwise): replace each invalid
// byte with U+FFFD. Control characters are left to the JSON escaper.
std::string json_string(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size();) {
    uint32_t cp = 0;
    size_t len = decode_utf8(raw, i, cp);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(raw.substr(i, len));
      i += len;
    }
  }
  return out;
}

double round2(double v) {
  return std::round(v * 100.0) / 100.0;
}

const std::string& transaction_id(const Transaction& tx) {
  if (!tx.id.empty()) return tx.id;
  if (!tx.queue_id.empty()) return tx.queue_id;
  return tx.instance;
}

std::vector<std::string> recipient_list(const Transaction& tx) {
  std::vector<std::string> out = tx.recipients;
  if (!tx.recipient.empty() && (out.empty() || out.back() != tx.recipient)) {
    out.push_back(tx.recipient);
  }
  return out;
}

std::string text_address(std::string_view address) {
  std::string out = "<";
  bool quote = false;
  escape_into(out, address, quote, "<>");
  out += '>';
  return quote ? "\"" + out + "\"" : out;
}

}  // namespace

std::string format_decision_text(const Transaction& tx, const Verdict& v) {
  std::string line = "decision id=" + text_value(transaction_id(tx));
  line += " client=" + text_value(tx.client_address ? tx.client_address->to_string() : "");
  if (!tx.client_name.empty()) line += " client_name=" + text_value(tx.client_name);
  line += " helo=" + text_value(tx.helo);
  line += " from=" + text_address(tx.sender);
  line += " rcpt=" +
          text_list(recipient_list(tx), [](std::string& out, const std::string& r, bool& quote) {
            out += '<';
            escape_into(out, r, quote, "<>");
            out += '>';
          });
  line += " stage=" + std::string(to_string(tx.stage));
  line += " action=" + std::string(to_string(v.action));
  if (v.dry_run) line += " dry_run=true applied=" + std::string(to_string(v.applied));
  line += fmt::format(" score={:.2f}", v.score);
  line += " symbols=" + text_list(v.symbols, [](std::string& out, const Symbol& s, bool& quote) {
            escape_into(out, s.name, quote, "(),");
            out += fmt::format("({:.2f})", s.score);
          });
  if (v.trusted) line += " trusted=true";
  if (!v.failed_checks.empty()) {
    line += " failed_checks=" +
            text_list(v.failed_checks, [](std::string& out, const std::string& c, bool& quote) {
              escape_into(out, c, quote, ",");
            });
  }
  if (!v.reason.empty()) line += " reason=" + text_value(v.reason);
  return line;
}

nlohmann::json decision_json(const Transaction& tx, const Verdict& v) {
  nlohmann::json j;
  j["event"] = "decision";
  j["id"] = json_string(transaction_id(tx));
  j["client"] =
      tx.client_address ? nlohmann::json(tx.client_address->to_string()) : nlohmann::json(nullptr);
  j["client_name"] = json_string(tx.client_name);
  j["helo"] = json_string(tx.helo);
  j["from"] = json_string(tx.sender);
  auto rcpt = nlohmann::json::array();
  for (const auto& r : recipient_list(tx)) rcpt.push_back(json_string(r));
  j["rcpt"] = std::move(rcpt);
  j["stage"] = std::string(to_string(tx.stage));
  j["action"] = std::string(to_string(v.action));
  j["applied"] = std::string(to_string(v.applied));
  j["dry_run"] = v.dry_run;
  j["score"] = round2(v.score);
  auto symbols = nlohmann::json::array();
  for (const auto& s : v.symbols) {
    symbols.push_back({{"name", json_string(s.name)},
                       {"score", round2(s.score)},
                       {"family", std::string(to_string(s.family))},
                       {"detail", json_string(s.detail)}});
  }
  j["symbols"] = std::move(symbols);
  auto families = nlohmann::json::array();
  for (auto f : v.families) families.push_back(std::string(to_string(f)));
  j["families"] = std::move(families);
  j["trusted"] = v.trusted;
  auto failed = nlohmann::json::array();
  for (const auto& c : v.failed_checks) failed.push_back(json_string(c));
  j["failed_checks"] = std::move(failed);
  j["reason"] = json_string(v.reason);
  return j;
}

void log_decision(const Transaction& tx, const Verdict& v, bool json) {
  // A log line must never break a decision: swallow anything (allocation failure included).
  try {
    std::string line =
        json ? decision_json(tx, v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
             : format_decision_text(tx, v);
    decision_logger().log(spdlog::level::info, std::string_view(line));
  } catch (...) {
  }
}

}  // namespace spamward
