// Message sources: the raw messages in files, Maildirs, mboxes and standard input, for
// `spamward check PATH...` and `spamward learn` (DESIGN §3.2).
//
// Contract:
// - A path is read as:
//   - "-": standard input, one message or an mbox;
//   - a directory with cur/ or new/ below it: a Maildir, the files of new/ then cur/, each
//     sorted by name (tmp/ is never read: deliveries in progress);
//   - any other directory: its regular files, recursively, sorted by path (so a corpus
//     directory works as well as a Maildir);
//   - a file: an mbox when it starts with a "From " line (DESIGN §3.4: even with only one
//     message), else one message.
// - mbox: messages are separated by "From " lines at the start of the file or after a blank
//   line (a "From " line inside a message without a blank line before it stays in the
//   message). The separator line is not part of the message; mboxrd/mboxo quoting is undone
//   (">From " -> "From ", ">>From " -> ">From "). CRLF files work too.
// - Reading streams: an mbox of any size is read in blocks, and one message keeps at most
//   `max_message_bytes` bytes (the rest is counted in `raw_size` and dropped, as the milter
//   drops what is past its limit). Hidden files in Maildirs (".", "..", ".hidden") are skipped.
// - Errors (a path that does not exist or cannot be read) go to `on_error` with a one-line
//   reason, and reading goes on with the next path.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace spamward {

struct RawMessage {
  std::string file;  // the path given, or the file found in a directory; "-" for stdin
  size_t index = 0;  // 1-based position in an mbox; 0 for a single-message file
  std::string data;  // at most max_message_bytes bytes of the message
  size_t raw_size = 0;  // the message's full size
};

struct MessageSourceOptions {
  size_t max_message_bytes = 10 * 1024 * 1024;
};

// Calls `on_message` for every message under `paths`, in order; returns the number of
// messages delivered. `on_message` returning false stops everything early.
size_t for_each_message(const std::vector<std::string>& paths, const MessageSourceOptions& options,
                        const std::function<bool(RawMessage&)>& on_message,
                        const std::function<void(const std::string& path,
                                                 const std::string& reason)>& on_error);

// Splits an in-memory mbox (tests, HTTP): same rules as above.
std::vector<std::string> split_mbox(std::string_view text);

}  // namespace spamward
