// mail/message_source.h: files, Maildirs, mboxes (and their quoting), limits, errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mail/message_source.h"

using namespace spamward;
namespace fs = std::filesystem;

namespace {

class MessageSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spamward-source-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& rel, const std::string& text) {
    fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  std::vector<RawMessage> read(const std::vector<std::string>& paths, size_t cap = 1 << 20) {
    std::vector<RawMessage> out;
    MessageSourceOptions options;
    options.max_message_bytes = cap;
    for_each_message(
        paths, options,
        [&](RawMessage& m) {
          out.push_back(m);
          return true;
        },
        [&](const std::string& path, const std::string& reason) {
          errors_.push_back(path + ": " + reason);
        });
    return out;
  }

  fs::path dir_;
  std::vector<std::string> errors_;
};

TEST_F(MessageSourceTest, SingleFileIsOneMessage) {
  std::string path = write("one.eml", "Subject: a\n\nFrom here on\n\nFrom there\n");
  auto m = read({path});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].file, path);
  EXPECT_EQ(m[0].index, 0u);  // not an mbox: no index
  EXPECT_EQ(m[0].data, "Subject: a\n\nFrom here on\n\nFrom there\n");
}

TEST_F(MessageSourceTest, MboxIsSplitAndUnquoted) {
  std::string path =
      write("box",
            "From a@example.org Mon Dec  1 10:00:00 2026\n"
            "Subject: one\n\nbody 1\n>From the quoted line\n>>From twice\n\n"
            "From b@example.org Mon Dec  1 10:01:00 2026\n"
            "Subject: two\n\nbody 2\nFrom not a separator (no blank line before)\n\n");
  auto m = read({path});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].index, 1u);
  EXPECT_EQ(m[1].index, 2u);
  EXPECT_EQ(m[0].data, "Subject: one\n\nbody 1\nFrom the quoted line\n>From twice\n");
  EXPECT_EQ(m[1].data, "Subject: two\n\nbody 2\nFrom not a separator (no blank line before)\n");
}

TEST_F(MessageSourceTest, MboxWithOneMessageIsStillAnMbox) {
  auto m = read({write("single", "From x Mon Dec  1 10:00:00 2026\r\nSubject: s\r\n\r\nhi\r\n")});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].index, 1u);
  EXPECT_EQ(m[0].data, "Subject: s\r\n\r\nhi\r\n");
}

TEST_F(MessageSourceTest, SplitMboxInMemoryMatchesTheFileReader) {
  std::string text = "From a\nA: 1\n\nx\n\nFrom b\nB: 2\n\ny\n";
  auto parts = split_mbox(text);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "A: 1\n\nx\n");
  EXPECT_EQ(parts[1], "B: 2\n\ny\n");
}

TEST_F(MessageSourceTest, MaildirReadsNewThenCurAndSkipsTmpAndHidden) {
  write("md/new/2", "Subject: new2\n\n");
  write("md/new/1", "Subject: new1\n\n");
  write("md/cur/3:2,S", "Subject: cur\n\n");
  write("md/tmp/4", "Subject: in progress\n\n");
  write("md/cur/.hidden", "Subject: hidden\n\n");
  auto m = read({(dir_ / "md").string()});
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].data, "Subject: new1\n\n");
  EXPECT_EQ(m[1].data, "Subject: new2\n\n");
  EXPECT_EQ(m[2].data, "Subject: cur\n\n");
  EXPECT_EQ(m[2].file, (dir_ / "md" / "cur" / "3:2,S").string());
}

TEST_F(MessageSourceTest, PlainDirectoryIsWalkedRecursivelyInOrder) {
  write("corpus/b/2", "B: 2\n\n");
  write("corpus/a/1", "A: 1\n\n");
  write("corpus/c", "From x\nC: 3\n\nFrom y\nC: 4\n\n");
  auto m = read({(dir_ / "corpus").string()});
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].data, "A: 1\n\n");
  EXPECT_EQ(m[1].data, "B: 2\n\n");
  EXPECT_EQ(m[2].data, "C: 3\n");  // "From y" follows a blank line: a second message
  EXPECT_EQ(m[2].index, 1u);
  EXPECT_EQ(m[3].data, "C: 4\n");
  EXPECT_EQ(m[3].index, 2u);
}

TEST_F(MessageSourceTest, LargeMessagesAreCutButCounted) {
  std::string big = "Subject: big\n\n" + std::string(5000, 'x') + "\n";
  auto m = read({write("big.eml", big)}, 100);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].data.size(), 100u);
  EXPECT_EQ(m[0].raw_size, big.size());

  // A line far longer than the read block inside an mbox: bounded, and the next message
  // is still found.
  std::string huge_line(3 << 20, 'y');
  auto box = read({write("box", "From a\nS: 1\n\n" + huge_line + "\n\nFrom b\nS: 2\n\nz\n")}, 1000);
  ASSERT_EQ(box.size(), 2u);
  EXPECT_EQ(box[0].data.size(), 1000u);
  EXPECT_EQ(box[0].raw_size, 6 + huge_line.size() + 1);
  EXPECT_EQ(box[1].data, "S: 2\n\nz\n");
}

TEST_F(MessageSourceTest, MissingPathIsReportedAndOthersGoOn) {
  std::string good = write("good.eml", "A: 1\n\n");
  auto m = read({(dir_ / "missing").string(), good});
  ASSERT_EQ(m.size(), 1u);
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_NE(errors_[0].find("missing"), std::string::npos);
}

TEST_F(MessageSourceTest, ConsumerCanStopEarly) {
  std::string path = write("box", "From a\nA: 1\n\nFrom b\nB: 2\n\nFrom c\nC: 3\n");
  int seen = 0;
  for_each_message(
      {path, path}, {}, [&](RawMessage&) { return ++seen < 2; },
      [](const std::string&, const std::string&) {});
  EXPECT_EQ(seen, 2);
}

}  // namespace
