#include "auth/dkim_keys.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <map>
#include <utility>

namespace spamward {

namespace asio = boost::asio;

namespace {

// The answers of one message's key lookups, filled by concurrently spawned queries. Shared
// with them, so a verification abandoned at the stage deadline leaves nothing dangling.
struct Pending {
  Pending(asio::any_io_executor ex, size_t n)
      : done(ex, asio::steady_timer::time_point::max()), left(n), answers(n) {}
  asio::steady_timer done;
  size_t left;
  std::vector<DkimKeyAnswer> answers;
};

asio::awaitable<void> lookup_into(Resolver& resolver, std::string name, std::shared_ptr<Pending> p,
                                  size_t k) {
  auto lookup = lookup_dkim_key(resolver, std::move(name));  // named first: GCC PR 100611
  DkimKeyAnswer answer = co_await std::move(lookup);
  p->answers[k] = std::move(answer);
  if (--p->left == 0) p->done.cancel();
}

}  // namespace

DkimKeyAnswer dkim_key_answer(const DnsAnswer& answer) {
  DkimKeyAnswer out;
  switch (answer.status) {
    case DnsAnswer::Status::ok:
      out.status =
          answer.records.empty() ? DkimKeyAnswer::Status::none : DkimKeyAnswer::Status::found;
      out.records = answer.records;
      break;
    case DnsAnswer::Status::nxdomain:
    case DnsAnswer::Status::nodata:
      out.status = DkimKeyAnswer::Status::none;
      break;
    case DnsAnswer::Status::timeout:
      out.status = DkimKeyAnswer::Status::temperror;
      out.detail = "timeout";
      break;
    case DnsAnswer::Status::error:
      out.status = DkimKeyAnswer::Status::temperror;
      out.detail = "DNS error";
      break;
  }
  return out;
}

asio::awaitable<DkimKeyAnswer> lookup_dkim_key(Resolver& resolver, std::string key_name) {
  DnsAnswer answer;
  try {
    auto query = resolver.query(std::move(key_name), DnsType::txt);
    answer = co_await std::move(query);
  } catch (const std::exception&) {
    answer.status = DnsAnswer::Status::error;
  }
  co_return dkim_key_answer(answer);
}

asio::awaitable<DkimVerification> verify_dkim(Resolver& resolver,
                                              std::shared_ptr<const Message> message,
                                              int64_t now_unix, DkimLimits limits) {
  DkimVerification out;
  if (!message) co_return out;
  DkimVerifier verifier(message->headers, now_unix, limits);
  out.ignored = verifier.ignored();

  // One query per distinct key name, all out at once.
  std::map<std::string, size_t> slot;
  std::vector<std::string> names;
  for (size_t i = 0; i < verifier.size(); ++i) {
    if (!verifier.needs_key(i)) continue;
    std::string name = verifier.key_name(i);
    if (slot.emplace(name, names.size()).second) names.push_back(std::move(name));
  }
  std::shared_ptr<Pending> pending;
  if (!names.empty()) {
    auto ex = co_await asio::this_coro::executor;
    pending = std::make_shared<Pending>(ex, names.size());
    for (size_t k = 0; k < names.size(); ++k) {
      asio::co_spawn(ex, lookup_into(resolver, names[k], pending, k), asio::detached);
    }
  }

  // The body hashes while the queries are out.
  verifier.feed_body(message->raw_body);
  verifier.finish_body();

  if (pending && pending->left > 0) {
    boost::system::error_code ec;
    auto wait = pending->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await std::move(wait);
  }
  for (size_t i = 0; i < verifier.size(); ++i) {
    DkimKeyAnswer none;
    const DkimKeyAnswer& key =
        verifier.needs_key(i) ? pending->answers[slot.at(verifier.key_name(i))] : none;
    out.results.push_back(verifier.verify(i, key));
  }
  co_return out;
}

}  // namespace spamward
