"""tools/zoobot_stats_ref.py: reference for morphcat's Dirichlet-head summaries, in numpy + scipy.

Written from the facts of Zoobot's statistics (zoobot/shared/stats.py and schemas.py @ fda17b0, as described in
../shared/notes/zoobot.md section 3.2), not from its code, for one forward pass per galaxy:
  fraction of answer a  = alpha_a / sum of alpha over a's question            (stats.get_beta_mean)
  90% interval of a     = scipy.stats.beta.ppf(0.5 -+ 0.9/2, alpha_a, sum - alpha_a)
                          (stats.get_confidence_interval_from_ppf_medians; the median over one distribution
                          is that distribution's value)
  proportion asked of q = 1 for a root question, else fraction(answer q follows) * proportion asked of that
                          answer's question (stats.get_expected_votes_ml, votes_for_base_question=1, through
                          schemas.Schema.joint_p)
Schemas are read from nn/schemas/<name>.json (or any file of that form). Everything is float64.

Usage: zoobot_stats_ref.py SCHEMA CONC.npy OUT_PREFIX  ->  OUT_PREFIX_{frac,lo,hi,asked}.npy
Not here: mixtures over several passes or models, the friendly-table masking.
"""
import json
import os
import sys

import numpy as np
from scipy.stats import beta

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nn", "schemas")


class Schema:
    """questions: list of (name, first answer index, end answer index); cols: answer columns;
    depends_on: per question, the answer index it follows or None."""

    def __init__(self, path):
        with open(path) as f:
            doc = json.load(f)
        self.name = doc["name"]
        self.questions, self.cols, self.depends_on = [], [], []
        deps = []
        for q in doc["questions"]:
            start = len(self.cols)
            self.cols += [q["name"] + a for a in q["answers"]]
            self.questions.append((q["name"], start, len(self.cols)))
            deps.append(q["depends_on"])
        self.depends_on = [None if d is None else self.cols.index(d) for d in deps]
        self.question_of = [qi for qi, (_, s, e) in enumerate(self.questions) for _ in range(s, e)]


def load_schema(name_or_path):
    path = name_or_path if os.path.exists(name_or_path) else os.path.join(SCHEMA_DIR, name_or_path + ".json")
    return Schema(path)


def summarise(conc, schema):
    """conc (N, answers) -> frac, lo, hi (N, answers) and asked (N, questions), float64."""
    conc = np.asarray(conc, dtype=np.float64)
    n, na = conc.shape
    assert na == len(schema.cols), (na, len(schema.cols))
    frac, lo, hi = (np.empty_like(conc) for _ in range(3))
    for _, s, e in schema.questions:
        total = conc[:, s:e].sum(axis=1, keepdims=True)
        a = conc[:, s:e]
        frac[:, s:e] = a / total
        lo[:, s:e] = beta.ppf(0.5 - 0.9 / 2.0, a, total - a)
        hi[:, s:e] = beta.ppf(0.5 + 0.9 / 2.0, a, total - a)

    def joint_p(answer):
        # probability that a volunteer gives this answer: its fraction times the chance its question is asked
        q = schema.question_of[answer]
        prev = schema.depends_on[q]
        return frac[:, answer] if prev is None else frac[:, answer] * joint_p(prev)

    asked = np.ones((n, len(schema.questions)))
    for qi, d in enumerate(schema.depends_on):
        if d is not None:
            asked[:, qi] = joint_p(d)
    return frac, lo, hi, asked


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    schema = load_schema(argv[1])
    outs = summarise(np.load(argv[2]), schema)
    for suffix, arr in zip(("frac", "lo", "hi", "asked"), outs):
        np.save("%s_%s.npy" % (argv[3], suffix), arr)


if __name__ == "__main__":
    main(sys.argv)
