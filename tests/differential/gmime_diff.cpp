// gmime_diff: a differential test of spamward's MIME parser (mail/message.h) against GMime 3,
// the test oracle of DESIGN §5. Test-only; built in the normal build (not fuzz, not ASan).
//
// Contract:
// - Usage: gmime_diff [--show N] [--expect-messages N] [--min-subject R] [--min-from R]
//   [--min-structure R] [--min-text R] [--min-text-exact R] PATH...
//   Every PATH is a message file or a directory, read recursively (files in sorted order).
// - Each message is parsed by MessageParser and by GMime (GMIME_FORMAT_MESSAGE; a leading mbox
//   "From " line is removed first, as our parser skips it). Both are compared on:
//   * subject: the decoded Subject, whitespace runs collapsed to one space and trimmed;
//   * from: the addr-spec of the first From mailbox, lower-cased;
//   * structure: the leaf MIME parts (message/rfc822 parts descended into) and their
//     lower-case "type/subtype", in order. Tolerance rule: where GMime has an empty multipart
//     (it found no part in it) our parser reads its body as one text/plain part, so an empty
//     GMime multipart counts as one text/plain leaf (applied twice in the corpus);
//   * text: the text/plain parts, paired in order when both found the same number of them,
//     decoded to UTF-8 (GMime: its transfer decoding, its iconv charset filter for a declared
//     charset, and g_mime_utils_decode_8bit with fallback charsets utf-8, windows-1252 for
//     undeclared or unknown ones: the same guess our parser makes). Texts are compared after
//     whitespace normalisation; a message's verdict is its worst part: "equal", "prefix" (the
//     shorter, non-empty, is a prefix of the longer), "ascii" (the same ASCII at the same
//     places, once every non-ASCII character and every '?' stand for one placeholder: only
//     single-byte charset guesses and invalid-byte replacement differ; see shape()) or
//     "differ". Agreement is equal + prefix + ascii; "text-exact" is equal alone.
//   The subject agrees when equal or "ascii"; "from" compares addresses with '"' removed
//   (GMime keeps a quoted local part's quotes, our mailbox parser drops them).
// - Prints a summary (messages, agreement per property) and the first N disagreements of each
//   property with file names. Exits 1 when a rate is under its threshold or the message count
//   differs from --expect-messages, 2 on bad usage or an unreadable path, else 0.
//
// Measured on ../shared/corpus (6,045 messages, 2026-12-03, GMime 3.2.13): see the
// kDefault* thresholds below and docs/headers.md.
#include <gmime/gmime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "core/strings.h"
#include "mail/mailbox.h"
#include "mail/message.h"

namespace {

using spamward::Message;

// Thresholds: the rate measured on ../shared/corpus on 2026-12-03 (GMime 3.2.13), less a
// margin of 20 to 50 messages. What the remaining disagreements are (docs/headers.md):
// - subject, 2: GMime cuts two ISO-2022-JP subjects of two encoded words (ours is right);
// - from, 10: raw 8-bit local parts (GMime finds no mailbox), encoded words inside an
//   addr-spec (we decode the field before splitting mailboxes), "a@b@c.com";
// - text, 4: malformed quoted-printable ("==", "=3D==3D"), decoded differently.
// text-exact also counts 44 "ascii" messages (ISO-8859-1 read as windows-1252 by us and as
// Latin-1 C1 controls by iconv; U+FFFD against '?') and 1 "prefix" (base64 followed by a
// list footer: GMime stops at the padding, we decode on).
constexpr double kDefaultMinSubject = 0.995;    // measured 6043/6045 = 0.9997
constexpr double kDefaultMinFrom = 0.995;       // measured 6035/6045 = 0.9983
constexpr double kDefaultMinStructure = 0.995;  // measured 6045/6045 = 1.0000
constexpr double kDefaultMinText = 0.995;       // measured 5069/5073 = 0.9992
constexpr double kDefaultMinTextExact = 0.98;   // measured 5024/5073 = 0.9903

// --- normalisation and comparison ---

bool ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

// Whitespace runs become one space; leading and trailing whitespace go.
std::string squeeze(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (ascii_space(c)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// The text's shape: every non-ASCII character (a UTF-8 sequence, or a stray byte) and every
// '?' becomes one placeholder byte. Two texts with one shape differ only in which character
// stands at some places: a charset guessed differently for single-byte text (ISO-8859-1 read
// as windows-1252 or not), or an invalid byte replaced by U+FFFD on one side and '?' on the
// other. Texts of another length, or with other ASCII, have other shapes.
std::string shape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += s[i] == '?' ? '\x01' : s[i];
      ++i;
      continue;
    }
    out += '\x01';
    const size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    size_t k = 1;
    while (k < n && i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80) ++k;
    i += k;
  }
  return out;
}

