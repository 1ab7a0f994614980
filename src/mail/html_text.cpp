#include "mail/html_text.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "mail/charset.h"

namespace spamward {

namespace {

struct NamedEntity {
  std::string_view name;
  char32_t cp;
};

// HTML 4 named character references and &apos;, sorted by name (byte order).
constexpr NamedEntity kEntities[] = {
    {"AElig", 198},    {"Aacute", 193},  {"Acirc", 194},   {"Agrave", 192},  {"Alpha", 913},
    {"Aring", 197},    {"Atilde", 195},  {"Auml", 196},    {"Beta", 914},    {"Ccedil", 199},
    {"Chi", 935},      {"Dagger", 8225}, {"Delta", 916},   {"ETH", 208},     {"Eacute", 201},
    {"Ecirc", 202},    {"Egrave", 200},  {"Epsilon", 917}, {"Eta", 919},     {"Euml", 203},
    {"Gamma", 915},    {"Iacute", 205},  {"Icirc", 206},   {"Igrave", 204},  {"Iota", 921},
    {"Iuml", 207},     {"Kappa", 922},   {"Lambda", 923},  {"Mu", 924},      {"Ntilde", 209},
    {"Nu", 925},       {"OElig", 338},   {"Oacute", 211},  {"Ocirc", 212},   {"Ograve", 210},
    {"Omega", 937},    {"Omicron", 927}, {"Oslash", 216},  {"Otilde", 213},  {"Ouml", 214},
    {"Phi", 934},      {"Pi", 928},      {"Prime", 8243},  {"Psi", 936},     {"Rho", 929},
    {"Scaron", 352},   {"Sigma", 931},   {"THORN", 222},   {"Tau", 932},     {"Theta", 920},
    {"Uacute", 218},   {"Ucirc", 219},   {"Ugrave", 217},  {"Upsilon", 933}, {"Uuml", 220},
    {"Xi", 926},       {"Yacute", 221},  {"Yuml", 376},    {"Zeta", 918},    {"aacute", 225},
    {"acirc", 226},    {"acute", 180},   {"aelig", 230},   {"agrave", 224},  {"alefsym", 8501},
    {"alpha", 945},    {"amp", 38},      {"and", 8743},    {"ang", 8736},    {"apos", 39},
    {"aring", 229},    {"asymp", 8776},  {"atilde", 227},  {"auml", 228},    {"bdquo", 8222},
    {"beta", 946},     {"brvbar", 166},  {"bull", 8226},   {"cap", 8745},    {"ccedil", 231},
    {"cedil", 184},    {"cent", 162},    {"chi", 967},     {"circ", 710},    {"clubs", 9827},
    {"cong", 8773},    {"copy", 169},    {"crarr", 8629},  {"cup", 8746},    {"curren", 164},
    {"dArr", 8659},    {"dagger", 8224}, {"darr", 8595},   {"deg", 176},     {"delta", 948},
    {"diams", 9830},   {"divide", 247},  {"eacute", 233},  {"ecirc", 234},   {"egrave", 232},
    {"empty", 8709},   {"emsp", 8195},   {"ensp", 8194},   {"epsilon", 949}, {"equiv", 8801},
    {"eta", 951},      {"eth", 240},     {"euml", 235},    {"euro", 8364},   {"exist", 8707},
    {"fnof", 402},     {"forall", 8704}, {"frac12", 189},  {"frac14", 188},  {"frac34", 190},
    {"frasl", 8260},   {"gamma", 947},   {"ge", 8805},     {"gt", 62},       {"hArr", 8660},
    {"harr", 8596},    {"hearts", 9829}, {"hellip", 8230}, {"iacute", 237},  {"icirc", 238},
    {"iexcl", 161},    {"igrave", 236},  {"image", 8465},  {"infin", 8734},  {"int", 8747},
    {"iota", 953},     {"iquest", 191},  {"isin", 8712},   {"iuml", 239},    {"kappa", 954},
    {"lArr", 8656},    {"lambda", 955},  {"lang", 9001},   {"laquo", 171},   {"larr", 8592},
    {"lceil", 8968},   {"ldquo", 8220},  {"le", 8804},     {"lfloor", 8970}, {"lowast", 8727},
    {"loz", 9674},     {"lrm", 8206},    {"lsaquo", 8249}, {"lsquo", 8216},  {"lt", 60},
    {"macr", 175},     {"mdash", 8212},  {"micro", 181},   {"middot", 183},  {"minus", 8722},
    {"mu", 956},       {"nabla", 8711},  {"nbsp", 160},    {"ndash", 8211},  {"ne", 8800},
    {"ni", 8715},      {"not", 172},     {"notin", 8713},  {"nsub", 8836},   {"ntilde", 241},
    {"nu", 957},       {"oacute", 243},  {"ocirc", 244},   {"oelig", 339},   {"ograve", 242},
    {"oline", 8254},   {"omega", 969},   {"omicron", 959}, {"oplus", 8853},  {"or", 8744},
    {"ordf", 170},     {"ordm", 186},    {"oslash", 248},  {"otilde", 245},  {"otimes", 8855},
    {"ouml", 246},     {"para", 182},    {"part", 8706},   {"permil", 8240}, {"perp", 8869},
    {"phi", 966},      {"pi", 960},      {"piv", 982},     {"plusmn", 177},  {"pound", 163},
    {"prime", 8242},   {"prod", 8719},   {"prop", 8733},   {"psi", 968},     {"quot", 34},
    {"rArr", 8658},    {"radic", 8730},  {"rang", 9002},   {"raquo", 187},   {"rarr", 8594},
    {"rceil", 8969},   {"rdquo", 8221},  {"real", 8476},   {"reg", 174},     {"rfloor", 8971},
    {"rho", 961},      {"rlm", 8207},    {"rsaquo", 8250}, {"rsquo", 8217},  {"sbquo", 8218},
    {"scaron", 353},   {"sdot", 8901},   {"sect", 167},    {"shy", 173},     {"sigma", 963},
    {"sigmaf", 962},   {"sim", 8764},    {"spades", 9824}, {"sub", 8834},    {"sube", 8838},
    {"sum", 8721},     {"sup", 8835},    {"sup1", 185},    {"sup2", 178},    {"sup3", 179},
    {"supe", 8839},    {"szlig", 223},   {"tau", 964},     {"there4", 8756}, {"theta", 952},
    {"thetasym", 977}, {"thinsp", 8201}, {"thorn", 254},   {"tilde", 732},   {"times", 215},
    {"trade", 8482},   {"uArr", 8657},   {"uacute", 250},  {"uarr", 8593},   {"ucirc", 251},
    {"ugrave", 249},   {"uml", 168},     {"upsih", 978},   {"upsilon", 965}, {"uuml", 252},
    {"weierp", 8472},  {"xi", 958},      {"yacute", 253},  {"yen", 165},     {"yuml", 255},
    {"zeta", 950},     {"zwj", 8205},    {"zwnj", 8204},
};

constexpr bool entities_sorted() {
  for (size_t i = 1; i < std::size(kEntities); ++i) {
    if (!(kEntities[i - 1].name < kEntities[i].name)) return false;
  }
  return true;
}
static_assert(entities_sorted(), "lookup_entity() needs kEntities sorted");

char32_t lookup_entity(std::string_view name) {
  const auto* end = std::end(kEntities);
  const auto* it =
      std::lower_bound(std::begin(kEntities), end, name,
                       [](const NamedEntity& e, std::string_view n) { return e.name < n; });
  return it != end && it->name == name ? it->cp : 0;
}

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_alpha(c) || is_digit(c);
}
char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool ieq(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower_b[i]) return false;
  }
  return true;
}

