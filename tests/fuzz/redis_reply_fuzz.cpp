// libFuzzer target for the Redis store's reply reader (state/redis_reply.h): hiredis's parser
// behind spamward's limits, fed whatever a hostile or broken server could send.
//
// Input: byte 0 picks the split (1 + byte 0 % 64 bytes per feed), byte 1 bit 0 picks tight
// limits (bulk 64 bytes, 16 elements, 512 buffered) or the defaults; the rest is the stream.
// Properties: nothing crashes or leaks; every reply respects the limits (strings, elements
// over the whole tree); a StoreError ends the stream and the reader stays refused; and every
// reply written back with append_reply() parses again to the same value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "state/redis_reply.h"
#include "state/store.h"

namespace {

using namespace spamward;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Objects in a reply tree, counted as the reader counts them (each array's slots and the root).
size_t objects(const RedisReply& r, const RespLimits& limits) {
  check(r.str.size() <= limits.max_bulk);
  size_t n = r.elements.size();
  for (const auto& e : r.elements) {
    check(e.type == RedisReply::Type::array || e.elements.empty());
    n += objects(e, limits) - 1;  // a child's slot is already counted by its parent
  }
  return n + 1;
}

void round_trip(const RedisReply& reply) {
  std::string wire;
  append_reply(wire, reply);
  RespLimits roomy;
  roomy.max_buffered = wire.size() + 1;
  RespReader again(roomy);
  again.feed(wire);
  auto parsed = again.next();
  check(parsed.has_value());
  check(*parsed == reply);
  check(!again.next().has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t step = 1 + data[0] % 64;
  RespLimits limits;
  if (data[1] & 1) {
    limits.max_bulk = 64;
    limits.max_elements = 16;
    limits.max_buffered = 512;
  }
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  RespReader reader(limits);
  try {
    for (size_t i = 0; i < in.size(); i += step) {
      reader.feed(in.substr(i, step));
      while (auto reply = reader.next()) {
        check(objects(*reply, limits) <= limits.max_elements);
        round_trip(*reply);
      }
    }
  } catch (const StoreError&) {
    // The stream is refused from here on.
    bool refused = false;
    try {
      reader.next();
    } catch (const StoreError&) {
      refused = true;
    }
    check(refused);
  }
  return 0;
}
