// Metrics: counters, gauges and histograms with labels, rendered in the Prometheus text
// format by GET /metrics. Every name starts with "spamward_" (DESIGN §3.7).
//
// Thread-safe. Cheap enough for the hot path (one mutex, a map lookup): the event loop is
// single-threaded, so the lock is uncontended.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spamward {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Type { counter, gauge, histogram };

  Metrics();

  // Declares a metric's type and help text. Undeclared metrics render as untyped.
  void describe(std::string_view name, Type type, std::string_view help,
                std::vector<double> buckets = {});

  void inc(std::string_view name, const Labels& labels = {}, double by = 1.0);
  void set(std::string_view name, const Labels& labels, double value);
  void add(std::string_view name, const Labels& labels, double delta);      // gauges up/down
  void observe(std::string_view name, const Labels& labels, double value);  // histograms

  double value(std::string_view name,
               const Labels& labels = {}) const;  // counter/gauge; 0 if absent
  int64_t histogram_count(std::string_view name, const Labels& labels = {}) const;

  std::string render() const;

  // Handles to one labelled series, resolved once (name and labels looked up at creation), so
  // a hot path pays only an uncontended lock and an add. Valid as long as the Metrics lives.
  class CounterHandle {
   public:
    CounterHandle() = default;
    void inc(double by = 1.0) const;
    explicit operator bool() const { return value_ != nullptr; }

   private:
    friend class Metrics;
    Metrics* owner_ = nullptr;
    double* value_ = nullptr;
  };
  class HistogramHandle {
   public:
    HistogramHandle() = default;
    void observe(double value) const;
    explicit operator bool() const { return series_ != nullptr; }

   private:
    friend class Metrics;
    Metrics* owner_ = nullptr;
    const std::vector<double>* buckets_ = nullptr;
    void* series_ = nullptr;  // Family::Histogram
  };
  CounterHandle counter(std::string_view name, const Labels& labels = {});
  HistogramHandle histogram(std::string_view name, const Labels& labels = {});

  // The process-wide registry the daemon uses.
  static Metrics& global();

 private:
  struct Family {
    Type type = Type::counter;
    bool described = false;
    std::string help;
    std::vector<double> buckets;
    std::map<std::string, double> values;  // label text -> value
    struct Histogram {
      std::vector<int64_t> counts;  // per bucket (non-cumulative)
      int64_t count = 0;
      double sum = 0;
    };
    std::map<std::string, Histogram> histograms;
  };
  static std::string label_text(const Labels& labels);
  Family& histogram_family(std::string_view name);  // mu_ held
  static Family gauge_family();
  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

}  // namespace spamward
