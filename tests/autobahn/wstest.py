# Runs the Autobahn test suite's wstest (Python 2.7) from the packages pip installed in the
# directory given first (tests/.autobahn); the other arguments are wstest's. A directory made by
# `pip install --target` needs site.addsitedir for its namespace packages (zope).
import site
import sys

site.addsitedir(sys.argv[1])
sys.argv = ["wstest"] + sys.argv[2:]
from autobahntestsuite.wstest import run  # noqa: E402

run()