std::string unquote(std::string s) {
  std::erase(s, '"');
  return s;
}

enum class Verdict { kEqual = 0, kPrefix = 1, kAscii = 2, kDiffer = 3 };
constexpr const char* kVerdictNames[] = {"equal", "prefix", "ascii", "differ"};

// `a` and `b` already squeezed.
Verdict compare_text(const std::string& a, const std::string& b) {
  if (a == b) return Verdict::kEqual;
  const std::string& shorter = a.size() < b.size() ? a : b;
  const std::string& longer = a.size() < b.size() ? b : a;
  if (!shorter.empty() && longer.starts_with(shorter)) return Verdict::kPrefix;
  if (shape(a) == shape(b)) return Verdict::kAscii;
  return Verdict::kDiffer;
}

// --- one parse, as both sides see it ---

struct Part {
  std::string type;  // lower-case type/subtype
  std::string text;  // text/plain parts: UTF-8, squeezed
};

struct View {
  bool has_subject = false;
  std::string subject;  // squeezed
  std::string from;     // lower-case addr-spec of the first mailbox; empty when none
  std::vector<Part> parts;
};

View ours(std::string_view raw) {
  const Message m = spamward::parse_message(raw);
  View v;
  if (const auto* s = m.header("Subject")) {
    v.has_subject = true;
    v.subject = squeeze(s->value);
  }
  if (const auto* f = m.header("From")) {
    const auto boxes = spamward::parse_mailbox_list(f->value, 1);
    if (!boxes.empty()) v.from = unquote(spamward::to_lower(boxes.front().address));
  }
  for (const auto& p : m.parts) {
    Part part{p.content_type, {}};
    if (p.content_type == "text/plain") part.text = squeeze(p.text);
    v.parts.push_back(std::move(part));
  }
  return v;
}

