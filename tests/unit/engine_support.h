// Running the Engine to its verdict in a unit test: one evaluation on a private io_context.
// Test-only.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>

#include "engine/engine.h"

namespace spamward::test {

// Evaluates `tx` with `state` (a fresh one when null) and returns the verdict; rethrows what
// the evaluation threw.
inline Verdict evaluate_now(Engine& engine, const Transaction& tx,
                            EvaluationState* state = nullptr) {
  boost::asio::io_context io;
  Verdict out;
  EvaluationState local;
  EvaluationState& st = state ? *state : local;
  auto body = [&]() -> boost::asio::awaitable<void> {
    auto evaluation = engine.evaluate(tx, st);  // named first: GCC PR 100611
    out = co_await std::move(evaluation);
  };
  auto task = body();
  boost::asio::co_spawn(io, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
  return out;
}

}  // namespace spamward::test
