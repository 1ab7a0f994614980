"""The shared mail corpus (../shared/corpus), read straight from its archives: nothing is
unpacked anywhere. split_messages() follows SPLIT.tsv, so tests learn from `train` messages
and judge `test` ones, as the accuracy benchmark does."""

import csv
import os
import tarfile

import harness as h

CORPUS_DIR = os.environ.get("SPAMWARD_CORPUS_DIR") or os.path.abspath(
    os.path.join(h.SOURCE_DIR, "..", "shared", "corpus"))


def split_paths(label, split):
    """Archive paths of `label` ("ham"/"spam") in `split` ("train"/"test"), sorted."""
    with open(os.path.join(CORPUS_DIR, "SPLIT.tsv"), newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return sorted(r["path"] for r in rows if r["label"] == label and r["split"] == split)


def split_messages(label, split, count, skip=0):
    """Up to `count` messages (path, bytes) of `label` in `split`, after skipping `skip`, in
    SPLIT.tsv order. Raises FileNotFoundError when the corpus is not there."""
    wanted = split_paths(label, split)[skip:skip + count]
    index = {p: i for i, p in enumerate(wanted)}
    found = [None] * len(wanted)
    with tarfile.open(os.path.join(CORPUS_DIR, f"{label}.tar.gz"), "r:gz") as tar:
        for member in tar:
            i = index.get(member.name)
            if i is None or not member.isfile():
                continue
            found[i] = (member.name, tar.extractfile(member).read())
    return [m for m in found if m is not None]


def write_dir(directory, messages):
    """Writes messages (path, bytes) as one file each into `directory` (created); returns it."""
    os.makedirs(directory, exist_ok=True)
    for n, (path, data) in enumerate(messages):
        with open(os.path.join(directory, f"{n:05d}-{os.path.basename(path)}"), "wb") as f:
            f.write(data)
    return directory
