// RESP (Redis serialisation protocol, version 2) for the Redis store backend: commands are
// encoded here, replies are parsed by hiredis's reader (<hiredis/read.h>, not its networking)
// into RedisReply values.
//
// Contract:
// - RespReader accepts bytes in any split and yields each complete reply once. Everything it
//   builds is bounded (RespLimits): a bulk string, the elements of one reply (counted over
//   its whole tree), and the bytes buffered while waiting for replies. Malformed input or a
//   limit exceeded throws StoreError; the reader is then unusable (the connection that fed it
//   must be closed, since the stream is out of step).
// - Nesting is bounded by hiredis itself (depth 7), so reply trees are shallow.
// - encode_command() is binary-safe (any bytes in any argument); encode_reply() writes a reply
//   back in RESP2, so that parse(encode(r)) == r (fuzzing and test servers use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace spamward {

struct RedisReply {
  enum class Type { string, array, integer, nil, status, error };
  Type type = Type::nil;
  std::string str;  // string, status, error
  int64_t integer = 0;
  std::vector<RedisReply> elements;  // array

  bool is_error() const { return type == Type::error; }
  bool operator==(const RedisReply&) const = default;
};

struct RespLimits {
  size_t max_bulk = size_t{512} << 20;      // Redis's own proto-max-bulk-len default
  size_t max_elements = size_t{1} << 20;    // objects in one reply tree
  size_t max_buffered = size_t{512} << 20;  // bytes fed but not yet made into replies
};

class RespReader {
 public:
  explicit RespReader(RespLimits limits = {});
  ~RespReader();
  RespReader(const RespReader&) = delete;
  RespReader& operator=(const RespReader&) = delete;

  // Appends bytes from the server. Throws StoreError over max_buffered.
  void feed(std::string_view bytes);
  // The next complete reply, or nullopt when more bytes are needed. Throws StoreError.
  std::optional<RedisReply> next();

  struct State;  // what hiredis's callbacks see; defined in the .cpp

 private:
  RespLimits limits_;
  std::unique_ptr<State> state_;  // the callbacks' view of the limits
  redisReader* reader_ = nullptr;
  bool failed_ = false;
};

// One command as RESP: an array of bulk strings.
void append_command(std::string& out, const std::vector<std::string>& args);
std::string encode_command(const std::vector<std::string>& args);
// A reply as RESP2 (errors and statuses must not contain CR or LF; they are replaced by ' ').
void append_reply(std::string& out, const RedisReply& reply);

}  // namespace spamward