// Zero-width space/non-joiner/joiner, word joiner, BOM, soft hyphen.
bool invisible(char32_t cp) {
  return cp == 0x200B || cp == 0x200C || cp == 0x200D || cp == 0x2060 || cp == 0xFEFF || cp == 0xAD;
}

// Parses a character reference at s[i] ('&'). Returns the bytes it spans, 0 when there is
// none (the '&' is then literal).
size_t parse_reference(std::string_view s, size_t i, bool in_attribute, char32_t& cp) {
  size_t j = i + 1;
  if (j < s.size() && s[j] == '#') {
    ++j;
    const bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
    if (hex) ++j;
    const size_t digits_begin = j;
    uint32_t value = 0;
    while (j < s.size()) {
      const char c = s[j];
      int d;
      if (is_digit(c)) {
        d = c - '0';
      } else if (hex && lower(c) >= 'a' && lower(c) <= 'f') {
        d = lower(c) - 'a' + 10;
      } else {
        break;
      }
      value = std::min<uint32_t>(value * (hex ? 16 : 10) + static_cast<uint32_t>(d), 0x110000);
      ++j;
    }
    if (j == digits_begin) return 0;
    if (j < s.size() && s[j] == ';') ++j;
    if (value == 0 || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
      cp = 0xFFFD;
    } else if (value >= 0x80 && value < 0xA0) {
      cp = cp1252_char(static_cast<unsigned char>(value));
    } else {
      cp = value;
    }
    return j - i;
  }
  const size_t name_begin = j;
  while (j < s.size() && is_alnum(s[j]) && j - name_begin < 32) ++j;
  const std::string_view name = s.substr(name_begin, j - name_begin);
  if (name.empty()) return 0;
  if (j < s.size() && s[j] == ';') {
    if (const char32_t v = lookup_entity(name); v != 0) {
      cp = v;
      return name.size() + 2;
    }
  }
  // Legacy references without ';' (Latin-1 names): the longest one that prefixes the name.
  for (size_t len = std::min<size_t>(name.size(), 6); len >= 2; --len) {
    const char32_t v = lookup_entity(name.substr(0, len));
    if (v == 0 || v > 0xFF) continue;
    if (in_attribute) {
      const size_t next = name_begin + len;
      if (len < name.size() || (next < s.size() && s[next] == '=')) return 0;
    }
    cp = v;
    return len + 1;
  }
  return 0;
}

