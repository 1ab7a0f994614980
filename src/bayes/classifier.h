// Bayes classifier: the spam probability of a message from the learned counts of its tokens,
// and the BAYES_SPAM / BAYES_HAM symbol it maps to.
//
// Contract:
// - classify() is a pure function of the counts: no store, no clock. For each token it
//   computes Robinson's f(w) = (s*x + n*p(w)) / (s + n), where p(w) is the token's spam
//   frequency over the sum of its spam and ham frequencies (each relative to the number of
//   learned messages of that class) and n the number of learned messages that had it. Tokens
//   with |f(w) - 0.5| < min_dev carry no evidence and are skipped; if token groups are given
//   (TokenList::groups), only the `max_group_clues` strongest of each header field group are
//   kept (group 0, body words etc., is not limited); of the rest, the
//   `max_clues` farthest from 0.5 are combined with Fisher's method (chi-square, 2n degrees
//   of freedom) into I = (1 + H - S) / 2, where S and H are the spam and ham
//   indications. I is in [0, 1]: near 1 spam, near 0 ham, 0.5 undecided or no evidence.
// - Until `min_learned` ham AND `min_learned` spam messages are learned the classifier is
//   inactive: `active` is false, no symbol is given ([bayes] min_learned, default 200).
// - bayes_symbol() maps an active result to at most one symbol of family `content`:
//   BAYES_SPAM from `spam_from` up, growing with confidence to `spam_max`; BAYES_HAM up to
//   `ham_below`, falling to `ham_max` (negative). The defaults let Bayes alone reach the
//   `tag` threshold (6.0) at high confidence but never `reject` (15.0), which in any case
//   also needs a second family (DESIGN §1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/symbol.h"

namespace spamward {

// How many learned messages of each class had a token.
struct TokenCounts {
  uint32_t spam = 0;
  uint32_t ham = 0;
};

// How many messages were learned of each class.
struct LearnedTotals {
  uint64_t spam = 0;
  uint64_t ham = 0;
};

struct ClassifierParams {
  double robinson_s = 0.45;  // strength of the prior x against a token's own evidence
  double robinson_x = 0.5;   // f(w) of a token never seen
  double min_dev = 0.1;      // |f(w) - 0.5| below this is no evidence
  size_t max_clues = 150;    // strongest tokens combined
  // At most this many clues of one header field (TokenList::groups; 0: no limit). A mailing
  // list's header gives a dozen tokens that all say "this came through list X" (List-Id,
  // Sender, Errors-To, Received hosts, ...); counted as independent clues they outvote the
  // body of a spam sent through the list. Cross-validated on the train split (docs/bayes.md):
  // 1 is best. Only when classify() is given the groups.
  size_t max_group_clues = 1;
  uint64_t min_learned = 200;  // ham and spam each before the classifier speaks
  size_t top_clues = 10;       // clues kept in Classification::top
};

struct Clue {
  uint64_t hash = 0;
  uint16_t group = 0;
  double f = 0.5;  // Robinson's f(w)
  TokenCounts counts;
  double weight = 0;  // logistic model: the token's share of the log-odds z
  std::string text;   // the token's text, when the caller asked for an explanation
};

// Which model produced a Classification: Fisher over the counts (this file), or the logistic
// model (bayes/logistic.h, trained by BayesStore::rebuild).
enum class BayesModel : uint8_t { fisher, logistic };

struct Classification {
  bool active = false;  // enough learned of both classes
  BayesModel model = BayesModel::fisher;
  double probability = 0.5;  // Fisher: I; logistic: 1 / (1 + e^-z); in [0, 1]
  double log_odds = 0;       // logistic: z = w.x + b
  size_t clues_used = 0;     // tokens combined (logistic: tokens with a weight)
  double bias = 0;           // logistic: the model's bias b
  size_t tokens = 0;         // distinct tokens of the message
  // The strongest clues, strongest first (at most ClassifierParams::top_clues). Fisher: by
  // |f - 0.5|. The logistic model fills it only for an explanation (Bayes::classify), by |weight|.
  std::vector<Clue> top;
};

// `counts[i]` are the counts of `tokens[i]` (the store's batch lookup returns them so).
// `groups[i]`, if given, is the group of `tokens[i]` (TokenList::groups).
Classification classify(std::span<const uint64_t> tokens, std::span<const TokenCounts> counts,
                        const LearnedTotals& totals, const ClassifierParams& params = {},
                        std::span<const uint16_t> groups = {});

// Robinson's f(w) of one token (exposed for tests and explanations).
double robinson_f(const TokenCounts& c, const LearnedTotals& totals, const ClassifierParams& p);

// The probability that a chi-square variable with `dof` (even) degrees of freedom is at
// least `chi2` (the upper tail). Accurate for large values (computed in log space).
double chi2_upper_tail(double chi2, int dof);

// Defaults from the accuracy bench (docs/bayes.md): BAYES_SPAM reaches the tag threshold
// (6.0) at p >= 0.9979, where 2 of 2,904 ham were in the 5-fold cross-validation on the train
// split and 1 of 1,245 on the test split; the greylist threshold (3.0) at p >= 0.978; its
// full 7.0 at p >= 0.999.
//
// For the logistic model the anchors are log-odds z (linear in z between them), chosen the
// same way on the same cross-validation (docs/bayes.md, "The logistic model").
struct BayesScoring {
  double spam_from = 0.9;    // probability from which BAYES_SPAM is given
  double spam_min = 1.0;     // its score there
  double spam_full = 0.999;  // probability from which it has its full score
  double spam_max = 7.0;     // full score: over `tag` (6.0), far under `reject` (15.0)
  double ham_below = 0.1;    // probability up to which BAYES_HAM is given
  double ham_min = -0.5;     // its score there
  double ham_full = 0.001;   // probability up to which it has its full score
  double ham_max = -3.0;     // full (negative) score
  // The logistic model's anchors (log-odds).
  double z_spam_from = 0.0;
  double z_spam_full = 1.7;
  double z_ham_below = -2.0;
  double z_ham_full = -5.0;
};

// BAYES_SPAM / BAYES_HAM for an active result, or nothing (inactive, or in the uncertain
// middle). Fisher: the score grows linearly in -log10(1 - p) (spam) or -log10(p) (ham) between
// the `*_min` and `*_max` anchors; the detail gives the probability, e.g. "p=0.99912".
// Logistic: linearly in z between the z_* anchors; the detail gives both, "z=2.31 p=0.91".
std::optional<Symbol> bayes_symbol(const Classification& result, const BayesScoring& scoring = {});

}  // namespace spamward
