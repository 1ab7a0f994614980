#include "mail/mailbox.h"

#include "mail/rfc2047.h"

#include <cctype>

namespace spamward {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool is_atext_or_dot(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x80) return true;  // SMTPUTF8 local parts and IDN domains
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
    case '.':
      return true;
    default:
      return false;
  }
}

void append_collapsed(std::string& out, std::string_view text) {
  for (char c : text) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
}

std::string trimmed(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  size_t start = 0;
  while (start < s.size() && s[start] == ' ') ++start;
  return s.substr(start);
}

bool plausible_domain(std::string_view d) {
  if (d.size() >= 2 && d.front() == '[' && d.back() == ']') return true;
  if (d.empty() || d.size() > 253 || d.find('.') == std::string_view::npos) return false;
  if (d.front() == '.' || d.back() == '.' || d.find("..") != std::string_view::npos) return false;
  for (char c : d) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.'))
      return false;
  }
  return true;
}

}  // namespace

bool plausible_address(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0) return false;
  std::string_view local = address.substr(0, at);
  if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
    // quoted local part: anything printable
  } else {
    for (char c : local) {
      if (!is_atext_or_dot(c)) return false;
    }
  }
  return plausible_domain(address.substr(at + 1));
}

std::vector<Mailbox> parse_mailbox_list(std::string_view value, size_t max) {
  std::vector<Mailbox> out;
  Mailbox current;
  std::string phrase;     // words seen before '<' (display name) or the bare addr-spec
  bool in_angle = false;  // between '<' and '>'
  bool had_angle = false;
  auto finish = [&] {
    if (out.size() >= max) return;
    if (had_angle) {
      current.display = trimmed(std::move(phrase));
    } else {
      // A bare addr-spec: the phrase is the address (whitespace removed).
      std::string a;
      for (char c : phrase) {
        if (c != ' ') a += c;
      }
      current.address = std::move(a);
    }
    if (!current.address.empty() || !current.display.empty()) {
      current.valid = plausible_address(current.address);
      out.push_back(std::move(current));
    }
    current = Mailbox{};
    phrase.clear();
    had_angle = false;
  };
  size_t i = 0;
  while (i < value.size() && out.size() < max) {
    char c = value[i];
    if (c == '"') {
      size_t j = i + 1;
      std::string quoted;
      while (j < value.size() && value[j] != '"') {
        if (value[j] == '\\' && j + 1 < value.size()) ++j;
        quoted += value[j++];
      }
      if (in_angle) {
        current.address += '"' + quoted + '"';
      } else {
        append_collapsed(phrase, quoted);
      }
      i = j + 1;
    } else if (c == '(') {
      int depth = 0;
      while (i < value.size()) {
        char d = value[i++];
        if (d == '\\' && i < value.size()) {
          ++i;
        } else if (d == '(') {
          ++depth;
        } else if (d == ')' && --depth == 0) {
          break;
        }
      }
      if (!in_angle && !phrase.empty() && phrase.back() != ' ') phrase += ' ';
    } else if (c == '<' && !in_angle) {
      in_angle = true;
      had_angle = true;
      ++i;
    } else if (c == '>' && in_angle) {
      in_angle = false;
      ++i;
    } else if (in_angle) {
      if (!is_space(c)) current.address += c;
      ++i;
    } else if (c == ',') {
      finish();
      ++i;
    } else if (c == ':' && !had_angle) {
      phrase.clear();  // a group's name: its members follow
      ++i;
    } else if (c == ';') {
      finish();  // a group's end
      ++i;
    } else {
      append_collapsed(phrase, std::string_view(&value[i], 1));
      ++i;
    }
  }
  finish();
  return out;
}

std::string address_in_text(std::string_view text) {
  for (size_t at = text.find('@'); at != std::string_view::npos; at = text.find('@', at + 1)) {
    size_t start = at;
    while (start > 0 && is_atext_or_dot(text[start - 1]) &&
           static_cast<unsigned char>(text[start - 1]) < 0x80)
      --start;
    while (start < at && text[start] == '.') ++start;
    size_t end = at + 1;
    while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) ||
                                 text[end] == '-' || text[end] == '.'))
      ++end;
    while (end > at + 1 && text[end - 1] == '.') --end;
    std::string_view candidate = text.substr(start, end - start);
    if (start < at && plausible_address(candidate)) return std::string(candidate);
  }
  return {};
}

std::vector<Mailbox> parse_mailbox_field(std::string_view raw_field, size_t max) {
  size_t colon = raw_field.find(':');
  std::string_view raw = colon == std::string_view::npos ? raw_field : raw_field.substr(colon + 1);
  std::string value;
  value.reserve(raw.size());
  for (char c : raw) value.push_back(c == '\r' || c == '\n' ? ' ' : c);  // unfold
  auto mailboxes = parse_mailbox_list(value, max);
  for (auto& mb : mailboxes) {
    if (mb.display.find("=?") == std::string::npos) continue;
    // Decoded text may bring its own runs of spaces; keep the display collapsed.
    std::string decoded = decode_rfc2047(mb.display), collapsed;
    for (char c : decoded) {
      bool space = c == ' ' || c == '\t';
      if (space && (collapsed.empty() || collapsed.back() == ' ')) continue;
      collapsed.push_back(space ? ' ' : c);
    }
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    mb.display = std::move(collapsed);
  }
  return mailboxes;
}

}  // namespace spamward
