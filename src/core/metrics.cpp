#include "core/metrics.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace spamward {

namespace {
std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

const char* type_name(Metrics::Type t) {
  switch (t) {
    case Metrics::Type::counter:
      return "counter";
    case Metrics::Type::gauge:
      return "gauge";
    case Metrics::Type::histogram:
      return "histogram";
  }
  return "untyped";
}
}  // namespace

Metrics::Metrics() = default;

Metrics::Family Metrics::gauge_family() {
  Family f;
  f.type = Type::gauge;
  return f;
}

Metrics& Metrics::global() {
  static Metrics instance;
  return instance;
}

std::string Metrics::label_text(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k;
    out += "=\"";
    out += escape_label(v);
    out += '"';
  }
  return out;
}

void Metrics::describe(std::string_view name, Type type, std::string_view help,
                       std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  auto& f = families_[std::string(name)];
  f.type = type;
  f.described = true;
  f.help = std::string(help);
  if (type == Type::histogram) {
    if (buckets.empty())
      buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    std::sort(buckets.begin(), buckets.end());
    f.buckets = std::move(buckets);
  }
}

void Metrics::inc(std::string_view name, const Labels& labels, double by) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), Family{}).first;
  it->second.values[label_text(labels)] += by;
}

void Metrics::set(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), gauge_family()).first;
  it->second.values[label_text(labels)] = value;
}

void Metrics::add(std::string_view name, const Labels& labels, double delta) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), gauge_family()).first;
  it->second.values[label_text(labels)] += delta;
}

namespace {
template <typename Histogram>
void record(Histogram& h, const std::vector<double>& buckets, double value) {
  if (h.counts.size() != buckets.size()) h.counts.assign(buckets.size(), 0);
  auto pos = std::lower_bound(buckets.begin(), buckets.end(), value);
  if (pos != buckets.end()) ++h.counts[pos - buckets.begin()];
  ++h.count;
  h.sum += value;
}
}  // namespace

Metrics::Family& Metrics::histogram_family(std::string_view name) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    Family f;
    f.type = Type::histogram;
    f.buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    it = families_.emplace(std::string(name), std::move(f)).first;
  }
  return it->second;
}

void Metrics::observe(std::string_view name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  auto& fam = histogram_family(name);
  record(fam.histograms[label_text(labels)], fam.buckets, value);
}

Metrics::CounterHandle Metrics::counter(std::string_view name, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), Family{}).first;
  CounterHandle h;
  h.owner_ = this;
  h.value_ = &it->second.values[label_text(labels)];  // std::map nodes never move
  return h;
}

Metrics::HistogramHandle Metrics::histogram(std::string_view name, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& fam = histogram_family(name);
  HistogramHandle h;
  h.owner_ = this;
  h.buckets_ = &fam.buckets;
  h.series_ = &fam.histograms[label_text(labels)];
  return h;
}

void Metrics::CounterHandle::inc(double by) const {
  if (!value_) return;
  std::lock_guard lock(owner_->mu_);
  *value_ += by;
}

void Metrics::HistogramHandle::observe(double value) const {
  if (!series_) return;
  std::lock_guard lock(owner_->mu_);
  record(*static_cast<Family::Histogram*>(series_), *buckets_, value);
}

double Metrics::value(std::string_view name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto v = it->second.values.find(label_text(labels));
  return v == it->second.values.end() ? 0 : v->second;
}

int64_t Metrics::histogram_count(std::string_view name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto h = it->second.histograms.find(label_text(labels));
  return h == it->second.histograms.end() ? 0 : h->second.count;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.described) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, type_name(f.type));
    }
    if (f.type == Type::histogram) {
      for (const auto& [labels, h] : f.histograms) {
        std::string sep = labels.empty() ? "" : ",";
        int64_t cumulative = 0;
        for (size_t i = 0; i < f.buckets.size(); ++i) {
          cumulative += i < h.counts.size() ? h.counts[i] : 0;
          out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep,
                             format_number(f.buckets[i]), cumulative);
        }
        out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, h.count);
        std::string braces = labels.empty() ? "" : "{" + labels + "}";
        out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, format_number(h.sum), name,
                           braces, h.count);
      }
      continue;
    }
    for (const auto& [labels, v] : f.values) {
      if (labels.empty()) {
        out += fmt::format("{} {}\n", name, format_number(v));
      } else {
        out += fmt::format("{}{{{}}} {}\n", name, labels, format_number(v));
      }
    }
  }
  return out;
}

}  // namespace spamward
