#include "state/redis_reply.h"

#include <hiredis/read.h>

#include <new>
#include <utility>

#include "state/store.h"

namespace spamward {

// What hiredis's callbacks see (the reader's privdata): the limits and what one reply has
// built so far.
struct RespReader::State {
  RespLimits limits;
  size_t objects = 0;  // in the reply being parsed
  std::string error;   // why a callback refused (hiredis itself only says "Out of memory")
};

namespace {

RespReader::State& state_of(const redisReadTask* task) {
  return *static_cast<RespReader::State*>(task->privdata);
}

// Stores `value` where hiredis put this task: the root is allocated (freed by free_object or
// handed out by next()), a child lives in the slot its parent array reserved, which never
// moves because the parent's vector was sized when the array was created.
void* place(const redisReadTask* task, RedisReply&& value) {
  RespReader::State& state = state_of(task);
  if (!task->parent) {
    if (++state.objects > state.limits.max_elements) {
      state.error =
          "reply has more than " + std::to_string(state.limits.max_elements) + " elements";
      return nullptr;
    }
    return new (std::nothrow) RedisReply(std::move(value));
  }
  auto* parent = static_cast<RedisReply*>(task->parent->obj);
  if (!parent || task->idx < 0 || static_cast<size_t>(task->idx) >= parent->elements.size()) {
    state.error = "reply element out of place";
    return nullptr;
  }
  RedisReply& slot = parent->elements[static_cast<size_t>(task->idx)];
  slot = std::move(value);
  return &slot;
}

void* create_string(const redisReadTask* task, char* str, size_t len) {
  RespReader::State& state = state_of(task);
  if (len > state.limits.max_bulk) {
    state.error = "reply string of " + std::to_string(len) + " bytes is over the limit of " +
                  std::to_string(state.limits.max_bulk);
    return nullptr;
  }
  RedisReply r;
  r.type = task->type == REDIS_REPLY_ERROR    ? RedisReply::Type::error
           : task->type == REDIS_REPLY_STATUS ? RedisReply::Type::status
                                              : RedisReply::Type::string;
  r.str.assign(str, len);
  return place(task, std::move(r));
}

void* create_array(const redisReadTask* task, int elements) {
  RespReader::State& state = state_of(task);
  // hiredis passes the count as int: negative counts other than -1 (nil) are malformed.
  if (elements < 0 || static_cast<size_t>(elements) > state.limits.max_elements - state.objects) {
    state.error = "reply array of " + std::to_string(elements) + " elements is over the limit of " +
                  std::to_string(state.limits.max_elements);
    return nullptr;
  }
  state.objects += static_cast<size_t>(elements);
  RedisReply r;
  r.type = RedisReply::Type::array;
  r.elements.resize(static_cast<size_t>(elements));
  return place(task, std::move(r));
}

void* create_integer(const redisReadTask* task, long long value) {
  RedisReply r;
  r.type = RedisReply::Type::integer;
  r.integer = value;
  return place(task, std::move(r));
}

void* create_nil(const redisReadTask* task) {
  return place(task, RedisReply{});
}

// hiredis frees only what it holds as the root (a partial reply after an error, or at
// redisReaderFree); children belong to their parent.
void free_object(void* obj) {
  delete static_cast<RedisReply*>(obj);
}

redisReplyObjectFunctions kFunctions = {create_string, create_array, create_integer, create_nil,
                                        free_object};

void append_line(std::string& out, char type, std::string_view text) {
  out.push_back(type);
  // A line cannot hold CR LF: it would end early and desynchronise the stream.
  for (size_t i = 0; i < text.size(); ++i) {
    bool crlf = text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n';
    out.push_back(crlf ? ' ' : text[i]);
  }
  out += "\r\n";
}

void append_bulk(std::string& out, std::string_view s) {
  out.push_back('$');
  out += std::to_string(s.size());
  out += "\r\n";
  out.append(s);
  out += "\r\n";
}

}  // namespace

RespReader::RespReader(RespLimits limits) : limits_(limits), state_(std::make_unique<State>()) {
  state_->limits = limits;
  reader_ = redisReaderCreateWithFunctions(&kFunctions);
  if (!reader_) throw StoreError("redis: cannot create a reply reader");
  reader_->privdata = state_.get();
}

RespReader::~RespReader() {
  if (reader_) redisReaderFree(reader_);
}

void RespReader::feed(std::string_view bytes) {
  if (failed_) throw StoreError("redis: reply reader used after an error");
  size_t buffered = reader_->len - reader_->pos;
  if (bytes.size() > limits_.max_buffered - std::min(buffered, limits_.max_buffered)) {
    failed_ = true;
    throw StoreError("redis: replies over " + std::to_string(limits_.max_buffered) +
                     " bytes refused");
  }
  if (bytes.empty()) return;
  if (redisReaderFeed(reader_, bytes.data(), bytes.size()) != REDIS_OK) {
    failed_ = true;
    throw StoreError(std::string("redis: ") + reader_->errstr);
  }
}

std::optional<RedisReply> RespReader::next() {
  if (failed_) throw StoreError("redis: reply reader used after an error");
  void* raw = nullptr;
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
    failed_ = true;
    std::string why = state_->error.empty() ? std::string(reader_->errstr) : state_->error;
    throw StoreError("redis: bad reply: " + why);
  }
  if (!raw) return std::nullopt;
  std::unique_ptr<RedisReply> reply(static_cast<RedisReply*>(raw));
  state_->objects = 0;
  return std::move(*reply);
}

void append_command(std::string& out, const std::vector<std::string>& args) {
  out.push_back('*');
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& a : args) append_bulk(out, a);
}

std::string encode_command(const std::vector<std::string>& args) {
  std::string out;
  append_command(out, args);
  return out;
}

void append_reply(std::string& out, const RedisReply& reply) {
  switch (reply.type) {
    case RedisReply::Type::string:
      append_bulk(out, reply.str);
      return;
    case RedisReply::Type::status:
      append_line(out, '+', reply.str);
      return;
    case RedisReply::Type::error:
      append_line(out, '-', reply.str);
      return;
    case RedisReply::Type::integer:
      append_line(out, ':', std::to_string(reply.integer));
      return;
    case RedisReply::Type::nil:
      out += "$-1\r\n";
      return;
    case RedisReply::Type::array:
      out.push_back('*');
      out += std::to_string(reply.elements.size());
      out += "\r\n";
      for (const auto& e : reply.elements) append_reply(out, e);
      return;
  }
}

}  // namespace spamward
