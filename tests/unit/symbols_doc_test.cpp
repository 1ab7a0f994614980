// The symbol reference in docs/ must document every symbol the code knows, with its default.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/symbol.h"

using namespace spamward;

TEST(SymbolsDoc, EveryKnownSymbolIsDocumentedWithItsFamily) {
  std::ifstream in(std::filesystem::path(SPAMWARD_SOURCE_DIR) / "docs" / "symbols.md");
  ASSERT_TRUE(in) << "docs/symbols.md missing";
  std::stringstream text;
  text << in.rdbuf();
  std::string doc = text.str();
  for (const auto& s : known_symbols()) {
    std::string row = fmt::format("| `{}` | {} |", s.name, to_string(s.family));
    EXPECT_NE(doc.find(row), std::string::npos) << "docs/symbols.md lacks a row starting " << row;
  }
}

TEST(SymbolsDoc, NamesAreUniqueAndUpperCase) {
  const auto& all = known_symbols();
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_FALSE(all[i].name.empty());
    EXPECT_TRUE(all[i].name[0] >= 'A' && all[i].name[0] <= 'Z') << all[i].name;
    for (char c : all[i].name)
      EXPECT_TRUE((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') << all[i].name;
    for (size_t j = i + 1; j < all.size(); ++j) EXPECT_NE(all[i].name, all[j].name);
    EXPECT_EQ(find_symbol(all[i].name), &all[i]);
  }
  EXPECT_EQ(find_symbol("NO_SUCH_SYMBOL"), nullptr);
}