class Gmime {
 public:
  Gmime() {
    g_mime_init();
    options_ = g_mime_parser_options_new();
    static const char* fallback[] = {"utf-8", "windows-1252", nullptr};
    g_mime_parser_options_set_fallback_charsets(options_, fallback);
    g_mime_parser_options_set_rfc2047_compliance_mode(options_, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_address_compliance_mode(options_, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(options_, GMIME_RFC_COMPLIANCE_LOOSE);
  }
  ~Gmime() {
    g_mime_parser_options_free(options_);
    g_mime_shutdown();
  }
  Gmime(const Gmime&) = delete;
  Gmime& operator=(const Gmime&) = delete;

  size_t empty_multiparts = 0;  // times the tolerance rule of the structure was applied

  // False when GMime could not build a message at all.
  bool parse(std::string_view raw, View& v) {
    if (raw.starts_with("From ")) {
      const size_t nl = raw.find('\n');
      raw.remove_prefix(nl == std::string_view::npos ? raw.size() : nl + 1);
    }
    GMimeStream* stream = g_mime_stream_mem_new_with_buffer(raw.data(), raw.size());
    GMimeParser* parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    GMimeMessage* message = g_mime_parser_construct_message(parser, options_);
    g_object_unref(parser);
    g_object_unref(stream);
    if (message == nullptr) return false;
    const char* subject = g_mime_message_get_subject(message);
    if (subject != nullptr) {
      v.has_subject = true;
      v.subject = squeeze(subject);
    }
    v.from = first_addr(g_mime_message_get_from(message));
    walk(g_mime_message_get_mime_part(message), v.parts, 0);
    g_object_unref(message);
    return true;
  }

 private:
  static std::string first_addr(InternetAddressList* list) {
    if (list == nullptr) return {};
    for (int i = 0; i < internet_address_list_length(list); ++i) {
      InternetAddress* a = internet_address_list_get_address(list, i);
      if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
        const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
        return addr != nullptr ? unquote(spamward::to_lower(addr)) : std::string();
      }
      if (INTERNET_ADDRESS_IS_GROUP(a)) {
        std::string inner =
            first_addr(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)));
        if (!inner.empty()) return inner;
      }
    }
    return {};
  }

  static std::string mime_type(GMimeObject* obj) {
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    if (ct == nullptr) return "text/plain";
    char* t = g_mime_content_type_get_mime_type(ct);
    std::string out = spamward::to_lower(t != nullptr ? t : "text/plain");
    g_free(t);
    return out;
  }

  void walk(GMimeObject* obj, std::vector<Part>& out, int depth) {
    if (obj == nullptr || depth > 20) return;
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      const int n = g_mime_multipart_get_count(mp);
      if (n == 0) {
        // Tolerance rule (see the contract): our parser reads an empty multipart as text.
        ++empty_multiparts;
        out.push_back({"text/plain", squeeze(preamble_text(mp))});
        return;
      }
      for (int i = 0; i < n; ++i) walk(g_mime_multipart_get_part(mp, i), out, depth + 1);
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      if (inner != nullptr) walk(g_mime_message_get_mime_part(inner), out, depth + 1);
    } else if (GMIME_IS_PART(obj)) {
      Part p{mime_type(obj), {}};
      if (p.type == "text/plain") p.text = squeeze(text_of(GMIME_PART(obj)));
      out.push_back(std::move(p));
    }
  }

  static std::string preamble_text(GMimeMultipart* mp) {
    const char* pre = g_mime_multipart_get_prologue(mp);
    return pre != nullptr ? pre : "";
  }

  // The part's content, transfer-decoded by GMime and converted to UTF-8.
  std::string text_of(GMimePart* part) {
    GMimeDataWrapper* content = g_mime_part_get_content(part);
    if (content == nullptr) return {};
    GMimeStream* mem = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(content, mem);
    GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    std::string decoded(reinterpret_cast<const char*>(bytes->data), bytes->len);
    g_object_unref(mem);

    const char* cs = g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
    const std::string charset = spamward::to_lower(cs != nullptr ? cs : "");
    const bool ascii = std::all_of(decoded.begin(), decoded.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    const bool ascii_charset =
        charset.empty() || charset == "us-ascii" || charset == "utf-8" || charset == "utf8";
    if (ascii && ascii_charset) return decoded;
    // Every other declared charset goes through iconv, even 7-bit text (ISO-2022-JP is 7-bit).
    if (!ascii_charset) {
      GMimeFilter* filter = g_mime_filter_charset_new(charset.c_str(), "utf-8");
      if (filter != nullptr) {
        GMimeStream* out = g_mime_stream_mem_new();
        GMimeStream* filtered = g_mime_stream_filter_new(out);
        g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), filter);
        g_mime_stream_write(filtered, decoded.data(), decoded.size());
        g_mime_stream_flush(filtered);
        GByteArray* conv = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
        std::string text(reinterpret_cast<const char*>(conv->data), conv->len);
        g_object_unref(filtered);
        g_object_unref(filter);
        g_object_unref(out);
        return text;
      }
    }
    // Undeclared, US-ASCII with 8-bit bytes, UTF-8, or a charset iconv does not know:
    // GMime's own guess through the fallback charsets.
    char* guessed = g_mime_utils_decode_8bit(options_, decoded.data(), decoded.size());
    std::string text = guessed != nullptr ? guessed : "";
    g_free(guessed);
    return text;
  }

  GMimeParserOptions* options_ = nullptr;
};

