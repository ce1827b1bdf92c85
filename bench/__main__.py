"""Entry point: `python -m bench [options]` runs the suite, `python -m bench download NAME`
fetches a corpus."""
import sys

from bench import download, run

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["download"]:
        sys.exit(download.main(argv[1:]))
    sys.exit(run.main(argv))
