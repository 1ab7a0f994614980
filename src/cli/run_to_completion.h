// run_to_completion: how a one-shot command (check, dnsbl health) drives its coroutine.
// It runs `task` on `io` and returns when the task ends, stopping the loop at once, so
// background work the task left behind (a DNS query that missed its deadline, a late check)
// cannot hold the command's answer back. What the task threw is rethrown here.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>

namespace spamward::cli {

inline void run_to_completion(boost::asio::io_context& io, boost::asio::awaitable<void> task) {
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
    failure = e;
    io.stop();
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace spamward::cli