// --- the run ---

struct Property {
  Property(const char* n, double m) : name(n), min(m) {}
  const char* name;
  double min;
  size_t compared = 0;
  size_t agreed = 0;
  std::vector<std::string> shown;  // the first disagreements
  double rate() const { return compared == 0 ? 1.0 : static_cast<double>(agreed) / compared; }
};

std::string clip(std::string_view s, size_t n = 100) {
  if (s.size() <= n) return std::string(s);
  return std::string(s.substr(0, n)) + "...";
}

std::string types(const std::vector<Part>& parts) {
  std::string s = std::to_string(parts.size()) + " [";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) s += ' ';
    s += parts[i].type;
  }
  return s + "]";
}

void note(Property& p, size_t show, bool agreed, const std::string& what) {
  ++p.compared;
  if (agreed) {
    ++p.agreed;
  } else if (p.shown.size() < show) {
    p.shown.push_back(what);
  }
}

bool parse_rate(const char* s, double& out) {
  char* end = nullptr;
  out = std::strtod(s, &end);
  return end != s && *end == '\0' && out >= 0 && out <= 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: gmime_diff [--show N] [--expect-messages N] [--min-subject R] "
               "[--min-from R] [--min-structure R] [--min-text R] [--min-text-exact R] PATH...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  size_t show = 10;
  long expect = -1;
  Property subject{"subject", kDefaultMinSubject};
  Property from{"from", kDefaultMinFrom};
  Property structure{"structure", kDefaultMinStructure};
  Property text{"text", kDefaultMinText};
  Property text_exact{"text-exact", kDefaultMinTextExact};
  std::vector<std::filesystem::path> roots;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--show" && has_value) {
      show = std::strtoul(argv[++i], nullptr, 10);
    } else if (a == "--expect-messages" && has_value) {
      expect = std::strtol(argv[++i], nullptr, 10);
    } else if (a.starts_with("--min-") && has_value) {
      Property* p = a == "--min-subject"      ? &subject
                    : a == "--min-from"       ? &from
                    : a == "--min-structure"  ? &structure
                    : a == "--min-text"       ? &text
                    : a == "--min-text-exact" ? &text_exact
                                              : nullptr;
      if (p == nullptr || !parse_rate(argv[++i], p->min)) return usage();
    } else if (a.starts_with("--")) {
      return usage();
    } else {
      roots.emplace_back(argv[i]);
    }
  }
  if (roots.empty()) return usage();

  std::vector<std::filesystem::path> files;
  for (const auto& root : roots) {
    std::error_code ec;
    if (std::filesystem::is_directory(root, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(root, ec)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (std::filesystem::is_regular_file(root, ec)) {
      files.push_back(root);
    } else {
      std::fprintf(stderr, "gmime_diff: cannot read %s\n", root.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());

  Gmime gmime;
  size_t messages = 0, gmime_failed = 0, text_messages = 0, multipart = 0, leaves = 0;
  size_t verdicts[4] = {0, 0, 0, 0};
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "gmime_diff: cannot read %s\n", path.c_str());
      return 2;
    }
    ++messages;
    const std::string name = path.string();
    const View a = ours(raw);
    View b;
    if (!gmime.parse(raw, b)) {
      ++gmime_failed;
      continue;
    }
    const Verdict sv = compare_text(a.subject, b.subject);
    note(subject, show,
         a.has_subject == b.has_subject && (sv == Verdict::kEqual || sv == Verdict::kAscii),
         name + "\n    ours:  " + (a.has_subject ? "\"" + clip(a.subject) + "\"" : "(none)") +
             "\n    gmime: " + (b.has_subject ? "\"" + clip(b.subject) + "\"" : "(none)"));
    note(from, show, a.from == b.from,
         name + "\n    ours:  <" + a.from + ">\n    gmime: <" + b.from + ">");
    bool same_structure = a.parts.size() == b.parts.size();
    for (size_t i = 0; same_structure && i < a.parts.size(); ++i) {
      same_structure = a.parts[i].type == b.parts[i].type;
    }
    multipart += b.parts.size() > 1;
    leaves += b.parts.size();
    note(structure, show, same_structure,
         name + "\n    ours:  " + types(a.parts) + "\n    gmime: " + types(b.parts));

    // Text: the text/plain parts, paired in order when both have as many.
    std::vector<const Part*> ta, tb;
    for (const auto& p : a.parts) {
      if (p.type == "text/plain") ta.push_back(&p);
    }
    for (const auto& p : b.parts) {
      if (p.type == "text/plain") tb.push_back(&p);
    }
    if (ta.empty() || ta.size() != tb.size()) continue;
    ++text_messages;
    Verdict worst = Verdict::kEqual;
    size_t worst_at = 0;
    for (size_t i = 0; i < ta.size(); ++i) {
      const Verdict v = compare_text(ta[i]->text, tb[i]->text);
      if (v > worst) {
        worst = v;
        worst_at = i;
      }
    }
    ++verdicts[static_cast<int>(worst)];
    std::string detail;
    if (worst != Verdict::kEqual) {
      const std::string& x = ta[worst_at]->text;
      const std::string& y = tb[worst_at]->text;
      size_t d = 0;
      while (d < x.size() && d < y.size() && x[d] == y[d]) ++d;
      const size_t from_at = d > 30 ? d - 30 : 0;
      detail = name + " (" + kVerdictNames[static_cast<int>(worst)] + ", text part " +
               std::to_string(worst_at + 1) + ", " + std::to_string(x.size()) + " vs " +
               std::to_string(y.size()) + " bytes, first difference at " + std::to_string(d) +
               ")\n    ours:  \"" + clip(std::string_view(x).substr(std::min(from_at, x.size()))) +
               "\"\n    gmime: \"" + clip(std::string_view(y).substr(std::min(from_at, y.size()))) +
               "\"";
    }
    note(text, show, worst != Verdict::kDiffer, detail);
    note(text_exact, show, worst == Verdict::kEqual, detail);
  }

  std::printf("gmime_diff: %zu messages (GMime %u.%u.%u), %zu GMime could not parse\n", messages,
              gmime_major_version, gmime_minor_version, gmime_micro_version, gmime_failed);
  std::printf("GMime found %zu leaf parts, %zu messages with more than one, %zu empty multiparts\n",
              leaves, multipart, gmime.empty_multiparts);
  std::printf("text/plain compared in %zu messages: %zu equal, %zu prefix, %zu ascii, %zu differ\n",
              text_messages, verdicts[0], verdicts[1], verdicts[2], verdicts[3]);
  bool ok = true;
  Property* props[] = {&subject, &from, &structure, &text, &text_exact};
  for (const Property* p : props) {
    const bool pass = p->rate() >= p->min;
    ok &= pass;
    std::printf("  %-10s %zu/%zu agree = %.4f (minimum %.4f)%s\n", p->name, p->agreed, p->compared,
                p->rate(), p->min, pass ? "" : "  FAIL");
  }
  if (expect >= 0 && messages != static_cast<size_t>(expect)) {
    std::printf("FAIL: %zu messages, expected %ld\n", messages, expect);
    ok = false;
  }
  for (const Property* p : props) {
    if (p->shown.empty()) continue;
    std::printf("\nfirst %zu disagreements on %s:\n", p->shown.size(), p->name);
    for (const auto& s : p->shown) std::printf("  %s\n", s.c_str());
  }
  std::printf("\n%s\n", ok ? "gmime_diff: PASS" : "gmime_diff: FAIL");
  return ok ? 0 : 1;
}