// Attribute value with references decoded.
std::string decode_attribute(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  size_t i = 0;
  while (i < v.size()) {
    if (v[i] == '&') {
      char32_t cp = 0;
      if (const size_t n = parse_reference(v, i, true, cp); n != 0) {
        append_utf8(out, cp);
        i += n;
        continue;
      }
    }
    out += v[i++];
  }
  return out;
}

enum class TagKind { kOther, kBlock, kCell, kRawText };

TagKind classify(std::string_view name) {
  static constexpr std::string_view kBlocks[] = {
      "address", "article", "aside",    "blockquote", "br",      "caption", "center", "dd",   "div",
      "dl",      "dt",      "fieldset", "figcaption", "figure",  "footer",  "form",   "h1",   "h2",
      "h3",      "h4",      "h5",       "h6",         "header",  "hr",      "li",     "main", "nav",
      "ol",      "option",  "p",        "pre",        "section", "table",   "title",  "tr",   "ul"};
  if (name == "script" || name == "style") return TagKind::kRawText;
  if (name == "td" || name == "th") return TagKind::kCell;
  for (std::string_view b : kBlocks) {
    if (name == b) return TagKind::kBlock;
  }
  return TagKind::kOther;
}

bool is_link_attribute(std::string_view name) {
  return ieq(name, "href") || ieq(name, "src") || ieq(name, "background") || ieq(name, "action");
}

class Converter {
 public:
  Converter(std::string_view in, const std::function<void(std::string_view)>& on_link)
      : in_(in), on_link_(on_link) {
    out_.reserve(in.size() / 2);
  }

  std::string run() {
    const size_t n = in_.size();
    while (i_ < n) {
      const char c = in_[i_];
      if (c == '<') {
        markup();
      } else if (c == '&') {
        char32_t cp = 0;
        if (const size_t len = parse_reference(in_, i_, false, cp); len != 0) {
          code_point(cp);
          i_ += len;
        } else {
          text_byte('&');
          ++i_;
        }
      } else {
        size_t j = i_;
        while (j < n && in_[j] != '<' && in_[j] != '&') ++j;
        text(in_.substr(i_, j - i_));
        i_ = j;
      }
    }
    while (!out_.empty() && (out_.back() == '\n' || out_.back() == ' ')) out_.pop_back();
    return std::move(out_);
  }

