// micro_bench: Google Benchmark timings of the hot, pure pieces every policy request touches:
// parsing the client address Postfix sends, and matching it against configured networks (the
// trusted networks, admin lists and greylist/reputation prefixes all reduce to
// Prefix::contains). Run: build/micro_bench [--benchmark_filter=REGEX].
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "core/ip_address.h"

namespace {

using spamward::IpAddress;
using spamward::Prefix;

// A small fixed mix, so the branch predictor cannot learn a single input.
const std::vector<std::string> kV4 = {"192.0.2.1",   "198.51.100.254", "203.0.113.77",
                                      "81.2.69.160", "209.85.128.12",  "10.0.0.1"};
const std::vector<std::string> kV6 = {"2001:db8::1",
                                      "2a00:1450:4864:20::1b",
                                      "2001:db8:10:3:8f01:971e:9281:1b0b",
                                      "::ffff:192.0.2.33",
                                      "fe80::1",
                                      "2603:10a6:20b:6::20"};

void BM_IpAddressParseV4(benchmark::State& state) {
  size_t i = 0;
  for (auto _ : state) {
    auto a = IpAddress::parse(kV4[i++ % kV4.size()]);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_IpAddressParseV4);

void BM_IpAddressParseV6(benchmark::State& state) {
  size_t i = 0;
  for (auto _ : state) {
    auto a = IpAddress::parse(kV6[i++ % kV6.size()]);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_IpAddressParseV6);

void BM_PrefixParse(benchmark::State& state) {
  const std::vector<std::string> texts = {"192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32",
                                          "[2a00:1450::]/29", "203.0.113.7"};
  size_t i = 0;
  for (auto _ : state) {
    auto p = Prefix::parse(texts[i++ % texts.size()]);
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_PrefixParse);

void BM_IpAddressToString(benchmark::State& state) {
  std::vector<IpAddress> addresses;
  for (const auto& t : kV4) addresses.push_back(*IpAddress::parse(t));
  for (const auto& t : kV6) addresses.push_back(*IpAddress::parse(t));
  size_t i = 0;
  for (auto _ : state) {
    auto s = addresses[i++ % addresses.size()].to_string();
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_IpAddressToString);

// Prefix::contains over a list of N networks, as a linear scan of a list would do it; the
// range shows how the cost grows with the list (a hint for when a trie would pay off).
void BM_PrefixListContains(benchmark::State& state) {
  std::vector<Prefix> prefixes;
  for (int64_t k = 0; k < state.range(0); ++k) {
    const auto n = static_cast<uint32_t>(k);
    if (k % 4 == 3) {
      prefixes.push_back(*Prefix::parse("2001:db8:" + std::to_string(n) + "::/48"));
    } else {
      prefixes.emplace_back(IpAddress::v4(0x0a000000u | (n << 8)), 24);
    }
  }
  std::vector<IpAddress> probes;
  for (const auto& t : kV4) probes.push_back(*IpAddress::parse(t));
  for (const auto& t : kV6) probes.push_back(*IpAddress::parse(t));
  size_t i = 0;
  for (auto _ : state) {
    const IpAddress& a = probes[i++ % probes.size()];
    bool hit = false;
    for (const auto& p : prefixes) {
      if (p.contains(a)) {
        hit = true;
        break;
      }
    }
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PrefixListContains)->Arg(1)->Arg(16)->Arg(256);

}  // namespace

BENCHMARK_MAIN();
