import sys

from cryptomon.dashboard.cli import main

sys.exit(main())