 private:
  void flush_space() {
    if (space_ && !out_.empty() && out_.back() != '\n') out_ += ' ';
    space_ = false;
  }
  void text_byte(char c) {
    flush_space();
    out_ += c;
  }
  void line_break() {
    if (!out_.empty() && out_.back() != '\n') out_ += '\n';
    space_ = false;
  }
  void code_point(char32_t cp) {
    if (cp == 0xA0 || cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f') {
      space_ = true;
    } else if (!invisible(cp)) {
      flush_space();
      append_utf8(out_, cp);
    }
  }

  // Character data (no '<' or '&').
  void text(std::string_view t) {
    size_t k = 0;
    while (k < t.size()) {
      const auto b = static_cast<unsigned char>(t[k]);
      if (is_ws(static_cast<char>(b))) {
        space_ = true;
        ++k;
        continue;
      }
      if (b == 0xC2 && k + 1 < t.size()) {
        const auto b1 = static_cast<unsigned char>(t[k + 1]);
        if (b1 == 0xA0) {  // U+00A0
          space_ = true;
          k += 2;
          continue;
        }
        if (b1 == 0xAD) {  // U+00AD
          k += 2;
          continue;
        }
      }
      if ((b == 0xE2 || b == 0xEF) && k + 2 < t.size()) {
        const auto b1 = static_cast<unsigned char>(t[k + 1]);
        const auto b2 = static_cast<unsigned char>(t[k + 2]);
        if ((b == 0xE2 && b1 == 0x80 && b2 >= 0x8B && b2 <= 0x8D) ||
            (b == 0xE2 && b1 == 0x81 && b2 == 0xA0) || (b == 0xEF && b1 == 0xBB && b2 == 0xBF)) {
          k += 3;
          continue;
        }
      }
      flush_space();
      size_t run = k + 1;
      while (run < t.size() && !is_ws(t[run]) && static_cast<unsigned char>(t[run]) < 0x80) ++run;
      out_.append(t.data() + k, run - k);
      k = run;
    }
  }

  // At '<'.
  void markup() {
    const size_t n = in_.size();
    const std::string_view rest = in_.substr(i_);
    if (rest.starts_with("<!--")) {
      const size_t end = in_.find("-->", i_ + 2);
      i_ = end == std::string_view::npos ? n : end + 3;
      return;
    }
    const char next = rest.size() > 1 ? rest[1] : '\0';
    if (next == '/' && rest.size() > 2 && is_alpha(rest[2])) {
      i_ += 2;
      const std::string name = tag_name();
      const size_t end = in_.find('>', i_);
      i_ = end == std::string_view::npos ? n : end + 1;
      if (classify(name) == TagKind::kBlock) line_break();
      if (classify(name) == TagKind::kCell) space_ = true;
      return;
    }
    if (next == '!' || next == '?' || next == '/') {
      const size_t end = in_.find('>', i_ + 2);
      i_ = end == std::string_view::npos ? n : end + 1;
      return;
    }
    if (!is_alpha(next)) {
      text_byte('<');
      ++i_;
      return;
    }
    ++i_;
    const std::string name = tag_name();
    if (!attributes()) {
      i_ = n;  // end of input inside the tag: it is dropped
      return;
    }
    switch (classify(name)) {
      case TagKind::kBlock:
        line_break();
        break;
      case TagKind::kCell:
        space_ = true;
        break;
      case TagKind::kRawText:
        skip_raw_text(name);
        break;
      case TagKind::kOther:
        break;
    }
  }

  // Lower-cased tag name at i_ (at most 16 bytes kept; longer names match nothing).
  std::string tag_name() {
    std::string name;
    const size_t n = in_.size();
    while (i_ < n && !is_ws(in_[i_]) && in_[i_] != '/' && in_[i_] != '>') {
      if (name.size() <= 16) name += lower(in_[i_]);
      ++i_;
    }
    return name;
  }

