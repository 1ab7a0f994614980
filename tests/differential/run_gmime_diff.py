"""ctest driver of gmime_diff (tests/differential/gmime_diff.cpp): unpacks the shared corpus
(../shared/corpus/{ham,spam}.tar.gz, or $SPAMWARD_CORPUS_DIR) into a temporary directory with
tarfile, runs `gmime_diff --expect-messages 6045 DIR` on it and exits with its status. Python 3
stdlib only, no shell. Fails (exit 1) when the corpus is missing: the test is never skipped."""

import os
import subprocess
import sys
import tarfile
import tempfile

ARCHIVES = ("ham.tar.gz", "spam.tar.gz")
MESSAGES = 6045  # README.md of the corpus


def corpus_dir():
    source = os.environ.get("SPAMWARD_SOURCE_DIR") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.environ.get("SPAMWARD_CORPUS_DIR") or os.path.abspath(
        os.path.join(source, "..", "shared", "corpus"))


def unpack(archive, into):
    """Writes every regular file of `archive` under `into`, refusing paths that leave it."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            path = os.path.normpath(os.path.join(into, member.name))
            if not path.startswith(into + os.sep):
                raise ValueError(f"{archive}: unsafe path {member.name!r}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tar.extractfile(member).read())


def main():
    if len(sys.argv) != 2:
        print("usage: run_gmime_diff.py PATH-TO-gmime_diff", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    corpus = corpus_dir()
    with tempfile.TemporaryDirectory(prefix="spamward-gmime-diff-") as tmp:
        for name in ARCHIVES:
            archive = os.path.join(corpus, name)
            if not os.path.isfile(archive):
                print(f"run_gmime_diff: corpus archive {archive} not found", file=sys.stderr)
                return 1
            unpack(archive, tmp)
        return subprocess.run([binary, "--expect-messages", str(MESSAGES), tmp]).returncode


if __name__ == "__main__":
    sys.exit(main())