  // Attributes up to and including '>'; false at the end of input.
  bool attributes() {
    const size_t n = in_.size();
    while (true) {
      while (i_ < n && (is_ws(in_[i_]) || in_[i_] == '/')) ++i_;
      if (i_ >= n) return false;
      if (in_[i_] == '>') {
        ++i_;
        return true;
      }
      const size_t name_begin = i_++;
      while (i_ < n && !is_ws(in_[i_]) && in_[i_] != '/' && in_[i_] != '>' && in_[i_] != '=') {
        ++i_;
      }
      const std::string_view name = in_.substr(name_begin, i_ - name_begin);
      while (i_ < n && is_ws(in_[i_])) ++i_;
      if (i_ >= n || in_[i_] != '=') continue;
      ++i_;
      while (i_ < n && is_ws(in_[i_])) ++i_;
      if (i_ >= n) return false;
      std::string_view value;
      if (in_[i_] == '"' || in_[i_] == '\'') {
        const size_t close = in_.find(in_[i_], i_ + 1);
        if (close == std::string_view::npos) return false;
        value = in_.substr(i_ + 1, close - i_ - 1);
        i_ = close + 1;
      } else {
        const size_t begin = i_;
        while (i_ < n && !is_ws(in_[i_]) && in_[i_] != '>') ++i_;
        value = in_.substr(begin, i_ - begin);
      }
      if (on_link_ && is_link_attribute(name)) {
        if (value.find('&') == std::string_view::npos) {
          on_link_(value);
        } else {
          on_link_(decode_attribute(value));
        }
      }
    }
  }

  // After <script> or <style>: skips to its end tag (or the end of input).
  void skip_raw_text(std::string_view name) {
    const size_t n = in_.size();
    size_t k = i_;
    while (true) {
      const size_t lt = in_.find("</", k);
      if (lt == std::string_view::npos) {
        i_ = n;
        return;
      }
      const size_t after = lt + 2 + name.size();
      if (after <= n && ieq(in_.substr(lt + 2, name.size()), name) &&
          (after == n || is_ws(in_[after]) || in_[after] == '>' || in_[after] == '/')) {
        i_ = lt;
        return;
      }
      k = lt + 2;
    }
  }

  std::string_view in_;
  const std::function<void(std::string_view)>& on_link_;
  size_t i_ = 0;
  std::string out_;
  bool space_ = false;
};

}  // namespace

std::string sniff_html_charset(std::string_view html) {
  const std::string_view head = html.substr(0, 4096);
  size_t i = 0;
  while (true) {
    const size_t lt = head.find('<', i);
    if (lt == std::string_view::npos || lt + 5 > head.size()) return {};
    i = lt + 1;
    if (!ieq(head.substr(lt + 1, 4), "meta")) continue;
    const size_t gt = head.find('>', lt);
    if (gt == std::string_view::npos) return {};
    const std::string_view tag = head.substr(lt, gt - lt);
    i = gt + 1;
    for (size_t k = 0; k + 7 < tag.size(); ++k) {
      if (!ieq(tag.substr(k, 7), "charset")) continue;
      size_t v = k + 7;
      while (v < tag.size() && is_ws(tag[v])) ++v;
      if (v >= tag.size() || tag[v] != '=') continue;
      ++v;
      while (v < tag.size() && (is_ws(tag[v]) || tag[v] == '"' || tag[v] == '\'')) ++v;
      const size_t begin = v;
      while (v < tag.size() && (is_alnum(tag[v]) || tag[v] == '-' || tag[v] == '_' ||
                                tag[v] == '.' || tag[v] == ':')) {
        ++v;
      }
      if (v > begin) return std::string(tag.substr(begin, v - begin));
    }
  }
}

std::string html_to_text(std::string_view html,
                         const std::function<void(std::string_view)>& on_link) {
  return Converter(html, on_link).run();
}

}  // namespace spamward
